/*
 * ratelimit: charges a request to its token bucket in Redis (SPEC 5.3) and turns
 * the decision into the RateLimit headers (5.4) and the 429 answers (5.5).
 * See include/ratelimit.h for the contract.
 */
#include "ratelimit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define KEY_PREFIX "rate_limit:"
/* "rate_limit:" + tier + ":" + identifier + NUL */
#define KEY_MAX (sizeof KEY_PREFIX + TIERS_TIER_NAME_MAX + 1 + RATELIMIT_IDENTIFIER_MAX)
#define REPLY_NUMBER_MAX 63 /* bytes of a number in the script's reply */
#define MESSAGE_MAX 96      /* "Too many requests. Please try again in N seconds." */
#define RATE_FIELD_MAX (RATELIMIT_RATE_TEXT_MAX + TIERS_RATE_TEXT_MAX)
#define LOG_TEXT_MAX 120 /* bytes of a Redis error copied into a debug line */

/*
 * Durations are computed in floating point, so a value that is really whole may
 * come out as 1.0000000001 or 0.99999999997. Rounding up treats anything within
 * ROUND_SLACK_ABS (or a few ulps, for large values) above a whole number as that
 * number: 1.0000000001 gives 1, not 2, while 2.5 still gives 3. The slack is far
 * below the microsecond resolution of Redis TIME, so no real answer changes.
 */
#define ROUND_SLACK_ABS 1e-9
#define ROUND_SLACK_REL 1e-15

/* Any duration or instant is capped here (about 31700 years), so it fits a long. */
#define SECONDS_CAP 1e12
_Static_assert(sizeof(long) >= 8, "long must hold SECONDS_CAP twice over");

#define TIME_SECONDS_MAX 1000000000000LL /* sane bound on Redis TIME seconds */
#define TIME_MICROS_MAX 999999LL

/* x seconds rounded up to a whole number, >= 0, with the slack above. */
static long seconds_up(double x)
{
    if (!(x > 0)) /* zero, negative or NaN */
        return 0;
    if (x >= SECONDS_CAP)
        return (long)SECONDS_CAP;
    double slack = fmax(ROUND_SLACK_ABS, x * ROUND_SLACK_REL);
    double c = ceil(x - slack);
    return c > 0 ? (long)c : 0;
}

/* Seconds for need tokens to come back at rate, capped; rate <= 0 gives the cap. */
static double seconds_for(double need, double rate)
{
    if (!(need > 0))
        return 0;
    double s = rate > 0 ? need / rate : SECONDS_CAP;
    return s < SECONDS_CAP ? s : SECONDS_CAP; /* also turns NaN into the cap */
}

void ratelimit_verdict_fill(struct ratelimit_verdict *v, const struct tier *tier, bool allowed,
                            double tokens, double now)
{
    if (v == NULL)
        return;
    memset(v, 0, sizeof *v);
    v->tier = tier;
    v->allowed = allowed;
    if (tier == NULL)
        return;

    /*
     * The script never leaves fewer than 0 tokens nor more than the capacity, so
     * anything outside is float noise (-1e-17) or a tier whose capacity shrank
     * since the bucket was written: clamp. NaN counts as empty.
     */
    double capacity = tier->capacity > 0 ? (double)tier->capacity : 0;
    if (!(tokens > 0))
        tokens = 0;
    if (tokens > capacity)
        tokens = capacity;
    if (!(now > 0))
        now = 0;
    if (now > SECONDS_CAP)
        now = SECONDS_CAP;

    v->tokens = tokens;
    /* No slack here: the script admits only when tokens >= 1 exactly, and the
     * header must not promise a request it would refuse. */
    v->remaining = (long)floor(tokens);

    double to_full = seconds_for(capacity - tokens, tier->rate);
    v->reset_after = seconds_up(to_full);

    /*
     * reset_at = ceil(now + to_full). A Unix time of 1.7e9 holds only about 7
     * decimal places, so adding to it directly would put the noise of now into
     * the rounding: keep the whole seconds apart and round the fraction to the
     * microsecond, the resolution of Redis TIME.
     */
    double whole = floor(now);
    double frac = round((now - whole) * 1e6) / 1e6;
    v->reset_at = (long)whole + seconds_up(frac + to_full);

    if (!allowed) {
        v->retry_after = seconds_up(seconds_for(1 - tokens, tier->rate));
        if (v->retry_after < 1)
            v->retry_after = 1;
        /* A refused bucket is not full: t >= 1, and Retry-After never later than t
         * (SPEC 5.4). Both can only bind through rounding noise. */
        if (v->reset_after < 1)
            v->reset_after = 1;
        if (v->retry_after > v->reset_after)
            v->retry_after = v->reset_after;
        if (v->reset_at < (long)whole + 1)
            v->reset_at = (long)whole + 1;
    }
}

/* Copies printable ASCII of s (n bytes) into buf, '?' for anything else, for logs. */
static void log_text(char *buf, size_t len, const char *s, size_t n)
{
    size_t i = 0;
    for (; s != NULL && i < n && i + 1 < len; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (len > 0)
        buf[i] = '\0';
}

static void log_bad_reply(const struct tier *tier, const char *reason, const redisReply *r)
{
    if (!log_enabled(LOG_DEBUG))
        return;
    json_t *fields = json_pack("{s:s, s:s, s:i}", "tier", tier->name, "reason", reason,
                               "reply_type", r != NULL ? r->type : 0);
    if (fields != NULL && r != NULL && r->type == REDIS_REPLY_ERROR) {
        char text[LOG_TEXT_MAX + 1];
        log_text(text, sizeof text, r->str, r->len);
        json_object_set_new(fields, "error", json_string(text));
    }
    log_event(LOG_DEBUG, "ratelimit_redis_error", fields);
}

/* A whole number in [0, max] from an integer reply or a string of digits. */
static bool reply_whole(const redisReply *r, long long max, long long *out)
{
    if (r == NULL)
        return false;
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0 || r->integer > max)
            return false;
        *out = r->integer;
        return true;
    }
    if (r->type != REDIS_REPLY_STRING || r->str == NULL || r->len == 0 ||
        r->len > REPLY_NUMBER_MAX || strlen(r->str) != r->len)
        return false;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return false;
    }
    char *end = NULL;
    errno = 0;
    long long n = strtoll(r->str, &end, 10);
    if (errno != 0 || end != r->str + r->len || n > max)
        return false;
    *out = n;
    return true;
}

/* A finite double from a string reply holding nothing else. */
static bool reply_double(const redisReply *r, double *out)
{
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->str == NULL || r->len == 0 ||
        r->len > REPLY_NUMBER_MAX || strlen(r->str) != r->len)
        return false;
    char c = r->str[0];
    if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.'))
        return false; /* strtod would skip spaces and read "inf", "nan" */
    char *end = NULL;
    double d = strtod(r->str, &end);
    if (end != r->str + r->len || !isfinite(d))
        return false;
    *out = d;
    return true;
}

int ratelimit_reply_verdict(const redisReply *reply, const struct tier *tier,
                            struct ratelimit_verdict *v)
{
    double tokens;
    long long secs, micros;

    if (reply == NULL || tier == NULL || v == NULL || reply->type != REDIS_REPLY_ARRAY ||
        reply->elements != 4 || reply->element == NULL)
        return -1;
    const redisReply *allowed = reply->element[0];
    if (allowed == NULL || allowed->type != REDIS_REPLY_INTEGER ||
        (allowed->integer != 0 && allowed->integer != 1))
        return -1;
    if (!reply_double(reply->element[1], &tokens) ||
        !reply_whole(reply->element[2], TIME_SECONDS_MAX, &secs) ||
        !reply_whole(reply->element[3], TIME_MICROS_MAX, &micros))
        return -1;
    ratelimit_verdict_fill(v, tier, allowed->integer == 1, tokens,
                           (double)secs + (double)micros / 1e6);
    return 0;
}

static bool reply_is_noscript(const redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR && r->str != NULL && r->len >= 8 &&
           memcmp(r->str, "NOSCRIPT", 8) == 0;
}

/* SCRIPT LOAD of the token bucket script; stores its SHA in rc. */
static int load_script(struct rconn *rc, const struct tier *tier)
{
    size_t src_len = 0;
    const char *src = rconn_script(&src_len);
    const char *argv[] = {"SCRIPT", "LOAD", src};
    const size_t lens[] = {6, 4, src_len};
    redisReply *r = NULL;
    int ret = -1;

    if (src == NULL || src_len == 0)
        goto out;
    r = rconn_command(rc, 3, argv, lens);
    if (r == NULL)
        goto out; /* rconn recorded the failure */
    if (r->type != REDIS_REPLY_STRING || r->len != RCONN_SHA_LEN || r->str == NULL ||
        strspn(r->str, "0123456789abcdef") != RCONN_SHA_LEN) {
        if (r->type != REDIS_REPLY_ERROR)
            metrics_redis_error(METRICS_REDIS_BAD_REPLY);
        log_bad_reply(tier, "script load", r);
        goto out;
    }
    memcpy(rc->script_sha, r->str, RCONN_SHA_LEN);
    rc->script_sha[RCONN_SHA_LEN] = '\0';
    ret = 0;
out:
    freeReplyObject(r);
    return ret;
}

int ratelimit_charge(struct rconn *rc, const struct tier *tier, const char *identifier,
                     struct ratelimit_verdict *v)
{
    return ratelimit_charge_with(rc, tier, identifier, NULL, NULL, v);
}

/* The EVALSHA's key for (tier, identifier). 0, or -1 when too long or the tier has no
 * arguments printed (tiers_tier_args). */
static int charge_key(const struct tier *tier, const char *identifier, char key[KEY_MAX])
{
    if (strnlen(identifier, RATELIMIT_IDENTIFIER_MAX + 1) > RATELIMIT_IDENTIFIER_MAX ||
        strnlen(tier->name, sizeof tier->name) >= sizeof tier->name || tier->rate_arg[0] == '\0' ||
        tier->capacity_arg[0] == '\0' || tier->ttl_arg[0] == '\0')
        return -1;
    int n = snprintf(key, KEY_MAX, KEY_PREFIX "%s:%s", tier->name, identifier);
    return n < 0 || (size_t)n >= KEY_MAX ? -1 : 0;
}

/*
 * Sends the EVALSHA (cmds[0]) and the companion, if any (n == 2), and returns the
 * script's reply (NULL when Redis did not answer): after NOSCRIPT the script is loaded
 * and the EVALSHA alone sent once more. *also_reply: the companion's reply or NULL.
 */
static redisReply *charge_send(struct rconn *rc, const struct tier *tier, struct rconn_cmd *cmds,
                               size_t n, redisReply **also_reply)
{
    redisReply *replies[2] = {NULL, NULL}, *r = NULL;

    for (int attempt = 0; attempt < 2; attempt++) {
        if (rc->script_sha[0] == '\0' && load_script(rc, tier) != 0)
            return NULL;
        size_t got = rconn_pipeline(rc, n, cmds, replies);
        if (got == 0)
            return NULL; /* rconn recorded the failure */
        r = replies[0];  /* the decision stands even if the companion's reply was lost */
        if (n == 2) {    /* the companion goes once, in the first round trip */
            *also_reply = got == 2 ? replies[1] : NULL;
            n = 1;
        }
        if (!reply_is_noscript(r) || attempt == 1)
            break;
        /* Redis restarted or SCRIPT FLUSH: load it again and retry once. */
        rc->script_sha[0] = '\0';
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

int ratelimit_charge_with(struct rconn *rc, const struct tier *tier, const char *identifier,
                          const struct rconn_cmd *also, redisReply **also_reply,
                          struct ratelimit_verdict *v)
{
    char key[KEY_MAX];

    if (also_reply != NULL)
        *also_reply = NULL;
    if (rc == NULL || tier == NULL || identifier == NULL || v == NULL ||
        (also != NULL && also_reply == NULL) || charge_key(tier, identifier, key) != 0)
        return -1;
    /* Client data travels only as arguments, never through a format string. */
    const char *argv[] = {"EVALSHA",      rc->script_sha,     "1", key,
                          tier->rate_arg, tier->capacity_arg, "1", tier->ttl_arg};
    struct rconn_cmd cmds[2] = {{(int)(sizeof argv / sizeof argv[0]), argv, NULL}};
    if (also != NULL)
        cmds[1] = *also;
    redisReply *r = charge_send(rc, tier, cmds, also != NULL ? 2 : 1, also_reply);
    if (r == NULL)
        return -1;
    int ret = ratelimit_reply_verdict(r, tier, v);
    if (ret != 0) {
        if (r->type != REDIS_REPLY_ERROR) /* rconn counted the error replies */
            metrics_redis_error(METRICS_REDIS_BAD_REPLY);
        log_bad_reply(tier, "unexpected reply", r);
    }
    freeReplyObject(r);
    return ret;
}

int ratelimit_reset(struct rconn *rc, const struct tier *tier, const char *identifier)
{
    char key[KEY_MAX];

    if (rc == NULL || tier == NULL || identifier == NULL)
        return -1;
    int n = snprintf(key, sizeof key, KEY_PREFIX "%s:%s", tier->name, identifier);
    if (n < 0 || (size_t)n >= sizeof key)
        return -1;
    const char *argv[] = {"DEL", key};
    redisReply *r = rconn_command(rc, 2, argv, NULL);
    int ret = r != NULL && r->type == REDIS_REPLY_INTEGER ? 0 : -1;
    freeReplyObject(r);
    return ret;
}

/* A Structured Fields sf-string that needs no escaping: printable ASCII, no '"' or '\'. */
static bool sf_string_ok(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < 0x20 || *s > 0x7e || *s == '"' || *s == '\\')
            return false;
    }
    return true;
}

int ratelimit_headers(const struct ratelimit_verdict *v, char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return -1;
    buf[0] = '\0';
    if (v == NULL || v->tier == NULL || !sf_string_ok(v->tier->name))
        return -1;
    const struct tier *t = v->tier;
    int n = snprintf(buf, len,
                     "RateLimit-Limit: %ld\r\n"
                     "RateLimit-Remaining: %ld\r\n"
                     "RateLimit-Reset: %ld\r\n"
                     "RateLimit-Policy: \"%s\";q=%ld;w=%ld\r\n"
                     "RateLimit: \"%s\";r=%ld;t=%ld\r\n",
                     t->capacity, v->remaining, v->reset_at, t->name, t->capacity,
                     t->refill_seconds, t->name, v->remaining, v->reset_after);
    if (n < 0 || (size_t)n >= len)
        goto too_small;
    if (!v->allowed) {
        int m = snprintf(buf + n, len - (size_t)n, "Retry-After: %ld\r\n", v->retry_after);
        if (m < 0 || (size_t)m >= len - (size_t)n)
            goto too_small;
        n += m;
    }
    return n;
too_small:
    buf[0] = '\0';
    return -1;
}

/* Retry-After as the answers print it: at least 1 even for a verdict that allowed. */
static long answer_retry_after(const struct ratelimit_verdict *v)
{
    return v->retry_after >= 1 ? v->retry_after : 1;
}

/* "Too many requests. Please try again in N seconds." ("1 second" for one). */
static int answer_message(const struct ratelimit_verdict *v, char *buf, size_t len)
{
    long n = answer_retry_after(v);
    int w = snprintf(buf, len, "Too many requests. Please try again in %ld second%s.", n,
                     n == 1 ? "" : "s");
    return (w < 0 || (size_t)w >= len) ? -1 : 0;
}

json_t *ratelimit_body(const struct ratelimit_verdict *v)
{
    char message[MESSAGE_MAX], rate[RATELIMIT_RATE_TEXT_MAX], rate_field[RATE_FIELD_MAX];
    json_t *body = NULL, *detail = NULL;

    if (v == NULL || v->tier == NULL || answer_message(v, message, sizeof message) != 0)
        return NULL;
    ratelimit_format_rate(v->tier->rate, rate, sizeof rate);
    int n = v->tier->rate_text[0] != '\0'
                ? snprintf(rate_field, sizeof rate_field, "%s", v->tier->rate_text)
                : snprintf(rate_field, sizeof rate_field, "%s requests/second", rate);
    if (rate[0] == '\0' || n < 0 || (size_t)n >= sizeof rate_field)
        return NULL;

    /* Clients of the FastAPI backend read ["detail"]["message"]: same five fields. */
    const char *fmt = "{s:s, s:s, s:I, s:I, s:s}";
    json_int_t retry = answer_retry_after(v), limit = v->tier->capacity;
    detail = json_pack(fmt, "error", "Rate limit exceeded", "message", message, "retry_after",
                       retry, "limit", limit, "rate", rate_field);
    body = json_pack(fmt, "error", "Rate limit exceeded", "message", message, "retry_after", retry,
                     "limit", limit, "rate", rate_field);
    if (detail == NULL || body == NULL)
        goto fail;
    int rc = json_object_set_new(body, "detail", detail);
    detail = NULL; /* stolen, even on failure */
    if (rc != 0)
        goto fail;
    return body;
fail:
    json_decref(detail);
    json_decref(body);
    return NULL;
}

json_t *ratelimit_problem(const struct ratelimit_verdict *v)
{
    char message[MESSAGE_MAX];

    if (v == NULL || v->tier == NULL || answer_message(v, message, sizeof message) != 0)
        return NULL;
    return json_pack("{s:s, s:s, s:i, s:s, s:[s], s:I}", "type",
                     "https://iana.org/assignments/http-problem-types#quota-exceeded", "title",
                     "Too Many Requests", "status", 429, "detail", message, "violated-policies",
                     v->tier->name, "retry_after", (json_int_t)answer_retry_after(v));
}

void ratelimit_refuse(const struct ratelimit_verdict *v, bool problem, struct response *resp)
{
    if (problem) {
        response_json(resp, 429, ratelimit_problem(v));
        resp->content_type = RATELIMIT_PROBLEM_TYPE;
    } else {
        response_json(resp, 429, ratelimit_body(v));
    }
    ratelimit_refuse_headers(v, resp);
}

void ratelimit_refuse_headers(const struct ratelimit_verdict *v, struct response *resp)
{
    char lines[RATELIMIT_HEADERS_MAX];

    int n = ratelimit_headers(v, lines, sizeof lines);
    if (n > 0 && response_headers_raw(resp, lines, (size_t)n) == 0)
        resp->ratelimit_done = true;
    /* Every 429 of a bucket is built here (the gateway's tiers and the per-account log-in
     * limit alike), so the histogram sees each Retry-After a client was given. */
    metrics_retry_after(answer_retry_after(v));
}

void ratelimit_format_rate(double rate, char *buf, size_t len)
{
    char sci[RATELIMIT_RATE_TEXT_MAX];
    int digits = 17, exp10 = 0, n;

    if (buf == NULL || len == 0)
        return;
    buf[0] = '\0';
    if (!isfinite(rate)) {
        n = snprintf(buf, len, "%g", rate); /* "nan", "inf": not a valid tier anyway */
        goto check;
    }
    /* The fewest significant digits that read back as the same double; 17 always do. */
    for (int p = 1; p <= 17; p++) {
        n = snprintf(sci, sizeof sci, "%.*e", p - 1, rate);
        if (n < 0 || (size_t)n >= sizeof sci)
            return;
        if (strtod(sci, NULL) == rate) {
            digits = p;
            break;
        }
    }
    n = snprintf(sci, sizeof sci, "%.*e", digits - 1, rate);
    if (n < 0 || (size_t)n >= sizeof sci)
        return;
    const char *e = strchr(sci, 'e');
    if (e == NULL)
        return;
    char *end = NULL;
    errno = 0;
    long x = strtol(e + 1, &end, 10);
    if (errno != 0 || *end != '\0' || x < -400 || x > 400)
        return;
    exp10 = (int)x;
    if (exp10 < -6 || exp10 >= 21) {
        n = snprintf(buf, len, "%.*g", digits, rate); /* 1e-07, 1e+21 */
    } else {
        /* Plain notation, rounded at the same digit as the %e form above. */
        int decimals = digits - 1 - exp10;
        n = snprintf(buf, len, "%.*f", decimals > 0 ? decimals : 0, rate);
    }
check:
    if (n < 0 || (size_t)n >= len)
        buf[0] = '\0';
}
