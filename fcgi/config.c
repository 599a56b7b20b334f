/*
 * config: the environment of SPEC 3, read once at start-up, validated, and summarised
 * in one log line. Every bad value stops start-up with one line naming the variable;
 * secrets (JWT_SECRET, MISTRAL_API_KEY, the REDIS_URL password) never appear in an
 * error or a log line, and are wiped by config_free. See include/config.h.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "identity.h"

#define CONFIG_DEFAULT_REDIS_URL "redis://127.0.0.1:6379/0"
#define CONFIG_DEFAULT_LIMITS_FILE "limits.json"
#define CONFIG_DEFAULT_MISTRAL_URL "https://api.mistral.ai"
#define CONFIG_DEFAULT_MISTRAL_MODEL "mistral-small-latest"
#define CONFIG_REDIS_URL_MAX 1024 /* bytes of REDIS_URL */
#define CONFIG_REDIS_PORT_DEFAULT 6379
#define CONFIG_REDIS_DB_MAX 1000 /* SELECT index; Redis has 16 unless configured */
#define CONFIG_JWT_TTL_MIN 60L
#define CONFIG_JWT_TTL_MAX 2592000L /* 30 days */
#define CONFIG_MISTRAL_TIMEOUT_MAX 600L
#define CONFIG_VALUE_SHOWN_MAX 48   /* bytes of a bad value quoted in an error */
#define CONFIG_REASON_MAX 2048      /* bytes of a reason from another module */
#define CONFIG_REDIS_TARGET_MAX 320 /* "[host]:port/db" or "unix:/path" */
#define CONFIG_MISTRAL_URL_MAX 1023 /* bytes: sizeof config.mistral_api_url - 1 */
#define SG_STR_(x) #x
#define SG_STR(x) SG_STR_(x)

/* The variable, or NULL when it is unset or empty (which means: use the default). */
static const char *config_value(config_getenv_fn get, const char *name)
{
    const char *v = get(name);
    return (v != NULL && v[0] != '\0') ? v : NULL;
}

/* A bad non-secret value, bounded and made printable, for quoting in an error. */
static void config_shown(const char *v, char *out, size_t outlen)
{
    log_printable(v, CONFIG_VALUE_SHOWN_MAX, out, outlen);
}

/* Keeps err on one line whatever another module wrote into it. */
static void config_one_line(char *err, size_t errlen)
{
    for (size_t i = 0; i < errlen && err[i] != '\0'; i++) {
        if ((unsigned char)err[i] < 0x20 || err[i] == 0x7f)
            err[i] = '?';
    }
}

/* n (1..9) ASCII digits as a number no larger than max. */
static bool config_digits(const char *s, size_t n, long max, long *out)
{
    long v = 0;

    if (n == 0 || n > 9)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* A whole decimal number from min to max: digits only, no sign, space or trailing text. */
static bool config_long_text(const char *s, long min, long max, long *out)
{
    char *end = NULL;

    if (s[0] < '0' || s[0] > '9')
        return false;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int config_long(config_getenv_fn get, const char *name, long def, long min, long max,
                       long *out, char *err, size_t errlen)
{
    char shown[CONFIG_VALUE_SHOWN_MAX + 4];
    const char *v = config_value(get, name);

    if (v == NULL) {
        *out = def;
        return 0;
    }
    if (config_long_text(v, min, max, out))
        return 0;
    config_shown(v, shown, sizeof shown);
    snprintf(err, errlen, "%s: must be a whole number from %ld to %ld (got \"%s\")", name, min, max,
             shown);
    return -1;
}

/* One of names[] (NULL-terminated list, first is the default) into *index. */
static int config_choice(config_getenv_fn get, const char *name, const char *const *names,
                         const char *expected, int *index, char *err, size_t errlen)
{
    char shown[CONFIG_VALUE_SHOWN_MAX + 4];
    const char *v = config_value(get, name);

    if (v == NULL) {
        *index = 0;
        return 0;
    }
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(v, names[i]) == 0) {
            *index = i;
            return 0;
        }
    }
    config_shown(v, shown, sizeof shown);
    snprintf(err, errlen, "%s: must be %s (got \"%s\")", name, expected, shown);
    return -1;
}

/* ---- REDIS_URL ---------------------------------------------------------------------- */

static int config_redis_unix(const char *path, struct config_redis *r, char *err, size_t errlen)
{
    size_t len = strlen(path);

    if (path[0] != '/') {
        snprintf(err, errlen, "a unix socket needs an absolute path: unix:///path/redis.sock");
        return -1;
    }
    if (strpbrk(path, "?#") != NULL) {
        snprintf(err, errlen, "unix socket URLs take no query (?...) or fragment (#...)");
        return -1;
    }
    if (len >= sizeof r->path) {
        snprintf(err, errlen, "unix socket path longer than %zu bytes", sizeof r->path - 1);
        return -1;
    }
    r->unix_socket = true;
    memcpy(r->path, path, len + 1);
    return 0;
}

/* "user:password" of n bytes. */
static int config_redis_userinfo(const char *s, size_t n, struct config_redis *r, char *err,
                                 size_t errlen)
{
    const char *colon = memchr(s, ':', n);

    if (colon == NULL) {
        snprintf(err, errlen, "credentials must be written user:password@ (user may be empty)");
        return -1;
    }
    size_t ulen = (size_t)(colon - s), plen = n - ulen - 1;
    if (ulen >= sizeof r->user) {
        snprintf(err, errlen, "user longer than %zu bytes", sizeof r->user - 1);
        return -1;
    }
    if (plen >= sizeof r->password) {
        snprintf(err, errlen, "password longer than %zu bytes", sizeof r->password - 1);
        return -1;
    }
    memcpy(r->user, s, ulen);
    r->user[ulen] = '\0';
    memcpy(r->password, colon + 1, plen);
    r->password[plen] = '\0';
    return 0;
}

static bool config_hostname_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_';
        if (!ok)
            return false;
    }
    return n > 0;
}

/* "[v6]" or "[v6]:port" of n bytes: the address into r->host, *port after the ':'. */
static int config_redis_host_v6(const char *s, size_t n, struct config_redis *r, const char **port,
                                char *err, size_t errlen)
{
    const char *close = memchr(s, ']', n);
    unsigned char addr[16];

    if (close == NULL) {
        snprintf(err, errlen, "host: missing ] after an IPv6 address");
        return -1;
    }
    size_t hlen = (size_t)(close - (s + 1));
    if (hlen == 0 || hlen >= sizeof r->host) {
        snprintf(err, errlen, "host: not an IPv6 address inside [ ]");
        return -1;
    }
    memcpy(r->host, s + 1, hlen);
    r->host[hlen] = '\0';
    if (inet_pton(AF_INET6, r->host, addr) != 1) {
        snprintf(err, errlen, "host: not an IPv6 address inside [ ]");
        return -1;
    }
    if (close + 1 < s + n) {
        if (close[1] != ':') {
            snprintf(err, errlen, "host: only :port may follow [IPv6 address]");
            return -1;
        }
        *port = close + 2;
    }
    return 0;
}

/* "host" or "host:port" of n bytes: the name into r->host, *port after the ':'. */
static int config_redis_host_name(const char *s, size_t n, struct config_redis *r,
                                  const char **port, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', n);
    size_t hlen = colon != NULL ? (size_t)(colon - s) : n;

    if (colon != NULL && memchr(colon + 1, ':', n - hlen - 1) != NULL) {
        snprintf(err, errlen, "host: an IPv6 address must be written in brackets: [::1]");
        return -1;
    }
    if (hlen == 0) {
        snprintf(err, errlen, "host is missing");
        return -1;
    }
    if (hlen >= sizeof r->host || !config_hostname_valid(s, hlen)) {
        snprintf(err, errlen,
                 "host must be a name or address of at most %zu bytes of [A-Za-z0-9._-], "
                 "or [IPv6]",
                 sizeof r->host - 1);
        return -1;
    }
    memcpy(r->host, s, hlen);
    r->host[hlen] = '\0';
    if (colon != NULL)
        *port = colon + 1;
    return 0;
}

/* "host", "host:port", "[v6]" or "[v6]:port" of n bytes. */
static int config_redis_hostport(const char *s, size_t n, struct config_redis *r, char *err,
                                 size_t errlen)
{
    const char *port = NULL;
    long v;
    int rc = n > 0 && s[0] == '[' ? config_redis_host_v6(s, n, r, &port, err, errlen)
                                  : config_redis_host_name(s, n, r, &port, err, errlen);

    if (rc < 0)
        return -1;
    r->port = CONFIG_REDIS_PORT_DEFAULT;
    if (port != NULL) {
        if (!config_digits(port, (size_t)(s + n - port), 65535, &v) || v < 1) {
            snprintf(err, errlen, "port must be a whole number from 1 to 65535");
            return -1;
        }
        r->port = (int)v;
    }
    return 0;
}

/* After "redis://": [user:password@]host[:port][/db]. */
static int config_redis_tcp(const char *s, struct config_redis *r, char *err, size_t errlen)
{
    const char *at = strrchr(s, '@');
    const char *rest = s;
    long db = 0;

    if (at != NULL) {
        if (config_redis_userinfo(s, (size_t)(at - s), r, err, errlen) < 0)
            return -1;
        rest = at + 1;
    }
    if (strpbrk(rest, "?#") != NULL) {
        snprintf(err, errlen, "query (?...) and fragment (#...) are not supported");
        return -1;
    }
    const char *slash = strchr(rest, '/');
    size_t hplen = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
    if (config_redis_hostport(rest, hplen, r, err, errlen) < 0)
        return -1;
    if (slash != NULL && slash[1] != '\0' &&
        !config_digits(slash + 1, strlen(slash + 1), CONFIG_REDIS_DB_MAX, &db)) {
        snprintf(err, errlen, "database must be a whole number from 0 to %d", CONFIG_REDIS_DB_MAX);
        return -1;
    }
    r->db = (int)db;
    return 0;
}

int config_parse_redis_url(const char *url, struct config_redis *out, char *err, size_t errlen)
{
    struct config_redis r;
    int rc = -1;

    memset(&r, 0, sizeof r);
    if (url == NULL) {
        snprintf(err, errlen, "no URL");
        goto out;
    }
    size_t len = strnlen(url, CONFIG_REDIS_URL_MAX + 1);
    if (len > CONFIG_REDIS_URL_MAX) {
        snprintf(err, errlen, "longer than %d bytes", CONFIG_REDIS_URL_MAX);
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)url[i] < 0x20 || url[i] == 0x7f) {
            snprintf(err, errlen, "contains control characters");
            goto out;
        }
    }
    if (strncasecmp(url, "redis://", 8) == 0)
        rc = config_redis_tcp(url + 8, &r, err, errlen);
    else if (strncasecmp(url, "unix://", 7) == 0)
        rc = config_redis_unix(url + 7, &r, err, errlen);
    else if (strncasecmp(url, "rediss://", 9) == 0)
        snprintf(err, errlen, "rediss:// (TLS) is not supported");
    else
        snprintf(err, errlen,
                 "must be redis://[user:password@]host[:port][/db] or unix:///path/redis.sock");
    if (rc == 0)
        *out = r;
out:
    sodium_memzero(&r, sizeof r);
    return rc;
}

/* ---- one function per variable ------------------------------------------------------- */

static int config_redis(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    char reason[CONFIG_REASON_MAX];
    const char *v = config_value(get, "REDIS_URL");

    if (config_parse_redis_url(v != NULL ? v : CONFIG_DEFAULT_REDIS_URL, &c->redis, reason,
                               sizeof reason) < 0) {
        /* no part of the value: it may hold a password */
        snprintf(err, errlen, "REDIS_URL: %s", reason);
        return -1;
    }
    return 0;
}

static int config_jwt_secret(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    const char *v = get("JWT_SECRET");
    size_t n = v != NULL ? strnlen(v, CONFIG_SECRET_MAX + 1) : 0;

    if (n == 0) {
        snprintf(err, errlen,
                 "JWT_SECRET: required: a random key of at least %d bytes "
                 "(make run generates one)",
                 IDENTITY_SECRET_MIN);
        return -1;
    }
    if (n < IDENTITY_SECRET_MIN || n > CONFIG_SECRET_MAX) {
        snprintf(err, errlen, "JWT_SECRET: must be %d to %d bytes long (value not shown)",
                 IDENTITY_SECRET_MIN, CONFIG_SECRET_MAX);
        return -1;
    }
    memcpy(c->jwt_secret, v, n);
    c->jwt_secret_len = n;
    return 0;
}

static int config_mistral_key(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    const char *v = config_value(get, "MISTRAL_API_KEY");

    if (v == NULL)
        return 0; /* offline storyteller */
    size_t n = strnlen(v, sizeof c->mistral_api_key);
    if (n >= sizeof c->mistral_api_key) {
        snprintf(err, errlen, "MISTRAL_API_KEY: must be at most %zu bytes (value not shown)",
                 sizeof c->mistral_api_key - 1);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        /* it goes into an HTTP header: no spaces, controls or non-ASCII */
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f) {
            snprintf(err, errlen,
                     "MISTRAL_API_KEY: must be printable ASCII without spaces (value not shown)");
            return -1;
        }
    }
    memcpy(c->mistral_api_key, v, n + 1);
    return 0;
}

/* Why url is not a usable base URL, or NULL. len: its length. */
static const char *config_url_problem(const char *url, size_t len)
{
    size_t scheme = strncasecmp(url, "https://", 8) == 0  ? 8
                    : strncasecmp(url, "http://", 7) == 0 ? 7
                                                          : 0;
    if (scheme == 0)
        return "must start with http:// or https://";
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return "must be printable ASCII without spaces";
    }
    if (strpbrk(url, "?#") != NULL)
        return "must be a base URL without query (?...) or fragment (#...)";
    size_t host = strcspn(url + scheme, "/");
    if (host == 0)
        return "host is missing";
    if (memchr(url + scheme, '@', host) != NULL)
        return "must not contain credentials (user:password@): the key goes in MISTRAL_API_KEY";
    return NULL;
}

_Static_assert(CONFIG_MISTRAL_URL_MAX + 1 == sizeof((struct config *)0)->mistral_api_url,
               "CONFIG_MISTRAL_URL_MAX follows struct config");

static int config_mistral_url(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    char shown[CONFIG_VALUE_SHOWN_MAX + 4];
    const char *v = config_value(get, "MISTRAL_API_URL");
    const char *problem;

    if (v == NULL)
        v = CONFIG_DEFAULT_MISTRAL_URL;
    size_t len = strlen(v); /* NUL-terminated: the environment, or the default */
    if (len >= sizeof c->mistral_api_url)
        problem = "must be at most " SG_STR(CONFIG_MISTRAL_URL_MAX) " bytes";
    else
        problem = config_url_problem(v, len);
    if (problem != NULL) {
        if (strchr(v, '@') != NULL) /* may hold credentials: do not show it */
            snprintf(err, errlen, "MISTRAL_API_URL: %s", problem);
        else {
            config_shown(v, shown, sizeof shown);
            snprintf(err, errlen, "MISTRAL_API_URL: %s (got \"%s\")", problem, shown);
        }
        return -1;
    }
    while (len > 0 && v[len - 1] == '/')
        len--;
    memcpy(c->mistral_api_url, v, len);
    c->mistral_api_url[len] = '\0';
    return 0;
}

static int config_mistral_model(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    char shown[CONFIG_VALUE_SHOWN_MAX + 4];
    const char *v = config_value(get, "MISTRAL_MODEL");
    size_t n;

    if (v == NULL)
        v = CONFIG_DEFAULT_MISTRAL_MODEL;
    n = strnlen(v, sizeof c->mistral_model);
    bool ok = n < sizeof c->mistral_model;
    for (size_t i = 0; ok && i < n; i++) {
        char ch = v[i];
        ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
             ch == '.' || ch == '_' || ch == ':' || ch == '-';
    }
    if (!ok) {
        config_shown(v, shown, sizeof shown);
        snprintf(err, errlen,
                 "MISTRAL_MODEL: must be 1 to %zu characters of [A-Za-z0-9._:-] "
                 "(got \"%s\")",
                 sizeof c->mistral_model - 1, shown);
        return -1;
    }
    memcpy(c->mistral_model, v, n + 1);
    return 0;
}

static int config_limits(struct config *c, config_getenv_fn get, const char *default_file,
                         char *err, size_t errlen)
{
    char reason[CONFIG_REASON_MAX];
    const char *v = config_value(get, "RATE_LIMITS_FILE");

    if (v == NULL)
        v = default_file != NULL ? default_file : CONFIG_DEFAULT_LIMITS_FILE;
    size_t n = strnlen(v, sizeof c->limits_file);
    if (n >= sizeof c->limits_file) {
        snprintf(err, errlen, "RATE_LIMITS_FILE: must be at most %zu bytes",
                 sizeof c->limits_file - 1);
        return -1;
    }
    memcpy(c->limits_file, v, n + 1);
    if (tiers_load(c->limits_file, c->development, &c->tiers, reason, sizeof reason) < 0) {
        snprintf(err, errlen, "RATE_LIMITS_FILE: %s", reason);
        return -1;
    }
    return 0;
}

static int config_proxies(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    char reason[CONFIG_REASON_MAX] = "";

    if (clientip_proxies_parse(config_value(get, "TRUSTED_PROXIES"), &c->trusted_proxies, reason,
                               sizeof reason) < 0) {
        snprintf(err, errlen, "TRUSTED_PROXIES: %s", reason);
        return -1;
    }
    return 0;
}

/* METRICS_TOKEN: optional; a bearer token, so printable ASCII without spaces. */
static int config_metrics_token(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    const char *v = config_value(get, "METRICS_TOKEN");

    if (v == NULL)
        return 0; /* /metrics for loopback clients only */
    size_t n = strnlen(v, CONFIG_METRICS_TOKEN_MAX + 1);
    if (n < CONFIG_METRICS_TOKEN_MIN || n > CONFIG_METRICS_TOKEN_MAX) {
        snprintf(err, errlen, "METRICS_TOKEN: must be %d to %d bytes long (value not shown)",
                 CONFIG_METRICS_TOKEN_MIN, CONFIG_METRICS_TOKEN_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f) {
            snprintf(err, errlen,
                     "METRICS_TOKEN: must be printable ASCII without spaces (value not shown)");
            return -1;
        }
    }
    memcpy(c->metrics_token, v, n + 1);
    c->metrics_token_len = n;
    return 0;
}

/* METRICS_SHM: optional; a shared-memory segment name, with or without its leading '/'. */
static int config_metrics_shm(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    static const char allowed[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    char shown[CONFIG_VALUE_SHOWN_MAX + 4];
    const char *v = config_value(get, "METRICS_SHM");

    if (v == NULL)
        return 0; /* one segment per front server: see include/metrics.h */
    const char *name = v[0] == '/' ? v + 1 : v;
    size_t n = strnlen(name, CONFIG_METRICS_SHM_MAX);
    if (n == 0 || n >= CONFIG_METRICS_SHM_MAX || strspn(name, allowed) != n ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        config_shown(v, shown, sizeof shown);
        snprintf(err, errlen,
                 "METRICS_SHM: must be a shared-memory name, an optional '/' and 1 to %d of "
                 "[A-Za-z0-9._-] (got \"%s\")",
                 CONFIG_METRICS_SHM_MAX - 1, shown);
        return -1;
    }
    snprintf(c->metrics_shm, sizeof c->metrics_shm, "/%s", name);
    return 0;
}

static const char *const config_fail_modes[] = {"open", "closed", "local", NULL};
static const char *const config_environments[] = {"production", "development", NULL};

/* The enums, numbers and log level: everything that is one word. */
static int config_scalars(struct config *c, config_getenv_fn get, char *err, size_t errlen)
{
    char shown[CONFIG_VALUE_SHOWN_MAX + 4];
    const char *level = config_value(get, "LOG_LEVEL");
    int mode, env;
    long threads;

    if (config_choice(get, "RATE_LIMIT_FAIL_MODE", config_fail_modes, "open, closed or local",
                      &mode, err, errlen) < 0 ||
        config_long(get, "JWT_TTL", 3600, CONFIG_JWT_TTL_MIN, CONFIG_JWT_TTL_MAX, &c->jwt_ttl, err,
                    errlen) < 0 ||
        config_long(get, "MISTRAL_TIMEOUT", 30, 1, CONFIG_MISTRAL_TIMEOUT_MAX, &c->mistral_timeout,
                    err, errlen) < 0 ||
        config_long(get, "GATEWAY_THREADS", 32, 1, CONFIG_THREADS_MAX, &threads, err, errlen) < 0 ||
        config_choice(get, "ENVIRONMENT", config_environments, "production or development", &env,
                      err, errlen) < 0)
        return -1;
    c->fail_mode = mode == 0 ? FAIL_OPEN : mode == 1 ? FAIL_CLOSED : FAIL_LOCAL;
    c->threads = (int)threads;
    c->development = env == 1;
    c->log_level = LOG_INFO;
    if (level != NULL && !log_parse_level(level, &c->log_level)) {
        config_shown(level, shown, sizeof shown);
        snprintf(err, errlen, "LOG_LEVEL: must be debug, info, warn or error (got \"%s\")", shown);
        return -1;
    }
    return 0;
}

int config_load(struct config *cfg, config_getenv_fn get, const char *default_limits_file,
                char *err, size_t errlen)
{
    struct config *c = NULL;
    int rc = -1;

    if (cfg == NULL || get == NULL) {
        snprintf(err, errlen, "config_load: no config or getenv");
        goto out;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "config_load: out of memory");
        goto out;
    }
    /* the file last: it is I/O, and it depends on ENVIRONMENT */
    if (config_redis(c, get, err, errlen) < 0 || config_scalars(c, get, err, errlen) < 0 ||
        config_proxies(c, get, err, errlen) < 0 || config_jwt_secret(c, get, err, errlen) < 0 ||
        config_mistral_key(c, get, err, errlen) < 0 ||
        config_mistral_url(c, get, err, errlen) < 0 ||
        config_mistral_model(c, get, err, errlen) < 0 ||
        config_metrics_token(c, get, err, errlen) < 0 ||
        config_metrics_shm(c, get, err, errlen) < 0 ||
        config_limits(c, get, default_limits_file, err, errlen) < 0) {
        config_one_line(err, errlen);
        goto out;
    }
    *cfg = *c;
    rc = 0;
out:
    if (c != NULL) {
        sodium_memzero(c, sizeof *c);
        free(c);
    }
    return rc;
}

/* ---- summary and teardown ------------------------------------------------------------ */

/* "host:port/db", "[v6]:port/db" or "unix:/path": never the user or password. */
static void config_redis_target(const struct config_redis *r, char *out, size_t outlen)
{
    if (r->unix_socket)
        snprintf(out, outlen, "unix:%s", r->path);
    else if (strchr(r->host, ':') != NULL)
        snprintf(out, outlen, "[%s]:%d/%d", r->host, r->port, r->db);
    else
        snprintf(out, outlen, "%s:%d/%d", r->host, r->port, r->db);
}

static json_t *config_tiers_json(const struct tiers *l)
{
    json_t *tiers = json_array();

    for (size_t i = 0; tiers != NULL && i < l->count && i < TIERS_MAX; i++) {
        const struct tier *t = &l->tiers[i];
        json_array_append_new(tiers, json_pack("{s:s, s:f, s:I}", "name", t->name, "rate", t->rate,
                                               "capacity", (json_int_t)t->capacity));
    }
    return tiers;
}

void config_log_summary(const struct config *cfg)
{
    static const char *const level_names[] = {"debug", "info", "warn", "error"};
    char redis[CONFIG_REDIS_TARGET_MAX];
    json_t *f;

    if (cfg == NULL || !log_enabled(LOG_INFO))
        return;
    f = json_object();
    if (f == NULL)
        return;
    config_redis_target(&cfg->redis, redis, sizeof redis);
    json_object_set_new(f, "redis", json_string(redis));
    json_object_set_new(f, "redis_auth",
                        json_boolean(cfg->redis.password[0] != '\0' || cfg->redis.user[0] != '\0'));
    json_object_set_new(f, "limits_file", json_string(cfg->limits_file));
    json_object_set_new(f, "tiers", config_tiers_json(&cfg->tiers));
    json_object_set_new(
        f, "fail_mode",
        json_string(cfg->fail_mode <= FAIL_LOCAL ? config_fail_modes[cfg->fail_mode] : "open"));
    json_object_set_new(f, "trusted_proxies", json_integer((json_int_t)cfg->trusted_proxies.count));
    json_object_set_new(f, "jwt_ttl", json_integer(cfg->jwt_ttl));
    if (cfg->mistral_api_key[0] != '\0') {
        json_object_set_new(f, "mistral_backend", json_string("mistral"));
        json_object_set_new(f, "mistral_url", json_string(cfg->mistral_api_url));
        json_object_set_new(f, "mistral_model", json_string(cfg->mistral_model));
        json_object_set_new(f, "mistral_timeout", json_integer(cfg->mistral_timeout));
    } else {
        json_object_set_new(f, "mistral_backend", json_string("offline"));
    }
    json_object_set_new(f, "metrics_token", json_boolean(cfg->metrics_token_len > 0));
    json_object_set_new(f, "metrics_shm",
                        json_string(cfg->metrics_shm[0] ? cfg->metrics_shm : "default"));
    json_object_set_new(f, "threads", json_integer(cfg->threads));
    json_object_set_new(f, "environment",
                        json_string(config_environments[cfg->development ? 1 : 0]));
    json_object_set_new(
        f, "log_level",
        json_string(cfg->log_level <= LOG_ERROR ? level_names[cfg->log_level] : "info"));
    log_event(LOG_INFO, "startup", f);
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    sodium_memzero(cfg->jwt_secret, sizeof cfg->jwt_secret);
    cfg->jwt_secret_len = 0;
    sodium_memzero(cfg->mistral_api_key, sizeof cfg->mistral_api_key);
    sodium_memzero(cfg->redis.password, sizeof cfg->redis.password);
    sodium_memzero(cfg->metrics_token, sizeof cfg->metrics_token);
    cfg->metrics_token_len = 0;
}
