/*
 * tiers: the tier table of SPEC 5.1, parsed from limits.json and validated.
 *
 * Every tier is checked strictly (unknown keys are errors, so a typo such as "burst"
 * never silently falls back to a default), and its TTL (SPEC 5.3) and refill time
 * (the "w" of RateLimit-Policy, SPEC 5.4) are computed once here. See include/tiers.h.
 */
#include "tiers.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TIERS_RATE_MAX 1e6             /* tokens_per_second */
#define TIERS_CAPACITY_MAX 1000000000L /* burst_capacity */
#define TIERS_REFILL_MAX 1000000000L   /* seconds from empty to full: keeps ttl in a long */
#define TIERS_DEV_AI_AUTH_RATE 10.0    /* ENVIRONMENT=development (SPEC 3) */
#define TIERS_QUOTIENT_TOLERANCE 1e-12 /* relative: float noise on an exact quotient */
#define TIERS_ERR_NAME_MAX 64          /* bytes of a bad tier name quoted in an error */
#define TIERS_ERR_PATH_MAX 1024        /* bytes of a path quoted in an error */
#define TIERS_REASON_MAX 512           /* bytes of one error reason */

/* Copies at most max bytes of s into out (outlen > max + 3), replacing anything that is
 * not printable ASCII or that would break the quoting with '?', and marks a cut with "...". */
static void tiers_sanitize(const char *s, size_t max, char *out, size_t outlen)
{
    log_printable(s, max, out, outlen);
}

static bool tiers_name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > TIERS_TIER_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/*
 * ceil(capacity / rate), with an exact quotient kept exact: 21 / 0.7 is 30 in decimal
 * but 30.000000000000004 in binary floating point, which a plain ceil() makes 31.
 * A quotient within TIERS_QUOTIENT_TOLERANCE (relative) of a whole number is that
 * number. Returns -1 when the result would exceed TIERS_REFILL_MAX.
 */
static long tiers_refill_seconds(long capacity, double rate)
{
    double q = (double)capacity / rate;

    if (!isfinite(q) || q > (double)TIERS_REFILL_MAX + 0.5)
        return -1;
    double nearest = nearbyint(q);
    double r = fabs(q - nearest) <= q * TIERS_QUOTIENT_TOLERANCE ? nearest : ceil(q);
    if (r > (double)TIERS_REFILL_MAX)
        return -1;
    return (long)r;
}

void tiers_tier_args(struct tier *t)
{
    /* %.17g reads back as the same double; 32 bytes hold any double and any long. */
    snprintf(t->rate_arg, sizeof t->rate_arg, "%.17g", t->rate);
    snprintf(t->capacity_arg, sizeof t->capacity_arg, "%ld", t->capacity);
    snprintf(t->ttl_arg, sizeof t->ttl_arg, "%ld", t->ttl);
}

/* Sets ttl and refill_seconds from capacity and rate. Returns 0, or -1 with a reason. */
static int tiers_tier_timing(struct tier *t, char *err, size_t errlen)
{
    long refill = tiers_refill_seconds(t->capacity, t->rate);

    if (refill < 0) {
        snprintf(err, errlen,
                 "tier \"%s\": burst_capacity / tokens_per_second must be at most %ld seconds",
                 t->name, TIERS_REFILL_MAX);
        return -1;
    }
    t->refill_seconds = refill;
    t->ttl = refill + 1;
    tiers_tier_args(t);
    return 0;
}

static int tiers_tier_rate(const char *name, json_t *v, double *out, char *err, size_t errlen)
{
    double rate = json_is_number(v) ? json_number_value(v) : NAN;

    if (!isfinite(rate) || rate <= 0 || rate > TIERS_RATE_MAX) {
        snprintf(err, errlen,
                 "tier \"%s\": tokens_per_second must be a number above 0 and at most 1000000",
                 name);
        return -1;
    }
    *out = rate;
    return 0;
}

static int tiers_tier_capacity(const char *name, json_t *v, long *out, char *err, size_t errlen)
{
    double d;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i >= 1 && i <= TIERS_CAPACITY_MAX) {
            *out = (long)i;
            return 0;
        }
    } else if (json_is_real(v)) {
        d = json_real_value(v);
        if (isfinite(d) && d == floor(d) && d >= 1 && d <= (double)TIERS_CAPACITY_MAX) {
            *out = (long)d;
            return 0;
        }
    }
    snprintf(err, errlen, "tier \"%s\": burst_capacity must be a whole number from 1 to %ld", name,
             TIERS_CAPACITY_MAX);
    return -1;
}

/* Fills *t from one tier object. Returns 0, or -1 with a reason. */
static int tiers_parse_tier(const char *name, json_t *obj, struct tier *t, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    bool have_rate = false, have_capacity = false;

    if (!tiers_name_valid(name)) {
        char shown[TIERS_ERR_NAME_MAX + 4];
        tiers_sanitize(name, TIERS_ERR_NAME_MAX, shown, sizeof shown);
        snprintf(err, errlen, "tier \"%s\": name must be 1 to %d characters of [A-Za-z0-9_.-]",
                 shown, TIERS_TIER_NAME_MAX);
        return -1;
    }
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, strlen(name) + 1);
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "tier \"%s\": must be an object", name);
        return -1;
    }
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "tokens_per_second") == 0) {
            if (tiers_tier_rate(name, v, &t->rate, err, errlen) < 0)
                return -1;
            have_rate = true;
        } else if (strcmp(key, "burst_capacity") == 0) {
            if (tiers_tier_capacity(name, v, &t->capacity, err, errlen) < 0)
                return -1;
            have_capacity = true;
        } else if (strcmp(key, "description") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "tier \"%s\": description must be a string", name);
                return -1;
            }
        } else {
            char shown[TIERS_ERR_NAME_MAX + 4];
            tiers_sanitize(key, TIERS_ERR_NAME_MAX, shown, sizeof shown);
            snprintf(err, errlen,
                     "tier \"%s\": unknown key \"%s\" (expected tokens_per_second, "
                     "burst_capacity, description)",
                     name, shown);
            return -1;
        }
    }
    if (!have_rate || !have_capacity) {
        snprintf(err, errlen, "tier \"%s\": %s is required", name,
                 have_rate ? "burst_capacity" : "tokens_per_second");
        return -1;
    }
    return tiers_tier_timing(t, err, errlen);
}

/* Checks the five tiers the gateway picks exist, then applies the development rate. */
static int tiers_finish(struct tiers *l, bool development, char *err, size_t errlen)
{
    static const char *const required[] = {TIER_AI_AUTH, TIER_AI_ANON, TIER_API_AUTH, TIER_API_ANON,
                                           TIER_AUTH};

    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (tiers_find(l, required[i]) == NULL) {
            snprintf(err, errlen, "tier \"%s\" is required", required[i]);
            return -1;
        }
    }
    if (development) {
        struct tier *t = (struct tier *)tiers_find(l, TIER_AI_AUTH);
        t->rate = TIERS_DEV_AI_AUTH_RATE;
        if (tiers_tier_timing(t, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* A whole number from 1 to max, for key of the "login_failures" object. */
static int tiers_login_whole(const char *key, json_t *v, long max, long *out, char *err,
                             size_t errlen)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max) {
        snprintf(err, errlen, "login_failures: %s must be a whole number from 1 to %ld", key, max);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

/* The failed log-in policy as a tier: max tokens, refilled in window seconds. */
static void tiers_login_tier(struct tier *t, long max, long window)
{
    memset(t, 0, sizeof *t);
    memcpy(t->name, TIER_LOGIN_FAILURES, sizeof TIER_LOGIN_FAILURES);
    t->capacity = max;
    t->rate = (double)max / (double)window;
    t->refill_seconds = window;
    t->ttl = window + 1;
    tiers_tier_args(t);
    snprintf(t->rate_text, sizeof t->rate_text, "%ld failed login%s per %ld second%s", max,
             max == 1 ? "" : "s", window, window == 1 ? "" : "s");
}

/* The optional "login_failures" object (NULL: the defaults). 0, or -1 with a reason. */
static int tiers_parse_login(json_t *obj, struct tier *t, char *err, size_t errlen)
{
    long max = TIERS_LOGIN_MAX_FAILURES, window = TIERS_LOGIN_WINDOW_S;
    const char *key;
    json_t *v;

    if (obj != NULL && !json_is_object(obj)) {
        snprintf(err, errlen, "login_failures must be an object");
        return -1;
    }
    json_object_foreach(obj, key, v)
    {
        int rc = 0;
        if (strcmp(key, "max_failures") == 0) {
            rc = tiers_login_whole(key, v, TIERS_CAPACITY_MAX, &max, err, errlen);
        } else if (strcmp(key, "window_seconds") == 0) {
            rc = tiers_login_whole(key, v, TIERS_REFILL_MAX, &window, err, errlen);
        } else if (strcmp(key, "description") == 0) {
            if (!json_is_string(v)) {
                snprintf(err, errlen, "login_failures: description must be a string");
                rc = -1;
            }
        } else {
            char shown[TIERS_ERR_NAME_MAX + 4];
            tiers_sanitize(key, TIERS_ERR_NAME_MAX, shown, sizeof shown);
            snprintf(err, errlen,
                     "login_failures: unknown key \"%s\" (expected max_failures, "
                     "window_seconds, description)",
                     shown);
            rc = -1;
        }
        if (rc != 0)
            return -1;
    }
    tiers_login_tier(t, max, window);
    return 0;
}

/* The parse proper, writing the reason without a trailing context. */
static int tiers_parse_doc(json_t *root, bool development, struct tiers *l, char *err,
                           size_t errlen)
{
    const char *name;
    json_t *tier;
    json_t *tiers = json_is_object(root) ? json_object_get(root, "tiers") : NULL;

    if (!json_is_object(root)) {
        snprintf(err, errlen, "top level must be an object {\"tiers\": {...}}");
        return -1;
    }
    if (tiers == NULL) {
        snprintf(err, errlen, "\"tiers\" is required");
        return -1;
    }
    if (!json_is_object(tiers)) {
        snprintf(err, errlen, "\"tiers\" must be an object of tier name to tier");
        return -1;
    }
    if (json_object_size(tiers) > TIERS_MAX) {
        snprintf(err, errlen, "at most %d tiers", TIERS_MAX);
        return -1;
    }
    json_object_foreach(tiers, name, tier)
    {
        if (tiers_parse_tier(name, tier, &l->tiers[l->count], err, errlen) < 0)
            return -1;
        l->count++;
    }
    if (tiers_parse_login(json_object_get(root, TIER_LOGIN_FAILURES), &l->login_failures, err,
                          errlen) < 0)
        return -1;
    return tiers_finish(l, development, err, errlen);
}

int tiers_parse(const char *json, size_t len, bool development, struct tiers *out, char *err,
                size_t errlen)
{
    json_error_t jerr;
    struct tiers *l = NULL;
    json_t *root = NULL;
    int rc = -1;

    if (json == NULL) {
        snprintf(err, errlen, "no document");
        goto out;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        char text[JSON_ERROR_TEXT_LENGTH + 4];
        tiers_sanitize(jerr.text, JSON_ERROR_TEXT_LENGTH, text, sizeof text);
        snprintf(err, errlen, "line %d, column %d: %s", jerr.line, jerr.column, text);
        goto out;
    }
    l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    if (tiers_parse_doc(root, development, l, err, errlen) < 0)
        goto out;
    *out = *l;
    rc = 0;
out:
    free(l);
    json_decref(root);
    return rc;
}

/* Reads at most TIERS_FILE_MAX bytes of a regular file. Returns a new buffer or NULL. */
static char *tiers_read(const char *path, size_t *len, char *err, size_t errlen)
{
    char ebuf[128];
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        snprintf(err, errlen, "cannot open: %s", strerror_r(errno, ebuf, sizeof ebuf));
        goto fail;
    }
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat: %s", strerror_r(errno, ebuf, sizeof ebuf));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        goto fail;
    }
    if (st.st_size > TIERS_FILE_MAX) {
        snprintf(err, errlen, "larger than %d bytes", TIERS_FILE_MAX);
        goto fail;
    }
    buf = malloc(TIERS_FILE_MAX + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (;;) {
        ssize_t n = read(fd, buf + got, TIERS_FILE_MAX + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "cannot read: %s", strerror_r(errno, ebuf, sizeof ebuf));
            goto fail;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > TIERS_FILE_MAX) {
            snprintf(err, errlen, "larger than %d bytes", TIERS_FILE_MAX);
            goto fail;
        }
    }
    close(fd);
    *len = got;
    return buf;
fail:
    free(buf);
    if (fd >= 0)
        close(fd);
    return NULL;
}

int tiers_load(const char *path, bool development, struct tiers *out, char *err, size_t errlen)
{
    char reason[TIERS_REASON_MAX];
    char shown[TIERS_ERR_PATH_MAX + 4];
    size_t len = 0;
    char *buf = NULL;
    int rc = -1;

    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "limits file: no path given");
        return -1;
    }
    buf = tiers_read(path, &len, reason, sizeof reason);
    if (buf != NULL)
        rc = tiers_parse(buf, len, development, out, reason, sizeof reason);
    if (rc < 0) {
        tiers_sanitize(path, TIERS_ERR_PATH_MAX, shown, sizeof shown);
        snprintf(err, errlen, "%s: %s", shown, reason);
    }
    free(buf);
    return rc;
}

const struct tier *tiers_find(const struct tiers *limits, const char *name)
{
    if (limits == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < limits->count && i < TIERS_MAX; i++) {
        if (strcmp(limits->tiers[i].name, name) == 0)
            return &limits->tiers[i];
    }
    return NULL;
}
