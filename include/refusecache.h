/*
 * refusecache: refusals a gateway process answers without asking Redis (issue 6).
 *
 * When Redis says a bucket holds less than one token (a refusal, or an admission that
 * took the last whole token), it also says when the next token is due: tokens only come
 * back with time, and other gateways can only take them. Until then Redis would refuse
 * every request for that bucket, so the process may refuse them itself.
 *
 * Exactness. The caller reads a monotonic clock before the EVALSHA is sent (started)
 * and after the reply came (answered); Redis ran the script somewhere in between. The
 * bucket's real tokens at a later local instant now therefore lie between
 *     tokens + rate * (now - answered)   and   tokens + rate * (now - started),
 * and this module refuses only while the larger of the two is below 1: the local
 * deadline started + (1 - tokens) / rate is never later than Redis's own next token,
 * whatever the latency (which can only move it earlier) and whatever the clocks of the
 * hosts say (only durations on one monotonic clock are used; a margin of
 * REFUSECACHE_RATE_SLACK of the wait covers clocks that tick at slightly different
 * rates). The answer's tokens use the smaller bound: never more than Redis would
 * report, so Retry-After never sends a client back before its token is there.
 * RateLimit-Reset is Redis's own: the instant the bucket is full again does not move
 * while nobody can take a token.
 *
 * What can break the premise: someone adding tokens behind the gateways' back (DEL of
 * a bucket by hand, FLUSHALL, a Redis restarted without its data, another gateway with
 * a faster tier). Then local refusals go on until the deadline already known, at most
 * 1 / rate and never more than REFUSECACHE_HORIZON_S seconds after it happened.
 *
 * The table is fixed at creation (set-associative, no allocation per request), keyed
 * by tier and identifier; the whole key is stored and compared. Thread-safe: one mutex
 * per set, held only for a lookup or an update in memory, never across I/O.
 */
#ifndef SG_REFUSECACHE_H
#define SG_REFUSECACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "ratelimit.h"

#define REFUSECACHE_ENTRIES 4096    /* entries of the gateway's table (main.c) */
#define REFUSECACHE_WAYS 8          /* entries per set: a key lives in one set */
#define REFUSECACHE_HORIZON_S 10    /* no local refusal later than this after Redis's answer */
#define REFUSECACHE_RATE_SLACK 1e-3 /* the local wait is shortened by this fraction */

struct refusecache;

/*
 * A new, empty cache of at least entries entries (rounded up to a power of two, at
 * least REFUSECACHE_WAYS). New; NULL when out of memory.
 */
struct refusecache *refusecache_new(size_t entries);

/* Frees c (NULL allowed). No thread may use it any more. */
void refusecache_free(struct refusecache *c);

/*
 * Records what Redis answered for (v->tier, identifier): v is the verdict of
 * ratelimit_charge (borrowed, read only), started and answered the monotonic clock
 * (seconds) read before the EVALSHA was sent and after its reply came. A verdict that
 * left less than one token makes the key refused locally until its deadline (the
 * later deadline wins when the key is already known); one that left a whole token or
 * more forgets the key when the entry known was answered before this one was asked
 * (tokens came back behind the gateways' back). c NULL: nothing. Thread-safe.
 */
void refusecache_record(struct refusecache *c, const char *identifier,
                        const struct ratelimit_verdict *v, double started, double answered);

/*
 * True when Redis would refuse (tier, identifier) at now (the same monotonic clock):
 * then *v is filled as the refusal Redis would give (ratelimit_verdict_fill: allowed
 * false, tokens estimated from the answer, Retry-After from 1 up, RateLimit-Reset as
 * Redis said it). False, with *v untouched, when the key is unknown or its deadline has
 * passed: ask Redis. c NULL: false. tier and identifier borrowed. Thread-safe.
 */
bool refusecache_refused(struct refusecache *c, const struct tier *tier, const char *identifier,
                         double now, struct ratelimit_verdict *v);

/* The monotonic clock this module expects, in seconds (CLOCK_BOOTTIME). */
double refusecache_clock(void);

#endif
