/* Unit tests of fcgi/limits.c: the limits.json tier table (SPEC 5.1, 5.3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tiers.h"

#define ERR_MAX 512
#define DOC_MAX 16384

/* The four required tiers other than "auth", so one row can vary "auth" alone. */
#define OTHERS                                                                                     \
    "\"ai_authenticated\":{\"tokens_per_second\":2,\"burst_capacity\":5},"                         \
    "\"ai_anonymous\":{\"tokens_per_second\":0.5,\"burst_capacity\":2},"                           \
    "\"api_authenticated\":{\"tokens_per_second\":10,\"burst_capacity\":20},"                      \
    "\"api_anonymous\":{\"tokens_per_second\":5,\"burst_capacity\":10}"
#define WITH_AUTH(auth) "{\"tiers\":{" OTHERS ",\"auth\":" auth "}}"
#define GOOD WITH_AUTH("{\"tokens_per_second\":0.5,\"burst_capacity\":3}")

static int parse(const char *doc, bool dev, struct tiers *out, char *err)
{
    return tiers_parse(doc, strlen(doc), dev, out, err, ERR_MAX);
}

static void test_tiers_repo_file_loads(void **state)
{
    (void)state;
    struct tiers l;
    char err[ERR_MAX] = "";
    static const struct {
        const char *name;
        double rate;
        long capacity, refill, ttl;
    } want[] = {
        {TIER_AI_AUTH, 2, 5, 3, 4},   {TIER_AI_ANON, 0.5, 2, 4, 5}, {TIER_API_AUTH, 10, 20, 2, 3},
        {TIER_API_ANON, 5, 10, 2, 3}, {TIER_AUTH, 0.5, 3, 6, 7},
    };

    /* The tests run from the repository root. */
    int rc = tiers_load("limits.json", false, &l, err, sizeof err);
    if (rc != 0)
        print_error("tiers_load: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(l.count, 5);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct tier *t = tiers_find(&l, want[i].name);
        assert_non_null(t);
        assert_true(t->rate == want[i].rate);
        assert_int_equal(t->capacity, want[i].capacity);
        assert_int_equal(t->refill_seconds, want[i].refill);
        assert_int_equal(t->ttl, want[i].ttl);
        /* The script's arguments, printed once here: each reads back as the field. */
        assert_true(strtod(t->rate_arg, NULL) == t->rate);
        assert_int_equal(strtol(t->capacity_arg, NULL, 10), t->capacity);
        assert_int_equal(strtol(t->ttl_arg, NULL, 10), t->ttl);
    }
    assert_string_equal(tiers_find(&l, TIER_AI_ANON)->rate_arg, "0.5");
    assert_string_equal(tiers_find(&l, TIER_AI_ANON)->ttl_arg, "5");
    assert_int_equal(l.login_failures.capacity, 10);
    assert_int_equal(l.login_failures.refill_seconds, 900);
    /* 10 per 900 s: the rate 1/90 printed to the last digit, capacity and ttl whole. */
    assert_true(strtod(l.login_failures.rate_arg, NULL) == 10.0 / 900.0);
    assert_string_equal(l.login_failures.capacity_arg, "10");
    assert_string_equal(l.login_failures.ttl_arg, "901");
}

static void test_tiers_bad_documents(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *doc;
        const char *want; /* substring of the error */
    } cases[] = {
        {__LINE__, "", "line 1"},
        {__LINE__, "not json", "line 1, column"},
        {__LINE__, "{\"tiers\":{}", "line 1"},
        {__LINE__, "{\"tiers\":\n{\"auth\": NaN}}", "line 2, column"},
        {__LINE__, "[]", "top level must be an object"},
        {__LINE__, "42", "'[' or '{' expected"},
        {__LINE__, "{}", "\"tiers\" is required"},
        {__LINE__, "{\"tier\":{}}", "\"tiers\" is required"},
        {__LINE__, "{\"tiers\":[]}", "\"tiers\" must be an object"},
        {__LINE__, "{\"tiers\":null}", "\"tiers\" must be an object"},
        {__LINE__, "{\"tiers\":{}}", "tier \"ai_authenticated\" is required"},
        {__LINE__, "{\"tiers\":{" OTHERS "}}", "tier \"auth\" is required"},
        {__LINE__, WITH_AUTH("[]"), "tier \"auth\": must be an object"},
        {__LINE__, WITH_AUTH("3"), "tier \"auth\": must be an object"},
        {__LINE__, WITH_AUTH("{\"burst_capacity\":3}"), "tokens_per_second is required"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1}"), "burst_capacity is required"},
        /* tokens_per_second */
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":0,\"burst_capacity\":3}"),
         "tier \"auth\": tokens_per_second must be a number above 0"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":0.0,\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":-1,\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":-0.5,\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":\"2\",\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":\"NaN\",\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":\"Infinity\",\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":NaN,\"burst_capacity\":3}"), "line 1"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1e999,\"burst_capacity\":3}"), "line 1"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":true,\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":null,\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1000001,\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1e300,\"burst_capacity\":3}"),
         "tokens_per_second must be"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":99999999999999999999,\"burst_capacity\":3}"),
         "line 1"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1e-300,\"burst_capacity\":3}"),
         "burst_capacity / tokens_per_second must be at most"},
        /* burst_capacity */
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":0}"),
         "tier \"auth\": burst_capacity must be a whole number from 1 to 1000000000"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":-3}"),
         "burst_capacity must be a whole number"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":2.5}"),
         "burst_capacity must be a whole number"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":0.5}"),
         "burst_capacity must be a whole number"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":1000000001}"),
         "burst_capacity must be a whole number"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":1e10}"),
         "burst_capacity must be a whole number"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":9223372036854775807}"),
         "burst_capacity must be a whole number"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":\"3\"}"),
         "burst_capacity must be a whole number"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":null}"),
         "burst_capacity must be a whole number"},
        /* keys */
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst\":3}"),
         "tier \"auth\": unknown key \"burst\""},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":3,\"x\":1}"),
         "unknown key \"x\""},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":3,\"description\":1}"),
         "description must be a string"},
        /* tier names */
        {__LINE__, "{\"tiers\":{\"\":{\"tokens_per_second\":1,\"burst_capacity\":1}}}",
         "tier \"\": name must be"},
        {__LINE__, "{\"tiers\":{\"a b\":{\"tokens_per_second\":1,\"burst_capacity\":1}}}",
         "tier \"a b\": name must be"},
        {__LINE__, "{\"tiers\":{\"a\\nb\":{\"tokens_per_second\":1,\"burst_capacity\":1}}}",
         "tier \"a?b\": name must be"},
        {__LINE__, "{\"tiers\":{\"a\\\"b\":{\"tokens_per_second\":1,\"burst_capacity\":1}}}",
         "tier \"a?b\": name must be"},
        {__LINE__, "{\"tiers\":{\"caf\xc3\xa9\":{\"tokens_per_second\":1,\"burst_capacity\":1}}}",
         "name must be"},
        {__LINE__, "{\"tiers\":{\"rate_limit:x\":{\"tokens_per_second\":1,\"burst_capacity\":1}}}",
         "name must be"},
        {__LINE__,
         "{\"tiers\":{\"a1234567890123456789012345678901234567890123456789012345678901234\":"
         "{\"tokens_per_second\":1,\"burst_capacity\":1}}}",
         "name must be 1 to 64 characters"},
        /* duplicates, at every level */
        {__LINE__, "{\"tiers\":{},\"tiers\":{}}", "duplicate object key"},
        {__LINE__,
         "{\"tiers\":{" OTHERS ",\"auth\":{\"tokens_per_second\":1,\"burst_capacity\":3},"
         "\"auth\":{\"tokens_per_second\":1,\"burst_capacity\":3}}}",
         "duplicate object key"},
        {__LINE__, WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":3,\"burst_capacity\":4}"),
         "duplicate object key"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tiers l;
        char err[ERR_MAX] = "";
        memset(&l, 0xa5, sizeof l);
        int rc = parse(cases[i].doc, false, &l, err);
        if (rc != -1 || strstr(err, cases[i].want) == NULL || strchr(err, '\n') != NULL)
            fail_msg("row at line %d: rc %d, err \"%s\", want \"%s\"", cases[i].line, rc, err,
                     cases[i].want);
        /* *out untouched on failure */
        assert_int_equal(((unsigned char *)&l)[0], 0xa5);
        assert_int_equal(((unsigned char *)&l)[sizeof l - 1], 0xa5);
    }
}

/* tiers with the five required ones plus extra "t<i>" until n in all. */
static void build_many(char *doc, size_t cap, int n)
{
    size_t len = (size_t)snprintf(
        doc, cap, "{\"tiers\":{" OTHERS ",\"auth\":{\"tokens_per_second\":1,\"burst_capacity\":1}");
    for (int i = 5; i < n; i++)
        len += (size_t)snprintf(doc + len, cap - len,
                                ",\"t%d\":{\"tokens_per_second\":1,\"burst_capacity\":1}", i);
    snprintf(doc + len, cap - len, "}}");
    assert_true(len + 2 < cap);
}

static void test_tiers_tier_count(void **state)
{
    (void)state;
    static char doc[DOC_MAX];
    struct tiers l;
    char err[ERR_MAX] = "";

    build_many(doc, sizeof doc, TIERS_MAX);
    assert_int_equal(parse(doc, false, &l, err), 0);
    assert_int_equal(l.count, TIERS_MAX);
    assert_non_null(tiers_find(&l, "t63"));

    build_many(doc, sizeof doc, TIERS_MAX + 1);
    assert_int_equal(parse(doc, false, &l, err), -1);
    assert_non_null(strstr(err, "at most 64 tiers"));
}

static void test_tiers_extra_tier_accepted(void **state)
{
    (void)state;
    struct tiers l;
    char err[ERR_MAX] = "";
    const char *doc = "{\"version\":1,\"tiers\":{" OTHERS
                      ",\"auth\":{\"tokens_per_second\":0.5,\"burst_capacity\":3},"
                      "\"premium_user\":{\"tokens_per_second\":20,\"burst_capacity\":50.0,"
                      "\"description\":\"paying users\"},"
                      "\"v2.beta-tier\":{\"tokens_per_second\":1e-6,\"burst_capacity\":1}}}";

    assert_int_equal(parse(doc, false, &l, err), 0);
    assert_int_equal(l.count, 7);
    const struct tier *t = tiers_find(&l, "premium_user");
    assert_non_null(t);
    assert_string_equal(t->name, "premium_user");
    assert_true(t->rate == 20);
    assert_int_equal(t->capacity, 50);
    assert_int_equal(t->refill_seconds, 3);
    assert_int_equal(t->ttl, 4);
    t = tiers_find(&l, "v2.beta-tier");
    assert_non_null(t);
    assert_int_equal(t->refill_seconds, 1000000);
    /* file order is kept */
    assert_string_equal(l.tiers[0].name, TIER_AI_AUTH);
    assert_string_equal(l.tiers[6].name, "v2.beta-tier");
}

static void test_tiers_development_override(void **state)
{
    (void)state;
    struct tiers l;
    char err[ERR_MAX] = "";

    assert_int_equal(parse(GOOD, false, &l, err), 0);
    const struct tier *t = tiers_find(&l, TIER_AI_AUTH);
    assert_true(t->rate == 2);
    assert_int_equal(t->refill_seconds, 3);
    assert_int_equal(t->ttl, 4);

    assert_int_equal(parse(GOOD, true, &l, err), 0);
    t = tiers_find(&l, TIER_AI_AUTH);
    assert_true(t->rate == 10);
    assert_int_equal(t->capacity, 5);
    assert_int_equal(t->refill_seconds, 1);
    assert_int_equal(t->ttl, 2);
    assert_string_equal(t->rate_arg, "10"); /* printed again with the development rate */
    assert_string_equal(t->ttl_arg, "2");
    /* the other tiers keep the file's values */
    t = tiers_find(&l, TIER_AI_ANON);
    assert_true(t->rate == 0.5);
    assert_int_equal(t->ttl, 5);
}

static void test_tiers_timing_table(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *rate, *capacity;
        long refill, ttl;
    } cases[] = {
        {__LINE__, "2", "5", 3, 4},
        {__LINE__, "5", "10", 2, 3},
        {__LINE__, "0.5", "3", 6, 7},
        {__LINE__, "0.5", "2", 4, 5},
        {__LINE__, "10", "20", 2, 3},
        {__LINE__, "2.0", "5.0", 3, 4},
        {__LINE__, "3", "1", 1, 2},
        {__LINE__, "1000000", "1", 1, 2},
        {__LINE__, "1", "1000000000", 1000000000, 1000000001},
        {__LINE__, "0.7", "7", 10, 11},
        {__LINE__, "0.7", "21", 30, 31}, /* 21 / 0.7 = 30.000000000000004 in binary */
        {__LINE__, "0.1", "3", 30, 31},
        {__LINE__, "0.3", "3", 10, 11},
        {__LINE__, "0.3", "1", 4, 5}, /* 3.33.. */
        {__LINE__, "0.2", "7", 35, 36},
        {__LINE__, "0.07", "7", 100, 101},
        {__LINE__, "1.1", "11", 10, 11},
        {__LINE__, "3", "10", 4, 5}, /* 3.33.. */
        {__LINE__, "3", "9", 3, 4},
        {__LINE__, "0.001", "5", 5000, 5001},
        {__LINE__, "7", "1000000000", 142857143, 142857144},
        {__LINE__, "1.5", "4", 3, 4}, /* 2.67 */
        {__LINE__, "2", "4.0", 2, 3},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char doc[1024];
        struct tiers l;
        char err[ERR_MAX] = "";
        snprintf(doc, sizeof doc, WITH_AUTH("{\"tokens_per_second\":%s,\"burst_capacity\":%s}"),
                 cases[i].rate, cases[i].capacity);
        int rc = parse(doc, false, &l, err);
        if (rc != 0)
            fail_msg("row at line %d: %s", cases[i].line, err);
        const struct tier *t = tiers_find(&l, TIER_AUTH);
        if (t->refill_seconds != cases[i].refill || t->ttl != cases[i].ttl)
            fail_msg("row at line %d: refill %ld ttl %ld, want %ld %ld", cases[i].line,
                     t->refill_seconds, t->ttl, cases[i].refill, cases[i].ttl);
    }
}

/* Decimal rates r / 10^k against every small capacity: refill_seconds must equal the
 * exact ceil(capacity * 10^k / r), computed in integers, whatever the float noise. */
static void test_tiers_timing_exhaustive(void **state)
{
    (void)state;
    static const long scale[] = {1, 10, 100, 1000};

    for (int k = 0; k < 4; k++) {
        for (long r = 1; r <= 120; r++) {
            for (long cap = 1; cap <= 25; cap++) {
                char doc[1024], rate[32];
                struct tiers l;
                char err[ERR_MAX] = "";
                long want = (cap * scale[k] + r - 1) / r;
                if (k == 0)
                    snprintf(rate, sizeof rate, "%ld", r);
                else
                    snprintf(rate, sizeof rate, "%ld.%0*ld", r / scale[k], k, r % scale[k]);
                snprintf(doc, sizeof doc,
                         WITH_AUTH("{\"tokens_per_second\":%s,\"burst_capacity\":%ld}"), rate, cap);
                if (parse(doc, false, &l, err) != 0)
                    fail_msg("rate %s capacity %ld: %s", rate, cap, err);
                const struct tier *t = tiers_find(&l, TIER_AUTH);
                if (t->refill_seconds != want || t->ttl != want + 1)
                    fail_msg("rate %s capacity %ld: refill %ld ttl %ld, want %ld", rate, cap,
                             t->refill_seconds, t->ttl, want);
            }
        }
    }
}

static void test_tiers_name_length(void **state)
{
    (void)state;
    struct tiers l;
    char err[ERR_MAX] = "";
    const char *doc = "{\"tiers\":{" OTHERS ",\"auth\":{\"tokens_per_second\":1,"
                      "\"burst_capacity\":1},\"a123456789012345678901234567890123456789012"
                      "345678901234567890123\":{\"tokens_per_second\":1,\"burst_capacity\":1}}}";

    assert_int_equal(parse(doc, false, &l, err), 0);
    assert_int_equal(strlen(l.tiers[5].name), TIERS_TIER_NAME_MAX);
}

static void test_tiers_not_nul_terminated(void **state)
{
    (void)state;
    struct tiers l;
    char err[ERR_MAX] = "";
    size_t len = strlen(GOOD);
    char *buf = malloc(len); /* exactly len bytes: valgrind sees any overread */

    assert_non_null(buf);
    memcpy(buf, GOOD, len);
    assert_int_equal(tiers_parse(buf, len, false, &l, err, sizeof err), 0);
    assert_int_equal(tiers_parse(buf, len - 1, false, &l, err, sizeof err), -1);
    assert_int_equal(tiers_parse(NULL, 0, false, &l, err, sizeof err), -1);
    free(buf);
}

static void test_tiers_error_is_bounded(void **state)
{
    (void)state;
    struct tiers l;
    char err[24];

    memset(err, 'x', sizeof err);
    assert_int_equal(tiers_parse("{}", 2, false, &l, err, sizeof err), -1);
    assert_true(strlen(err) < sizeof err);
}

static void test_tiers_load_errors(void **state)
{
    (void)state;
    struct tiers l;
    char err[ERR_MAX] = "";
    char dir[] = "/tmp/test_tiers_XXXXXX";
    char path[256];

    assert_int_equal(tiers_load("/nonexistent/limits.json", false, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/limits.json: cannot open"));

    assert_int_equal(tiers_load("/tmp", false, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "/tmp: not a regular file"));

    assert_int_equal(tiers_load("", false, &l, err, sizeof err), -1);
    assert_int_equal(tiers_load(NULL, false, &l, err, sizeof err), -1);

    assert_non_null(mkdtemp(dir));

    /* a syntax error names the path, line and column */
    snprintf(path, sizeof path, "%s/bad.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"tiers\": {\n  \"auth\": {\"tokens_per_second\": 1,,}}}\n", f);
    fclose(f);
    assert_int_equal(tiers_load(path, false, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "line 2, column"));
    assert_null(strchr(err, '\n'));
    unlink(path);

    /* a file one byte over the cap is refused before parsing */
    snprintf(path, sizeof path, "%s/big.json", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(GOOD, f);
    for (long i = (long)strlen(GOOD); i < TIERS_FILE_MAX + 1; i++)
        fputc(' ', f);
    fclose(f);
    assert_int_equal(tiers_load(path, false, &l, err, sizeof err), -1);
    assert_non_null(strstr(err, "larger than 262144 bytes"));

    /* exactly at the cap it loads */
    assert_int_equal(truncate(path, TIERS_FILE_MAX), 0);
    int rc = tiers_load(path, false, &l, err, sizeof err);
    if (rc != 0)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    unlink(path);

    /* a semantic error names the path too */
    snprintf(path, sizeof path, "%s/limits.json", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(WITH_AUTH("{\"tokens_per_second\":1,\"burst_capacity\":2.5}"), f);
    fclose(f);
    assert_int_equal(tiers_load(path, false, &l, err, sizeof err), -1);
    char want[512];
    snprintf(want, sizeof want,
             "%s: tier \"auth\": burst_capacity must be a whole number from 1 to 1000000000", path);
    assert_string_equal(err, want);
    unlink(path);
    rmdir(dir);
}

/* The failed log-in policy: defaults when absent, a bucket of max in window seconds. */
static void test_tiers_login_failures(void **state)
{
    (void)state;
    struct tiers l;
    char err[ERR_MAX] = "";
    static const struct {
        const char *login; /* the "login_failures" value, or NULL for none */
        long capacity, window;
        const char *rate_text;
    } good[] = {
        {NULL, 10, 900, "10 failed logins per 900 seconds"},
        {"{}", 10, 900, "10 failed logins per 900 seconds"},
        {"{\"max_failures\":3,\"window_seconds\":60,\"description\":\"x\"}", 3, 60,
         "3 failed logins per 60 seconds"},
        {"{\"max_failures\":1,\"window_seconds\":1}", 1, 1, "1 failed login per 1 second"},
    };
    static const struct {
        const char *login, *reason;
    } bad[] = {
        {"[]", "login_failures must be an object"},
        {"{\"max_failures\":0}", "max_failures must be a whole number"},
        {"{\"max_failures\":2.5}", "max_failures must be a whole number"},
        {"{\"window_seconds\":\"900\"}", "window_seconds must be a whole number"},
        {"{\"window_seconds\":-1}", "window_seconds must be a whole number"},
        {"{\"window\":60}", "unknown key \"window\""},
        {"{\"description\":1}", "description must be a string"},
    };
    char doc[DOC_MAX];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (good[i].login == NULL)
            snprintf(doc, sizeof doc, "%s", GOOD);
        else
            snprintf(doc, sizeof doc, "%.*s,\"login_failures\":%s}", (int)strlen(GOOD) - 1, GOOD,
                     good[i].login);
        assert_int_equal(parse(doc, false, &l, err), 0);
        const struct tier *t = &l.login_failures;
        assert_string_equal(t->name, TIER_LOGIN_FAILURES);
        assert_int_equal(t->capacity, good[i].capacity);
        assert_int_equal(t->refill_seconds, good[i].window);
        assert_int_equal(t->ttl, good[i].window + 1);
        assert_true(t->rate == (double)good[i].capacity / (double)good[i].window);
        assert_string_equal(t->rate_text, good[i].rate_text);
        assert_null(tiers_find(&l, TIER_LOGIN_FAILURES)); /* never picked by a route */
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(doc, sizeof doc, "%.*s,\"login_failures\":%s}", (int)strlen(GOOD) - 1, GOOD,
                 bad[i].login);
        err[0] = '\0';
        assert_int_equal(parse(doc, false, &l, err), -1);
        if (strstr(err, bad[i].reason) == NULL)
            print_error("%s: got \"%s\"\n", bad[i].login, err);
        assert_non_null(strstr(err, bad[i].reason));
    }
}

static void test_tiers_find(void **state)
{
    (void)state;
    struct tiers l;
    char err[ERR_MAX] = "";

    assert_int_equal(parse(GOOD, false, &l, err), 0);
    assert_non_null(tiers_find(&l, TIER_AUTH));
    assert_null(tiers_find(&l, "premium_user"));
    assert_null(tiers_find(&l, ""));
    assert_null(tiers_find(&l, NULL));
    assert_null(tiers_find(NULL, TIER_AUTH));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiers_repo_file_loads),
        cmocka_unit_test(test_tiers_bad_documents),
        cmocka_unit_test(test_tiers_tier_count),
        cmocka_unit_test(test_tiers_extra_tier_accepted),
        cmocka_unit_test(test_tiers_development_override),
        cmocka_unit_test(test_tiers_timing_table),
        cmocka_unit_test(test_tiers_timing_exhaustive),
        cmocka_unit_test(test_tiers_name_length),
        cmocka_unit_test(test_tiers_not_nul_terminated),
        cmocka_unit_test(test_tiers_error_is_bounded),
        cmocka_unit_test(test_tiers_load_errors),
        cmocka_unit_test(test_tiers_login_failures),
        cmocka_unit_test(test_tiers_find),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
