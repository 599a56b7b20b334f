/* refusal: a request thread's 429 bodies and rate_limited line. See include/refusal.h. */
#include "refusal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void refusal_init(struct refusal *r)
{
    memset(r, 0, sizeof *r);
}

void refusal_free(struct refusal *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < REFUSAL_BODIES; i++)
        free(r->bodies[i].text);
    json_decref(r->line);
    refusal_init(r);
}

static size_t refusal_slot(const struct tier *tier, long retry_after, bool problem)
{
    uintptr_t h = (uintptr_t)tier / sizeof(void *);

    h = h * 31u + (uintptr_t)retry_after;
    return (size_t)(h * 2u + problem) % REFUSAL_BODIES;
}

/* The body for (tier, retry_after, problem): r's, or serialised now and kept. */
static const struct refusal_body *refusal_body(struct refusal *r, const struct ratelimit_verdict *v,
                                               bool problem)
{
    struct refusal_body *b = &r->bodies[refusal_slot(v->tier, v->retry_after, problem)];

    if (b->text != NULL && b->tier == v->tier && b->retry_after == v->retry_after &&
        b->problem == problem)
        return b;
    json_t *body = problem ? ratelimit_problem(v) : ratelimit_body(v);
    /* The flags response_serialize dumps a JSON body with: the same bytes. */
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(body);
    if (text == NULL)
        return NULL;
    free(b->text);
    *b = (struct refusal_body){v->tier, v->retry_after, problem, text, strlen(text)};
    return b;
}

void refusal_answer(struct refusal *r, const struct ratelimit_verdict *v, bool problem,
                    struct response *resp)
{
    const struct refusal_body *b = refusal_body(r, v, problem);
    char *copy = b != NULL ? malloc(b->len + 1) : NULL;

    if (copy == NULL) {
        ratelimit_refuse(v, problem, resp);
        return;
    }
    memcpy(copy, b->text, b->len + 1);
    response_text(resp, 429, problem ? RATELIMIT_PROBLEM_TYPE : NULL, copy, b->len);
    ratelimit_refuse_headers(v, resp);
}

/* The line's members in SPEC 5.7's order, each kept to be replaced in place. */
static int refusal_line_new(struct refusal *r)
{
    json_t *line = log_line_new(LOG_WARN, "rate_limited");
    struct {
        const char *key;
        json_t **value;
        json_t *initial;
    } members[] = {
        {"identifier", &r->identifier, json_string("")},
        {"tier", &r->tier, json_string("")},
        {"path", &r->path, json_string("")},
        {"tokens_remaining", &r->tokens, json_real(0.0)},
        {"retry_after", &r->retry_after, json_integer(0)},
        {"decided_by", &r->decided_by, json_string("")},
    };
    size_t n = sizeof members / sizeof members[0];
    int rc = line != NULL ? 0 : -1;

    for (size_t i = 0; i < n; i++) {
        /* set_new steals initial even when it fails; after a failure, only drop */
        if (rc == 0 && json_object_set_new(line, members[i].key, members[i].initial) != 0)
            rc = -1;
        else if (rc != 0)
            json_decref(members[i].initial);
    }
    if (rc != 0) {
        json_decref(line);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        *members[i].value = members[i].initial; /* borrowed from line */
    r->line = line;
    return 0;
}

/* Replaces a string value unless it already holds s. 0, or -1 (not UTF-8, no memory). */
static int refusal_set(json_t *value, const char *s)
{
    if (strcmp(json_string_value(value), s) == 0)
        return 0;
    return json_string_set(value, s);
}

void refusal_log(struct refusal *r, const char *identifier, const struct ratelimit_verdict *v,
                 const char *path, const char *decided_by)
{
    if (!log_enabled(LOG_WARN))
        return;
    if ((r->line == NULL && refusal_line_new(r) != 0) ||
        refusal_set(r->identifier, identifier) != 0 || refusal_set(r->tier, v->tier->name) != 0 ||
        refusal_set(r->path, path) != 0 || refusal_set(r->decided_by, decided_by) != 0 ||
        json_real_set(r->tokens, floor(v->tokens * 1000.0 + 0.5) / 1000.0) != 0 ||
        json_integer_set(r->retry_after, (json_int_t)v->retry_after) != 0) {
        /* Out of memory, or text that is not UTF-8: the line still says a refusal
         * happened, as log_event does when its fields cannot be built. */
        log_event(LOG_WARN, "rate_limited", NULL);
        return;
    }
    log_line_write(LOG_WARN, r->line);
}
