/* health: GET /healthz, liveness and Redis state (SPEC 4). */
#ifndef SG_HEALTH_H
#define SG_HEALTH_H

#include "handler.h"

/* 200 {"status":"ok","redis":"ok"}, or 503 {"status":"degraded","redis":"down"}. */
void health_check(struct handler_ctx *ctx, struct response *resp);

#endif
