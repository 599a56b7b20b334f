/* rconn: a thread's Redis connection with timeouts and backoff. See include/rconn.h. */
#include "rconn.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

/* The token bucket script, linked in from lua/token_bucket.lua by the Makefile. */
extern const char _binary_lua_token_bucket_lua_start[];
extern const char _binary_lua_token_bucket_lua_end[];

/* Process-wide outage state, shared by all threads: atomics, no lock. */
static atomic_bool outage_now;
static atomic_bool outage_by_reply; /* began with an error reply, not a lost connection */
static atomic_long outage_passed;

#define RCONN_WHY_MAX 160 /* bytes of an error reason in a log line */

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

static void rconn_outage_begin(const char *why, bool by_reply)
{
    if (!atomic_exchange(&outage_now, true)) {
        atomic_store(&outage_by_reply, by_reply);
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

/* Sends one setup command on a fresh context. Returns 0, or -1 with the reason in why. */
static int rconn_setup_command(redisContext *c, int argc, const char **argv, char *why,
                               size_t whylen)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    int rc = 0;

    if (r == NULL) {
        snprintf(why, whylen, "%s: %s", argv[0], c->errstr[0] ? c->errstr : "no reply");
        rc = -1;
    } else if (r->type == REDIS_REPLY_ERROR) {
        /* An AUTH or SELECT error never holds the password. */
        snprintf(why, whylen, "%s: %s", argv[0], r->str);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

/* Connects, authenticates and selects the database. NULL with the reason in why. */
static redisContext *rconn_connect(const struct config_redis *t, char *why, size_t whylen)
{
    struct timeval ct = {RCONN_CONNECT_TIMEOUT_MS / 1000, (RCONN_CONNECT_TIMEOUT_MS % 1000) * 1000};
    struct timeval cmd = {RCONN_COMMAND_TIMEOUT_MS / 1000,
                          (RCONN_COMMAND_TIMEOUT_MS % 1000) * 1000};
    redisContext *c = t->unix_socket ? redisConnectUnixWithTimeout(t->path, ct)
                                     : redisConnectWithTimeout(t->host, t->port, ct);
    char db[16];

    if (c == NULL || c->err || redisSetTimeout(c, cmd) != REDIS_OK) {
        snprintf(why, whylen, "connect: %s",
                 c != NULL && c->errstr[0] ? c->errstr : "cannot allocate a context");
        goto fail;
    }
    if (t->password[0] != '\0') {
        const char *auth_user[] = {"AUTH", t->user, t->password};
        const char *auth[] = {"AUTH", t->password};
        if (t->user[0] ? rconn_setup_command(c, 3, auth_user, why, whylen)
                       : rconn_setup_command(c, 2, auth, why, whylen))
            goto fail;
    }
    if (t->db != 0) {
        snprintf(db, sizeof db, "%d", t->db);
        const char *select[] = {"SELECT", db};
        if (rconn_setup_command(c, 2, select, why, whylen))
            goto fail;
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

redisContext *rconn_get(struct rconn *rc)
{
    char why[RCONN_WHY_MAX];

    if (rc->ctx != NULL)
        return rc->ctx;
    if (rc->backoff_ms > 0 && rconn_ms_until(&rc->next_try) > 0)
        return NULL;
    rc->ctx = rconn_connect(rc->target, why, sizeof why);
    if (rc->ctx == NULL) {
        metrics_redis_error(METRICS_REDIS_CONNECT);
        rconn_fail(rc);
        rconn_outage_begin(why, false);
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

/* True for an error reply that means the server cannot serve now (out of memory, a
 * read-only replica, failed persistence, no permission, still loading, a busy script),
 * as opposed to an error about this one command (NOSCRIPT, WRONGTYPE). */
static bool rconn_unavailable(const redisReply *r)
{
    static const char *const codes[] = {"OOM",      "READONLY",   "MISCONF", "NOAUTH",
                                        "NOPERM",   "LOADING",    "BUSY",    "MASTERDOWN",
                                        "TRYAGAIN", "CLUSTERDOWN"};

    if (r->type != REDIS_REPLY_ERROR || r->str == NULL)
        return false;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        size_t n = strlen(codes[i]);
        if (strncmp(r->str, codes[i], n) == 0 && (r->str[n] == ' ' || r->str[n] == '\0'))
            return true;
    }
    return false;
}

/* Records what a reply says about the server: an outage begins or ends. An outage that
 * began with an error reply ends only when the token bucket script runs again. */
static void rconn_note_reply(const redisReply *r, const char *command)
{
    if (r->type == REDIS_REPLY_ERROR && !(r->str != NULL && strncmp(r->str, "NOSCRIPT", 8) == 0))
        metrics_redis_error(rconn_unavailable(r) ? METRICS_REDIS_UNAVAILABLE
                                                 : METRICS_REDIS_ERROR_REPLY);
    if (rconn_unavailable(r)) {
        char why[RCONN_WHY_MAX];
        log_printable(r->str, RCONN_WHY_MAX - 4, why, sizeof why);
        rconn_outage_begin(why, true);
    } else if (r->type != REDIS_REPLY_ERROR &&
               (!atomic_load(&outage_by_reply) || strcmp(command, "EVALSHA") == 0)) {
        rconn_outage_end();
    }
}

/* Sends the n commands in one write and reads their replies in order: how many arrived
 * (n, or fewer when the connection failed after them). */
static size_t rconn_send_all(redisContext *c, size_t n, const struct rconn_cmd *cmds,
                             redisReply **replies)
{
    size_t got = 0;

    for (size_t i = 0; i < n; i++) {
        if (redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv, cmds[i].lens) != REDIS_OK)
            return 0;
    }
    for (; got < n; got++) {
        void *r = NULL;
        if (redisGetReply(c, &r) != REDIS_OK || r == NULL)
            break;
        replies[got] = r;
    }
    return got;
}

/* Why the connection failed, for the log and the metrics. */
static bool rconn_failure(const redisContext *c, int err_no, char why[RCONN_WHY_MAX])
{
    bool timeout = c->err == REDIS_ERR_IO && (err_no == EAGAIN || err_no == EWOULDBLOCK);

    if (timeout)
        snprintf(why, RCONN_WHY_MAX, "no answer within %d ms", RCONN_COMMAND_TIMEOUT_MS);
    else
        snprintf(why, RCONN_WHY_MAX, "%s", c->errstr[0] ? c->errstr : "no reply");
    return timeout;
}

/* The commands with one retry on a connection found stale. See rconn_pipeline. */
static size_t rconn_pipeline_once(struct rconn *rc, size_t n, const struct rconn_cmd *cmds,
                                  redisReply **replies)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        bool reused = rc->ctx != NULL;
        redisContext *c = rconn_get(rc);
        if (c == NULL)
            return 0;
        errno = 0;
        uint64_t t0 = metrics_now_us();
        size_t got = rconn_send_all(c, n, cmds, replies);
        int err_no = errno;
        metrics_redis_latency(metrics_now_us() - t0);
        for (size_t i = 0; i < got; i++)
            rconn_note_reply(replies[i], cmds[i].argv[0]);
        if (got == n)
            return n;
        char why[RCONN_WHY_MAX];
        bool timeout = rconn_failure(c, err_no, why);
        /* Sent again only on a connection found closed before any reply, as a single
         * command always was. */
        if (reused && attempt == 0 && got == 0 && rconn_stale(c, err_no)) {
            /* Redis restarted while this thread was idle: reconnect now, no backoff. */
            log_event(LOG_DEBUG, "redis_reconnect", json_pack("{s:s}", "error", why));
            rconn_close(rc);
            rc->script_sha[0] = '\0';
            continue;
        }
        metrics_redis_error(timeout ? METRICS_REDIS_TIMEOUT : METRICS_REDIS_IO);
        rconn_fail(rc);
        rconn_outage_begin(why, false);
        return got;
    }
    return 0;
}

size_t rconn_pipeline(struct rconn *rc, size_t n, const struct rconn_cmd *cmds,
                      redisReply **replies)
{
    /* While Redis is unreachable, request threads fail fast; the monitor thread probes. */
    if (atomic_load(&outage_now) && !atomic_load(&outage_by_reply))
        return 0;
    return rconn_pipeline_once(rc, n, cmds, replies);
}

redisReply *rconn_command(struct rconn *rc, int argc, const char **argv, const size_t *lens)
{
    const struct rconn_cmd cmd = {argc, argv, lens};
    redisReply *r = NULL;

    return rconn_pipeline(rc, 1, &cmd, &r) == 1 ? r : NULL;
}

/* The monitor: while an outage is on, PING Redis every RCONN_PROBE_MS on a connection
 * of its own; the first answer ends the outage for every thread of the process. */
static void *rconn_monitor(void *arg)
{
    struct rconn probe;
    const struct timespec pause = {0, RCONN_PROBE_MS * 1000000L};
    const char *ping[] = {"PING"};

    rconn_init(&probe, arg);
    for (;;) {
        nanosleep(&pause, NULL);
        if (!atomic_load(&outage_now) || atomic_load(&outage_by_reply))
            continue;
        const struct rconn_cmd cmd = {1, ping, NULL};
        redisReply *r = NULL;
        if (rconn_pipeline_once(&probe, 1, &cmd, &r) == 1)
            freeReplyObject(r);
    }
    return NULL;
}

int rconn_monitor_start(const struct config_redis *target)
{
    pthread_t thread;

    if (pthread_create(&thread, NULL, rconn_monitor, (void *)target) != 0)
        return -1;
    pthread_detach(thread);
    return 0;
}
