/*
 * localbucket: in-process token buckets for RATE_LIMIT_FAIL_MODE=local (SPEC 5.6),
 * used only while Redis is unreachable. Same tiers, same arithmetic, the process's
 * own clock. A bounded table: when full, the least recently used bucket is
 * forgotten (which can only admit more, never refuse a request wrongly).
 * Thread-safe: one mutex guards the table; no I/O happens under it.
 */
#ifndef SG_LOCALBUCKET_H
#define SG_LOCALBUCKET_H

#include "ratelimit.h"

#define LOCALBUCKET_SLOTS 16384

/* Charges one token to (tier, identifier) and fills *v like ratelimit_charge. now:
 * Unix seconds (CLOCK_REALTIME) of the decision. Never fails. */
void localbucket_charge(const struct tier *tier, const char *identifier, double now,
                        struct ratelimit_verdict *v);

/* Forgets every bucket (for tests). Buckets left from an earlier outage need no reset:
 * they refill with time like any other, so a later outage starts from their state. */
void localbucket_reset(void);

#endif
