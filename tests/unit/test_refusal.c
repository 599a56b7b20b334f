/*
 * Unit tests of fcgi/refusal.c: the 429 a thread answers from its table of bodies is
 * byte for byte the one ratelimit_refuse builds (SPEC 5.5), whatever the order of
 * tiers, Retry-After values and Accept headers (slots shared, bodies replaced), and the
 * rate_limited line kept per thread is the line log_event writes (SPEC 5.7).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "ratelimit.h"
#include "refusal.h"
#include "response.h"
#include "unit_tier.h"

#define NOW0 1699900000.0

/* The whole answer (status line, headers, body) as the gateway would write it. */
static char *serialized(const struct response *resp)
{
    size_t len = 0;
    char *text = response_serialize(resp, &len);

    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void assert_same_answer(struct refusal *r, const struct ratelimit_verdict *v, bool problem)
{
    struct response want, got;

    response_init(&want);
    response_init(&got);
    ratelimit_refuse(v, problem, &want);
    refusal_answer(r, v, problem, &got);
    assert_true(got.ratelimit_done);
    char *a = serialized(&want), *b = serialized(&got);
    assert_string_equal(b, a);
    free(a);
    free(b);
    response_free(&want);
    response_free(&got);
}

static void test_refusal_answer_exact(void **state)
{
    struct tier t = unit_tier("ai_authenticated", 5, 2);
    struct refusal r;
    struct ratelimit_verdict v;
    struct response resp;

    (void)state;
    refusal_init(&r);
    ratelimit_verdict_fill(&v, &t, false, 0.4, NOW0);
    response_init(&resp);
    refusal_answer(&r, &v, false, &resp);
    char *text = serialized(&resp);
    assert_string_equal(strstr(text, "\r\n\r\n") + 4,
                        "{\"error\":\"Rate limit exceeded\","
                        "\"message\":\"Too many requests. Please try again in 1 second.\","
                        "\"retry_after\":1,\"limit\":5,\"rate\":\"2 requests/second\","
                        "\"detail\":{\"error\":\"Rate limit exceeded\","
                        "\"message\":\"Too many requests. Please try again in 1 second.\","
                        "\"retry_after\":1,\"limit\":5,\"rate\":\"2 requests/second\"}}");
    assert_non_null(strstr(text, "Status: 429 Too Many Requests\r\n"));
    assert_non_null(strstr(text, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(text, "Retry-After: 1\r\n"));
    free(text);
    response_free(&resp);
    /* The same verdict again comes from the table, the problem document too. */
    assert_same_answer(&r, &v, false);
    assert_same_answer(&r, &v, true);
    assert_same_answer(&r, &v, true);
    refusal_free(&r);
}

/* Many (tier, Retry-After, problem) in a scrambled order: more keys than slots. */
static void test_refusal_answer_table(void **state)
{
    struct tier tiers[3] = {unit_tier("ai_anonymous", 2, 0.5),
                            unit_tier("api_authenticated", 60, 1), unit_tier("slow", 1, 0.001)};
    struct refusal r;
    unsigned seed = 12345;

    (void)state;
    refusal_init(&r);
    for (int i = 0; i < 3000; i++) {
        seed = seed * 1103515245u + 12345u;
        const struct tier *t = &tiers[(seed >> 8) % 3];
        /* tokens in [0, 1): Retry-After from 1 up to 1000 s for the slow tier */
        double tokens = (double)((seed >> 12) % 1000) / 1000.0;
        struct ratelimit_verdict v;
        ratelimit_verdict_fill(&v, t, false, tokens, NOW0 + (seed >> 20) % 7);
        assert_same_answer(&r, &v, (seed >> 4) & 1);
    }
    refusal_free(&r);
    refusal_free(&r); /* freed twice: empty the second time */
    refusal_free(NULL);
}

/* Runs fn with stderr sent to a file; returns what was written (free it). */
static char *captured_stderr(void (*fn)(void *), void *arg)
{
    FILE *tmp = tmpfile(); /* removed when closed */
    assert_non_null(tmp);
    int fd = fileno(tmp);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    fn(arg);
    assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)size, 0), size);
    fclose(tmp);
    return text;
}

struct line_case {
    struct refusal *r;
    const char *identifier, *path, *decided_by;
    struct ratelimit_verdict v;
};

static void write_kept(void *arg)
{
    struct line_case *c = arg;

    refusal_log(c->r, c->identifier, &c->v, c->path, c->decided_by);
}

static void write_event(void *arg)
{
    struct line_case *c = arg;

    log_event(LOG_WARN, "rate_limited",
              json_pack("{s:s, s:s, s:s, s:f, s:i, s:s}", "identifier", c->identifier, "tier",
                        c->v.tier->name, "path", c->path, "tokens_remaining",
                        floor(c->v.tokens * 1000.0 + 0.5) / 1000.0, "retry_after",
                        (int)c->v.retry_after, "decided_by", c->decided_by));
}

/* The line without its "ts" member (the only one that differs between two writes). */
static char *without_ts(const char *line)
{
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);

    assert_non_null(j);
    assert_string_equal(json_object_iter_key(json_object_iter(j)), "ts");
    assert_int_equal(json_object_del(j, "ts"), 0);
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return text;
}

static void test_refusal_log_line(void **state)
{
    struct tier a = unit_tier("ai_authenticated", 5, 2), b = unit_tier("api_anonymous", 60, 1);
    struct refusal r;
    struct line_case cases[] = {
        {&r, "user:abc", "/start-story", "redis", {0}},
        {&r, "user:abc", "/start-story", "refusal_cache", {0}},
        {&r, "ip:2001:db8::1", "/me", "local_bucket", {0}},
        {&r, "user:\"q\\u\xc3\xa9", "/a?b", "redis", {0}}, /* escaped by jansson */
    };

    (void)state;
    refusal_init(&r);
    log_set_level(LOG_INFO);
    ratelimit_verdict_fill(&cases[0].v, &a, false, 0.4, NOW0);
    ratelimit_verdict_fill(&cases[1].v, &a, false, 0.1234, NOW0);
    ratelimit_verdict_fill(&cases[2].v, &b, false, 0.0, NOW0);
    ratelimit_verdict_fill(&cases[3].v, &b, false, 0.9996, NOW0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *kept = captured_stderr(write_kept, &cases[i]);
        char *event = captured_stderr(write_event, &cases[i]);
        assert_int_equal(strchr(kept, '\n') - kept + 1, (long)strlen(kept)); /* one line */
        char *k = without_ts(kept), *e = without_ts(event);
        assert_string_equal(k, e);
        free(k);
        free(e);
        free(kept);
        free(event);
    }
    char *line = captured_stderr(write_kept, &cases[0]);
    assert_non_null(strstr(line, "\"level\":\"warn\",\"event\":\"rate_limited\","
                                 "\"identifier\":\"user:abc\",\"tier\":\"ai_authenticated\","
                                 "\"path\":\"/start-story\",\"tokens_remaining\":0.4,"
                                 "\"retry_after\":1,\"decided_by\":\"redis\"}\n"));
    free(line);
    /* A line longer than the stack buffer (a 3,000-byte path): allocated, still whole. */
    static char long_path[3001];
    memset(long_path, 'p', sizeof long_path - 1);
    long_path[0] = '/';
    struct line_case long_case = {&r, "user:abc", long_path, "redis", cases[0].v};
    line = captured_stderr(write_kept, &long_case);
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "path")), long_path);
    assert_string_equal(strchr(line, '\n'), "\n");
    json_decref(j);
    free(line);
    /* Text jansson refuses (not UTF-8): the line still says a refusal happened. */
    struct line_case bad = {&r, "user:\xff", "/me", "redis", cases[0].v};
    line = captured_stderr(write_kept, &bad);
    char *k = without_ts(line);
    assert_string_equal(k, "{\"level\":\"warn\",\"event\":\"rate_limited\"}");
    free(k);
    free(line);
    /* and the next refusal is whole again */
    line = captured_stderr(write_kept, &cases[0]);
    assert_non_null(strstr(line, "\"identifier\":\"user:abc\""));
    free(line);
    /* Below warn nothing is written. */
    log_set_level(LOG_ERROR);
    line = captured_stderr(write_kept, &cases[1]);
    assert_string_equal(line, "");
    free(line);
    log_set_level(LOG_INFO);
    refusal_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusal_answer_exact),
        cmocka_unit_test(test_refusal_answer_table),
        cmocka_unit_test(test_refusal_log_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
