/*
 * refusal: the gateway's 429 and its log line (SPEC 5.5, 5.7), built for a request
 * thread that refuses again and again.
 *
 * A refused request is the cheapest answer the gateway gives (no Redis when the
 * refusal is known, include/refusecache.h), so its answer must not cost more than the
 * decision. Two things are kept per thread and reused:
 *  - the 429 body, serialised by jansson once per (tier, Retry-After, problem or not)
 *    in a small direct-mapped table: the body depends on nothing else, so a client
 *    gets the bytes ratelimit_refuse (include/ratelimit.h) would have built;
 *  - the rate_limited log line: one jansson object whose values are replaced in place
 *    before each write, so no object is built and no member inserted per refusal.
 * Not shared between threads: each request thread owns one struct refusal.
 */
#ifndef SG_REFUSAL_H
#define SG_REFUSAL_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "ratelimit.h"
#include "response.h"

#define REFUSAL_BODIES 16 /* bodies kept per thread */

struct refusal_body {
    const struct tier *tier; /* borrowed; NULL: an empty slot */
    long retry_after;
    bool problem;
    char *text; /* owned, serialised by jansson */
    size_t len;
};

struct refusal {
    struct refusal_body bodies[REFUSAL_BODIES];
    json_t *line; /* owned: the log line, NULL until the first refusal */
    /* borrowed from line: the values replaced per refusal */
    json_t *identifier, *tier, *path, *tokens, *retry_after, *decided_by;
};

/* An empty struct refusal: nothing is built before the first refusal. */
void refusal_init(struct refusal *r);
/* Frees what r holds; r is empty again. r may be NULL. */
void refusal_free(struct refusal *r);

/*
 * Fills resp with the 429 for verdict v (refused) and its rate-limit headers, as
 * ratelimit_refuse does (problem: RFC 9457 document), the body from r's table.
 * Falls back to ratelimit_refuse when a body cannot be kept (allocation failure).
 */
void refusal_answer(struct refusal *r, const struct ratelimit_verdict *v, bool problem,
                    struct response *resp);

/*
 * Writes the rate_limited line at level warn (SPEC 5.7): identifier, tier, path,
 * tokens_remaining (to 3 decimals), retry_after and decided_by. identifier must be
 * valid UTF-8 and path printable ASCII (log_printable); all borrowed.
 */
void refusal_log(struct refusal *r, const char *identifier, const struct ratelimit_verdict *v,
                 const char *path, const char *decided_by);

#endif
