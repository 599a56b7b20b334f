/*
 * metrics: counters and histograms shared by every gateway process of the host, for
 * GET /metrics (handlers/metricspage.c) in the Prometheus text format 0.0.4.
 *
 * The numbers live in one POSIX shared-memory segment of fixed layout (struct
 * metrics_shared in fcgi/metrics.c), every field an _Atomic uint64_t incremented with
 * relaxed ordering: lock-free on every platform the gateway builds for (checked at
 * compile time), so processes need no lock to count, and one scrape of any process
 * shows the whole host.
 *
 * lighttpd and mod_fcgid exec each gateway process separately, so the processes find
 * the segment by name. The default name is per front server:
 *     /sg-metrics-<uid>-<parent pid>-<parent start time>
 * All gateways of one lighttpd (or of one mod_fcgid process manager) have the same
 * parent, so they share it; two stacks on one host never do, and a recycled parent PID
 * never finds an old segment (its start time differs). METRICS_SHM names the segment
 * instead (a front that does not exec the gateway itself, spawn-fcgi, or several fronts
 * meant to count together). Segments of default name whose parent is gone are removed
 * when any gateway of the same user starts.
 *
 * Creating and opening are serialised by flock(2) on the segment: the first process
 * sizes and initialises it under the lock and sets a ready word; a process that died
 * half-way leaves it not ready, and the next one initialises it again. A segment whose
 * magic, layout version or size differ (another build using the same METRICS_SHM) is
 * not used.
 *
 * Label values are kept in the segment as names (routes "GET /me", tiers, in slots
 * registered under the lock), so processes of different builds or tier files that
 * share a segment still agree on what each counter means.
 *
 * If the segment cannot be mapped, every metrics_* counting call does nothing and
 * metrics_render returns NULL (the page answers 503): metrics never break a request.
 *
 * Thread-safety: metrics_attach and metrics_detach run before the request threads
 * start (or after they end); everything else may be called from any thread.
 */
#ifndef SG_METRICS_H
#define SG_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router.h"
#include "tiers.h"

#define METRICS_LAYOUT_VERSION 1
#define METRICS_LABEL_MAX 63               /* bytes of one route or tier label value */
#define METRICS_ROUTE_SLOTS 32             /* route labels: the table's, "unmatched", spare */
#define METRICS_TIER_SLOTS (TIERS_MAX + 1) /* tier labels, "none" among them */
#define METRICS_PROC_SLOTS 256             /* gateway processes counted one by one */
#define METRICS_BUCKETS_MAX 15             /* finite buckets of a histogram (+Inf extra) */
#define METRICS_SHM_NAME_MAX 200           /* bytes of a segment name, the '/' included */
#define METRICS_PAGE_MAX (8 * 1024 * 1024) /* bytes of a rendered page */
#define METRICS_SHM_DIR "/dev/shm"         /* where glibc keeps shm_open's segments */
#define METRICS_SHM_PREFIX "sg-metrics-"   /* default names: METRICS_SHM_PREFIX<uid>-... */

/* How a request's rate limit ended (label "outcome"). */
enum metrics_outcome {
    METRICS_UNLIMITED,         /* a route that is not rate limited (/healthz, /metrics) */
    METRICS_ALLOWED,           /* Redis took a token */
    METRICS_LIMITED,           /* Redis refused: 429 */
    METRICS_LIMITED_LOCAL,     /* the process's refusal cache refused without Redis: 429 */
    METRICS_PASSED_REDIS_DOWN, /* fail mode open: passed without a decision */
    METRICS_CLOSED_REDIS_DOWN, /* fail mode closed: 503 */
    METRICS_FALLBACK_ALLOWED,  /* fail mode local: the in-process bucket took a token */
    METRICS_FALLBACK_LIMITED,  /* fail mode local: the in-process bucket refused: 429 */
    METRICS_OUTCOMES
};

/* Why a Redis command or connection failed (label "kind"). */
enum metrics_redis_error {
    METRICS_REDIS_CONNECT,     /* connect, AUTH or SELECT failed */
    METRICS_REDIS_TIMEOUT,     /* no answer within the command timeout */
    METRICS_REDIS_IO,          /* the connection broke (reset, closed, protocol error) */
    METRICS_REDIS_UNAVAILABLE, /* an error reply meaning it cannot serve: OOM, READONLY... */
    METRICS_REDIS_ERROR_REPLY, /* any other error reply (NOSCRIPT, answered by loading, aside) */
    METRICS_REDIS_BAD_REPLY,   /* the token bucket script answered something unexpected */
    METRICS_REDIS_ERRORS
};

/* How one HTTP request to MistralAI ended (label "result"); retries count each. */
enum metrics_upstream {
    METRICS_UPSTREAM_OK,        /* 2xx with a usable answer */
    METRICS_UPSTREAM_MALFORMED, /* 2xx that is not a chat completion, or too large */
    METRICS_UPSTREAM_HTTP_429,  /* the upstream's own rate limit */
    METRICS_UPSTREAM_HTTP_4XX,  /* any other 4xx (a bad key: 401) */
    METRICS_UPSTREAM_HTTP_5XX,
    METRICS_UPSTREAM_TIMEOUT, /* no whole answer within the time left */
    METRICS_UPSTREAM_CONNECT, /* name resolution or connect failed */
    METRICS_UPSTREAM_RESET,   /* the connection broke mid-answer (reset, empty reply) */
    METRICS_UPSTREAM_OTHER,   /* any other curl error or status */
    METRICS_UPSTREAM_RESULTS
};

/*
 * Maps (creating it if needed) the segment called name ("/x" or "x", at most
 * METRICS_SHM_NAME_MAX bytes of [A-Za-z0-9._-] after the '/'; NULL or "" for the
 * default name above); first removes the stale default segments of this user. Registers
 * this build's route labels and the tiers of limits (borrowed; must outlive every
 * metrics_request call) and takes a process slot. Call once, before threads start.
 * Returns 0, or -1 with a one-line reason in err; metrics then stay off.
 */
int metrics_attach(const char *name, const struct tiers *limits, char *err, size_t errlen);

/* The name of the attached segment ("/sg-metrics-..."), or "" when off. Borrowed. */
const char *metrics_segment_name(void);

/* True when a segment is attached. */
bool metrics_enabled(void);

/*
 * Unmaps the segment (for tests and the end of the process); unlink true also removes
 * its name. Metrics are off afterwards. Not thread-safe.
 */
void metrics_detach(bool unlink);

/*
 * Counts one answered request. route: from the router's table, or NULL for a path
 * that matched none (404, 405: label "unmatched"); tier: from limits, or NULL when
 * none was charged (label "none"); authenticated: a valid user was charged (label
 * caller="authenticated", else "anonymous"); status: the answer's, 429s are counted
 * by route too. Also counts the request for this process.
 */
void metrics_request(const struct router_route *route, const struct tier *tier,
                     enum metrics_outcome outcome, bool authenticated, int status);

/* Observes the Retry-After (seconds) of one 429 rate-limit answer. */
void metrics_retry_after(long seconds);

/* Counts one Redis failure. */
void metrics_redis_error(enum metrics_redis_error kind);

/* Observes the time one Redis command took to answer or fail, in microseconds. */
void metrics_redis_latency(uint64_t micros);

/* Counts one MistralAI HTTP request and the microseconds it took. */
void metrics_upstream(enum metrics_upstream result, uint64_t micros);

/* CLOCK_MONOTONIC in microseconds, for the latencies above. */
uint64_t metrics_now_us(void);

/*
 * The page: every metric in the Prometheus text format 0.0.4, as a new NUL-terminated
 * string (free() it) of *len bytes; NULL when metrics are off, memory ran out or the
 * page would pass METRICS_PAGE_MAX bytes.
 */
char *metrics_render(size_t *len);

/*
 * The index (0..n) of the bucket value falls in: the first i with value <= bounds[i]
 * (bounds ascending), n (+Inf) when larger than all. Pure.
 */
size_t metrics_bucket(const uint64_t *bounds, size_t n, uint64_t value);

#endif
