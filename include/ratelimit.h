/*
 * ratelimit: the token bucket of SPEC 5.3 and its answers (5.4, 5.5).
 *
 * One EVALSHA of lua/token_bucket.lua per request, Redis TIME as the clock. The
 * arithmetic that turns the script's reply into headers is kept pure so it can be
 * tested without Redis. Thread-safe: no shared state.
 */
#ifndef SG_RATELIMIT_H
#define SG_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "rconn.h"
#include "response.h"
#include "tiers.h"

#define RATELIMIT_IDENTIFIER_MAX 128 /* "user:<sub>" or "ip:<bucket>" */
#define RATELIMIT_HEADERS_MAX 512    /* bytes of the header block it writes */
#define RATELIMIT_RATE_TEXT_MAX 32   /* bytes ratelimit_format_rate may need, NUL included */

struct ratelimit_verdict {
    const struct tier *tier; /* borrowed from the config */
    bool allowed;
    double tokens;    /* tokens left after this request (fractional) */
    long remaining;   /* floor(tokens): RateLimit-Remaining */
    long reset_after; /* seconds until full, rounded up: "t" */
    long reset_at;    /* Unix seconds when full, rounded up: RateLimit-Reset */
    long retry_after; /* refused only: seconds until one token, rounded up, >= 1, <= t */
};

/*
 * Fills *v from the bucket state after a decision: tokens left (after taking one
 * when allowed) and now, the clock of the decision in Unix seconds.
 */
void ratelimit_verdict_fill(struct ratelimit_verdict *v, const struct tier *tier, bool allowed,
                            double tokens, double now);

/*
 * Charges one token to (tier, identifier) in Redis: one EVALSHA, with SCRIPT LOAD
 * and a second try after NOSCRIPT. identifier borrowed, at most
 * RATELIMIT_IDENTIFIER_MAX bytes. Returns 0 with *v filled, or -1 when Redis
 * could not decide (unreachable, timeout, unexpected reply).
 */
int ratelimit_charge(struct rconn *rc, const struct tier *tier, const char *identifier,
                     struct ratelimit_verdict *v);

/*
 * ratelimit_charge with a companion command (also, borrowed; NULL: none) sent in the
 * same round trip as the first EVALSHA, for a handler that will need a read if the
 * request is allowed (GET /me's user record). *also_reply: its reply (caller frees),
 * or NULL when it was not answered, whatever the return value.
 */
int ratelimit_charge_with(struct rconn *rc, const struct tier *tier, const char *identifier,
                          const struct rconn_cmd *also, redisReply **also_reply,
                          struct ratelimit_verdict *v);

/*
 * The middle of ratelimit_charge, exposed for its table-driven test: checks the
 * script's reply (borrowed) strictly, {integer 0|1, string holding a finite double,
 * TIME seconds, TIME microseconds (strings or integers)}, and fills *v from it.
 * Returns 0, or -1 for any other shape, with *v untouched.
 */
int ratelimit_reply_verdict(const redisReply *reply, const struct tier *tier,
                            struct ratelimit_verdict *v);

/*
 * Writes the header lines of SPEC 5.4 ("Name: value\r\n" each: RateLimit-Limit,
 * RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, RateLimit), plus
 * Retry-After when refused, into buf. Returns the length, or -1 if it does not fit.
 */
int ratelimit_headers(const struct ratelimit_verdict *v, char *buf, size_t len);

/*
 * Deletes the bucket of (tier, identifier): it is full again. 0, or -1 when Redis did
 * not answer.
 */
int ratelimit_reset(struct rconn *rc, const struct tier *tier, const char *identifier);

/*
 * A refusal decided outside the gateway's own charge (the per-account log-in limit):
 * sets the 429 of SPEC 5.5 in resp (the JSON body, or the RFC 9457 document when
 * problem), adds the headers of v and marks resp->ratelimit_done, so the gateway adds
 * no headers of its own tier.
 */
void ratelimit_refuse(const struct ratelimit_verdict *v, bool problem, struct response *resp);

/*
 * The rest of ratelimit_refuse, for a caller that set the body itself
 * (include/refusal.h): the headers of v, resp->ratelimit_done, the Retry-After metric.
 */
void ratelimit_refuse_headers(const struct ratelimit_verdict *v, struct response *resp);

/* The Content-Type of the RFC 9457 problem document. */
#define RATELIMIT_PROBLEM_TYPE "application/problem+json"

/* The 429 body of SPEC 5.5 ({"error",...,"detail":{...}}). New reference. */
json_t *ratelimit_body(const struct ratelimit_verdict *v);

/* The RFC 9457 problem document of SPEC 5.5. New reference. */
json_t *ratelimit_problem(const struct ratelimit_verdict *v);

/*
 * The tier's rate in its shortest decimal form ("0.5", "2") into buf: the fewest
 * significant digits that read back as the same double, in plain notation (1e6 is
 * "1000000"); exponent notation only below 1e-6 or from 1e21 on. buf gets "" when
 * the text does not fit in len bytes (RATELIMIT_RATE_TEXT_MAX always fits).
 */
void ratelimit_format_rate(double rate, char *buf, size_t len);

#endif
