/*
 * rconn: one thread's Redis connection (hiredis 0.14), with connect and command
 * timeouts, and reconnection with backoff after any error.
 *
 * A context that returned an I/O or protocol error is freed and never reused; the
 * next rconn_get after the backoff connects again (AUTH, SELECT). A connection that
 * Redis closed while the thread was idle is retried once at once, not counted as an
 * outage. Each thread owns its struct rconn: not shared, no locking.
 *
 * The process-wide outage state is kept with atomics and is thread-safe: it begins
 * when a connection fails or Redis answers that it cannot serve (OOM, READONLY,
 * MISCONF, NOAUTH, NOPERM, LOADING, BUSY ...), with one warning line naming the
 * reason, and ends with one info line when Redis answers again (after an error
 * reply: when the token bucket script runs again). While Redis is unreachable, request
 * threads get NULL at once instead of each paying a timeout; a monitor thread probes
 * Redis every RCONN_PROBE_MS and ends the outage for all when it answers.
 */
#ifndef SG_RCONN_H
#define SG_RCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "config.h"

#define RCONN_CONNECT_TIMEOUT_MS 500
#define RCONN_COMMAND_TIMEOUT_MS 500
#define RCONN_BACKOFF_MIN_MS 50
#define RCONN_BACKOFF_MAX_MS 1000
#define RCONN_SHA_LEN 40
#define RCONN_PROBE_MS 200 /* monitor's PING interval during an outage */

struct rconn {
    const struct config_redis *target;  /* borrowed from the config */
    redisContext *ctx;                  /* owned; NULL while disconnected */
    char script_sha[RCONN_SHA_LEN + 1]; /* token bucket script, "" until loaded */
    struct timespec next_try;           /* CLOCK_MONOTONIC; no connect before it */
    long backoff_ms;
};

/* Prepares rc for target (borrowed; must outlive rc). Does not connect. */
void rconn_init(struct rconn *rc, const struct config_redis *target);

/* Frees the context. rc may be NULL. */
void rconn_close(struct rconn *rc);

/*
 * A connected context (borrowed, valid until the next rconn_* call), connecting
 * first if needed; NULL while Redis is unreachable or in backoff.
 */
redisContext *rconn_get(struct rconn *rc);

/*
 * Runs one command given as argv (borrowed; binary-safe through lens, which may be
 * NULL for NUL-terminated strings). Returns the reply (caller frees with
 * freeReplyObject), which may be a REDIS_REPLY_ERROR; or NULL when Redis is
 * unreachable or the connection failed, in which case the connection is dropped
 * and the outage recorded.
 */
redisReply *rconn_command(struct rconn *rc, int argc, const char **argv, const size_t *lens);

/* One command of a pipeline: argv and lens as for rconn_command (borrowed). */
struct rconn_cmd {
    int argc;
    const char **argv;
    const size_t *lens;
};

/*
 * Sends n commands in one write and reads their replies (one round trip) into replies,
 * in order (caller frees each with freeReplyObject; any may be a REDIS_REPLY_ERROR).
 * Returns how many arrived: n, or fewer when Redis is unreachable or the connection
 * failed after them (dropped and the outage recorded, as rconn_command's NULL). The
 * commands are sent again only on a connection found closed before any reply (Redis
 * restarted while the thread was idle), as a single command always was.
 */
size_t rconn_pipeline(struct rconn *rc, size_t n, const struct rconn_cmd *cmds,
                      redisReply **replies);

/* Records a failure on rc: drops the connection and schedules a reconnect. */
void rconn_fail(struct rconn *rc);

/* The Lua source of the token bucket (lua/token_bucket.lua), borrowed, not NUL-terminated. */
const char *rconn_script(size_t *len);

/* Process-wide: true while the last command of any thread failed to reach Redis. */
bool rconn_outage(void);

/*
 * Starts the process's monitor thread, which ends an outage as soon as Redis answers
 * a PING again. target borrowed; must live as long as the process. Call once, before
 * the request threads start. Returns 0 or -1.
 */
int rconn_monitor_start(const struct config_redis *target);

/* Process-wide: counts one request let through without a rate decision (fail mode open). */
void rconn_count_passed(void);

#endif
