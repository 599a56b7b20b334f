/* rconn: a thread's Redis connection with timeouts and backoff. See include/rconn.h. */
#include "rconn.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "log.h"

/* The token bucket script, linked in from lua/token_bucket.lua by the Makefile. */
extern const char _binary_lua_token_bucket_lua_start[];
extern const char _binary_lua_token_bucket_lua_end[];

/* Process-wide outage state, shared by all threads: atomics, no lock. */
static atomic_bool outage_now;
static atomic_long outage_passed;

const char *rconn_script(size_t *len)
{
    /* Two linker symbols, not one C object: compare addresses, not pointers. */
    *len = (size_t)((uintptr_t)_binary_lua_token_bucket_lua_end -
                    (uintptr_t)_binary_lua_token_bucket_lua_start);
    return _binary_lua_token_bucket_lua_start;
}

bool rconn_outage(void)
{
    return atomic_load(&outage_now);
}

void rconn_count_passed(void)
{
    atomic_fetch_add(&outage_passed, 1);
}

static void rconn_outage_begin(const char *why)
{
    if (!atomic_exchange(&outage_now, true)) {
        atomic_store(&outage_passed, 0);
        log_event(LOG_WARN, "redis_down", json_pack("{s:s}", "error", why));
    } else {
        log_event(LOG_DEBUG, "redis_error", json_pack("{s:s}", "error", why));
    }
}

static void rconn_outage_end(void)
{
    if (atomic_load(&outage_now) && atomic_exchange(&outage_now, false)) {
        log_event(LOG_INFO, "redis_up",
                  json_pack("{s:I}", "passed_unlimited", (json_int_t)atomic_load(&outage_passed)));
    }
}

static long rconn_ms_until(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (t->tv_sec - now.tv_sec) * 1000L + (t->tv_nsec - now.tv_nsec) / 1000000L;
}

void rconn_init(struct rconn *rc, const struct config_redis *target)
{
    memset(rc, 0, sizeof *rc);
    rc->target = target;
    rc->backoff_ms = 0;
}

void rconn_close(struct rconn *rc)
{
    if (rc == NULL || rc->ctx == NULL)
        return;
    redisFree(rc->ctx);
    rc->ctx = NULL;
}

void rconn_fail(struct rconn *rc)
{
    rconn_close(rc);
    rc->script_sha[0] = '\0';
    if (rc->backoff_ms < RCONN_BACKOFF_MIN_MS)
        rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
    else if (rc->backoff_ms * 2 <= RCONN_BACKOFF_MAX_MS)
        rc->backoff_ms *= 2;
    else
        rc->backoff_ms = RCONN_BACKOFF_MAX_MS;
    clock_gettime(CLOCK_MONOTONIC, &rc->next_try);
    rc->next_try.tv_sec += rc->backoff_ms / 1000;
    rc->next_try.tv_nsec += (rc->backoff_ms % 1000) * 1000000L;
    if (rc->next_try.tv_nsec >= 1000000000L) {
        rc->next_try.tv_sec += 1;
        rc->next_try.tv_nsec -= 1000000000L;
    }
}

/* Sends one setup command on a fresh context; true when the reply is not an error. */
static bool rconn_setup_command(redisContext *c, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (r != NULL && r->type == REDIS_REPLY_ERROR)
        log_event(LOG_DEBUG, "redis_error",
                  json_pack("{s:s, s:s}", "command", argv[0], "error", r->str));
    freeReplyObject(r);
    return ok;
}

static redisContext *rconn_connect(const struct config_redis *t)
{
    struct timeval ct = {RCONN_CONNECT_TIMEOUT_MS / 1000, (RCONN_CONNECT_TIMEOUT_MS % 1000) * 1000};
    struct timeval cmd = {RCONN_COMMAND_TIMEOUT_MS / 1000,
                          (RCONN_COMMAND_TIMEOUT_MS % 1000) * 1000};
    redisContext *c = t->unix_socket ? redisConnectUnixWithTimeout(t->path, ct)
                                     : redisConnectWithTimeout(t->host, t->port, ct);
    char db[16];

    if (c == NULL || c->err)
        goto fail;
    if (redisSetTimeout(c, cmd) != REDIS_OK)
        goto fail;
    if (t->password[0] != '\0') {
        const char *auth_user[] = {"AUTH", t->user, t->password};
        const char *auth[] = {"AUTH", t->password};
        bool ok =
            t->user[0] ? rconn_setup_command(c, 3, auth_user) : rconn_setup_command(c, 2, auth);
        if (!ok)
            goto fail;
    }
    if (t->db != 0) {
        snprintf(db, sizeof db, "%d", t->db);
        const char *select[] = {"SELECT", db};
        if (!rconn_setup_command(c, 2, select))
            goto fail;
    }
    return c;
fail:
    if (c != NULL)
        log_event(LOG_DEBUG, "redis_error",
                  json_pack("{s:s}", "error", c->errstr[0] ? c->errstr : "setup failed"));
    redisFree(c);
    return NULL;
}

redisContext *rconn_get(struct rconn *rc)
{
    if (rc->ctx != NULL)
        return rc->ctx;
    if (rc->backoff_ms > 0 && rconn_ms_until(&rc->next_try) > 0)
        return NULL;
    rc->ctx = rconn_connect(rc->target);
    if (rc->ctx == NULL) {
        rconn_fail(rc);
        rconn_outage_begin("connect failed");
        return NULL;
    }
    rc->backoff_ms = 0;
    return rc->ctx;
}

/* True when a command failed because the server had closed a connection we kept idle:
 * the command never ran, and one retry on a fresh connection is safe. A timeout is
 * not stale (the command may have run, or the server is paused). */
static bool rconn_stale(const redisContext *c, int err_no)
{
    if (c->err == REDIS_ERR_EOF)
        return true;
    return c->err == REDIS_ERR_IO && (err_no == EPIPE || err_no == ECONNRESET);
}

redisReply *rconn_command(struct rconn *rc, int argc, const char **argv, const size_t *lens)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = rc->ctx != NULL;
        redisContext *c = rconn_get(rc);
        if (c == NULL)
            return NULL;
        errno = 0;
        redisReply *r = redisCommandArgv(c, argc, argv, lens);
        int err_no = errno;
        if (r != NULL) {
            /* A server that answers again ends the outage, whatever the reply says. */
            if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "LOADING", 7) != 0)
                rconn_outage_end();
            return r;
        }
        char why[128];
        snprintf(why, sizeof why, "%s", c->errstr[0] ? c->errstr : "no reply");
        if (reused && attempt == 0 && rconn_stale(c, err_no)) {
            /* Redis restarted while this thread was idle: reconnect now, no backoff. */
            log_event(LOG_DEBUG, "redis_reconnect", json_pack("{s:s}", "error", why));
            rconn_close(rc);
            rc->script_sha[0] = '\0';
            continue;
        }
        rconn_fail(rc);
        rconn_outage_begin(why);
        return NULL;
    }
    return NULL;
}
