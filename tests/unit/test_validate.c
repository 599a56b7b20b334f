/* Unit tests for validate: body objects and string fields, 422 in the FastAPI shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "accounts.h"
#include "validate.h"

/* The body of resp as compact JSON text (free() it). */
static char *test_body_text(const struct response *resp)
{
    return json_dumps(resp->body, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

static json_t *test_parse(const char *body, struct response *resp)
{
    struct request req;
    memset(&req, 0, sizeof req);
    req.body = (char *)body;
    req.body_len = strlen(body);
    response_init(resp);
    return validate_body_object_or_reply(&req, resp);
}

static void test_validate_body_cases(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *body;
        const char *type; /* NULL: accepted */
    } cases[] = {
        {__LINE__, "{\"a\":1}", NULL},
        {__LINE__, "", "missing"},
        {__LINE__, "{", "json_invalid"},
        {__LINE__, "{\"a\":1,\"a\":2}", "json_invalid"},
        {__LINE__, "[1,2]", "dict_type"},
        {__LINE__, "\"text\"", "dict_type"},
        {__LINE__, "{\"a\":\"\\u0000\"}", "json_invalid"},
        {__LINE__, "{\"a\":\"\xff\"}", "json_invalid"},
        {__LINE__, "{\"a\":1} trailing", "json_invalid"},
        {__LINE__, "{\"a\":[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}", "json_invalid"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response resp;
        print_message("line %d\n", cases[i].line);
        json_t *doc = test_parse(cases[i].body, &resp);
        if (cases[i].type == NULL) {
            assert_non_null(doc);
        } else {
            assert_null(doc);
            assert_int_equal(resp.status, 422);
            json_t *item = json_array_get(json_object_get(resp.body, "detail"), 0);
            assert_string_equal(json_string_value(json_object_get(item, "type")), cases[i].type);
            assert_string_equal(json_string_value(json_array_get(json_object_get(item, "loc"), 0)),
                                "body");
        }
        json_decref(doc);
        response_free(&resp);
    }
}

static void test_validate_deep_nesting_no_crash(void **state)
{
    (void)state;
    size_t n = 100000;
    char *body = malloc(2 * n + 1);
    struct response resp;

    assert_non_null(body);
    memset(body, '[', n);
    memset(body + n, ']', n);
    body[2 * n] = '\0';
    assert_null(test_parse(body, &resp));
    assert_int_equal(resp.status, 422);
    response_free(&resp);
    free(body);
}

/*
 * Found by tests/fuzz/fuzz_validate: jansson's error text quotes the bytes near the error,
 * here cut inside a UTF-8 sequence ("\u0\xc3"); the message was refused by jansson and the
 * 422 had no body. The answer keeps its JSON, with the message in printable ASCII.
 */
static void test_validate_error_text_not_utf8(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *body;
    } cases[] = {
        {__LINE__, "{\"genre\":\"\\u0\xc3\xa9l\xc3\xa8ve\"}"},
        {__LINE__, "{\"a\":tru\xc3\xa9}"},
        {__LINE__, "{\"a\":\"\\u12\x01\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response resp;
        print_message("line %d\n", cases[i].line);
        assert_null(test_parse(cases[i].body, &resp));
        assert_int_equal(resp.status, 422);
        assert_non_null(resp.body);
        json_t *item = json_array_get(json_object_get(resp.body, "detail"), 0);
        assert_string_equal(json_string_value(json_object_get(item, "type")), "json_invalid");
        const char *msg = json_string_value(json_object_get(item, "msg"));
        assert_non_null(msg);
        for (const char *p = msg; *p; p++)
            assert_true(*p >= 0x20 && *p < 0x7f);
        response_free(&resp);
    }
}

static void test_validate_strings(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *body;
        size_t min, max;
        const char *type; /* NULL: accepted */
    } cases[] = {
        {__LINE__, "{\"f\":\"abc\"}", 1, 3, NULL},
        {__LINE__, "{\"f\":\"\"}", 0, 3, NULL},
        {__LINE__, "{\"f\":\"\"}", 1, 3, "string_too_short"},
        {__LINE__, "{\"f\":\"abcd\"}", 1, 3, "string_too_long"},
        {__LINE__, "{\"f\":\"\xc3\xa9\xc3\xa9\xc3\xa9\"}", 1, 3, NULL},
        {__LINE__, "{\"f\":\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}", 2, 2, NULL},
        {__LINE__, "{\"f\":5}", 1, 3, "string_type"},
        {__LINE__, "{\"f\":null}", 1, 3, "string_type"},
        {__LINE__, "{\"f\":[\"a\"]}", 1, 3, "string_type"},
        {__LINE__, "{\"g\":\"a\"}", 1, 3, "missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct response resp;
        print_message("line %d\n", cases[i].line);
        json_t *doc = test_parse(cases[i].body, &resp);
        assert_non_null(doc);
        const char *v = validate_string_or_reply(doc, "f", cases[i].min, cases[i].max, &resp);
        if (cases[i].type == NULL) {
            assert_non_null(v);
        } else {
            assert_null(v);
            assert_int_equal(resp.status, 422);
            char *text = test_body_text(&resp);
            char want[128];
            snprintf(want, sizeof want, "\"loc\":[\"body\",\"f\"]");
            assert_non_null(strstr(text, want));
            snprintf(want, sizeof want, "\"type\":\"%s\"", cases[i].type);
            assert_non_null(strstr(text, want));
            free(text);
        }
        json_decref(doc);
        response_free(&resp);
    }
}

static void test_validate_email_normalise(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *in, *out; /* out NULL: invalid */
    } cases[] = {
        {__LINE__, "Alice@Example.COM", "alice@example.com"},
        {__LINE__, "a@b", "a@b"},
        {__LINE__, "a+tag@b.c", "a+tag@b.c"},
        {__LINE__, "\xc3\x89lise@b.c", "\xc3\x89lise@b.c"},
        {__LINE__, "", NULL},
        {__LINE__, "ab", NULL},
        {__LINE__, "@b", NULL},
        {__LINE__, "a@", NULL},
        {__LINE__, "a@b@c", NULL},
        {__LINE__, "a b@c", NULL},
        {__LINE__, "a\r\n@c", NULL},
        {__LINE__, "a\x7f@c", NULL},
    };
    char out[ACCOUNTS_EMAIL_MAX * 4 + 1];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("line %d\n", cases[i].line);
        bool ok = accounts_email_normalise(cases[i].in, out);
        assert_int_equal(ok, cases[i].out != NULL);
        if (ok)
            assert_string_equal(out, cases[i].out);
    }
}

static void test_validate_email_length(void **state)
{
    (void)state;
    char email[ACCOUNTS_EMAIL_MAX + 2], out[ACCOUNTS_EMAIL_MAX * 4 + 1];

    memset(email, 'a', sizeof email);
    email[1] = '@';
    email[ACCOUNTS_EMAIL_MAX] = '\0';
    assert_true(accounts_email_normalise(email, out));
    email[ACCOUNTS_EMAIL_MAX] = 'a';
    email[ACCOUNTS_EMAIL_MAX + 1] = '\0';
    assert_false(accounts_email_normalise(email, out));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_body_cases),
        cmocka_unit_test(test_validate_deep_nesting_no_crash),
        cmocka_unit_test(test_validate_error_text_not_utf8),
        cmocka_unit_test(test_validate_strings),
        cmocka_unit_test(test_validate_email_normalise),
        cmocka_unit_test(test_validate_email_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
