/*
 * Unit tests of GET /me's prefetch (handlers/accounts.c): the HMGET the gateway sends
 * with the rate decision, and what accounts_me answers from each reply it may get
 * back (the record, no record, an error reply). No Redis: the replies are built here,
 * as hiredis would hand them over.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "handler.h"
#include "response.h"

static void test_accounts_me_prefetch_command(void **state)
{
    struct handler_prefetch pf;
    char user[200];

    (void)state;
    assert_int_equal(accounts_me_prefetch("aaaa0000", &pf), 0);
    assert_int_equal(pf.argc, 5);
    const char *want[] = {"HMGET", "{u:aaaa0000}:user", "id", "email", "created_at"};
    for (int i = 0; i < 5; i++)
        assert_string_equal(pf.argv[i], want[i]);
    /* A sub longer than any key the handler reads: no prefetch, no cut key. */
    memset(user, 'a', sizeof user - 1);
    user[sizeof user - 1] = '\0';
    assert_int_equal(accounts_me_prefetch(user, &pf), -1);
}

/* An answer's body, dumped as the gateway would write it (free it). */
static char *body_text(const struct response *resp)
{
    assert_non_null(resp->body);
    return json_dumps(resp->body, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

static void run_me(const redisReply *prefetched, struct response *resp)
{
    struct handler_ctx ctx = {.user = "aaaa0000", .prefetched = prefetched};

    response_init(resp);
    accounts_me(&ctx, resp);
}

static void test_accounts_me_from_prefetch(void **state)
{
    redisReply id = {.type = REDIS_REPLY_STRING, .str = (char *)"aaaa0000", .len = 8};
    redisReply email = {.type = REDIS_REPLY_STRING, .str = (char *)"a@example.com", .len = 13};
    redisReply created = {.type = REDIS_REPLY_STRING, .str = (char *)"2026-11-29T10:00:00Z"};
    redisReply nil = {.type = REDIS_REPLY_NIL};
    redisReply *found[] = {&id, &email, &created}, *gone[] = {&nil, &nil, &nil};
    redisReply record = {.type = REDIS_REPLY_ARRAY, .elements = 3, .element = found};
    redisReply deleted = {.type = REDIS_REPLY_ARRAY, .elements = 3, .element = gone};
    redisReply error = {.type = REDIS_REPLY_ERROR, .str = (char *)"OOM command not allowed"};
    struct response resp;

    (void)state;
    created.len = strlen(created.str);
    run_me(&record, &resp);
    assert_int_equal(resp.status, 200);
    char *text = body_text(&resp);
    assert_string_equal(text, "{\"id\":\"aaaa0000\",\"email\":\"a@example.com\","
                              "\"created_at\":\"2026-11-29T10:00:00Z\"}");
    free(text);
    response_free(&resp);

    /* The account is gone: the token no longer names anyone. */
    run_me(&deleted, &resp);
    assert_int_equal(resp.status, 401);
    assert_non_null(strstr(resp.headers, "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"));
    response_free(&resp);

    /* Redis answered the read with an error: storage unavailable, as without prefetch. */
    run_me(&error, &resp);
    assert_int_equal(resp.status, 503);
    text = body_text(&resp);
    assert_non_null(strstr(text, "\"detail\""));
    free(text);
    response_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accounts_me_prefetch_command),
        cmocka_unit_test(test_accounts_me_from_prefetch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
