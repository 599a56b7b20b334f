/* Unit tests for response: serialisation, headers, header injection, 422 shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "response.h"

static char *test_serialize(const struct response *resp)
{
    size_t len = 0;
    char *out = response_serialize(resp, &len);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_response_json_body(void **state)
{
    (void)state;
    struct response resp;

    response_init(&resp);
    response_detail(&resp, 404, "Not Found");
    assert_int_equal(response_header(&resp, "Allow", "GET"), 0);
    char *out = test_serialize(&resp);
    assert_string_equal(out, "Status: 404 Not Found\r\nContent-Type: application/json\r\n"
                             "Content-Length: 22\r\nAllow: GET\r\n\r\n{\"detail\":\"Not Found\"}");
    free(out);
    response_free(&resp);
}

static void test_response_no_body(void **state)
{
    (void)state;
    struct response resp;

    response_init(&resp);
    response_json(&resp, 204, NULL);
    char *out = test_serialize(&resp);
    assert_string_equal(out, "Status: 204 No Content\r\n\r\n");
    free(out);
    response_free(&resp);
}

static void test_response_default_is_500(void **state)
{
    (void)state;
    struct response resp;

    response_init(&resp);
    assert_int_equal(resp.status, 500);
    response_free(&resp);
    response_free(NULL);
}

static void test_response_content_type(void **state)
{
    (void)state;
    struct response resp;

    response_init(&resp);
    response_json(&resp, 429, json_pack("{s:i}", "status", 429));
    resp.content_type = "application/problem+json";
    char *out = test_serialize(&resp);
    assert_non_null(strstr(out, "\r\nContent-Type: application/problem+json\r\n"));
    free(out);
    response_free(&resp);
}

static void test_response_header_injection(void **state)
{
    (void)state;
    struct response resp;

    response_init(&resp);
    assert_int_equal(response_header(&resp, "X-A", "a\r\nSet-Cookie: x=1"), -1);
    assert_int_equal(response_header(&resp, "X-A", "a\nb"), -1);
    assert_int_equal(response_header(&resp, "X-A", "a\rb"), -1);
    assert_int_equal(response_header(&resp, "X-A: b\r\nX-B", "c"), -1);
    assert_int_equal(resp.headers_len, 0);
    response_free(&resp);
}

static void test_response_header_overflow(void **state)
{
    (void)state;
    struct response resp;
    char big[RESPONSE_HEADERS_MAX];

    response_init(&resp);
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(response_header(&resp, "X-Big", big), -1);
    big[100] = '\0';
    int added = 0;
    while (response_header(&resp, "X-Big", big) == 0)
        added++;
    assert_true(added > 0);
    assert_true(resp.headers_len < RESPONSE_HEADERS_MAX);
    assert_int_equal(strlen(resp.headers), resp.headers_len);
    response_free(&resp);
}

static void test_response_invalid_shape(void **state)
{
    (void)state;
    struct response resp;

    response_init(&resp);
    response_invalid(&resp, "body", "email", "Field required", "missing");
    assert_int_equal(resp.status, 422);
    char *text = json_dumps(resp.body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"detail\":[{\"loc\":[\"body\",\"email\"],"
                              "\"msg\":\"Field required\",\"type\":\"missing\"}]}");
    free(text);
    response_invalid(&resp, "body", NULL, "Field required", "missing");
    text = json_dumps(resp.body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_string_equal(text, "{\"detail\":[{\"loc\":[\"body\"],"
                              "\"msg\":\"Field required\",\"type\":\"missing\"}]}");
    free(text);
    response_free(&resp);
}

static void test_response_escapes_client_text(void **state)
{
    (void)state;
    struct response resp;

    response_init(&resp);
    response_detail(&resp, 400, "<script>\"\r\n\x01");
    char *out = test_serialize(&resp);
    assert_non_null(strstr(out, "{\"detail\":\"<script>\\\"\\r\\n\\u0001\"}"));
    free(out);
    response_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_json_body),
        cmocka_unit_test(test_response_no_body),
        cmocka_unit_test(test_response_default_is_500),
        cmocka_unit_test(test_response_content_type),
        cmocka_unit_test(test_response_header_injection),
        cmocka_unit_test(test_response_header_overflow),
        cmocka_unit_test(test_response_invalid_shape),
        cmocka_unit_test(test_response_escapes_client_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
