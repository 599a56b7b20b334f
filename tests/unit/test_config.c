/* Unit tests of fcgi/config.c: the environment of SPEC 3, REDIS_URL, the start-up summary. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define ERR_MAX 512
#define ENV_MAX 24
#define SECRET "0123456789abcdef0123456789abcdef-jwt" /* 36 bytes */
#define MARKER "S3cr3tM4rk3r"                         /* a secret that must never be printed */

struct env_pair {
    const char *name, *value;
};

/* The environment the fake getenv answers from: NULL-terminated pairs. */
static const struct env_pair *fake_env;

static const char *fake_getenv(const char *name)
{
    for (const struct env_pair *p = fake_env; p != NULL && p->name != NULL; p++) {
        if (strcmp(p->name, name) == 0)
            return p->value;
    }
    return NULL;
}

/* config_load with env (the tests run from the repository root: limits.json is there). */
static int load(const struct env_pair *env, struct config *cfg, char *err)
{
    fake_env = env;
    err[0] = '\0';
    return config_load(cfg, fake_getenv, "limits.json", err, ERR_MAX);
}

/* JWT_SECRET plus one more variable. */
static int load_one(const char *name, const char *value, struct config *cfg, char *err)
{
    const struct env_pair env[] = {{"JWT_SECRET", SECRET}, {name, value}, {NULL, NULL}};
    return load(env, cfg, err);
}

static struct config *new_config(void)
{
    struct config *cfg = malloc(sizeof *cfg);
    assert_non_null(cfg);
    memset(cfg, 0xa5, sizeof *cfg);
    return cfg;
}

/* Every value config_load gives when the environment sets only JWT_SECRET. */
static void assert_defaults(const struct config *cfg)
{
    assert_false(cfg->redis.unix_socket);
    assert_string_equal(cfg->redis.host, "127.0.0.1");
    assert_int_equal(cfg->redis.port, 6379);
    assert_int_equal(cfg->redis.db, 0);
    assert_string_equal(cfg->redis.user, "");
    assert_string_equal(cfg->redis.password, "");
    assert_string_equal(cfg->limits_file, "limits.json");
    assert_int_equal(cfg->tiers.count, 5);
    assert_true(tiers_find(&cfg->tiers, TIER_AI_AUTH)->rate == 2);
    assert_int_equal(cfg->fail_mode, FAIL_OPEN);
    assert_int_equal(cfg->trusted_proxies.count, 0);
    assert_int_equal(cfg->jwt_secret_len, strlen(SECRET));
    assert_memory_equal(cfg->jwt_secret, SECRET, strlen(SECRET));
    assert_int_equal(cfg->jwt_ttl, 3600);
    assert_string_equal(cfg->mistral_api_key, "");
    assert_string_equal(cfg->mistral_api_url, "https://api.mistral.ai");
    assert_string_equal(cfg->mistral_model, "mistral-small-latest");
    assert_int_equal(cfg->mistral_timeout, 30);
    assert_int_equal(cfg->threads, 32);
    assert_false(cfg->development);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_string_equal(cfg->metrics_token, "");
    assert_int_equal(cfg->metrics_token_len, 0);
    assert_string_equal(cfg->metrics_shm, "");
}

static void test_config_defaults(void **state)
{
    (void)state;
    struct config *cfg = new_config();
    char err[ERR_MAX];
    const struct env_pair env[] = {{"JWT_SECRET", SECRET}, {NULL, NULL}};

    int rc = load(env, cfg, err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_defaults(cfg);
    config_free(cfg);
    free(cfg);
}

static void test_config_empty_means_default(void **state)
{
    (void)state;
    struct config *cfg = new_config();
    char err[ERR_MAX];
    const struct env_pair env[] = {
        {"JWT_SECRET", SECRET},   {"REDIS_URL", ""},
        {"RATE_LIMITS_FILE", ""}, {"RATE_LIMIT_FAIL_MODE", ""},
        {"TRUSTED_PROXIES", ""},  {"JWT_TTL", ""},
        {"MISTRAL_API_KEY", ""},  {"MISTRAL_API_URL", ""},
        {"MISTRAL_MODEL", ""},    {"MISTRAL_TIMEOUT", ""},
        {"GATEWAY_THREADS", ""},  {"ENVIRONMENT", ""},
        {"LOG_LEVEL", ""},        {NULL, NULL},
    };

    int rc = load(env, cfg, err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_defaults(cfg);
    config_free(cfg);
    free(cfg);
}

static void test_config_all_set(void **state)
{
    (void)state;
    struct config *cfg = new_config();
    char err[ERR_MAX];
    const struct env_pair env[] = {
        {"JWT_SECRET", SECRET},
        {"REDIS_URL", "redis://app:pw@redis.internal:6380/3"},
        {"RATE_LIMITS_FILE", "./limits.json"},
        {"RATE_LIMIT_FAIL_MODE", "local"},
        {"TRUSTED_PROXIES", "10.0.0.0/8, ::1"},
        {"JWT_TTL", "60"},
        {"MISTRAL_API_KEY", "mk-" MARKER},
        {"MISTRAL_API_URL", "http://127.0.0.1:9999//"},
        {"MISTRAL_MODEL", "open-mistral:7b_v0.1"},
        {"MISTRAL_TIMEOUT", "600"},
        {"GATEWAY_THREADS", "256"},
        {"ENVIRONMENT", "development"},
        {"LOG_LEVEL", "debug"},
        {"METRICS_TOKEN", "0123456789abcdef"},
        {"METRICS_SHM", "stack-a.metrics_1"},
        {NULL, NULL},
    };

    int rc = load(env, cfg, err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(cfg->redis.host, "redis.internal");
    assert_int_equal(cfg->redis.port, 6380);
    assert_int_equal(cfg->redis.db, 3);
    assert_string_equal(cfg->redis.user, "app");
    assert_string_equal(cfg->redis.password, "pw");
    assert_string_equal(cfg->limits_file, "./limits.json");
    assert_int_equal(cfg->fail_mode, FAIL_LOCAL);
    assert_int_equal(cfg->trusted_proxies.count, 2);
    assert_int_equal(cfg->jwt_ttl, 60);
    assert_string_equal(cfg->mistral_api_key, "mk-" MARKER);
    assert_string_equal(cfg->mistral_api_url, "http://127.0.0.1:9999");
    assert_string_equal(cfg->mistral_model, "open-mistral:7b_v0.1");
    assert_int_equal(cfg->mistral_timeout, 600);
    assert_int_equal(cfg->threads, 256);
    assert_true(cfg->development);
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_string_equal(cfg->metrics_token, "0123456789abcdef");
    assert_int_equal(cfg->metrics_token_len, 16);
    assert_string_equal(cfg->metrics_shm, "/stack-a.metrics_1"); /* the '/' added */
    /* ENVIRONMENT=development relaxes ai_authenticated only */
    const struct tier *t = tiers_find(&cfg->tiers, TIER_AI_AUTH);
    assert_true(t->rate == 10);
    assert_int_equal(t->ttl, 2);
    assert_true(tiers_find(&cfg->tiers, TIER_AI_ANON)->rate == 0.5);
    config_free(cfg);
    free(cfg);
}

static void test_config_choices(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *name, *value;
        int want;
    } cases[] = {
        {__LINE__, "RATE_LIMIT_FAIL_MODE", "open", FAIL_OPEN},
        {__LINE__, "RATE_LIMIT_FAIL_MODE", "closed", FAIL_CLOSED},
        {__LINE__, "RATE_LIMIT_FAIL_MODE", "local", FAIL_LOCAL},
        {__LINE__, "LOG_LEVEL", "debug", LOG_DEBUG},
        {__LINE__, "LOG_LEVEL", "info", LOG_INFO},
        {__LINE__, "LOG_LEVEL", "warn", LOG_WARN},
        {__LINE__, "LOG_LEVEL", "error", LOG_ERROR},
        {__LINE__, "ENVIRONMENT", "production", 0},
        {__LINE__, "ENVIRONMENT", "development", 1},
        {__LINE__, "GATEWAY_THREADS", "1", 1},
        {__LINE__, "GATEWAY_THREADS", "007", 7},
        {__LINE__, "JWT_TTL", "2592000", 2592000},
        {__LINE__, "MISTRAL_TIMEOUT", "1", 1},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config *cfg = new_config();
        char err[ERR_MAX];
        if (load_one(cases[i].name, cases[i].value, cfg, err) != 0)
            fail_msg("row at line %d: %s", cases[i].line, err);
        long got = strcmp(cases[i].name, "RATE_LIMIT_FAIL_MODE") == 0 ? (long)cfg->fail_mode
                   : strcmp(cases[i].name, "LOG_LEVEL") == 0          ? (long)cfg->log_level
                   : strcmp(cases[i].name, "ENVIRONMENT") == 0        ? (long)cfg->development
                   : strcmp(cases[i].name, "GATEWAY_THREADS") == 0    ? (long)cfg->threads
                   : strcmp(cases[i].name, "JWT_TTL") == 0            ? cfg->jwt_ttl
                                                                      : cfg->mistral_timeout;
        if (got != cases[i].want)
            fail_msg("row at line %d: got %ld, want %d", cases[i].line, got, cases[i].want);
        config_free(cfg);
        free(cfg);
    }
}

static void test_config_bad_values(void **state)
{
    (void)state;
    static char long_x[300], long_model[129], long_url[1100];
    memset(long_x, 'x', sizeof long_x - 1);
    memset(long_model, 'm', sizeof long_model - 1);
    memcpy(long_url, "https://", 8);
    memset(long_url + 8, 'h', sizeof long_url - 9);
    const struct {
        int line;
        const char *name, *value;
        const char *want; /* the error, or its start when it ends with '*' */
    } cases[] = {
        {__LINE__, "GATEWAY_THREADS", "abc",
         "GATEWAY_THREADS: must be a whole number from 1 to 256 (got \"abc\")"},
        {__LINE__, "GATEWAY_THREADS", "0",
         "GATEWAY_THREADS: must be a whole number from 1 to 256 (got \"0\")"},
        {__LINE__, "GATEWAY_THREADS", "257", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "-1", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "+4", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", " 4", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "4 ", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "4x", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "0x10", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "1e2", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "4.0", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "99999999999999999999999", "GATEWAY_THREADS: must be*"},
        {__LINE__, "GATEWAY_THREADS", "18446744073709551620", "GATEWAY_THREADS: must be*"},
        {__LINE__, "JWT_TTL", "59",
         "JWT_TTL: must be a whole number from 60 to 2592000 (got \"59\")"},
        {__LINE__, "JWT_TTL", "2592001", "JWT_TTL: must be*"},
        {__LINE__, "JWT_TTL", "1h", "JWT_TTL: must be*"},
        {__LINE__, "MISTRAL_TIMEOUT", "0",
         "MISTRAL_TIMEOUT: must be a whole number from 1 to 600 (got \"0\")"},
        {__LINE__, "MISTRAL_TIMEOUT", "601", "MISTRAL_TIMEOUT: must be*"},
        {__LINE__, "MISTRAL_TIMEOUT", "30s", "MISTRAL_TIMEOUT: must be*"},
        {__LINE__, "RATE_LIMIT_FAIL_MODE", "OPEN",
         "RATE_LIMIT_FAIL_MODE: must be open, closed or local (got \"OPEN\")"},
        {__LINE__, "RATE_LIMIT_FAIL_MODE", "fail", "RATE_LIMIT_FAIL_MODE: must be*"},
        {__LINE__, "ENVIRONMENT", "dev",
         "ENVIRONMENT: must be production or development (got \"dev\")"},
        {__LINE__, "ENVIRONMENT", "Production", "ENVIRONMENT: must be*"},
        {__LINE__, "LOG_LEVEL", "verbose",
         "LOG_LEVEL: must be debug, info, warn or error (got \"verbose\")"},
        {__LINE__, "LOG_LEVEL", "INFO", "LOG_LEVEL: must be*"},
        {__LINE__, "LOG_LEVEL", "in\nfo",
         "LOG_LEVEL: must be debug, info, warn or error (got "
         "\"in?fo\")"},
        {__LINE__, "LOG_LEVEL", "a\"b\\c\x7f\xc3\xa9",
         "LOG_LEVEL: must be debug, info, warn or error (got \"a?b?c???\")"},
        {__LINE__, "GATEWAY_THREADS", long_x,
         "GATEWAY_THREADS: must be a whole number from 1 to 256 (got "
         "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\")"},
        {__LINE__, "MISTRAL_API_URL", "ftp://x",
         "MISTRAL_API_URL: must start with http:// or https:// (got \"ftp://x\")"},
        {__LINE__, "MISTRAL_API_URL", "api.mistral.ai", "MISTRAL_API_URL: must start with*"},
        {__LINE__, "MISTRAL_API_URL", "https://", "MISTRAL_API_URL: host is missing*"},
        {__LINE__, "MISTRAL_API_URL", "https:///v1", "MISTRAL_API_URL: host is missing*"},
        {__LINE__, "MISTRAL_API_URL", "https://a b", "MISTRAL_API_URL: must be printable*"},
        {__LINE__, "MISTRAL_API_URL", "https://a\r\nX: y", "MISTRAL_API_URL: must be printable*"},
        {__LINE__, "MISTRAL_API_URL", "https://x/?a=1", "MISTRAL_API_URL: must be a base URL*"},
        {__LINE__, "MISTRAL_API_URL", "https://x#f", "MISTRAL_API_URL: must be a base URL*"},
        {__LINE__, "MISTRAL_API_URL", long_url, "MISTRAL_API_URL: must be at most 1023 bytes*"},
        {__LINE__, "MISTRAL_MODEL", "bad model",
         "MISTRAL_MODEL: must be 1 to 127 characters of [A-Za-z0-9._:-] (got \"bad model\")"},
        {__LINE__, "MISTRAL_MODEL", "a/b", "MISTRAL_MODEL: must be*"},
        {__LINE__, "MISTRAL_MODEL", long_model, "MISTRAL_MODEL: must be*"},
        {__LINE__, "RATE_LIMITS_FILE", "/nonexistent/limits.json",
         "RATE_LIMITS_FILE: /nonexistent/limits.json: cannot open*"},
        {__LINE__, "RATE_LIMITS_FILE", "/", "RATE_LIMITS_FILE: /: not a regular file"},
        {__LINE__, "TRUSTED_PROXIES", "not-a-cidr", "TRUSTED_PROXIES: *"},
        {__LINE__, "TRUSTED_PROXIES", "10.0.0.0/33", "TRUSTED_PROXIES: *"},
        {__LINE__, "JWT_SECRET", "short",
         "JWT_SECRET: must be 32 to 512 bytes long (value not shown)"},
        {__LINE__, "REDIS_URL", "http://localhost",
         "REDIS_URL: must be redis://[user:password@]host[:port][/db] or "
         "unix:///path/redis.sock"},
        {__LINE__, "REDIS_URL", "redis://h:0", "REDIS_URL: port must be*"},
        {__LINE__, "METRICS_TOKEN", "short",
         "METRICS_TOKEN: must be 16 to 256 bytes long (value not shown)"},
        {__LINE__, "METRICS_TOKEN", long_x, "METRICS_TOKEN: must be 16 to 256 bytes*"},
        {__LINE__, "METRICS_TOKEN", "0123456789abcdef 0123",
         "METRICS_TOKEN: must be printable ASCII without spaces (value not shown)"},
        {__LINE__, "METRICS_SHM", "a/b",
         "METRICS_SHM: must be a shared-memory name, an optional '/' and 1 to 199 of "
         "[A-Za-z0-9._-] (got \"a/b\")"},
        {__LINE__, "METRICS_SHM", "/", "METRICS_SHM: must be*"},
        {__LINE__, "METRICS_SHM", "//x", "METRICS_SHM: must be*"},
        {__LINE__, "METRICS_SHM", "..", "METRICS_SHM: must be*"},
        {__LINE__, "METRICS_SHM", "a b", "METRICS_SHM: must be*"},
        {__LINE__, "METRICS_SHM", long_x, "METRICS_SHM: must be*"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config *cfg = new_config();
        char err[ERR_MAX];
        const struct env_pair env[] = {
            {cases[i].name, cases[i].value}, {"JWT_SECRET", SECRET}, {NULL, NULL}};
        int rc = load(env, cfg, err);
        size_t wl = strlen(cases[i].want);
        bool prefix = cases[i].want[wl - 1] == '*';
        bool match =
            prefix ? strncmp(err, cases[i].want, wl - 1) == 0 : strcmp(err, cases[i].want) == 0;
        if (rc != -1 || !match || strchr(err, '\n') != NULL)
            fail_msg("row at line %d: rc %d, err \"%s\"", cases[i].line, rc, err);
        /* the output is untouched on failure */
        assert_int_equal(((unsigned char *)cfg)[0], 0xa5);
        assert_int_equal(((unsigned char *)cfg)[sizeof *cfg - 1], 0xa5);
        free(cfg);
    }
}

static void test_config_jwt_secret_bounds(void **state)
{
    (void)state;
    static const struct {
        int line;
        size_t len; /* 0: unset */
        bool unset, ok;
    } cases[] = {
        {__LINE__, 0, true, false},    {__LINE__, 0, false, false},    {__LINE__, 1, false, false},
        {__LINE__, 31, false, false},  {__LINE__, 32, false, true},    {__LINE__, 512, false, true},
        {__LINE__, 513, false, false}, {__LINE__, 4000, false, false},
    };
    static char value[4001];

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config *cfg = new_config();
        char err[ERR_MAX];
        memset(value, 'k', cases[i].len);
        value[cases[i].len] = '\0';
        const struct env_pair env[] = {{"JWT_SECRET", cases[i].unset ? NULL : value}, {NULL, NULL}};
        int rc = load(env, cfg, err);
        if ((rc == 0) != cases[i].ok)
            fail_msg("row at line %d: rc %d, err \"%s\"", cases[i].line, rc, err);
        if (rc == 0) {
            assert_int_equal(cfg->jwt_secret_len, cases[i].len);
            assert_memory_equal(cfg->jwt_secret, value, cases[i].len);
            config_free(cfg);
        } else {
            assert_true(strncmp(err, "JWT_SECRET: ", 12) == 0);
            assert_null(strstr(err, "kkkk"));
        }
        free(cfg);
    }
}

static void test_config_secrets_never_in_errors(void **state)
{
    (void)state;
    static char long_key[600];
    memset(long_key, 'Z', sizeof long_key - 1);
    memcpy(long_key, MARKER, strlen(MARKER));
    const struct {
        int line;
        const char *name, *value;
        const char *want_prefix;
    } cases[] = {
        {__LINE__, "JWT_SECRET", MARKER, "JWT_SECRET: "},
        {__LINE__, "MISTRAL_API_KEY", MARKER " x", "MISTRAL_API_KEY: "},
        {__LINE__, "MISTRAL_API_KEY", MARKER "\n", "MISTRAL_API_KEY: "},
        {__LINE__, "MISTRAL_API_KEY", long_key, "MISTRAL_API_KEY: "},
        {__LINE__, "MISTRAL_API_URL", "https://u:" MARKER "@h", "MISTRAL_API_URL: "},
        {__LINE__, "MISTRAL_API_URL", "ftp://u:" MARKER "@h", "MISTRAL_API_URL: "},
        {__LINE__, "REDIS_URL", "redis://u:" MARKER "@h:0/0", "REDIS_URL: port"},
        {__LINE__, "REDIS_URL", "redis://u:" MARKER "@:6379", "REDIS_URL: host"},
        {__LINE__, "REDIS_URL", "redis://u:" MARKER "@h/x", "REDIS_URL: database"},
        {__LINE__, "REDIS_URL", "redis://u:" MARKER "@h?x", "REDIS_URL: query"},
        {__LINE__, "REDIS_URL", "redis://u:" MARKER, "REDIS_URL: port"},
        {__LINE__, "REDIS_URL", "redis://" MARKER "@h", "REDIS_URL: credentials"},
        {__LINE__, "REDIS_URL", "redis://u:" MARKER "\n@h", "REDIS_URL: contains control"},
        {__LINE__, "REDIS_URL", "rediss://u:" MARKER "@h", "REDIS_URL: rediss://"},
        {__LINE__, "REDIS_URL", "http://u:" MARKER "@h", "REDIS_URL: must be"},
        {__LINE__, "REDIS_URL", "redis://" MARKER ":x@h x", "REDIS_URL: host"},
        {__LINE__, "METRICS_TOKEN", MARKER " x", "METRICS_TOKEN: "},
        {__LINE__, "METRICS_TOKEN", "S3cr", "METRICS_TOKEN: "},
        /* a valid secret next to another variable's error */
        {__LINE__, "GATEWAY_THREADS", "x", "GATEWAY_THREADS: "},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config *cfg = new_config();
        char err[ERR_MAX];
        const struct env_pair env[] = {{cases[i].name, cases[i].value},
                                       {"JWT_SECRET", SECRET MARKER},
                                       {"MISTRAL_API_KEY", MARKER},
                                       {"REDIS_URL", "redis://u:" MARKER "@h"},
                                       {NULL, NULL}};
        int rc = load(env, cfg, err);
        if (rc != -1 || strncmp(err, cases[i].want_prefix, strlen(cases[i].want_prefix)) != 0)
            fail_msg("row at line %d: rc %d, err \"%s\"", cases[i].line, rc, err);
        if (strstr(err, MARKER) != NULL || strstr(err, "S3cr") != NULL)
            fail_msg("row at line %d: secret in \"%s\"", cases[i].line, err);
        free(cfg);
    }
}

static void test_config_redis_urls(void **state)
{
    (void)state;
    static char long_user[300], long_pass[300], long_host[300], long_path[300], long_url[1100];
    snprintf(long_user, sizeof long_user, "redis://%0128d:p@h", 0);
    snprintf(long_pass, sizeof long_pass, "redis://u:%0256d@h", 0);
    snprintf(long_host, sizeof long_host, "redis://%0256d", 0);
    snprintf(long_path, sizeof long_path, "unix:///%0107d", 0);
    snprintf(long_url, sizeof long_url, "redis://h/%01020d", 0);
    static char ok_user[300], ok_pass[300], ok_path[300];
    snprintf(ok_user, sizeof ok_user, "redis://%0127d:p@h", 0);
    snprintf(ok_pass, sizeof ok_pass, "redis://u:%0255d@h", 0);
    snprintf(ok_path, sizeof ok_path, "unix:///%0106d", 0);
    const struct {
        int line;
        const char *url;
        const char *err; /* NULL: valid; else the start of the reason */
        bool unix_socket;
        const char *host_or_path, *user, *password;
        int port, db;
    } cases[] = {
        {__LINE__, "redis://127.0.0.1:6379/0", NULL, false, "127.0.0.1", "", "", 6379, 0},
        {__LINE__, "redis://localhost", NULL, false, "localhost", "", "", 6379, 0},
        {__LINE__, "redis://localhost/", NULL, false, "localhost", "", "", 6379, 0},
        {__LINE__, "redis://localhost:6380", NULL, false, "localhost", "", "", 6380, 0},
        {__LINE__, "redis://r-1.example_x.com:1/15", NULL, false, "r-1.example_x.com", "", "", 1,
         15},
        {__LINE__, "redis://h:65535/1000", NULL, false, "h", "", "", 65535, 1000},
        {__LINE__, "REDIS://H", NULL, false, "H", "", "", 6379, 0},
        {__LINE__, "redis://:pw@h", NULL, false, "h", "", "pw", 6379, 0},
        {__LINE__, "redis://user:pw@h:7000/2", NULL, false, "h", "user", "pw", 7000, 2},
        {__LINE__, "redis://user:@h", NULL, false, "h", "user", "", 6379, 0},
        {__LINE__, "redis://u:p:w@d/x@h:1/3", NULL, false, "h", "u", "p:w@d/x", 1, 3},
        {__LINE__, "redis://[::1]:6380/1", NULL, false, "::1", "", "", 6380, 1},
        {__LINE__, "redis://[2001:db8::1]", NULL, false, "2001:db8::1", "", "", 6379, 0},
        {__LINE__, "redis://u:p@[::ffff:192.0.2.1]/4", NULL, false, "::ffff:192.0.2.1", "u", "p",
         6379, 4},
        {__LINE__, "redis://h/007", NULL, false, "h", "", "", 6379, 7},
        {__LINE__, "unix:///var/run/redis/redis.sock", NULL, true, "/var/run/redis/redis.sock", "",
         "", 0, 0},
        {__LINE__, ok_user, NULL, false, "h", ok_user + 8, "p", 6379, 0},
        {__LINE__, ok_path, NULL, true, ok_path + 7, "", "", 0, 0},
        /* errors */
        {__LINE__, "", "must be redis://", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "localhost:6379", "must be redis://", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "http://h", "must be redis://", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis:/h", "must be redis://", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "rediss://h", "rediss:// (TLS)", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://", "host is missing", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://:6379/0", "host is missing", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://u:p@/0", "host is missing", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis:///0", "host is missing", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h:0", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h:65536", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h:abc", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h:", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h:-1", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h:+1", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h:9999999999", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://[::1]:0", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://[::1]:", "port must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h/abc", "database must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h/1001", "database must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h/-1", "database must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h/1/2", "database must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h/ 1", "database must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://::1:6379", "host: an IPv6", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://[::1", "host: missing ]", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://[]:1", "host: not an IPv6", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://[zz]:1", "host: not an IPv6", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://[127.0.0.1]", "host: not an IPv6", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://[fe80::1%eth0]", "host: not an IPv6", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://[::1]x", "host: only :port", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h?db=1", "query", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h/1#x", "query", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://user@h", "credentials must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h x", "host must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h\xc3\xa9", "host must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h\n", "contains control", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h\t:1", "contains control", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "redis://h\x7f", "contains control", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "unix://relative.sock", "a unix socket needs an absolute path", false, NULL,
         NULL, NULL, 0, 0},
        {__LINE__, "unix://", "a unix socket needs", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, "unix:///tmp/r.sock?db=1", "unix socket URLs take no query", false, NULL, NULL,
         NULL, 0, 0},
        {__LINE__, long_path, "unix socket path longer than 107", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, long_user, "user longer than 127", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, long_pass, "password longer than 255", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, long_host, "host must be", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, long_url, "longer than 1024", false, NULL, NULL, NULL, 0, 0},
        {__LINE__, NULL, "no URL", false, NULL, NULL, NULL, 0, 0},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config_redis r;
        char err[ERR_MAX] = "";
        memset(&r, 0xa5, sizeof r);
        int rc = config_parse_redis_url(cases[i].url, &r, err, sizeof err);
        if (cases[i].err != NULL) {
            if (rc != -1 || strncmp(err, cases[i].err, strlen(cases[i].err)) != 0)
                fail_msg("row at line %d: rc %d, err \"%s\"", cases[i].line, rc, err);
            assert_int_equal(((unsigned char *)&r)[0], 0xa5);
            continue;
        }
        if (rc != 0)
            fail_msg("row at line %d: %s", cases[i].line, err);
        bool ok = r.unix_socket == cases[i].unix_socket &&
                  strcmp(r.unix_socket ? r.path : r.host, cases[i].host_or_path) == 0 &&
                  (r.unix_socket || r.port == cases[i].port) && r.db == cases[i].db;
        ok = ok && strcmp(r.user, cases[i].user) == 0 && strcmp(r.password, cases[i].password) == 0;
        if (cases[i].url == ok_user)
            ok = r.unix_socket == false && strlen(r.user) == 127 && strcmp(r.host, "h") == 0;
        if (!ok)
            fail_msg("row at line %d: unix %d host \"%s\" path \"%s\" port %d db %d user \"%s\"",
                     cases[i].line, r.unix_socket, r.host, r.path, r.port, r.db, r.user);
    }
}

/* Writes text to a new file from mkstemp; path receives its name. */
static void write_temp(char *path, size_t pathlen, const char *text)
{
    snprintf(path, pathlen, "/tmp/test_config_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

#define TIERS_JSON(auth_capacity)                                                                  \
    "{\"tiers\":{\"ai_authenticated\":{\"tokens_per_second\":2,\"burst_capacity\":5},"             \
    "\"ai_anonymous\":{\"tokens_per_second\":0.5,\"burst_capacity\":2},"                           \
    "\"api_authenticated\":{\"tokens_per_second\":10,\"burst_capacity\":20},"                      \
    "\"api_anonymous\":{\"tokens_per_second\":5,\"burst_capacity\":10},"                           \
    "\"auth\":{\"tokens_per_second\":0.5,\"burst_capacity\":" auth_capacity "},"                   \
    "\"premium_user\":{\"tokens_per_second\":20,\"burst_capacity\":50}}}"

static void test_config_limits_file(void **state)
{
    (void)state;
    char good[64], bad[64], err[ERR_MAX];
    struct config *cfg = new_config();

    write_temp(good, sizeof good, TIERS_JSON("3"));
    write_temp(bad, sizeof bad, TIERS_JSON("2.5"));

    /* RATE_LIMITS_FILE, with the development override */
    const struct env_pair env[] = {{"JWT_SECRET", SECRET},
                                   {"RATE_LIMITS_FILE", good},
                                   {"ENVIRONMENT", "development"},
                                   {NULL, NULL}};
    int rc = load(env, cfg, err);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(cfg->limits_file, good);
    assert_int_equal(cfg->tiers.count, 6);
    assert_int_equal(tiers_find(&cfg->tiers, "premium_user")->capacity, 50);
    assert_true(tiers_find(&cfg->tiers, TIER_AI_AUTH)->rate == 10);
    config_free(cfg);

    /* the default file argument, when RATE_LIMITS_FILE is unset */
    const struct env_pair env2[] = {{"JWT_SECRET", SECRET}, {NULL, NULL}};
    fake_env = env2;
    assert_int_equal(config_load(cfg, fake_getenv, good, err, sizeof err), 0);
    assert_string_equal(cfg->limits_file, good);
    assert_true(tiers_find(&cfg->tiers, TIER_AI_AUTH)->rate == 2);
    config_free(cfg);

    /* a bad file: the variable, the path and the problem on one line */
    char want[256];
    snprintf(want, sizeof want,
             "RATE_LIMITS_FILE: %s: tier \"auth\": burst_capacity must be a whole number from 1 "
             "to 1000000000",
             bad);
    assert_int_equal(load_one("RATE_LIMITS_FILE", bad, cfg, err), -1);
    assert_string_equal(err, want);
    fake_env = env2;
    assert_int_equal(config_load(cfg, fake_getenv, bad, err, sizeof err), -1);
    assert_string_equal(err, want);

    /* a path too long for the struct */
    static char long_path[5000];
    memset(long_path, 'p', sizeof long_path - 1);
    assert_int_equal(load_one("RATE_LIMITS_FILE", long_path, cfg, err), -1);
    assert_string_equal(err, "RATE_LIMITS_FILE: must be at most 4095 bytes");

    unlink(good);
    unlink(bad);
    free(cfg);
}

static void test_config_free_wipes_secrets(void **state)
{
    (void)state;
    struct config *cfg = new_config();
    char err[ERR_MAX];
    const struct env_pair env[] = {{"JWT_SECRET", SECRET},
                                   {"MISTRAL_API_KEY", MARKER},
                                   {"REDIS_URL", "redis://u:" MARKER "@h"},
                                   {"METRICS_TOKEN", MARKER MARKER},
                                   {NULL, NULL}};
    static const unsigned char zero[CONFIG_SECRET_MAX];

    assert_int_equal(load(env, cfg, err), 0);
    assert_string_equal(cfg->redis.password, MARKER);
    assert_string_equal(cfg->metrics_token, MARKER MARKER);
    assert_int_equal(cfg->metrics_token_len, 2 * strlen(MARKER));
    config_free(cfg);
    assert_memory_equal(cfg->metrics_token, zero, sizeof cfg->metrics_token);
    assert_int_equal(cfg->metrics_token_len, 0);
    assert_memory_equal(cfg->jwt_secret, zero, sizeof cfg->jwt_secret);
    assert_int_equal(cfg->jwt_secret_len, 0);
    assert_memory_equal(cfg->mistral_api_key, zero, sizeof cfg->mistral_api_key);
    assert_memory_equal(cfg->redis.password, zero, sizeof cfg->redis.password);
    config_free(NULL);
    free(cfg);
}

/* Runs config_log_summary with stderr sent to a file; returns the text (free it). */
static char *capture_summary(const struct config *cfg)
{
    char path[] = "/tmp/test_config_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    config_log_summary(cfg);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    off_t len = lseek(fd, 0, SEEK_END);
    assert_true(len > 0 && len < 65536);
    char *text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)len, 0), len);
    close(fd);
    unlink(path);
    return text;
}

static void test_config_log_summary(void **state)
{
    (void)state;
    struct config *cfg = new_config();
    char err[ERR_MAX];
    json_error_t jerr;
    const struct env_pair online[] = {{"JWT_SECRET", SECRET MARKER},
                                      {"MISTRAL_API_KEY", MARKER},
                                      {"REDIS_URL", "redis://u:" MARKER "@[::1]:6380/2"},
                                      {"TRUSTED_PROXIES", "10.0.0.0/8"},
                                      {"LOG_LEVEL", "warn"},
                                      {NULL, NULL}};

    log_set_level(LOG_INFO);
    assert_int_equal(load(online, cfg, err), 0);
    char *text = capture_summary(cfg);
    assert_null(strstr(text, MARKER));
    assert_null(strstr(text, SECRET));
    assert_non_null(strchr(text, '\n'));
    assert_ptr_equal(strchr(text, '\n'), text + strlen(text) - 1); /* one line */
    json_t *line = json_loads(text, 0, &jerr);
    assert_non_null(line);
    assert_string_equal(json_string_value(json_object_get(line, "event")), "startup");
    assert_string_equal(json_string_value(json_object_get(line, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(line, "redis")), "[::1]:6380/2");
    assert_true(json_is_true(json_object_get(line, "redis_auth")));
    assert_string_equal(json_string_value(json_object_get(line, "limits_file")), "limits.json");
    json_t *tiers = json_object_get(line, "tiers");
    assert_int_equal(json_array_size(tiers), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tiers, 0), "name")),
                        TIER_AI_AUTH);
    assert_true(json_number_value(json_object_get(json_array_get(tiers, 0), "rate")) == 2);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(tiers, 0), "capacity")), 5);
    assert_string_equal(json_string_value(json_object_get(line, "fail_mode")), "open");
    assert_int_equal(json_integer_value(json_object_get(line, "trusted_proxies")), 1);
    assert_int_equal(json_integer_value(json_object_get(line, "jwt_ttl")), 3600);
    assert_string_equal(json_string_value(json_object_get(line, "mistral_backend")), "mistral");
    assert_string_equal(json_string_value(json_object_get(line, "mistral_url")),
                        "https://api.mistral.ai");
    assert_string_equal(json_string_value(json_object_get(line, "mistral_model")),
                        "mistral-small-latest");
    assert_int_equal(json_integer_value(json_object_get(line, "threads")), 32);
    assert_string_equal(json_string_value(json_object_get(line, "environment")), "production");
    assert_string_equal(json_string_value(json_object_get(line, "log_level")), "warn");
    json_decref(line);
    free(text);
    config_free(cfg);

    const struct env_pair offline[] = {
        {"JWT_SECRET", SECRET}, {"REDIS_URL", "unix:///run/redis.sock"}, {NULL, NULL}};
    assert_int_equal(load(offline, cfg, err), 0);
    text = capture_summary(cfg);
    line = json_loads(text, 0, &jerr);
    assert_non_null(line);
    assert_string_equal(json_string_value(json_object_get(line, "redis")), "unix:/run/redis.sock");
    assert_true(json_is_false(json_object_get(line, "redis_auth")));
    assert_string_equal(json_string_value(json_object_get(line, "mistral_backend")), "offline");
    assert_null(json_object_get(line, "mistral_url"));
    json_decref(line);
    free(text);
    config_free(cfg);
    free(cfg);
    config_log_summary(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_empty_means_default),
        cmocka_unit_test(test_config_all_set),
        cmocka_unit_test(test_config_choices),
        cmocka_unit_test(test_config_bad_values),
        cmocka_unit_test(test_config_jwt_secret_bounds),
        cmocka_unit_test(test_config_secrets_never_in_errors),
        cmocka_unit_test(test_config_redis_urls),
        cmocka_unit_test(test_config_limits_file),
        cmocka_unit_test(test_config_free_wipes_secrets),
        cmocka_unit_test(test_config_log_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
