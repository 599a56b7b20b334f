/*
 * router: the route table of SPEC section 4, matched by method and path.
 *
 * The table is static and read-only: thread-safe. The router answers which route
 * (if any) a request is for; 404 and 405 are decided here, answered by the gateway.
 */
#ifndef SG_ROUTER_H
#define SG_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "handler.h"

enum router_class {
    ROUTER_CLASS_NONE, /* not rate limited (/healthz, /metrics) */
    ROUTER_CLASS_AI,
    ROUTER_CLASS_API,
    ROUTER_CLASS_AUTH,
};

enum router_body {
    ROUTER_BODY_NONE,         /* body ignored */
    ROUTER_BODY_JSON,         /* application/json */
    ROUTER_BODY_JSON_OR_FORM, /* application/json or x-www-form-urlencoded (/login) */
};

struct router_route {
    const char *method;
    const char *pattern; /* literal path, or one trailing "{name}" segment */
    enum router_class class_;
    bool needs_user;
    enum router_body body;
    handler_fn handler;
    handler_prefetch_fn prefetch; /* NULL: the handler needs nothing read in advance */
};

enum router_result { ROUTER_FOUND, ROUTER_NOT_FOUND, ROUTER_METHOD_NOT_ALLOWED };

#define ROUTER_ALLOW_MAX 64 /* bytes of an Allow header value */

/*
 * Matches method and path (both borrowed). On ROUTER_FOUND, *route points into the
 * static table and param holds the {parameter} ("" when the route has none). On
 * ROUTER_METHOD_NOT_ALLOWED, allow holds the methods of that path ("GET, DELETE").
 * A parameter is one non-empty segment without '/'; one longer than HANDLER_PARAM_MAX bytes
 * cannot be an identifier and arrives as "", so the route answers its own not-found.
 */
enum router_result router_match(const char *method, const char *path,
                                const struct router_route **route,
                                char param[HANDLER_PARAM_MAX + 1], char allow[ROUTER_ALLOW_MAX]);

/* How many routes the table holds. */
size_t router_count(void);

/* The i-th route of the table (0 <= i < router_count()), or NULL. Static, read-only. */
const struct router_route *router_at(size_t i);

/* The index of route in the table, or -1 when it is not one of the table's. */
long router_index(const struct router_route *route);

/* The class name used in logs: "ai", "api", "auth" or "none". */
const char *router_class_name(enum router_class class_);

#endif
