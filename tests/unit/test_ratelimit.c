/*
 * Unit tests of fcgi/ratelimit.c: the verdict arithmetic (SPEC 5.3, 5.4), the
 * header block, the 429 bodies (5.5), the rate text and the reply check.
 * ratelimit_charge runs against a real Redis only when SG_TEST_REDIS_PORT is set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "ratelimit.h"
#include "unit_tier.h"

#define NOW0 1699900000.0 /* a whole Unix second */
#define NOW0_L 1699900000L

/* ---- ratelimit_verdict_fill ---- */

struct verdict_row {
    int line;
    long capacity;
    double rate;
    bool allowed;
    double tokens;
    double now;
    long remaining, reset_after, reset_at, retry_after;
    double tokens_out;
};

static const struct verdict_row verdict_rows[] = {
    /* SPEC 5.3 seed timeline, ai_authenticated: 5 at once pass, the sixth waits 1 s. */
    {__LINE__, 5, 2, true, 4, NOW0, 4, 1, NOW0_L + 1, 0, 4},
    {__LINE__, 5, 2, true, 3, NOW0, 3, 1, NOW0_L + 1, 0, 3},
    {__LINE__, 5, 2, true, 2, NOW0, 2, 2, NOW0_L + 2, 0, 2},
    {__LINE__, 5, 2, true, 1, NOW0, 1, 2, NOW0_L + 2, 0, 1},
    {__LINE__, 5, 2, true, 0, NOW0, 0, 3, NOW0_L + 3, 0, 0},
    {__LINE__, 5, 2, false, 0, NOW0, 0, 3, NOW0_L + 3, 1, 0},
    /* ... and 0.5 s later one more passes (the script refilled 1 and took it). */
    {__LINE__, 5, 2, true, 0, NOW0 + 0.5, 0, 3, NOW0_L + 3, 0, 0},
    /* ai_anonymous: 2 burst, 0.5 per second. */
    {__LINE__, 2, 0.5, true, 1, NOW0, 1, 2, NOW0_L + 2, 0, 1},
    {__LINE__, 2, 0.5, true, 0, NOW0, 0, 4, NOW0_L + 4, 0, 0},
    {__LINE__, 2, 0.5, false, 0, NOW0, 0, 4, NOW0_L + 4, 2, 0},
    {__LINE__, 2, 0.5, false, 0.5, NOW0, 0, 3, NOW0_L + 3, 1, 0.5},
    {__LINE__, 2, 0.5, false, 0.25, NOW0 + 0.75, 0, 4, NOW0_L + 5, 2, 0.25},
    /* auth: 3 burst, 0.5 per second. */
    {__LINE__, 3, 0.5, false, 0.9, NOW0, 0, 5, NOW0_L + 5, 1, 0.9},
    /* Float noise: a value just above a whole number rounds to it, not past it. */
    {__LINE__, 5, 2, true, 4.0000000001, NOW0, 4, 1, NOW0_L + 1, 0, 4.0000000001},
    {__LINE__, 5, 1, true, 3.0000000001, NOW0, 3, 2, NOW0_L + 2, 0, 3.0000000001},
    {__LINE__, 5, 1, true, 2.9999999999, NOW0, 2, 2, NOW0_L + 2, 0, 2.9999999999},
    /* (3 - 2.9) / 0.1 is 1.0000000000000009 */
    {__LINE__, 3, 0.1, true, 2.9, NOW0, 2, 1, NOW0_L + 1, 0, 2.9},
    {__LINE__, 3, 0.1, true, 2.7, NOW0, 2, 3, NOW0_L + 3, 0, 2.7},
    /* now with a fraction that a double holds only approximately at 1.7e9 */
    {__LINE__, 5, 2, true, 3.2, NOW0 + 100000 / 1e6, 3, 1, NOW0_L + 1, 0, 3.2},
    {__LINE__, 5, 2, true, 3.5, NOW0 + 750000 / 1e6, 3, 1, NOW0_L + 2, 0, 3.5},
    /* 1699900000.000998 is stored as ...00099802017: the bucket is full at
     * exactly +1 s, and that noise must not push RateLimit-Reset to +2 */
    {__LINE__, 5, 1, true, 4 + 998 / 1e6, NOW0 + 998 / 1e6, 4, 1, NOW0_L + 1, 0, 4 + 998 / 1e6},
    /* Tiny negative noise and NaN are empty; more than the capacity is full. */
    {__LINE__, 5, 2, false, -1e-17, NOW0, 0, 3, NOW0_L + 3, 1, 0},
    {__LINE__, 5, 2, false, NAN, NOW0, 0, 3, NOW0_L + 3, 1, 0},
    {__LINE__, 5, 2, true, 7, NOW0, 5, 0, NOW0_L, 0, 5},
    {__LINE__, 5, 2, true, 5, NOW0 + 0.25, 5, 0, NOW0_L + 1, 0, 5},
    /* Refused a hair below a full 1-token bucket: t and Retry-After are still >= 1. */
    {__LINE__, 1, 1, false, 0.9999999999999, NOW0, 0, 1, NOW0_L + 1, 1, 0.9999999999999},
    /* Refused while holding a token (cannot come from the script): still sane. */
    {__LINE__, 5, 2, false, 3, NOW0, 3, 1, NOW0_L + 1, 1, 3},
    /* Large and extreme tiers. */
    {__LINE__, 1000000000, 1e6, true, 0, NOW0, 0, 1000, NOW0_L + 1000, 0, 0},
    {__LINE__, 5, 1e-300, false, 0, NOW0, 0, 1000000000000L, NOW0_L + 1000000000000L,
     1000000000000L, 0},
};

static void test_ratelimit_verdict_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof verdict_rows / sizeof verdict_rows[0]; i++) {
        const struct verdict_row *r = &verdict_rows[i];
        struct tier t = unit_tier("ai_authenticated", r->capacity, r->rate);
        struct ratelimit_verdict v;

        ratelimit_verdict_fill(&v, &t, r->allowed, r->tokens, r->now);
        if (v.tier != &t || v.allowed != r->allowed || v.remaining != r->remaining ||
            v.reset_after != r->reset_after || v.reset_at != r->reset_at ||
            v.retry_after != r->retry_after || v.tokens != r->tokens_out)
            fail_msg("row at line %d: remaining %ld reset_after %ld reset_at %ld "
                     "retry_after %ld tokens %.17g",
                     r->line, v.remaining, v.reset_after, v.reset_at, v.retry_after, v.tokens);
    }
}

/* SPEC 5.4: on a 429, Retry-After is never later than t; t and Reset agree. */
static void test_ratelimit_retry_never_after_reset(void **state)
{
    static const long capacities[] = {1, 2, 3, 5, 10, 20};
    static const double rates[] = {0.001, 0.1, 1.0 / 3, 0.5, 1, 2, 3, 7, 10, 1e6};
    unsigned long checked = 0;

    (void)state;
    for (size_t c = 0; c < sizeof capacities / sizeof capacities[0]; c++) {
        for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
            struct tier t = unit_tier("x", capacities[c], rates[r]);
            for (int k = 0; k <= 1000 * capacities[c]; k++) {
                double tokens = k / 1000.0;
                double now = NOW0 + (k % 1000) * 0.000997;
                bool allowed = tokens <= (double)capacities[c] - 1;
                struct ratelimit_verdict v;

                for (int refused = 0; refused < 2; refused++) {
                    if (refused && tokens >= 1)
                        break;
                    ratelimit_verdict_fill(&v, &t, allowed && !refused, tokens, now);
                    long base = (long)floor(now);
                    if (v.reset_at != base + v.reset_after &&
                        v.reset_at != base + v.reset_after + 1)
                        fail_msg("cap %ld rate %g tokens %g: reset_at %ld vs t %ld", capacities[c],
                                 rates[r], tokens, v.reset_at, v.reset_after);
                    if (v.remaining < 0 || v.remaining > capacities[c])
                        fail_msg("remaining %ld", v.remaining);
                    if (!v.allowed) {
                        if (v.retry_after < 1 || v.retry_after > v.reset_after ||
                            (double)v.reset_at <= now)
                            fail_msg("cap %ld rate %g tokens %g: retry %ld t %ld reset %ld",
                                     capacities[c], rates[r], tokens, v.retry_after, v.reset_after,
                                     v.reset_at);
                    } else {
                        assert_int_equal(v.retry_after, 0);
                    }
                    checked++;
                }
            }
        }
    }
    assert_true(checked > 100000);
}

/* ---- ratelimit_headers ---- */

static void test_ratelimit_headers_exact(void **state)
{
    struct tier t = unit_tier("ai_authenticated", 5, 2);
    struct ratelimit_verdict v;
    char buf[RATELIMIT_HEADERS_MAX];

    (void)state;
    ratelimit_verdict_fill(&v, &t, true, 2, NOW0);
    const char *allowed = "RateLimit-Limit: 5\r\n"
                          "RateLimit-Remaining: 2\r\n"
                          "RateLimit-Reset: 1699900002\r\n"
                          "RateLimit-Policy: \"ai_authenticated\";q=5;w=3\r\n"
                          "RateLimit: \"ai_authenticated\";r=2;t=2\r\n";
    assert_int_equal(ratelimit_headers(&v, buf, sizeof buf), (int)strlen(allowed));
    assert_string_equal(buf, allowed);

    ratelimit_verdict_fill(&v, &t, false, 0, NOW0);
    const char *refused = "RateLimit-Limit: 5\r\n"
                          "RateLimit-Remaining: 0\r\n"
                          "RateLimit-Reset: 1699900003\r\n"
                          "RateLimit-Policy: \"ai_authenticated\";q=5;w=3\r\n"
                          "RateLimit: \"ai_authenticated\";r=0;t=3\r\n"
                          "Retry-After: 1\r\n";
    assert_int_equal(ratelimit_headers(&v, buf, sizeof buf), (int)strlen(refused));
    assert_string_equal(buf, refused);

    struct tier anon = unit_tier("ai_anonymous", 2, 0.5);
    ratelimit_verdict_fill(&v, &anon, false, 0, NOW0 + 0.5);
    const char *anon_refused = "RateLimit-Limit: 2\r\n"
                               "RateLimit-Remaining: 0\r\n"
                               "RateLimit-Reset: 1699900005\r\n"
                               "RateLimit-Policy: \"ai_anonymous\";q=2;w=4\r\n"
                               "RateLimit: \"ai_anonymous\";r=0;t=4\r\n"
                               "Retry-After: 2\r\n";
    assert_int_equal(ratelimit_headers(&v, buf, sizeof buf), (int)strlen(anon_refused));
    assert_string_equal(buf, anon_refused);
}

static void test_ratelimit_headers_too_small(void **state)
{
    struct tier t = unit_tier("api_authenticated", 20, 10);
    struct ratelimit_verdict v;
    char full[RATELIMIT_HEADERS_MAX];

    (void)state;
    for (int refused = 0; refused < 2; refused++) {
        ratelimit_verdict_fill(&v, &t, !refused, refused ? 0.5 : 7, NOW0);
        int n = ratelimit_headers(&v, full, sizeof full);
        assert_true(n > 0);
        for (size_t len = 1; len <= (size_t)n; len++) {
            char *buf = malloc(len);
            assert_non_null(buf);
            assert_int_equal(ratelimit_headers(&v, buf, len), -1);
            assert_string_equal(buf, "");
            free(buf);
        }
        char *buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(ratelimit_headers(&v, buf, (size_t)n + 1), n);
        assert_string_equal(buf, full);
        free(buf);
    }
    assert_int_equal(ratelimit_headers(&v, NULL, 10), -1);
    assert_int_equal(ratelimit_headers(&v, full, 0), -1);
    assert_int_equal(ratelimit_headers(NULL, full, sizeof full), -1);
}

/* The largest values still fit RATELIMIT_HEADERS_MAX, and a name that would break
 * the Structured Field is refused rather than written. */
static void test_ratelimit_headers_limits(void **state)
{
    char name[TIERS_TIER_NAME_MAX + 1];
    char buf[RATELIMIT_HEADERS_MAX];
    struct ratelimit_verdict v;

    (void)state;
    memset(name, 'n', TIERS_TIER_NAME_MAX);
    name[TIERS_TIER_NAME_MAX] = '\0';
    struct tier t = unit_tier(name, 1000000000, 1e-300);
    t.refill_seconds = 1000000000000L;
    ratelimit_verdict_fill(&v, &t, false, 0, 1e12);
    assert_true(ratelimit_headers(&v, buf, sizeof buf) > 0);

    static const char *const bad[] = {"a\"b", "a\\b", "a\r\nX: y", "caf\xc3\xa9", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tier b = unit_tier(bad[i], 5, 2);
        ratelimit_verdict_fill(&v, &b, true, 1, NOW0);
        assert_int_equal(ratelimit_headers(&v, buf, sizeof buf), -1);
    }
}

/* ---- ratelimit_body, ratelimit_problem ---- */

static void assert_json(json_t *j, const char *expected)
{
    assert_non_null(j);
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_non_null(text);
    assert_string_equal(text, expected);
    free(text);
    json_decref(j);
}

static void test_ratelimit_body_exact(void **state)
{
    struct tier t = unit_tier("ai_authenticated", 5, 2);
    struct tier anon = unit_tier("ai_anonymous", 2, 0.5);
    struct ratelimit_verdict v;

    (void)state;
    ratelimit_verdict_fill(&v, &t, false, 0, NOW0);
    assert_json(ratelimit_body(&v),
                "{\"error\":\"Rate limit exceeded\","
                "\"message\":\"Too many requests. Please try again in 1 second.\","
                "\"retry_after\":1,\"limit\":5,\"rate\":\"2 requests/second\","
                "\"detail\":{\"error\":\"Rate limit exceeded\","
                "\"message\":\"Too many requests. Please try again in 1 second.\","
                "\"retry_after\":1,\"limit\":5,\"rate\":\"2 requests/second\"}}");

    ratelimit_verdict_fill(&v, &anon, false, 0, NOW0);
    assert_json(ratelimit_body(&v),
                "{\"error\":\"Rate limit exceeded\","
                "\"message\":\"Too many requests. Please try again in 2 seconds.\","
                "\"retry_after\":2,\"limit\":2,\"rate\":\"0.5 requests/second\","
                "\"detail\":{\"error\":\"Rate limit exceeded\","
                "\"message\":\"Too many requests. Please try again in 2 seconds.\","
                "\"retry_after\":2,\"limit\":2,\"rate\":\"0.5 requests/second\"}}");

    assert_null(ratelimit_body(NULL));
}

static void test_ratelimit_problem_exact(void **state)
{
    struct tier anon = unit_tier("ai_anonymous", 2, 0.5);
    struct tier t = unit_tier("ai_authenticated", 5, 2);
    struct ratelimit_verdict v;

    (void)state;
    ratelimit_verdict_fill(&v, &anon, false, 0, NOW0);
    assert_json(ratelimit_problem(&v),
                "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\","
                "\"title\":\"Too Many Requests\",\"status\":429,"
                "\"detail\":\"Too many requests. Please try again in 2 seconds.\","
                "\"violated-policies\":[\"ai_anonymous\"],\"retry_after\":2}");

    ratelimit_verdict_fill(&v, &t, false, 0.5, NOW0);
    assert_json(ratelimit_problem(&v),
                "{\"type\":\"https://iana.org/assignments/http-problem-types#quota-exceeded\","
                "\"title\":\"Too Many Requests\",\"status\":429,"
                "\"detail\":\"Too many requests. Please try again in 1 second.\","
                "\"violated-policies\":[\"ai_authenticated\"],\"retry_after\":1}");

    assert_null(ratelimit_problem(NULL));
}

/* ---- ratelimit_format_rate ---- */

struct rate_row {
    int line;
    double rate;
    const char *text;
};

static const struct rate_row rate_rows[] = {
    {__LINE__, 0.5, "0.5"},
    {__LINE__, 2, "2"},
    {__LINE__, 10, "10"},
    {__LINE__, 0.1, "0.1"},
    {__LINE__, 1.25, "1.25"},
    {__LINE__, 1e6, "1000000"},
    {__LINE__, 100, "100"},
    {__LINE__, 0.3, "0.3"},
    {__LINE__, 0.007, "0.007"},
    {__LINE__, 123.456, "123.456"},
    {__LINE__, 12345678.9, "12345678.9"},
    {__LINE__, 1.0 / 3, "0.3333333333333333"},
    {__LINE__, 2.0 / 3, "0.6666666666666666"},
    {__LINE__, 0.1 + 0.2, "0.30000000000000004"},
    {__LINE__, 9.5, "9.5"},
    {__LINE__, 0.0001, "0.0001"},
    {__LINE__, 1e-5, "0.00001"},
    {__LINE__, 1e-6, "0.000001"},
    {__LINE__, 1.5e-6, "0.0000015"},
    {__LINE__, 1e20, "100000000000000000000"},
    {__LINE__, 0, "0"},
    {__LINE__, -0.5, "-0.5"},
    /* Outside ordinary rates: exponent notation, still exact. */
    {__LINE__, 1e-7, "1e-07"},
    {__LINE__, 1e21, "1e+21"},
    {__LINE__, 1.7976931348623157e308, "1.7976931348623157e+308"},
    {__LINE__, 5e-324, "5e-324"},
};

static void test_ratelimit_format_rate_table(void **state)
{
    char buf[RATELIMIT_RATE_TEXT_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof rate_rows / sizeof rate_rows[0]; i++) {
        const struct rate_row *r = &rate_rows[i];
        ratelimit_format_rate(r->rate, buf, sizeof buf);
        if (strcmp(buf, r->text) != 0)
            fail_msg("row at line %d: got \"%s\", want \"%s\"", r->line, buf, r->text);
        if (strtod(buf, NULL) != r->rate)
            fail_msg("row at line %d: \"%s\" does not read back", r->line, buf);
    }
}

/* Significant digits of a plain decimal: "0.00150" has 2, "1000000" has 1. */
static int significant_digits(const char *s)
{
    char digits[RATELIMIT_RATE_TEXT_MAX] = "";
    size_t n = 0;

    for (; *s != '\0'; s++) {
        if (*s >= '0' && *s <= '9' && n + 1 < sizeof digits)
            digits[n++] = *s;
    }
    size_t first = 0;
    while (first < n && digits[first] == '0')
        first++;
    while (n > first && digits[n - 1] == '0')
        n--;
    return (int)(n - first);
}

/* Every rate a tier may have round-trips, with the fewest digits, in plain notation. */
static void test_ratelimit_format_rate_round_trip(void **state)
{
    char buf[RATELIMIT_RATE_TEXT_MAX], probe[RATELIMIT_RATE_TEXT_MAX];
    unsigned int seed = 12345;
    int checked = 0;

    (void)state;
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        double rate;
        if (i % 2)
            rate = (double)(seed % 1000000u) / (double)(1u + seed % 997u); /* arbitrary */
        else
            rate = (double)(seed % 100000u) / 1000.0; /* "typed by an operator" */
        if (rate < 1e-6 || rate > 1e6)
            continue;
        ratelimit_format_rate(rate, buf, sizeof buf);
        if (strtod(buf, NULL) != rate || strpbrk(buf, "eE") != NULL)
            fail_msg("%.17g printed as \"%s\"", rate, buf);
        int shortest = 17;
        for (int p = 1; p <= 17; p++) {
            snprintf(probe, sizeof probe, "%.*e", p - 1, rate);
            if (strtod(probe, NULL) == rate) {
                shortest = p;
                break;
            }
        }
        if (significant_digits(buf) != shortest)
            fail_msg("%.17g printed as \"%s\", not %d digits", rate, buf, shortest);
        checked++;
    }
    assert_true(checked > 10000);
}

static void test_ratelimit_format_rate_small_buffer(void **state)
{
    char buf[8];

    (void)state;
    ratelimit_format_rate(0.5, buf, 3);
    assert_string_equal(buf, "");
    ratelimit_format_rate(0.5, buf, 4);
    assert_string_equal(buf, "0.5");
    ratelimit_format_rate(1e6, buf, 7);
    assert_string_equal(buf, "");
    ratelimit_format_rate(1e6, buf, 8);
    assert_string_equal(buf, "1000000");
    ratelimit_format_rate(0.5, NULL, 4); /* no crash */
    ratelimit_format_rate(0.5, buf, 0);
}

/* ---- ratelimit_reply_verdict ---- */

#define RT_NONE (-1) /* no such element */

struct elem_spec {
    int type;
    long long integer;
    const char *str;
    int len; /* -1: strlen(str) */
};

struct reply_row {
    int line;
    int type;
    int elements; /* of the array */
    struct elem_spec el[5];
    int null_element; /* index of a NULL element pointer, or -1 */
    bool ok;
    bool allowed;
    double tokens;
    double now;
};

#define I(n)                                                                                       \
    {                                                                                              \
        REDIS_REPLY_INTEGER, (n), NULL, -1                                                         \
    }
#define S(s)                                                                                       \
    {                                                                                              \
        REDIS_REPLY_STRING, 0, (s), -1                                                             \
    }
#define SN(s, n)                                                                                   \
    {                                                                                              \
        REDIS_REPLY_STRING, 0, (s), (n)                                                            \
    }
#define NIL                                                                                        \
    {                                                                                              \
        REDIS_REPLY_NIL, 0, NULL, -1                                                               \
    }
#define ERR(s)                                                                                     \
    {                                                                                              \
        REDIS_REPLY_ERROR, 0, (s), -1                                                              \
    }
#define ARR REDIS_REPLY_ARRAY
#define OK4(a, b, c, d) 4, {a, b, c, d}, -1

static const char long_number[] = /* 64 bytes: over the cap, however valid */
    "1.00000000000000000000000000000000000000000000000000000000000000";

static const struct reply_row reply_rows[] = {
    {__LINE__, ARR, OK4(I(1), S("4"), S("1699900000"), S("0")), true, true, 4, NOW0},
    {__LINE__, ARR, OK4(I(0), S("0.25"), I(1699900000), I(500000)), true, false, 0.25, NOW0 + 0.5},
    {__LINE__, ARR, OK4(I(1), S("0.99999999999999978"), S("1699900000"), S("999999")), true, true,
     0.99999999999999978, NOW0 + 0.999999},
    {__LINE__, ARR, OK4(I(1), S("1e-5"), S("0"), S("0")), true, true, 1e-5, 0},
    /* not an array of 4 */
    {__LINE__, REDIS_REPLY_STRING, OK4(I(1), S("4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, REDIS_REPLY_ERROR, OK4(I(1), S("4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, REDIS_REPLY_NIL, OK4(I(1), S("4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, REDIS_REPLY_INTEGER, OK4(I(1), S("4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, 3, {I(1), S("4"), S("1")}, -1, false, 0, 0, 0},
    {__LINE__, ARR, 5, {I(1), S("4"), S("1"), S("0"), S("0")}, -1, false, 0, 0, 0},
    {__LINE__, ARR, 0, {I(0)}, -1, false, 0, 0, 0},
    {__LINE__, ARR, 4, {I(1), S("4"), S("1"), S("0")}, 2, false, 0, 0, 0},
    /* allowed */
    {__LINE__, ARR, OK4(I(2), S("4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(-1), S("4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(S("1"), S("4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(NIL, S("4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(ERR("ERR x"), S("4"), S("1"), S("0")), false, 0, 0, 0},
    /* tokens */
    {__LINE__, ARR, OK4(I(1), I(4), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S(""), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("abc"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4x"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S(" 4"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("inf"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("nan"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("1e999"), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), SN("4\0", 2), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S(long_number), S("1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), NIL, S("1"), S("0")), false, 0, 0, 0},
    /* TIME seconds */
    {__LINE__, ARR, OK4(I(1), S("4"), S("-1"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), S("+5"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), S("12a"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), S(""), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), S("99999999999999999999999"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), S("1000000000001"), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), NIL, S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), I(-1), S("0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), SN("1\0", 2), S("0")), false, 0, 0, 0},
    /* TIME microseconds */
    {__LINE__, ARR, OK4(I(1), S("4"), S("1"), S("1000000")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), S("1"), I(1000000)), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), S("1"), S("-0")), false, 0, 0, 0},
    {__LINE__, ARR, OK4(I(1), S("4"), S("1"), S("0.5")), false, 0, 0, 0},
};

static void test_ratelimit_reply_table(void **state)
{
    struct tier t = unit_tier("ai_authenticated", 5, 2);

    (void)state;
    for (size_t i = 0; i < sizeof reply_rows / sizeof reply_rows[0]; i++) {
        const struct reply_row *row = &reply_rows[i];
        redisReply els[5], *ptrs[5], top;
        struct ratelimit_verdict v, untouched;

        memset(&top, 0, sizeof top);
        memset(els, 0, sizeof els);
        for (int k = 0; k < 5; k++) {
            els[k].type = row->el[k].type;
            els[k].integer = row->el[k].integer;
            els[k].str = (char *)row->el[k].str;
            if (row->el[k].str != NULL)
                els[k].len = row->el[k].len >= 0 ? (size_t)row->el[k].len : strlen(row->el[k].str);
            ptrs[k] = k == row->null_element ? NULL : &els[k];
        }
        top.type = row->type;
        top.elements = (size_t)row->elements;
        top.element = ptrs;
        if (row->type == REDIS_REPLY_STRING || row->type == REDIS_REPLY_ERROR) {
            top.str = (char *)"NOSCRIPT No matching script";
            top.len = strlen(top.str);
        }
        memset(&v, 0xab, sizeof v);
        memcpy(&untouched, &v, sizeof v);
        int rc = ratelimit_reply_verdict(&top, &t, &v);
        if (rc != (row->ok ? 0 : -1))
            fail_msg("row at line %d: returned %d", row->line, rc);
        if (!row->ok && memcmp(&v, &untouched, sizeof v) != 0)
            fail_msg("row at line %d: verdict written on failure", row->line);
        if (row->ok && (v.allowed != row->allowed || v.tokens != row->tokens))
            fail_msg("row at line %d: allowed %d tokens %.17g", row->line, v.allowed, v.tokens);
        if (row->ok) {
            struct ratelimit_verdict want;
            ratelimit_verdict_fill(&want, &t, row->allowed, row->tokens, row->now);
            if (v.reset_at != want.reset_at || v.reset_after != want.reset_after)
                fail_msg("row at line %d: reset_at %ld", row->line, v.reset_at);
        }
    }
    struct ratelimit_verdict v;
    assert_int_equal(ratelimit_reply_verdict(NULL, &t, &v), -1);
}

/* ---- ratelimit_charge (needs a Redis: SG_TEST_REDIS_PORT) ---- */

static redisReply *command(struct rconn *rc, int argc, const char **argv)
{
    redisReply *r = rconn_command(rc, argc, argv, NULL);
    assert_non_null(r);
    return r;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void test_ratelimit_charge_redis(void **state)
{
    const char *port_text = getenv("SG_TEST_REDIS_PORT");
    struct config_redis target;
    struct rconn rc;
    struct ratelimit_verdict v;
    char id[RATELIMIT_IDENTIFIER_MAX + 2], key[256];
    struct tier t = unit_tier("ai_authenticated", 5, 2);

    (void)state;
    if (port_text == NULL || port_text[0] == '\0') {
        skip();
        return;
    }
    char *end = NULL;
    long port = strtol(port_text, &end, 10);
    assert_true(*end == '\0' && port > 0 && port < 65536);
    memset(&target, 0, sizeof target);
    snprintf(target.host, sizeof target.host, "127.0.0.1");
    target.port = (int)port;
    rconn_init(&rc, &target);

    /* SPEC 5.3 seed timeline against the real script and Redis's clock. */
    snprintf(id, sizeof id, "user:unit-%ld-%ld", (long)getpid(), (long)time(NULL));
    for (long i = 4; i >= 0; i--) {
        assert_int_equal(ratelimit_charge(&rc, &t, id, &v), 0);
        assert_true(v.allowed);
        assert_int_equal(v.remaining, i);
    }
    assert_int_equal(strlen(rc.script_sha), RCONN_SHA_LEN);
    assert_int_equal(ratelimit_charge(&rc, &t, id, &v), 0);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after, 1);
    assert_int_equal(v.reset_after, 3);
    assert_true(v.reset_at >= (long)time(NULL) + 2 && v.reset_at <= (long)time(NULL) + 4);
    sleep_ms(520);
    assert_int_equal(ratelimit_charge(&rc, &t, id, &v), 0);
    assert_true(v.allowed);
    assert_int_equal(ratelimit_charge(&rc, &t, id, &v), 0);
    assert_false(v.allowed);

    /* The key of SPEC 5.3, with its TTL. */
    snprintf(key, sizeof key, "rate_limit:ai_authenticated:%s", id);
    const char *ttl_argv[] = {"TTL", key};
    redisReply *r = command(&rc, 2, ttl_argv);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer >= 1 && r->integer <= t.ttl);
    freeReplyObject(r);
    const char *hget_argv[] = {"HGET", key, "tokens"};
    r = command(&rc, 3, hget_argv);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);

    /* NOSCRIPT after SCRIPT FLUSH: loaded again, answered in the same call. */
    const char *flush_argv[] = {"SCRIPT", "FLUSH"};
    freeReplyObject(command(&rc, 2, flush_argv));
    char sha[RCONN_SHA_LEN + 1];
    memcpy(sha, rc.script_sha, sizeof sha);
    assert_int_equal(ratelimit_charge(&rc, &t, "ip:192.0.2.1-unit", &v), 0);
    assert_string_equal(rc.script_sha, sha);

    /* A companion command (GET /me's prefetch) goes in the first round trip, exactly once,
     * even when that EVALSHA meets NOSCRIPT and is sent again. */
    char counter[128];
    snprintf(counter, sizeof counter, "unit-companion-%ld", (long)getpid());
    const char *incr_argv[] = {"INCR", counter};
    const struct rconn_cmd incr = {2, incr_argv, NULL};
    redisReply *also = NULL;
    freeReplyObject(command(&rc, 2, flush_argv));
    assert_int_equal(ratelimit_charge_with(&rc, &t, "ip:192.0.2.2-unit", &incr, &also, &v), 0);
    assert_true(v.allowed);
    assert_non_null(also);
    assert_int_equal(also->type, REDIS_REPLY_INTEGER);
    assert_int_equal(also->integer, 1);
    freeReplyObject(also);
    assert_int_equal(ratelimit_charge_with(&rc, &t, "ip:192.0.2.2-unit", &incr, &also, &v), 0);
    assert_int_equal(also->integer, 2);
    freeReplyObject(also);
    const char *get_argv[] = {"GET", counter};
    r = command(&rc, 2, get_argv);
    assert_string_equal(r->str, "2");
    freeReplyObject(r);
    const char *del_argv[] = {"DEL", counter};
    freeReplyObject(command(&rc, 2, del_argv));
    also = (redisReply *)&v; /* set to NULL whatever the outcome */
    assert_int_equal(ratelimit_charge_with(&rc, &t, "ip:192.0.2.2-unit", &incr, NULL, &v), -1);
    assert_int_equal(ratelimit_charge_with(&rc, NULL, "ip:192.0.2.2-unit", &incr, &also, &v), -1);
    assert_null(also);

    /* A stale SHA in the cache, and an empty one. */
    memset(rc.script_sha, '0', RCONN_SHA_LEN);
    assert_int_equal(ratelimit_charge(&rc, &t, "ip:192.0.2.1-unit", &v), 0);
    assert_string_equal(rc.script_sha, sha);
    rc.script_sha[0] = '\0';
    assert_int_equal(ratelimit_charge(&rc, &t, "ip:192.0.2.1-unit", &v), 0);
    assert_string_equal(rc.script_sha, sha);

    /* A script with another reply shape: -1, not a crash. */
    const char *load_argv[] = {"SCRIPT", "LOAD", "return {1, 'x'}"};
    r = command(&rc, 3, load_argv);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, RCONN_SHA_LEN);
    memcpy(rc.script_sha, r->str, RCONN_SHA_LEN + 1);
    freeReplyObject(r);
    log_set_level(LOG_DEBUG); /* and the debug line it writes builds cleanly */
    assert_int_equal(ratelimit_charge(&rc, &t, "ip:192.0.2.1-unit", &v), -1);
    log_set_level(LOG_INFO);
    memcpy(rc.script_sha, sha, sizeof sha);

    /* Identifiers: the longest one works, a longer one never reaches Redis. */
    memset(id, 'a', RATELIMIT_IDENTIFIER_MAX);
    id[RATELIMIT_IDENTIFIER_MAX] = '\0';
    assert_int_equal(ratelimit_charge(&rc, &t, id, &v), 0);
    id[RATELIMIT_IDENTIFIER_MAX] = 'a';
    id[RATELIMIT_IDENTIFIER_MAX + 1] = '\0';
    assert_int_equal(ratelimit_charge(&rc, &t, id, &v), -1);
    /* Hostile bytes are just part of the key. */
    assert_int_equal(ratelimit_charge(&rc, &t, "ip:x\r\nFLUSHALL\r\n %s %b", &v), 0);
    assert_true(v.allowed);

    rconn_close(&rc);
}

static void test_ratelimit_charge_bad_arguments(void **state)
{
    struct tier t = unit_tier("ai_authenticated", 5, 2);
    struct ratelimit_verdict v;
    char id[RATELIMIT_IDENTIFIER_MAX + 2];
    struct rconn rc;

    (void)state;
    memset(&rc, 0, sizeof rc); /* never touched: every call fails before Redis */
    memset(id, 'a', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    assert_int_equal(ratelimit_charge(&rc, &t, id, &v), -1);
    assert_int_equal(ratelimit_charge(NULL, &t, "ip:1", &v), -1);
    assert_int_equal(ratelimit_charge(&rc, NULL, "ip:1", &v), -1);
    assert_int_equal(ratelimit_charge(&rc, &t, NULL, &v), -1);
    assert_int_equal(ratelimit_charge(&rc, &t, "ip:1", NULL), -1);
    /* A tier whose script arguments were never printed (tiers_tier_args) is not sent. */
    t.ttl_arg[0] = '\0';
    assert_int_equal(ratelimit_charge(&rc, &t, "ip:1", &v), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratelimit_verdict_table),
        cmocka_unit_test(test_ratelimit_retry_never_after_reset),
        cmocka_unit_test(test_ratelimit_headers_exact),
        cmocka_unit_test(test_ratelimit_headers_too_small),
        cmocka_unit_test(test_ratelimit_headers_limits),
        cmocka_unit_test(test_ratelimit_body_exact),
        cmocka_unit_test(test_ratelimit_problem_exact),
        cmocka_unit_test(test_ratelimit_format_rate_table),
        cmocka_unit_test(test_ratelimit_format_rate_round_trip),
        cmocka_unit_test(test_ratelimit_format_rate_small_buffer),
        cmocka_unit_test(test_ratelimit_reply_table),
        cmocka_unit_test(test_ratelimit_charge_bad_arguments),
        cmocka_unit_test(test_ratelimit_charge_redis),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
