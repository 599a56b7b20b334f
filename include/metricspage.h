/*
 * metricspage: GET /metrics, the host's metrics (fcgi/metrics.c) in the Prometheus text
 * exposition format 0.0.4.
 *
 * Answered only to a client whose address, resolved through TRUSTED_PROXIES as for
 * rate limiting (SPEC 5.2), is loopback (127.0.0.0/8, ::1), or that sends
 * "Authorization: Bearer <METRICS_TOKEN>" (compared in constant time); anyone else gets
 * 403 {"detail":"Forbidden"}. Behind a proxy on the same host every peer is loopback,
 * which is why the resolved address counts, not REMOTE_ADDR. Not rate limited (SPEC 4).
 * Pure apart from reading the shared counters: thread-safe.
 */
#ifndef SG_METRICSPAGE_H
#define SG_METRICSPAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "clientip.h"
#include "config.h"
#include "handler.h"
#include "request.h"

#define METRICSPAGE_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICSPAGE_AUTH_MAX 1024 /* bytes of an Authorization value looked at */

/* True for 127.0.0.0/8 and ::1 (an IPv4-mapped address is IPv4 already). */
bool metricspage_loopback(const struct clientip_addr *addr);

/*
 * True when authorization (the header's value, borrowed, may be NULL) is "Bearer "
 * followed by token (token_len bytes, borrowed). The scheme is matched without regard
 * to case, blanks around the token are ignored. Constant time in the token's bytes and
 * length (both sides are hashed first). token_len 0 (no METRICS_TOKEN): always false.
 */
bool metricspage_token_ok(const char *authorization, const char *token, size_t token_len);

/* True when the request may read the page (see above). cfg and req borrowed. */
bool metricspage_allowed(const struct config *cfg, const struct request *req);

/* 200 the page, 403 {"detail":"Forbidden"}, or 503 {"detail":"Metrics unavailable"}
 * when this process has no metrics segment (its start-up log says why). */
void metricspage_serve(struct handler_ctx *ctx, struct response *resp);

#endif
