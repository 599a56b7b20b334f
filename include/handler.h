/*
 * handler: what an endpoint handler receives. A handler reads ctx, fills resp
 * (status, JSON body, extra headers) and returns; it never writes to the client,
 * never checks the method (the router did) and never charges a bucket (the gateway
 * did, before calling it).
 */
#ifndef SG_HANDLER_H
#define SG_HANDLER_H

#include "config.h"
#include "mistral.h"
#include "rconn.h"
#include "request.h"
#include "response.h"

#define HANDLER_PARAM_MAX 128 /* bytes of a {path parameter} */

#define HANDLER_PREFETCH_KEY_MAX 192 /* bytes of the key a prefetch reads */
#define HANDLER_PREFETCH_ARGS 8

/*
 * A read a route's handler will need from Redis, sent in the same round trip as the
 * rate decision (include/ratelimit.h, ratelimit_charge_with): GET /me's user record.
 * argv may point into key, so a struct handler_prefetch is never copied.
 */
struct handler_prefetch {
    char key[HANDLER_PREFETCH_KEY_MAX];
    const char *argv[HANDLER_PREFETCH_ARGS];
    int argc;
};

/* Fills *pf for user (borrowed). 0, or -1: nothing to prefetch. */
typedef int (*handler_prefetch_fn)(const char *user, struct handler_prefetch *pf);

struct handler_ctx {
    const struct config *cfg;  /* borrowed, read-only */
    struct rconn *redis;       /* the thread's own connection */
    struct mistral_client *ai; /* the thread's own MistralAI client */
    const struct request *req; /* borrowed; body already read and bounded */
    const char *user;          /* sub of a valid token, or NULL for anonymous */
    const char *param;         /* the route's {parameter}, or NULL */
    /* borrowed: the reply to the route's prefetch (may be an error reply), or NULL when
     * it was not sent (refused locally, Redis down): the handler reads for itself */
    const redisReply *prefetched;
};

typedef void (*handler_fn)(struct handler_ctx *ctx, struct response *resp);

#endif
