/*
 * gateway: one request through the whole path: route, identify, charge the
 * bucket (or refuse), run the handler, write the answer with its rate-limit
 * headers. Each request thread owns one struct gateway_worker.
 */
#ifndef SG_GATEWAY_H
#define SG_GATEWAY_H

#include <fcgiapp.h>

#include "config.h"
#include "identity.h"
#include "mistral.h"
#include "rconn.h"
#include "refusal.h"
#include "refusecache.h"

struct gateway_worker {
    FCGX_Request fcgx;        /* this thread's request */
    struct rconn redis;       /* this thread's Redis connection */
    struct mistral_client ai; /* this thread's MistralAI client (one curl handle) */
    const struct config *cfg; /* borrowed, read-only */
    /* borrowed: the process's refusals known without Redis, shared by its threads
     * (thread-safe); NULL: every rate decision asks Redis */
    struct refusecache *refused;
    struct identity_cache tokens; /* this thread's verified tokens (identity.h) */
    struct refusal refusal;       /* this thread's 429 bodies and log line (refusal.h) */
};

/* Answers the request just accepted on w->fcgx. Never fails: errors are answers. */
void gateway_handle(struct gateway_worker *w);

#endif
