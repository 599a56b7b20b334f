/* Unit tests for the router: every route of SPEC 4, 404, 405 with Allow. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "accounts.h"
#include "router.h"

struct router_case {
    int line;
    const char *method, *path;
    enum router_result result;
    const char *pattern; /* FOUND: the matched pattern */
    const char *extra;   /* FOUND: param; 405: Allow */
    enum router_class class_;
    bool needs_user;
};

static const struct router_case cases[] = {
    {__LINE__, "POST", "/start-story", ROUTER_FOUND, "/start-story", "", ROUTER_CLASS_AI, false},
    {__LINE__, "POST", "/continue-story", ROUTER_FOUND, "/continue-story", "", ROUTER_CLASS_AI,
     false},
    {__LINE__, "POST", "/end-story", ROUTER_FOUND, "/end-story", "", ROUTER_CLASS_AI, false},
    {__LINE__, "GET", "/suggestions", ROUTER_FOUND, "/suggestions", "", ROUTER_CLASS_AI, false},
    {__LINE__, "GET", "/stories", ROUTER_FOUND, "/stories", "", ROUTER_CLASS_API, true},
    {__LINE__, "GET", "/stories/abc123", ROUTER_FOUND, "/stories/{story_id}", "abc123",
     ROUTER_CLASS_API, true},
    {__LINE__, "DELETE", "/stories/abc123", ROUTER_FOUND, "/stories/{story_id}", "abc123",
     ROUTER_CLASS_API, true},
    {__LINE__, "GET", "/me", ROUTER_FOUND, "/me", "", ROUTER_CLASS_API, true},
    {__LINE__, "POST", "/signup", ROUTER_FOUND, "/signup", "", ROUTER_CLASS_AUTH, false},
    {__LINE__, "POST", "/login", ROUTER_FOUND, "/login", "", ROUTER_CLASS_AUTH, false},
    {__LINE__, "GET", "/healthz", ROUTER_FOUND, "/healthz", "", ROUTER_CLASS_NONE, false},
    {__LINE__, "GET", "/metrics", ROUTER_FOUND, "/metrics", "", ROUTER_CLASS_NONE, false},
    {__LINE__, "POST", "/metrics", ROUTER_METHOD_NOT_ALLOWED, NULL, "GET", 0, false},
    {__LINE__, "DELETE", "/me", ROUTER_METHOD_NOT_ALLOWED, NULL, "GET", 0, false},
    {__LINE__, "POST", "/stories/x", ROUTER_METHOD_NOT_ALLOWED, NULL, "GET, DELETE", 0, false},
    {__LINE__, "GET", "/login", ROUTER_METHOD_NOT_ALLOWED, NULL, "POST", 0, false},
    {__LINE__, "HEAD", "/healthz", ROUTER_METHOD_NOT_ALLOWED, NULL, "GET", 0, false},
    {__LINE__, "get", "/me", ROUTER_METHOD_NOT_ALLOWED, NULL, "GET", 0, false},
    {__LINE__, "GET", "/", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
    {__LINE__, "GET", "", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
    {__LINE__, "GET", "/me/", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
    {__LINE__, "GET", "/ME", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
    {__LINE__, "GET", "/stories/", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
    {__LINE__, "GET", "/stories/a/b", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
    {__LINE__, "GET", "/storiesx", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
    {__LINE__, "GET", "/__gateway/me", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
    {__LINE__, "GET", "/me%00", ROUTER_NOT_FOUND, NULL, NULL, 0, false},
};

static void test_router_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct router_case *c = &cases[i];
        const struct router_route *route = NULL;
        char param[HANDLER_PARAM_MAX + 1] = "?", allow[ROUTER_ALLOW_MAX] = "?";
        enum router_result r = router_match(c->method, c->path, &route, param, allow);

        print_message("line %d: %s %s\n", c->line, c->method, c->path);
        assert_int_equal(r, c->result);
        if (r == ROUTER_FOUND) {
            assert_string_equal(route->pattern, c->pattern);
            assert_string_equal(route->method, c->method);
            assert_string_equal(param, c->extra);
            assert_int_equal(route->class_, c->class_);
            assert_int_equal(route->needs_user, c->needs_user);
        } else if (r == ROUTER_METHOD_NOT_ALLOWED) {
            assert_string_equal(allow, c->extra);
        }
    }
}

static void test_router_param_bounds(void **state)
{
    (void)state;
    char path[HANDLER_PARAM_MAX + 32], param[HANDLER_PARAM_MAX + 1], allow[ROUTER_ALLOW_MAX];
    const struct router_route *route;

    memcpy(path, "/stories/", 9);
    memset(path + 9, 'a', HANDLER_PARAM_MAX);
    path[9 + HANDLER_PARAM_MAX] = '\0';
    assert_int_equal(router_match("GET", path, &route, param, allow), ROUTER_FOUND);
    assert_int_equal(strlen(param), HANDLER_PARAM_MAX);
    path[9 + HANDLER_PARAM_MAX] = 'a';
    path[10 + HANDLER_PARAM_MAX] = '\0';
    /* Too long for any id: the route still matches, with an empty parameter. */
    assert_int_equal(router_match("GET", path, &route, param, allow), ROUTER_FOUND);
    assert_string_equal(param, "");
    memcpy(path + 9, "a/b", 4);
    assert_int_equal(router_match("GET", path, &route, param, allow), ROUTER_NOT_FOUND);
}

static void test_router_class_names(void **state)
{
    (void)state;
    assert_string_equal(router_class_name(ROUTER_CLASS_AI), "ai");
    assert_string_equal(router_class_name(ROUTER_CLASS_API), "api");
    assert_string_equal(router_class_name(ROUTER_CLASS_AUTH), "auth");
    assert_string_equal(router_class_name(ROUTER_CLASS_NONE), "none");
}

/* router_count, router_at and router_index agree with the table router_match uses. */
static void test_router_index(void **state)
{
    const struct router_route *me = NULL;
    char param[HANDLER_PARAM_MAX + 1], allow[ROUTER_ALLOW_MAX];
    static const struct router_route other = {
        "GET", "/me", ROUTER_CLASS_API, true, ROUTER_BODY_NONE, NULL, NULL};

    (void)state;
    assert_int_equal(router_count(), 12);
    for (size_t i = 0; i < router_count(); i++)
        assert_int_equal(router_index(router_at(i)), (long)i);
    assert_null(router_at(router_count()));
    /* Only GET /me reads in advance, with the rate decision (include/handler.h). */
    for (size_t i = 0; i < router_count(); i++) {
        const struct router_route *r = router_at(i);
        bool is_me = strcmp(r->method, "GET") == 0 && strcmp(r->pattern, "/me") == 0;
        assert_ptr_equal(r->prefetch, is_me ? accounts_me_prefetch : NULL);
    }
    assert_int_equal(router_match("GET", "/me", &me, param, allow), ROUTER_FOUND);
    assert_ptr_equal(router_at((size_t)router_index(me)), me);
    assert_int_equal(router_index(&other), -1); /* same fields, not the table's */
    assert_int_equal(router_index(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router_table),
        cmocka_unit_test(test_router_param_bounds),
        cmocka_unit_test(test_router_class_names),
        cmocka_unit_test(test_router_index),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
