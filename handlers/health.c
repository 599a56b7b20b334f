/* health: GET /healthz. See include/health.h. */
#include "health.h"

void health_check(struct handler_ctx *ctx, struct response *resp)
{
    const char *argv[] = {"PING"};
    redisReply *r = rconn_command(ctx->redis, 1, argv, NULL);
    bool up = r != NULL && r->type == REDIS_REPLY_STATUS;

    freeReplyObject(r);
    if (up)
        response_json(resp, 200, json_pack("{s:s, s:s}", "status", "ok", "redis", "ok"));
    else
        response_json(resp, 503, json_pack("{s:s, s:s}", "status", "degraded", "redis", "down"));
}
