/* router: the static route table of SPEC section 4. See include/router.h. */
#include "router.h"

#include <string.h>

#include "accounts.h"
#include "health.h"
#include "metricspage.h"
#include "stories.h"

/* Every route of SPEC 4. */
static const struct router_route routes[] = {
    {"POST", "/start-story", ROUTER_CLASS_AI, false, ROUTER_BODY_JSON, stories_start, NULL},
    {"POST", "/continue-story", ROUTER_CLASS_AI, false, ROUTER_BODY_JSON, stories_continue, NULL},
    {"POST", "/end-story", ROUTER_CLASS_AI, false, ROUTER_BODY_JSON, stories_end, NULL},
    {"GET", "/suggestions", ROUTER_CLASS_AI, false, ROUTER_BODY_NONE, stories_suggestions, NULL},
    {"GET", "/stories", ROUTER_CLASS_API, true, ROUTER_BODY_NONE, stories_list, NULL},
    {"GET", "/stories/{story_id}", ROUTER_CLASS_API, true, ROUTER_BODY_NONE, stories_get, NULL},
    {"DELETE", "/stories/{story_id}", ROUTER_CLASS_API, true, ROUTER_BODY_NONE, stories_delete,
     NULL},
    {"GET", "/me", ROUTER_CLASS_API, true, ROUTER_BODY_NONE, accounts_me, accounts_me_prefetch},
    {"POST", "/signup", ROUTER_CLASS_AUTH, false, ROUTER_BODY_JSON, accounts_signup, NULL},
    {"POST", "/login", ROUTER_CLASS_AUTH, false, ROUTER_BODY_JSON_OR_FORM, accounts_login, NULL},
    {"GET", "/healthz", ROUTER_CLASS_NONE, false, ROUTER_BODY_NONE, health_check, NULL},
    /* Not rate limited either (SPEC 4): a scrape must work while clients are refused. */
    {"GET", "/metrics", ROUTER_CLASS_NONE, false, ROUTER_BODY_NONE, metricspage_serve, NULL},
};

/* True when path matches pattern; a trailing "{name}" takes one segment into param. */
static bool router_path_matches(const char *pattern, const char *path,
                                char param[HANDLER_PARAM_MAX + 1])
{
    const char *brace = strchr(pattern, '{');
    size_t prefix = brace ? (size_t)(brace - pattern) : strlen(pattern);

    if (brace == NULL)
        return strcmp(pattern, path) == 0 && (param[0] = '\0', true);
    if (strncmp(pattern, path, prefix) != 0)
        return false;
    const char *seg = path + prefix;
    size_t len = strlen(seg);
    if (len == 0 || strchr(seg, '/') != NULL)
        return false;
    /* Longer than any identifier: the route still answers, with its own not-found. */
    if (len > HANDLER_PARAM_MAX)
        len = 0;
    memcpy(param, seg, len);
    param[len] = '\0';
    return true;
}

static void router_allow_add(char allow[ROUTER_ALLOW_MAX], const char *method)
{
    size_t used = strlen(allow);
    snprintf(allow + used, ROUTER_ALLOW_MAX - used, "%s%s", used ? ", " : "", method);
}

enum router_result router_match(const char *method, const char *path,
                                const struct router_route **route,
                                char param[HANDLER_PARAM_MAX + 1], char allow[ROUTER_ALLOW_MAX])
{
    char seg[HANDLER_PARAM_MAX + 1];
    bool path_known = false;

    allow[0] = '\0';
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!router_path_matches(routes[i].pattern, path, seg))
            continue;
        if (strcmp(routes[i].method, method) == 0) {
            *route = &routes[i];
            memcpy(param, seg, strlen(seg) + 1);
            return ROUTER_FOUND;
        }
        path_known = true;
        router_allow_add(allow, routes[i].method);
    }
    return path_known ? ROUTER_METHOD_NOT_ALLOWED : ROUTER_NOT_FOUND;
}

size_t router_count(void)
{
    return sizeof routes / sizeof routes[0];
}

const struct router_route *router_at(size_t i)
{
    return i < router_count() ? &routes[i] : NULL;
}

long router_index(const struct router_route *route)
{
    for (size_t i = 0; route != NULL && i < router_count(); i++) {
        if (route == &routes[i])
            return (long)i;
    }
    return -1;
}

const char *router_class_name(enum router_class class_)
{
    switch (class_) {
    case ROUTER_CLASS_AI: return "ai";
    case ROUTER_CLASS_API: return "api";
    case ROUTER_CLASS_AUTH: return "auth";
    default: return "none";
    }
}
