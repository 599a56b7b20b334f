/* accounts: sign-up, log-in and the caller's account. See include/accounts.h. */
#include "accounts.h"

#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <sodium.h>

#include <errno.h>

#include "identity.h"
#include "log.h"
#include "ratelimit.h"
#include "validate.h"

#define ACCOUNTS_ID_BYTES 16
#define ACCOUNTS_ID_HEX (ACCOUNTS_ID_BYTES * 2)
#define ACCOUNTS_KEY_MAX (ACCOUNTS_EMAIL_MAX * 4 + 32)
/* "{u:<sub>}:user": sized for the longest sub a token may carry. */
#define ACCOUNTS_USER_KEY_MAX (IDENTITY_SUB_MAX + 16)
#define ACCOUNTS_TIME_MAX 32
/* The failed log-in bucket of an address: "email:" + 32 hex digits of BLAKE2b-128. */
#define ACCOUNTS_LOCK_DIGEST 16
#define ACCOUNTS_LOCK_ID_MAX (sizeof "email:" + ACCOUNTS_LOCK_DIGEST * 2)

/* Hash of a random password, checked when the e-mail is unknown. Written once by
 * accounts_init before the threads start; read-only afterwards. */
static char decoy_hash[crypto_pwhash_STRBYTES];

/* Bounds the argon2id runs in flight in this process (19 MiB and a core each):
 * initialised by accounts_init, then shared by the request threads. */
static sem_t hash_slots;

static const char UNAVAILABLE[] = "Service temporarily unavailable";
static const char BAD_LOGIN[] = "Incorrect email or password";

int accounts_init(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned slots = cpus < 1                         ? 1
                     : cpus > ACCOUNTS_HASH_SLOTS_MAX ? ACCOUNTS_HASH_SLOTS_MAX
                                                      : (unsigned)cpus;

    if (sem_init(&hash_slots, 0, slots) != 0)
        return -1;
    char password[33];

    randombytes_buf(password, sizeof password - 1);
    password[sizeof password - 1] = '\0';
    int rc =
        crypto_pwhash_str_alg(decoy_hash, password, sizeof password - 1, ACCOUNTS_PWHASH_OPSLIMIT,
                              ACCOUNTS_PWHASH_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13);
    sodium_memzero(password, sizeof password);
    return rc == 0 ? 0 : -1;
}

/* Takes a hashing slot, waiting at most ACCOUNTS_HASH_WAIT_S; 503 in resp when none. */
static int accounts_hash_begin(struct response *resp)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ACCOUNTS_HASH_WAIT_S;
    while (sem_timedwait(&hash_slots, &until) != 0) {
        if (errno != EINTR) {
            response_detail(resp, 503, UNAVAILABLE);
            response_header(resp, "Retry-After", "1");
            return -1;
        }
    }
    return 0;
}

static void accounts_hash_end(void)
{
    sem_post(&hash_slots);
}

bool accounts_email_normalise(const char *email, char out[ACCOUNTS_EMAIL_MAX * 4 + 1])
{
    size_t len = strlen(email), ats = 0, at = 0;

    if (len == 0 || len > ACCOUNTS_EMAIL_MAX * 4 ||
        validate_utf8_length(email) > ACCOUNTS_EMAIL_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)email[i];
        if (c <= ' ' || c == 0x7f)
            return false;
        if (c == '@') {
            ats++;
            at = i;
        }
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
    }
    out[len] = '\0';
    return ats == 1 && at > 0 && at < len - 1;
}

static void accounts_unavailable(struct response *resp)
{
    response_detail(resp, 503, UNAVAILABLE);
    response_header(resp, "Retry-After", "1");
}

static void accounts_now_iso(char out[ACCOUNTS_TIME_MAX])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(out, ACCOUNTS_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void accounts_new_id(char out[ACCOUNTS_ID_HEX + 1])
{
    unsigned char raw[ACCOUNTS_ID_BYTES];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, ACCOUNTS_ID_HEX + 1, raw, sizeof raw);
}

/* A bearer token answer; NULL when the token could not be issued. */
static json_t *accounts_token(const struct config *cfg, const char *id)
{
    char *token =
        identity_issue(cfg->jwt_secret, cfg->jwt_secret_len, id, time(NULL), cfg->jwt_ttl);
    if (token == NULL)
        return NULL;
    json_t *out = json_pack("{s:s, s:s}", "access_token", token, "token_type", "bearer");
    free(token);
    return out;
}

/* Runs a command and expects a reply; NULL (503 set) when Redis is unreachable or errs. */
static redisReply *accounts_redis(struct handler_ctx *ctx, struct response *resp, int argc,
                                  const char **argv)
{
    redisReply *r = rconn_command(ctx->redis, argc, argv, NULL);
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        log_event(LOG_ERROR, "redis_error",
                  json_pack("{s:s, s:s}", "command", argv[0], "error", r->str));
        freeReplyObject(r);
        r = NULL;
    }
    if (r == NULL)
        accounts_unavailable(resp);
    return r;
}

/* Stores the user hash, then claims the e-mail. Returns 0, 1 when taken, -1 on error. */
static int accounts_store(struct handler_ctx *ctx, struct response *resp, const char *id,
                          const char *email, const char *hash, const char *created)
{
    char user_key[ACCOUNTS_USER_KEY_MAX], email_key[ACCOUNTS_KEY_MAX];
    redisReply *r;

    snprintf(user_key, sizeof user_key, "{u:%s}:user", id);
    snprintf(email_key, sizeof email_key, "user_email:%s", email);
    const char *hset[] = {"HSET", user_key,        "id", id,           "email",
                          email,  "password_hash", hash, "created_at", created};
    if ((r = accounts_redis(ctx, resp, 10, hset)) == NULL)
        return -1;
    freeReplyObject(r);
    const char *claim[] = {"SET", email_key, id, "NX"};
    if ((r = accounts_redis(ctx, resp, 4, claim)) == NULL)
        return -1;
    bool taken = r->type == REDIS_REPLY_NIL;
    freeReplyObject(r);
    if (taken) {
        const char *del[] = {"DEL", user_key};
        freeReplyObject(rconn_command(ctx->redis, 2, del, NULL));
    }
    return taken ? 1 : 0;
}

/* 1 when no account has email, 0 when one has, -1 (503 in resp) when Redis failed. The
 * claim with SET NX at the end still decides; this only spares a hash for a taken email. */
static int accounts_email_free(struct handler_ctx *ctx, struct response *resp, const char *email)
{
    char key[ACCOUNTS_KEY_MAX];
    redisReply *r;

    snprintf(key, sizeof key, "user_email:%s", email);
    const char *exists[] = {"EXISTS", key};
    if ((r = accounts_redis(ctx, resp, 2, exists)) == NULL)
        return -1;
    int taken = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return taken ? 0 : 1;
}

void accounts_signup(struct handler_ctx *ctx, struct response *resp)
{
    char email[ACCOUNTS_EMAIL_MAX * 4 + 1], id[ACCOUNTS_ID_HEX + 1];
    char hash[crypto_pwhash_STRBYTES], created[ACCOUNTS_TIME_MAX];
    json_t *body = validate_body_object_or_reply(ctx->req, resp), *answer = NULL;
    const char *raw_email, *password;

    if (body == NULL)
        return;
    if ((raw_email = validate_string_or_reply(body, "email", 1, ACCOUNTS_EMAIL_MAX, resp)) ==
            NULL ||
        (password = validate_string_or_reply(body, "password", ACCOUNTS_PASSWORD_MIN,
                                             ACCOUNTS_PASSWORD_MAX, resp)) == NULL)
        goto out;
    if (!accounts_email_normalise(raw_email, email)) {
        response_invalid(resp, "body", "email", "value is not a valid email address",
                         "value_error");
        goto out;
    }
    int free_now = accounts_email_free(ctx, resp, email);
    if (free_now <= 0) {
        if (free_now == 0)
            response_detail(resp, 409, "Email already registered");
        goto out;
    }
    if (accounts_hash_begin(resp) != 0)
        goto out;
    int hashed = crypto_pwhash_str_alg(hash, password, strlen(password), ACCOUNTS_PWHASH_OPSLIMIT,
                                       ACCOUNTS_PWHASH_MEMLIMIT, crypto_pwhash_ALG_ARGON2ID13);
    accounts_hash_end();
    if (hashed != 0) {
        response_detail(resp, 500, "Internal Server Error");
        goto out;
    }
    accounts_new_id(id);
    accounts_now_iso(created);
    int stored = accounts_store(ctx, resp, id, email, hash, created);
    if (stored != 0) {
        if (stored == 1)
            response_detail(resp, 409, "Email already registered");
        goto out;
    }
    if ((answer = accounts_token(ctx->cfg, id)) == NULL) {
        response_detail(resp, 500, "Internal Server Error");
        goto out;
    }
    json_object_set_new(
        answer, "user",
        json_pack("{s:s, s:s, s:s}", "id", id, "email", email, "created_at", created));
    response_json(resp, 201, answer);
out:
    sodium_memzero(hash, sizeof hash);
    json_decref(body);
}

/* The e-mail and password of a login, JSON or form; new strings in *email, *password. */
static int accounts_login_fields(const struct request *req, struct response *resp, char **email,
                                 char **password)
{
    if (req->content == REQUEST_CONTENT_FORM) {
        const char *names[] = {"username", "password"};
        char **outs[] = {email, password};
        for (int i = 0; i < 2; i++) {
            int got =
                request_form_value(req->body ? req->body : "", req->body_len, names[i], outs[i]);
            if (got <= 0) {
                response_invalid(resp, "body", names[i],
                                 got == 0 ? "Field required" : "Invalid form value",
                                 got == 0 ? "missing" : "value_error");
                return -1;
            }
        }
        return 0;
    }
    json_t *body = validate_body_object_or_reply(req, resp);
    const char *e = NULL, *p = NULL;
    if (body != NULL &&
        (e = validate_string_or_reply(body, "email", 0, ACCOUNTS_EMAIL_MAX, resp)) != NULL &&
        (p = validate_string_or_reply(body, "password", 0, ACCOUNTS_PASSWORD_MAX, resp)) != NULL) {
        *email = strdup(e);
        *password = strdup(p);
    }
    json_decref(body);
    return (e != NULL && p != NULL && *email != NULL && *password != NULL) ? 0 : -1;
}

/* The stored id and hash for email; *found false when unknown. -1 when Redis failed. */
static int accounts_lookup(struct handler_ctx *ctx, struct response *resp, const char *email,
                           bool *found, char id[ACCOUNTS_ID_HEX + 1],
                           char hash[crypto_pwhash_STRBYTES])
{
    char key[ACCOUNTS_KEY_MAX];
    redisReply *r;

    *found = false;
    snprintf(key, sizeof key, "user_email:%s", email);
    const char *get[] = {"GET", key};
    if ((r = accounts_redis(ctx, resp, 2, get)) == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING && r->len == ACCOUNTS_ID_HEX) {
        memcpy(id, r->str, ACCOUNTS_ID_HEX + 1);
        *found = true;
    }
    freeReplyObject(r);
    if (!*found)
        return 0;
    snprintf(key, sizeof key, "{u:%s}:user", id);
    const char *hget[] = {"HGET", key, "password_hash"};
    if ((r = accounts_redis(ctx, resp, 3, hget)) == NULL)
        return -1;
    *found = r->type == REDIS_REPLY_STRING && r->len < crypto_pwhash_STRBYTES;
    if (*found)
        memcpy(hash, r->str, r->len + 1);
    freeReplyObject(r);
    return 0;
}

/*
 * "email:<hex>" for the failed log-in bucket: BLAKE2b-128 of the address as it is
 * looked up (normalised when valid, else as sent), so any byte of it stays out of the
 * key and its length is fixed (`printf %s ADDRESS | b2sum -l 128` gives the same hex).
 */
static void accounts_login_identifier(const char *address, char out[ACCOUNTS_LOCK_ID_MAX])
{
    unsigned char digest[ACCOUNTS_LOCK_DIGEST];

    crypto_generichash(digest, sizeof digest, (const unsigned char *)address, strlen(address), NULL,
                       0);
    memcpy(out, "email:", sizeof "email:");
    sodium_bin2hex(out + sizeof "email:" - 1, ACCOUNTS_LOCK_ID_MAX - (sizeof "email:" - 1), digest,
                   sizeof digest);
}

/*
 * Takes one token of the address's failed log-in bucket before the password is checked
 * (a success gives the bucket back whole), so concurrent guesses cannot slip past it.
 * Returns 0 to go on, or -1 with the 429 (or 503 without Redis) in resp.
 */
static int accounts_login_charge(struct handler_ctx *ctx, struct response *resp, const char *id)
{
    const struct tier *t = &ctx->cfg->tiers.login_failures;
    struct ratelimit_verdict v;

    if (ratelimit_charge(ctx->redis, t, id, &v) != 0) {
        accounts_unavailable(resp);
        return -1;
    }
    if (v.allowed)
        return 0;
    ratelimit_refuse(&v, request_wants_problem(ctx->req), resp);
    log_event(LOG_WARN, "rate_limited",
              json_pack("{s:s, s:s, s:s, s:i}", "identifier", id, "tier", t->name, "path", "/login",
                        "retry_after", (int)v.retry_after));
    return -1;
}

void accounts_login(struct handler_ctx *ctx, struct response *resp)
{
    char *email_in = NULL, *password = NULL, email[ACCOUNTS_EMAIL_MAX * 4 + 1];
    char id[ACCOUNTS_ID_HEX + 1], hash[crypto_pwhash_STRBYTES], lock_id[ACCOUNTS_LOCK_ID_MAX];
    bool found = false;

    if (accounts_login_fields(ctx->req, resp, &email_in, &password) != 0)
        goto out;
    bool valid = accounts_email_normalise(email_in, email);
    accounts_login_identifier(valid ? email : email_in, lock_id);
    if (accounts_login_charge(ctx, resp, lock_id) != 0)
        goto out;
    if (valid && accounts_lookup(ctx, resp, email, &found, id, hash) != 0)
        goto out;
    /* Same work whether or not the address is known: verify against the decoy. */
    if (accounts_hash_begin(resp) != 0)
        goto out;
    bool match =
        crypto_pwhash_str_verify(found ? hash : decoy_hash, password, strlen(password)) == 0;
    accounts_hash_end();
    if (!found || !match) {
        response_detail(resp, 401, BAD_LOGIN);
        response_header(resp, "WWW-Authenticate", "Bearer");
        goto out;
    }
    /* The failures before this success no longer count (best effort: a Redis error
     * here only leaves them to expire). */
    ratelimit_reset(ctx->redis, &ctx->cfg->tiers.login_failures, lock_id);
    json_t *answer = accounts_token(ctx->cfg, id);
    if (answer == NULL)
        response_detail(resp, 500, "Internal Server Error");
    else
        response_json(resp, 200, answer);
out:
    if (password != NULL)
        sodium_memzero(password, strlen(password));
    free(password);
    free(email_in);
}

int accounts_me_prefetch(const char *user, struct handler_prefetch *pf)
{
    int n = snprintf(pf->key, sizeof pf->key, "{u:%s}:user", user);
    if (n < 0 || (size_t)n >= sizeof pf->key)
        return -1;
    const char *hmget[] = {"HMGET", pf->key, "id", "email", "created_at"};
    pf->argc = (int)(sizeof hmget / sizeof hmget[0]);
    memcpy(pf->argv, hmget, sizeof hmget);
    return 0;
}

/* The caller's user record: the gateway's prefetch, or read now. NULL with the 503 in
 * resp. *owned: the reply to free, if read here. */
static const redisReply *accounts_me_record(struct handler_ctx *ctx, struct response *resp,
                                            redisReply **owned)
{
    struct handler_prefetch pf = {0};

    *owned = NULL;
    if (ctx->prefetched != NULL) {
        if (ctx->prefetched->type != REDIS_REPLY_ERROR)
            return ctx->prefetched;
        log_event(LOG_ERROR, "redis_error",
                  json_pack("{s:s, s:s}", "command", "HMGET", "error", ctx->prefetched->str));
        accounts_unavailable(resp);
        return NULL;
    }
    if (accounts_me_prefetch(ctx->user, &pf) != 0) {
        accounts_unavailable(resp);
        return NULL;
    }
    return *owned = accounts_redis(ctx, resp, pf.argc, pf.argv);
}

void accounts_me(struct handler_ctx *ctx, struct response *resp)
{
    redisReply *owned;
    const redisReply *r = accounts_me_record(ctx, resp, &owned);

    if (r == NULL)
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING ||
        r->element[2]->type != REDIS_REPLY_STRING) {
        response_detail(resp, 401, "Could not validate credentials");
        response_header(resp, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    } else {
        response_json(resp, 200,
                      json_pack("{s:s, s:s, s:s}", "id", r->element[0]->str, "email",
                                r->element[1]->str, "created_at", r->element[2]->str));
    }
    freeReplyObject(owned);
}
