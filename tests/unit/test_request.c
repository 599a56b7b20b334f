/* Unit tests for request: CGI parameters, content types, bounded bodies, form decoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "request.h"

/* FastCGI parameters are char *; libfcgi never writes through them. */
#define P(s) ((char *)(s))

/* A reader stream over memory: once the bytes are used up, the stream is closed. */
static void test_fill_closes(FCGX_Stream *s)
{
    s->isClosed = 1;
}

static void test_stream(FCGX_Stream *s, unsigned char *buf, size_t len)
{
    memset(s, 0, sizeof *s);
    s->rdNext = s->stopUnget = buf;
    s->stop = s->wrNext = buf + len;
    s->isReader = 1;
    s->fillBuffProc = test_fill_closes;
}

static void test_request_init_params(void **state)
{
    (void)state;
    char *envp[] = {P("REQUEST_METHOD=POST"),
                    P("REQUEST_URI=/login?x=1#f"),
                    P("QUERY_STRING=x=1"),
                    P("CONTENT_TYPE=application/x-www-form-urlencoded; charset=UTF-8"),
                    P("HTTP_AUTHORIZATION=Bearer t"),
                    P("REMOTE_ADDR=192.0.2.1"),
                    NULL};
    struct request req;

    request_init(&req, envp);
    assert_string_equal(req.method, "POST");
    assert_string_equal(req.path, "/login");
    assert_string_equal(req.query, "x=1");
    assert_int_equal(req.content, REQUEST_CONTENT_FORM);
    assert_string_equal(req.authorization, "Bearer t");
    assert_string_equal(req.remote_addr, "192.0.2.1");
    assert_null(req.forwarded_for);
    assert_null(req.accept);
    assert_false(req.path_too_long);
}

/* The first of each name wins (as FCGX_GetParam); longer or shorter names do not match. */
static void test_request_init_first_exact(void **state)
{
    (void)state;
    char *envp[] = {P("HTTP_ACCEPT_ENCODING=gzip"),
                    P("REQUEST_UR=/no"),
                    P("NOEQUALS"),
                    P("SCRIPT_NAME=/script"),
                    P("HTTP_ACCEPT=application/problem+json"),
                    P("HTTP_ACCEPT=text/html"),
                    P("REMOTE_ADDR="),
                    P("REMOTE_ADDR=192.0.2.9"),
                    P("REQUEST_METHOD=GET"),
                    P("HTTP_X_FORWARDED_FOR=198.51.100.1"),
                    P("QUERY_STRING=a=b=c"),
                    NULL};
    struct request req;

    request_init(&req, envp);
    assert_string_equal(req.method, "GET");
    assert_string_equal(req.path, "/script"); /* no REQUEST_URI: SCRIPT_NAME */
    assert_string_equal(req.accept, "application/problem+json");
    assert_string_equal(req.remote_addr, "");
    assert_string_equal(req.forwarded_for, "198.51.100.1");
    assert_string_equal(req.query, "a=b=c");
    assert_null(req.authorization);
    assert_null(req.content_type);
    for (char **e = envp; *e != NULL; e++) { /* the same answers as libfcgi's own lookup */
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
        const char *v = FCGX_GetParam(name, envp);
        if (strcmp(name, "HTTP_ACCEPT") == 0)
            assert_ptr_equal(v, req.accept);
        else if (strcmp(name, "REMOTE_ADDR") == 0)
            assert_ptr_equal(v, req.remote_addr);
    }
}

static void test_request_init_missing(void **state)
{
    (void)state;
    char *envp[] = {NULL};
    struct request req;

    request_init(&req, envp);
    assert_string_equal(req.method, "");
    assert_string_equal(req.path, "");
    assert_string_equal(req.query, "");
    assert_null(req.content_type);
    assert_int_equal(req.content, REQUEST_CONTENT_NONE);
}

static void test_request_path_too_long(void **state)
{
    (void)state;
    static char uri[REQUEST_PATH_MAX + 32];
    char *envp[] = {uri, NULL};
    struct request req;
    size_t prefix = strlen("REQUEST_URI=");

    memcpy(uri, "REQUEST_URI=", prefix);
    memset(uri + prefix, 'a', REQUEST_PATH_MAX + 1);
    uri[prefix + REQUEST_PATH_MAX + 1] = '\0';
    request_init(&req, envp);
    assert_true(req.path_too_long);
    assert_string_equal(req.path, "");
}

static void test_request_content_kinds(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *ct;
        enum request_content kind;
    } cases[] = {
        {__LINE__, NULL, REQUEST_CONTENT_NONE},
        {__LINE__, "", REQUEST_CONTENT_NONE},
        {__LINE__, "  ", REQUEST_CONTENT_NONE},
        {__LINE__, "application/json", REQUEST_CONTENT_JSON},
        {__LINE__, "Application/JSON; charset=utf-8", REQUEST_CONTENT_JSON},
        {__LINE__, " application/json", REQUEST_CONTENT_JSON},
        {__LINE__, "application/jsonx", REQUEST_CONTENT_OTHER},
        {__LINE__, "application/json-patch+json", REQUEST_CONTENT_OTHER},
        {__LINE__, "application/x-www-form-urlencoded", REQUEST_CONTENT_FORM},
        {__LINE__, "multipart/form-data; boundary=x", REQUEST_CONTENT_OTHER},
        {__LINE__, "text/plain", REQUEST_CONTENT_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("line %d\n", cases[i].line);
        assert_int_equal(request_content_kind(cases[i].ct), cases[i].kind);
    }
}

/* Reads a body of have bytes announced by content_length; returns the status. */
static enum request_body_status test_read(const char *content_length, size_t have,
                                          struct request *req)
{
    static unsigned char buf[REQUEST_BODY_MAX + 16];
    char param[64];
    char *envp[] = {param, NULL};
    FCGX_Stream in;

    snprintf(param, sizeof param, "CONTENT_LENGTH=%s", content_length);
    memset(buf, 'x', sizeof buf);
    test_stream(&in, buf, have);
    memset(req, 0, sizeof *req);
    return request_read_body(req, envp, &in);
}

static void test_request_body_limits(void **state)
{
    (void)state;
    struct request req;
    char exact[32], over[32];

    snprintf(exact, sizeof exact, "%d", REQUEST_BODY_MAX);
    snprintf(over, sizeof over, "%d", REQUEST_BODY_MAX + 1);
    assert_int_equal(test_read(exact, REQUEST_BODY_MAX, &req), REQUEST_BODY_OK);
    assert_int_equal(req.body_len, REQUEST_BODY_MAX);
    assert_int_equal(req.body[REQUEST_BODY_MAX], '\0');
    request_free(&req);
    assert_int_equal(test_read(over, REQUEST_BODY_MAX + 1, &req), REQUEST_BODY_TOO_LARGE);
    assert_null(req.body);
    assert_int_equal(test_read("99999999999999999999", 10, &req), REQUEST_BODY_BAD);
    assert_int_equal(test_read("10", 5, &req), REQUEST_BODY_BAD);
    assert_null(req.body);
    assert_int_equal(test_read("-1", 5, &req), REQUEST_BODY_BAD);
    assert_int_equal(test_read("+5", 5, &req), REQUEST_BODY_BAD);
    assert_int_equal(test_read("5x", 5, &req), REQUEST_BODY_BAD);
    assert_int_equal(test_read("0", 0, &req), REQUEST_BODY_OK);
    assert_null(req.body);
    assert_int_equal(test_read("", 0, &req), REQUEST_BODY_OK);
    assert_int_equal(test_read("3", 3, &req), REQUEST_BODY_OK);
    assert_string_equal(req.body, "xxx");
    request_free(&req);
    request_free(NULL);
}

static void test_request_form_values(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *form, *name;
        int rc;
        const char *value;
    } cases[] = {
        {__LINE__, "username=a%40b.c&password=p+w%21", "username", 1, "a@b.c"},
        {__LINE__, "username=a%40b.c&password=p+w%21", "password", 1, "p w!"},
        {__LINE__, "username=x", "password", 0, NULL},
        {__LINE__, "", "password", 0, NULL},
        {__LINE__, "password", "password", 1, ""},
        {__LINE__, "password=", "password", 1, ""},
        {__LINE__, "passwordx=1&password=2", "password", 1, "2"},
        {__LINE__, "password=1&password=2", "password", 1, "1"},
        {__LINE__, "&&password=a=b&", "password", 1, "a=b"},
        {__LINE__, "password=%00x", "password", -1, NULL},
        {__LINE__, "password=%zz", "password", 1, "%zz"},
        {__LINE__, "user%6eame=x", "username", 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *value = NULL;
        print_message("line %d\n", cases[i].line);
        int rc = request_form_value(cases[i].form, strlen(cases[i].form), cases[i].name, &value);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 1)
            assert_string_equal(value, cases[i].value);
        free(value);
    }
}

static void test_request_form_value_too_long(void **state)
{
    (void)state;
    size_t len = strlen("password=") + REQUEST_FIELD_MAX + 1;
    char *form = malloc(len + 1), *value = NULL;

    assert_non_null(form);
    memcpy(form, "password=", 9);
    memset(form + 9, 'a', REQUEST_FIELD_MAX + 1);
    form[len] = '\0';
    assert_int_equal(request_form_value(form, len, "password", &value), -1);
    assert_int_equal(request_form_value(form, len - 1, "password", &value), 1);
    assert_int_equal(strlen(value), REQUEST_FIELD_MAX);
    free(value);
    free(form);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_init_params),
        cmocka_unit_test(test_request_init_first_exact),
        cmocka_unit_test(test_request_init_missing),
        cmocka_unit_test(test_request_path_too_long),
        cmocka_unit_test(test_request_content_kinds),
        cmocka_unit_test(test_request_body_limits),
        cmocka_unit_test(test_request_form_values),
        cmocka_unit_test(test_request_form_value_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
