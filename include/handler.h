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

struct handler_ctx {
    const struct config *cfg;  /* borrowed, read-only */
    struct rconn *redis;       /* the thread's own connection */
    struct mistral_client *ai; /* the thread's own MistralAI client */
    const struct request *req; /* borrowed; body already read and bounded */
    const char *user;          /* sub of a valid token, or NULL for anonymous */
    const char *param;         /* the route's {parameter}, or NULL */
};

typedef void (*handler_fn)(struct handler_ctx *ctx, struct response *resp);

#endif
