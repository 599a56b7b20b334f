/*
 * ideal: the benchmark's second reference (make bench). hop plus the least work a
 * correct gateway must do for GET /me:
 *
 * - the bearer token checked as fcgi/identity.c checks it, with libjwt 1.10: HS256 with
 *   JWT_SECRET, the algorithm pinned (libjwt verifies with whatever "alg" the token
 *   names, so an HS512 or "none" token is refused after jwt_decode by jwt_get_alg),
 *   "exp" later than now, "iat" not in the future, "iss" the gateway's, "sub" made of
 *   [A-Za-z0-9_-];
 * - one EVALSHA of the gateway's own lua/token_bucket.lua (linked in from build/lua,
 *   loaded with SCRIPT LOAD once per connection, again after NOSCRIPT) on the gateway's
 *   key rate_limit:api_authenticated:user:<sub>, with the api_authenticated tier of
 *   RATE_LIMITS_FILE and the gateway's arguments (rate "%.17g", burst, cost 1, TTL
 *   ceil(burst / rate) + 1), through hiredis with the gateway's 500 ms timeouts, one
 *   connection per request thread;
 * - a 200 with a JSON like /me's ({"id","email","created_at"}, the id from the token)
 *   and the five RateLimit headers, or a 429 with Retry-After and a short JSON body.
 *
 * What it leaves out, and the gateway does: the user's record (/me's HMGET), the route
 * table, X-Forwarded-For, the JSON header check of identity.c, jansson for the answers,
 * logs, fail modes. A missing or bad token is a 401 here, charged to nobody; Redis
 * unreachable is a 503. Reads JWT_SECRET, REDIS_URL (redis://host:port[/0] only),
 * RATE_LIMITS_FILE and GATEWAY_THREADS, as copied by lighttpd.conf.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <jwt.h>

#include "pool.h"

#define IDEAL_TIER "api_authenticated"
#define IDEAL_ISSUER "story-gateway" /* IDENTITY_ISSUER */
#define IDEAL_SECRET_MIN 32          /* IDENTITY_SECRET_MIN */
#define IDEAL_SECRET_MAX 512         /* CONFIG_SECRET_MAX */
#define IDEAL_SUB_MAX 64             /* IDENTITY_SUB_MAX */
#define IDEAL_TOKEN_MAX 4096         /* IDENTITY_TOKEN_MAX */
#define IDEAL_CLOCK_SKEW 60          /* IDENTITY_CLOCK_SKEW */
#define IDEAL_TIMEOUT_MS 500         /* RCONN_CONNECT/COMMAND_TIMEOUT_MS */
#define IDEAL_SHA_LEN 40
#define IDEAL_NUMBER_MAX 32
#define IDEAL_KEY_MAX 256
#define IDEAL_ANSWER_MAX 1024

/* The gateway's Lua script, linked in from build/lua/scripts.o. */
extern const char _binary_lua_token_bucket_lua_start[];
extern const char _binary_lua_token_bucket_lua_end[];

/* Read-only once the threads start. */
static struct {
    unsigned char secret[IDEAL_SECRET_MAX];
    size_t secret_len;
    char host[256];
    int port;
    double rate;
    long capacity, ttl;
    char rate_arg[IDEAL_NUMBER_MAX], capacity_arg[IDEAL_NUMBER_MAX], ttl_arg[IDEAL_NUMBER_MAX];
} ideal;

/* A request thread's Redis connection and its script SHA. */
struct ideal_thread {
    redisContext *ctx;
    char sha[IDEAL_SHA_LEN + 1];
};

struct ideal_verdict {
    bool allowed;
    double tokens, now;
};

/* ---------------------------------------------------------------- configuration */

/* REDIS_URL: redis://host:port with an optional /0; the default of the gateway. */
static int ideal_redis_url(void)
{
    const char *v = getenv("REDIS_URL");
    char db[8] = "";

    if (v == NULL || v[0] == '\0')
        v = "redis://127.0.0.1:6379/0";
    if (sscanf(v, "redis://%255[^:/]:%d%7s", ideal.host, &ideal.port, db) < 2 || ideal.port < 1 ||
        ideal.port > 65535 || (db[0] != '\0' && strcmp(db, "/0") != 0)) {
        fprintf(stderr, "ideal: REDIS_URL must be redis://host:port[/0]\n");
        return -1;
    }
    return 0;
}

/* ceil(capacity / rate) with an exact quotient kept exact, as tiers.c computes it. */
static long ideal_refill_seconds(long capacity, double rate)
{
    double q = (double)capacity / rate;
    double nearest = nearbyint(q);

    return (long)(fabs(q - nearest) <= q * 1e-12 ? nearest : ceil(q));
}

/* The api_authenticated tier of RATE_LIMITS_FILE, and the EVALSHA arguments from it. */
static int ideal_tier(void)
{
    const char *path = getenv("RATE_LIMITS_FILE");
    json_error_t jerr;
    json_t *root = path != NULL ? json_load_file(path, 0, &jerr) : NULL;
    json_t *tier = json_object_get(json_object_get(root, "tiers"), IDEAL_TIER);
    json_t *rate = json_object_get(tier, "tokens_per_second");
    json_t *burst = json_object_get(tier, "burst_capacity");
    int rc = -1;

    if (!json_is_number(rate) || !json_is_integer(burst) || json_number_value(rate) <= 0 ||
        json_integer_value(burst) < 1) {
        fprintf(stderr, "ideal: RATE_LIMITS_FILE has no usable tiers." IDEAL_TIER "\n");
        goto out;
    }
    ideal.rate = json_number_value(rate);
    ideal.capacity = (long)json_integer_value(burst);
    ideal.ttl = ideal_refill_seconds(ideal.capacity, ideal.rate) + 1;
    snprintf(ideal.rate_arg, sizeof ideal.rate_arg, "%.17g", ideal.rate);
    snprintf(ideal.capacity_arg, sizeof ideal.capacity_arg, "%ld", ideal.capacity);
    snprintf(ideal.ttl_arg, sizeof ideal.ttl_arg, "%ld", ideal.ttl);
    rc = 0;
out:
    json_decref(root);
    return rc;
}

static int ideal_configure(void)
{
    const char *secret = getenv("JWT_SECRET");
    size_t len = secret != NULL ? strlen(secret) : 0;

    if (len < IDEAL_SECRET_MIN || len > IDEAL_SECRET_MAX) {
        fprintf(stderr, "ideal: JWT_SECRET must have %d to %d bytes\n", IDEAL_SECRET_MIN,
                IDEAL_SECRET_MAX);
        return -1;
    }
    memcpy(ideal.secret, secret, len);
    ideal.secret_len = len;
    return ideal_redis_url() == 0 && ideal_tier() == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------ token */

static bool ideal_sub_ok(const char *sub)
{
    size_t len = sub != NULL ? strnlen(sub, IDEAL_SUB_MAX + 1) : 0;

    if (len == 0 || len > IDEAL_SUB_MAX)
        return false;
    return strspn(sub, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == len;
}

/* "Bearer <token>" verified: copies sub into out and returns true. */
static bool ideal_user(const char *authorization, char out[IDEAL_SUB_MAX + 1])
{
    jwt_t *jwt = NULL;
    bool ok = false;

    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *token = authorization + 7;
    if (strnlen(token, IDEAL_TOKEN_MAX + 1) > IDEAL_TOKEN_MAX ||
        jwt_decode(&jwt, token, ideal.secret, (int)ideal.secret_len) != 0 || jwt == NULL)
        goto out;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
        goto out;
    long now = (long)time(NULL);
    errno = 0;
    long exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0 || exp <= now)
        goto out;
    errno = 0;
    long iat = jwt_get_grant_int(jwt, "iat");
    if (errno != 0 || iat > now + IDEAL_CLOCK_SKEW)
        goto out;
    const char *iss = jwt_get_grant(jwt, "iss"), *sub = jwt_get_grant(jwt, "sub");
    if (iss == NULL || strcmp(iss, IDEAL_ISSUER) != 0 || !ideal_sub_ok(sub))
        goto out;
    memcpy(out, sub, strlen(sub) + 1);
    ok = true;
out:
    jwt_free(jwt);
    return ok;
}

/* ------------------------------------------------------------------------ redis */

static void ideal_drop(struct ideal_thread *t)
{
    if (t->ctx != NULL)
        redisFree(t->ctx);
    t->ctx = NULL;
    t->sha[0] = '\0';
}

/* Connects (500 ms timeouts) and loads the script when the thread has no connection. */
static int ideal_connect(struct ideal_thread *t)
{
    const struct timeval tv = {0, IDEAL_TIMEOUT_MS * 1000};
    const char *src = _binary_lua_token_bucket_lua_start;
    size_t src_len = (size_t)((uintptr_t)_binary_lua_token_bucket_lua_end - (uintptr_t)src);

    if (t->ctx == NULL) {
        t->ctx = redisConnectWithTimeout(ideal.host, ideal.port, tv);
        if (t->ctx == NULL || t->ctx->err || redisSetTimeout(t->ctx, tv) != REDIS_OK) {
            ideal_drop(t);
            return -1;
        }
    }
    if (t->sha[0] != '\0')
        return 0;
    const char *argv[] = {"SCRIPT", "LOAD", src};
    const size_t lens[] = {6, 4, src_len};
    redisReply *r = redisCommandArgv(t->ctx, 3, argv, lens);
    int rc = -1;
    if (r != NULL && r->type == REDIS_REPLY_STRING && r->len == IDEAL_SHA_LEN) {
        memcpy(t->sha, r->str, IDEAL_SHA_LEN + 1);
        rc = 0;
    }
    if (r == NULL)
        ideal_drop(t);
    freeReplyObject(r);
    return rc;
}

/* The script's reply {allowed, tokens, TIME s, TIME us} into *v. */
static int ideal_reply(const redisReply *r, struct ideal_verdict *v)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING || r->element[3]->type != REDIS_REPLY_STRING)
        return -1;
    v->allowed = r->element[0]->integer == 1;
    v->tokens = strtod(r->element[1]->str, NULL);
    v->now = strtod(r->element[2]->str, NULL) + strtod(r->element[3]->str, NULL) / 1e6;
    return 0;
}

/* One EVALSHA (a second one after NOSCRIPT). 0 with *v, or -1. */
static int ideal_charge(struct ideal_thread *t, const char *sub, struct ideal_verdict *v)
{
    char key[IDEAL_KEY_MAX];

    snprintf(key, sizeof key, "rate_limit:" IDEAL_TIER ":user:%s", sub);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (ideal_connect(t) != 0)
            return -1;
        const char *argv[] = {"EVALSHA",          t->sha, "1",          key, ideal.rate_arg,
                              ideal.capacity_arg, "1",    ideal.ttl_arg};
        redisReply *r = redisCommandArgv(t->ctx, 8, argv, NULL);
        if (r == NULL) {
            ideal_drop(t);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
            t->sha[0] = '\0';
            freeReplyObject(r);
            continue;
        }
        int rc = ideal_reply(r, v);
        freeReplyObject(r);
        return rc;
    }
    return -1;
}

/* ----------------------------------------------------------------------- answers */

static void ideal_answer(FCGX_Request *req, const char *sub, const struct ideal_verdict *v)
{
    char out[IDEAL_ANSWER_MAX], body[256], retry_line[48] = "";
    long remaining = (long)floor(v->tokens);
    long to_full = (long)ceil((ideal.capacity - v->tokens) / ideal.rate);
    long retry = (long)ceil((1 - v->tokens) / ideal.rate);
    int b, n;

    if (retry < 1)
        retry = 1;
    if (v->allowed) {
        b = snprintf(body, sizeof body,
                     "{\"id\":\"%s\",\"email\":\"bench-user@example.com\","
                     "\"created_at\":\"2026-11-28T12:00:00Z\"}",
                     sub);
    } else {
        b = snprintf(body, sizeof body, "{\"error\":\"Rate limit exceeded\",\"retry_after\":%ld}",
                     retry);
        snprintf(retry_line, sizeof retry_line, "Retry-After: %ld\r\n", retry);
    }
    n = snprintf(out, sizeof out,
                 "Status: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                 "RateLimit-Limit: %ld\r\nRateLimit-Remaining: %ld\r\nRateLimit-Reset: %ld\r\n"
                 "RateLimit-Policy: \"" IDEAL_TIER "\";q=%ld;w=%ld\r\n"
                 "RateLimit: \"" IDEAL_TIER "\";r=%ld;t=%ld\r\n%s"
                 "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\n%s",
                 v->allowed ? "200 OK" : "429 Too Many Requests", b, ideal.capacity, remaining,
                 (long)ceil(v->now) + to_full, ideal.capacity, ideal.ttl - 1, remaining, to_full,
                 retry_line, body);
    if (n > 0 && n < (int)sizeof out)
        FCGX_PutStr(out, n, req->out);
}

static void ideal_error(FCGX_Request *req, const char *status, const char *detail)
{
    FCGX_FPrintF(req->out,
                 "Status: %s\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
                 "\r\n{\"detail\":\"%s\"}",
                 status, detail);
}

static void ideal_handle(FCGX_Request *req, void *state)
{
    struct ideal_thread *t = state;
    char sub[IDEAL_SUB_MAX + 1];
    struct ideal_verdict v;

    if (!ideal_user(FCGX_GetParam("HTTP_AUTHORIZATION", req->envp), sub))
        ideal_error(req, "401 Unauthorized", "Could not validate credentials");
    else if (ideal_charge(t, sub, &v) != 0)
        ideal_error(req, "503 Service Unavailable", "Service temporarily unavailable");
    else
        ideal_answer(req, sub, &v);
}

static void *ideal_thread_new(void)
{
    return calloc(1, sizeof(struct ideal_thread));
}

int main(void)
{
    if (ideal_configure() != 0)
        return 1;
    return pool_run("ideal", ideal_handle, ideal_thread_new);
}
