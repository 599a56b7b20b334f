/* gateway: the request path, start to finish. See include/gateway.h. */
#include "gateway.h"

#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clientip.h"
#include "identity.h"
#include "localbucket.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "refusal.h"
#include "refusecache.h"
#include "request.h"
#include "response.h"
#include "router.h"

#define GATEWAY_LOG_PATH_MAX 256 /* bytes of a request path quoted in a log line */

/* Who is calling: a valid user, or an address (also for an invalid token). */
struct gateway_caller {
    enum identity_status status;
    char sub[IDENTITY_SUB_MAX + 1];
    char identifier[RATELIMIT_IDENTIFIER_MAX + 1]; /* "user:<sub>" or "ip:<bucket>" */
};

/* Whose verdict a charge is: Redis's, the refusal cache's, or fail mode local's bucket. */
enum gateway_decider { GATEWAY_BY_REDIS, GATEWAY_BY_REFUSECACHE, GATEWAY_BY_LOCALBUCKET };

/* The outcome of charging a bucket. */
struct gateway_charge {
    bool decided;            /* false: fail mode open let it through without a verdict */
    enum gateway_decider by; /* whose verdict it is, when decided */
    struct ratelimit_verdict verdict;
    redisReply *prefetched; /* owned: the reply to the route's prefetch, or NULL */
};

static void gateway_client_ip(const struct config *cfg, const struct request *req,
                              char out[CLIENTIP_TEXT_MAX])
{
    struct clientip_addr addr;
    bool malformed = false;

    if (!clientip_resolve(req->remote_addr, req->forwarded_for, &cfg->trusted_proxies, &addr,
                          &malformed)) {
        /* Only a web server that sends no usable REMOTE_ADDR gets here: say so once. */
        static atomic_bool warned;
        if (!atomic_exchange(&warned, true))
            log_event(LOG_WARN, "remote_addr_unusable",
                      json_pack("{s:s}", "hint",
                                "clients without a usable REMOTE_ADDR share the bucket "
                                "ip:unknown"));
        snprintf(out, CLIENTIP_TEXT_MAX, "unknown");
        return;
    }
    clientip_bucket(&addr, out);
    if (malformed)
        log_event(LOG_WARN, "xff_malformed",
                  json_pack("{s:s, s:s}", "client", out, "hint",
                            "a trusted proxy sent a malformed X-Forwarded-For entry"));
}

/*
 * Identifies the caller. use_token false (the auth class: sign-up and log-in, charged by
 * IP for everyone) ignores the Authorization header, so a client holding an expired
 * token can still log in again, as it could with the FastAPI backend.
 */
static void gateway_identify(struct gateway_worker *w, const struct request *req, bool use_token,
                             struct gateway_caller *caller)
{
    const struct config *cfg = w->cfg;
    char ip[CLIENTIP_TEXT_MAX];

    caller->sub[0] = '\0';
    caller->status = use_token
                         ? identity_check_cached(&w->tokens, req->authorization, cfg->jwt_secret,
                                                 cfg->jwt_secret_len, time(NULL), caller->sub)
                         : IDENTITY_NONE;
    if (caller->status == IDENTITY_USER) {
        snprintf(caller->identifier, sizeof caller->identifier, "user:%s", caller->sub);
        return;
    }
    gateway_client_ip(cfg, req, ip);
    snprintf(caller->identifier, sizeof caller->identifier, "ip:%s", ip);
}

static const struct tier *gateway_tier(const struct config *cfg, enum router_class class_,
                                       const struct gateway_caller *caller)
{
    bool user = caller->status == IDENTITY_USER;
    const char *name;

    switch (class_) {
    case ROUTER_CLASS_AI: name = user ? TIER_AI_AUTH : TIER_AI_ANON; break;
    case ROUTER_CLASS_AUTH: name = TIER_AUTH; break;
    default: name = user ? TIER_API_AUTH : TIER_API_ANON; break;
    }
    return tiers_find(&cfg->tiers, name);
}

static double gateway_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The 429 and its log line. decided_by says who refused: "redis", "refusal_cache" (a
 * refusal known in this process, Redis not asked) or "local_bucket" (fail mode local
 * while Redis is down).
 */
static void gateway_refuse(struct gateway_worker *w, const struct request *req,
                           const struct gateway_caller *caller, const struct ratelimit_verdict *v,
                           enum gateway_decider by, struct response *resp)
{
    static const char *const deciders[] = {"redis", "refusal_cache", "local_bucket"};

    refusal_answer(&w->refusal, v, request_wants_problem(req), resp);
    /* The path is the client's bytes: made printable, or jansson would refuse the line. */
    char path[GATEWAY_LOG_PATH_MAX + 4];
    log_printable(req->path, GATEWAY_LOG_PATH_MAX, path, sizeof path);
    refusal_log(&w->refusal, caller->identifier, v, path, deciders[by]);
}

/*
 * A refusal the process already knows (include/refusecache.h), answered without Redis
 * whatever the fail mode: Redis said so itself, less than 1 / rate ago. True with the
 * 429 in resp.
 */
static bool gateway_known_refusal(struct gateway_worker *w, const struct tier *tier,
                                  const struct gateway_caller *caller, const struct request *req,
                                  struct gateway_charge *charge, struct response *resp)
{
    if (!refusecache_refused(w->refused, tier, caller->identifier, refusecache_clock(),
                             &charge->verdict))
        return false;
    charge->decided = true;
    charge->by = GATEWAY_BY_REFUSECACHE;
    gateway_refuse(w, req, caller, &charge->verdict, GATEWAY_BY_REFUSECACHE, resp);
    return true;
}

/*
 * Charges the caller's bucket in Redis. Returns 0 when the request may go on, or -1
 * when resp already holds the answer (429, or 503 in fail mode closed).
 *
 * The clock is read before the EVALSHA is sent, so latency can only make the deadline
 * of a refusal recorded for later (include/refusecache.h) earlier. Only Redis's
 * verdicts are recorded, never those of fail mode local. also (NULL: none) is the
 * route's prefetch, sent with the EVALSHA; its reply lands in charge->prefetched.
 */
static int gateway_charge_or_reply(struct gateway_worker *w, const struct tier *tier,
                                   const struct gateway_caller *caller, const struct request *req,
                                   const struct rconn_cmd *also, struct gateway_charge *charge,
                                   struct response *resp)
{
    double started = refusecache_clock();

    charge->decided = true;
    charge->by = GATEWAY_BY_REDIS;
    if (ratelimit_charge_with(&w->redis, tier, caller->identifier, also, &charge->prefetched,
                              &charge->verdict) == 0) {
        refusecache_record(w->refused, caller->identifier, &charge->verdict, started,
                           refusecache_clock());
    } else {
        switch (w->cfg->fail_mode) {
        case FAIL_OPEN:
            charge->decided = false;
            rconn_count_passed();
            return 0;
        case FAIL_CLOSED:
            charge->decided = false;
            response_detail(resp, 503, "Service temporarily unavailable");
            response_header(resp, "Retry-After", "1");
            return -1;
        case FAIL_LOCAL:
            charge->by = GATEWAY_BY_LOCALBUCKET;
            localbucket_charge(tier, caller->identifier, gateway_now(), &charge->verdict);
            break;
        }
    }
    if (charge->verdict.allowed)
        return 0;
    gateway_refuse(w, req, caller, &charge->verdict, charge->by, resp);
    return -1;
}

/* Reads and checks the body a route takes. 0, or -1 with the 4xx in resp. */
static int gateway_body_or_reply(const struct router_route *route, struct request *req, char **envp,
                                 FCGX_Stream *in, struct response *resp)
{
    if (route->body == ROUTER_BODY_NONE)
        return 0;
    switch (request_read_body(req, envp, in)) {
    case REQUEST_BODY_TOO_LARGE:
        response_detail(resp, 413, "Request body too large (limit 65536 bytes)");
        return -1;
    case REQUEST_BODY_BAD: response_detail(resp, 400, "Malformed request body"); return -1;
    case REQUEST_BODY_OK: break;
    }
    bool form_ok = route->body == ROUTER_BODY_JSON_OR_FORM;
    if (req->content == REQUEST_CONTENT_JSON || (form_ok && req->content == REQUEST_CONTENT_FORM))
        return 0;
    if (req->content == REQUEST_CONTENT_NONE && req->body_len == 0)
        return 0;
    response_detail(resp, 415,
                    form_ok ? "Content-Type must be application/json or "
                              "application/x-www-form-urlencoded"
                            : "Content-Type must be application/json");
    return -1;
}

static void gateway_unauthorized(struct response *resp, bool invalid_token)
{
    if (invalid_token) {
        response_detail(resp, 401, "Could not validate credentials");
        response_header(resp, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
    } else {
        response_detail(resp, 401, "Not authenticated");
        response_header(resp, "WWW-Authenticate", "Bearer");
    }
}

static void gateway_run(struct gateway_worker *w, const struct router_route *route,
                        const char *param, const char *user, const redisReply *prefetched,
                        struct request *req, struct response *resp)
{
    struct handler_ctx ctx = {.cfg = w->cfg,
                              .redis = &w->redis,
                              .ai = &w->ai,
                              .req = req,
                              .user = user,
                              .param = param[0] ? param : NULL,
                              .prefetched = prefetched};

    route->handler(&ctx, resp);
}

/*
 * The route's read to send with the rate decision (include/handler.h): only for a user
 * with a valid token, the one case where the handler will run and read. NULL: none.
 */
static const struct rconn_cmd *gateway_prefetch(const struct router_route *route,
                                                const struct gateway_caller *caller,
                                                struct handler_prefetch *pf, struct rconn_cmd *cmd)
{
    if (route == NULL || route->prefetch == NULL || caller->status != IDENTITY_USER ||
        route->prefetch(caller->sub, pf) != 0)
        return NULL;
    *cmd = (struct rconn_cmd){pf->argc, pf->argv, NULL};
    return cmd;
}

/*
 * The rate decision: a refusal known locally, else Redis's (with the route's prefetch,
 * whose command lives in this frame until it is sent). 0 when the request may go on,
 * or -1 with the answer in resp.
 */
static int gateway_decide(struct gateway_worker *w, const struct router_route *found,
                          const struct tier *tier, const struct gateway_caller *caller,
                          const struct request *req, struct gateway_charge *charge,
                          struct response *resp)
{
    struct handler_prefetch pf;
    struct rconn_cmd cmd;

    if (gateway_known_refusal(w, tier, caller, req, charge, resp))
        return -1;
    const struct rconn_cmd *also = gateway_prefetch(found, caller, &pf, &cmd);
    return gateway_charge_or_reply(w, tier, caller, req, also, charge, resp);
}

/* How the request's rate limit ended, for the metrics (include/metrics.h). */
static enum metrics_outcome gateway_outcome(const struct gateway_worker *w,
                                            const struct router_route *route,
                                            const struct gateway_charge *c)
{
    if (route != NULL && route->class_ == ROUTER_CLASS_NONE)
        return METRICS_UNLIMITED;
    if (!c->decided)
        return w->cfg->fail_mode == FAIL_CLOSED ? METRICS_CLOSED_REDIS_DOWN
                                                : METRICS_PASSED_REDIS_DOWN;
    if (c->by == GATEWAY_BY_REFUSECACHE)
        return METRICS_LIMITED_LOCAL;
    if (c->by == GATEWAY_BY_LOCALBUCKET)
        return c->verdict.allowed ? METRICS_FALLBACK_ALLOWED : METRICS_FALLBACK_LIMITED;
    return c->verdict.allowed ? METRICS_ALLOWED : METRICS_LIMITED;
}

static void gateway_dispatch(struct gateway_worker *w, struct request *req, struct response *resp)
{
    const struct router_route *route = NULL;
    char param[HANDLER_PARAM_MAX + 1] = "", allow[ROUTER_ALLOW_MAX] = "";
    struct gateway_caller caller = {.status = IDENTITY_NONE};
    struct gateway_charge charge = {0};
    const struct tier *tier = NULL;
    char lines[RATELIMIT_HEADERS_MAX];

    enum router_result rr = req->path_too_long
                                ? ROUTER_NOT_FOUND
                                : router_match(req->method, req->path, &route, param, allow);
    if (rr == ROUTER_FOUND && route->class_ == ROUTER_CLASS_NONE) {
        gateway_run(w, route, param, NULL, NULL, req, resp);
        goto count;
    }
    enum router_class class_ = rr == ROUTER_FOUND ? route->class_ : ROUTER_CLASS_API;
    gateway_identify(w, req, class_ != ROUTER_CLASS_AUTH, &caller);
    tier = gateway_tier(w->cfg, class_, &caller);
    if (gateway_decide(w, rr == ROUTER_FOUND ? route : NULL, tier, &caller, req, &charge, resp) !=
        0)
        goto headers;
    if (caller.status == IDENTITY_INVALID) {
        gateway_unauthorized(resp, true);
    } else if (rr == ROUTER_NOT_FOUND) {
        response_detail(resp, 404, "Not Found");
    } else if (rr == ROUTER_METHOD_NOT_ALLOWED) {
        response_detail(resp, 405, "Method Not Allowed");
        response_header(resp, "Allow", allow);
    } else if (route->needs_user && caller.status != IDENTITY_USER) {
        gateway_unauthorized(resp, false);
    } else if (gateway_body_or_reply(route, req, w->fcgx.envp, w->fcgx.in, resp) == 0) {
        gateway_run(w, route, param, caller.status == IDENTITY_USER ? caller.sub : NULL,
                    charge.prefetched, req, resp);
    }
headers:
    if (charge.decided && !resp->ratelimit_done) {
        int n = ratelimit_headers(&charge.verdict, lines, sizeof lines);
        if (n > 0)
            response_headers_raw(resp, lines, (size_t)n);
    }
count:
    metrics_request(rr == ROUTER_FOUND ? route : NULL, tier, gateway_outcome(w, route, &charge),
                    caller.status == IDENTITY_USER, resp->status);
    freeReplyObject(charge.prefetched);
}

void gateway_handle(struct gateway_worker *w)
{
    struct request req;
    struct response resp;

    request_init(&req, w->fcgx.envp);
    response_init(&resp);
    gateway_dispatch(w, &req, &resp);
    /* On every API answer (issue 5): fixed lines, appended as they are. */
    static const char always[] = "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n";
    response_headers_raw(&resp, always, sizeof always - 1);
    response_write(&resp, w->fcgx.out);
    response_free(&resp);
    request_free(&req);
}
