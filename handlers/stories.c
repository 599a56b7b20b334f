/* stories: the story endpoints of SPEC 7. See include/stories.h. */
#include "stories.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cursor.h"
#include "storystore.h"
#include "tale.h"
#include "validate.h"

#define STORIES_TIME_MAX 32   /* bytes of "2026-01-01T00:00:00Z" and its NUL */
#define STORIES_NUMBER_MAX 24 /* bytes of a Retry-After value */

static const char NOT_FOUND[] = "Story not found";
static const char BUSY[] = "Story generation is busy; try again later";

/* Upstream generations in flight in this process, bounded by stories_generation_slots. */
static atomic_int generating;

int stories_generation_slots(int threads)
{
    return threads < 2 ? 1 : threads - (threads / 4 > 0 ? threads / 4 : 1);
}

/* The current time as SPEC 7's text and as µs since the epoch (the index order). */
static void stories_now(char iso[STORIES_TIME_MAX], long long *us)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(iso, STORIES_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (us != NULL)
        *us = (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void stories_unavailable(struct response *resp)
{
    response_detail(resp, 503, "Service temporarily unavailable");
    response_header(resp, "Retry-After", "1");
}

/* The answer for a storystore failure. */
static void stories_store_error(enum storystore_status status, struct response *resp)
{
    switch (status) {
    case STORYSTORE_NOT_FOUND: response_detail(resp, 404, NOT_FOUND); break;
    case STORYSTORE_COMPLETED: response_detail(resp, 409, "Story is already completed"); break;
    case STORYSTORE_FULL:
        response_detail(resp, 409, "Story has reached 30 parts; end it to finish");
        break;
    case STORYSTORE_CHANGED:
        response_detail(resp, 409, "Story changed while this part was written; try again");
        break;
    case STORYSTORE_TOO_MANY:
        response_detail(resp, 409, "Story limit reached (1000 stories); delete some first");
        break;
    default: stories_unavailable(resp); break;
    }
}

/* 200 with *story (taken) when status is OK, else the store error. */
static void stories_answer(enum storystore_status status, json_t **story, struct response *resp)
{
    if (status != STORYSTORE_OK) {
        stories_store_error(status, resp);
        return;
    }
    response_json(resp, 200, *story);
    *story = NULL;
}

static void stories_busy(struct response *resp, long retry_after)
{
    char value[STORIES_NUMBER_MAX];

    response_detail(resp, 503, BUSY);
    snprintf(value, sizeof value, "%ld", retry_after < 1 ? 1L : retry_after);
    response_header(resp, "Retry-After", value);
}

/*
 * Writes rq with the configured storyteller; 0, or -1 with the error answer in resp.
 * Upstream generations hold a slot: when all are taken the answer is 503 at once, so
 * threads stay free for everything else however slow MistralAI is.
 */
static int stories_write(struct handler_ctx *ctx, const struct tale_request *rq,
                         struct tale_result *out, struct response *resp)
{
    long retry_after = 1;
    bool upstream = ctx->cfg->mistral_api_key[0] != '\0';

    if (upstream &&
        atomic_fetch_add(&generating, 1) >= stories_generation_slots(ctx->cfg->threads)) {
        atomic_fetch_sub(&generating, 1);
        stories_busy(resp, 1);
        return -1;
    }
    enum tale_status st = tale_write(ctx->cfg, ctx->ai, rq, out, &retry_after);
    if (upstream)
        atomic_fetch_sub(&generating, 1);
    switch (st) {
    case TALE_OK: return 0;
    case TALE_TIMEOUT: response_detail(resp, 504, "Story generation timed out"); break;
    case TALE_RATE_LIMITED: stories_busy(resp, retry_after); break;
    case TALE_BAD_GATEWAY: response_detail(resp, 502, "Story generation failed"); break;
    default: response_detail(resp, 500, "Internal Server Error"); break;
    }
    return -1;
}

/* obj[field] as a string of 0..max characters; missing or null is "". 0, or -1 (422). */
static int stories_optional_string(json_t *obj, const char *field, size_t max,
                                   struct response *resp, const char **out)
{
    json_t *v = json_object_get(obj, field);

    if (v == NULL || json_is_null(v)) {
        *out = "";
        return 0;
    }
    *out = validate_string_or_reply(obj, field, 0, max, resp);
    return *out != NULL ? 0 : -1;
}

/*
 * Storage must work before a story is written, or the generation is wasted: 503 while
 * Redis is out, and for a user at the story limit 409. 0 when the story may be started.
 */
static int stories_store_ready(struct handler_ctx *ctx, struct response *resp)
{
    char key[IDENTITY_SUB_MAX + 16];

    if (rconn_outage()) {
        stories_unavailable(resp);
        return -1;
    }
    if (ctx->user == NULL)
        return 0;
    snprintf(key, sizeof key, "{u:%s}:stories", ctx->user);
    const char *argv[] = {"ZCARD", key};
    redisReply *r = rconn_command(ctx->redis, 2, argv, NULL);
    int rc = 0;
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        stories_unavailable(resp);
        rc = -1;
    } else if (r->integer >= STORYSTORE_USER_STORIES) {
        stories_store_error(STORYSTORE_TOO_MANY, resp);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

static json_t *stories_part(size_t n, const char *kind, const char *text, const char *input,
                            const char *model)
{
    return json_pack("{s:I, s:s, s:s, s:s?, s:s}", "n", (json_int_t)n, "kind", kind, "text", text,
                     "user_input", input, "model", model);
}

void stories_start(struct handler_ctx *ctx, struct response *resp)
{
    json_t *body = validate_body_object_or_reply(ctx->req, resp), *story = NULL;
    struct tale_result tr = {0};
    struct tale_request rq = {.kind = TALE_OPENING};
    struct storystore_ref ref = {.user = ""};
    char now[STORIES_TIME_MAX];
    long long us;

    if (body == NULL)
        return;
    if ((rq.genre = validate_string_or_reply(body, "genre", 1, TALE_GENRE_MAX, resp)) == NULL ||
        (rq.characters =
             validate_string_or_reply(body, "characters", 1, TALE_CHARACTERS_MAX, resp)) == NULL ||
        stories_optional_string(body, "opening_line", TALE_OPENING_MAX, resp, &rq.opening_line))
        goto out;
    if (stories_store_ready(ctx, resp) != 0 || stories_write(ctx, &rq, &tr, resp) != 0)
        goto out;
    storystore_new_id(ref.id);
    if (ctx->user != NULL)
        snprintf(ref.user, sizeof ref.user, "%s", ctx->user);
    stories_now(now, &us);
    story = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:[o], s:s, s:s}", "id", ref.id, "title",
                      tr.title, "genre", rq.genre, "characters", rq.characters, "opening_line",
                      rq.opening_line, "status", "in_progress", "parts",
                      stories_part(1, "opening", tr.text, NULL, tr.model), "created_at", now,
                      "updated_at", now);
    if (story == NULL) {
        response_detail(resp, 500, "Internal Server Error");
        goto out;
    }
    stories_answer(storystore_create(ctx->redis, &ref, story, us), &story, resp);
out:
    tale_result_free(&tr);
    json_decref(story);
    json_decref(body);
}

/* body["story_id"]: a string (else 422 and NULL); any string, valid or not, is returned. */
static const char *stories_story_id(json_t *body, struct response *resp)
{
    return validate_string_or_reply(body, "story_id", 0, SIZE_MAX, resp);
}

/* Fills rq's story fields and the texts of its parts from story (borrowed). */
static void stories_request(json_t *story, const char *texts[STORYSTORE_PARTS_MAX + 1],
                            struct tale_request *rq)
{
    json_t *parts = json_object_get(story, "parts"), *part;
    size_t i;

    rq->genre = json_string_value(json_object_get(story, "genre"));
    rq->characters = json_string_value(json_object_get(story, "characters"));
    rq->opening_line = json_string_value(json_object_get(story, "opening_line"));
    rq->title = json_string_value(json_object_get(story, "title"));
    rq->nparts = 0;
    json_array_foreach(parts, i, part)
    {
        const char *text = json_string_value(json_object_get(part, "text"));
        if (text != NULL && rq->nparts < STORYSTORE_PARTS_MAX + 1)
            texts[rq->nparts++] = text;
    }
    rq->parts = rq->nparts > 0 ? texts : NULL;
}

/* What stops a story from taking another part before anything is generated. */
static enum storystore_status stories_can_grow(json_t *story, bool ending)
{
    if (strcmp(json_string_value(json_object_get(story, "status")), "completed") == 0)
        return STORYSTORE_COMPLETED;
    size_t n = json_array_size(json_object_get(story, "parts"));
    if (!ending && n >= STORYSTORE_PARTS_MAX)
        return STORYSTORE_FULL;
    return STORYSTORE_OK;
}

/* Adds the generated part to the stored story and to story (borrowed). */
static enum storystore_status stories_append(struct handler_ctx *ctx,
                                             const struct storystore_ref *ref, json_t *story,
                                             json_t *part, bool ending)
{
    json_t *parts = json_object_get(story, "parts");
    char now[STORIES_TIME_MAX];
    size_t n = json_array_size(parts);

    stories_now(now, NULL);
    enum storystore_status st = storystore_append(
        ctx->redis, ref, n, STORYSTORE_PARTS_MAX + (ending ? 1 : 0), part, now, ending);
    if (st != STORYSTORE_OK)
        return st;
    json_array_append(parts, part);
    json_object_set_new(story, "updated_at", json_string(now));
    if (ending)
        json_object_set_new(story, "status", json_string("completed"));
    return STORYSTORE_OK;
}

/* POST /continue-story and POST /end-story. */
static void stories_advance(struct handler_ctx *ctx, struct response *resp, bool ending)
{
    json_t *body = validate_body_object_or_reply(ctx->req, resp), *story = NULL, *part = NULL;
    struct tale_result tr = {0};
    struct tale_request rq = {.kind = ending ? TALE_ENDING : TALE_CONTINUATION};
    const char *texts[STORYSTORE_PARTS_MAX + 1], *id, *input = "";
    struct storystore_ref ref;

    if (body == NULL)
        return;
    if ((id = stories_story_id(body, resp)) == NULL ||
        (!ending && stories_optional_string(body, "user_input", TALE_INPUT_MAX, resp, &input)))
        goto out;
    enum storystore_status st = storystore_get(ctx->redis, ctx->user, id, true, &story, &ref);
    if (st == STORYSTORE_OK)
        st = stories_can_grow(story, ending);
    if (st != STORYSTORE_OK) {
        stories_store_error(st, resp);
        goto out;
    }
    stories_request(story, texts, &rq);
    rq.user_input = input;
    if (stories_write(ctx, &rq, &tr, resp) != 0)
        goto out;
    part = stories_part(rq.nparts + 1, ending ? "ending" : "continuation", tr.text,
                        input[0] != '\0' ? input : NULL, tr.model);
    if (part == NULL) {
        response_detail(resp, 500, "Internal Server Error");
        goto out;
    }
    stories_answer(stories_append(ctx, &ref, story, part, ending), &story, resp);
out:
    tale_result_free(&tr);
    json_decref(part);
    json_decref(story);
    json_decref(body);
}

void stories_continue(struct handler_ctx *ctx, struct response *resp)
{
    stories_advance(ctx, resp, false);
}

void stories_end(struct handler_ctx *ctx, struct response *resp)
{
    stories_advance(ctx, resp, true);
}

/* A query parameter: 1 with *value (free() it), 0 absent, -1 malformed (422 in resp). */
static int stories_query(const struct request *req, const char *name, char **value,
                         struct response *resp)
{
    int got = request_form_value(req->query, strlen(req->query), name, value);
    if (got < 0)
        response_invalid(resp, "query", name, "Invalid query parameter value", "value_error");
    return got;
}

void stories_suggestions(struct handler_ctx *ctx, struct response *resp)
{
    struct tale_request rq = {.kind = TALE_SUGGESTIONS};
    struct tale_result tr = {0};
    const char *texts[STORYSTORE_PARTS_MAX + 1];
    struct storystore_ref ref;
    json_t *story = NULL;
    char *id = NULL;

    int got = stories_query(ctx->req, "story_id", &id, resp);
    if (got < 0)
        return;
    if (got == 0 || id[0] == '\0') {
        rq.kind = TALE_IDEAS;
    } else {
        enum storystore_status st = storystore_get(ctx->redis, ctx->user, id, true, &story, &ref);
        if (st != STORYSTORE_OK) {
            stories_store_error(st, resp);
            goto out;
        }
        stories_request(story, texts, &rq);
    }
    if (stories_write(ctx, &rq, &tr, resp) != 0)
        goto out;
    json_t *answer =
        json_pack("{s:s?, s:[s, s, s]}", "story_id", story ? ref.id : NULL, "suggestions",
                  tr.suggestions[0], tr.suggestions[1], tr.suggestions[2]);
    if (answer == NULL)
        response_detail(resp, 500, "Internal Server Error");
    else
        response_json(resp, 200, answer);
out:
    tale_result_free(&tr);
    json_decref(story);
    free(id);
}

/* ?limit= as 1..STORYSTORE_LIST_MAX (default STORIES_LIMIT_DEFAULT); 0, or -1 (422). */
static int stories_limit(const struct request *req, size_t *limit, struct response *resp)
{
    char *text = NULL, *end = NULL;
    int got = stories_query(req, "limit", &text, resp);

    *limit = STORIES_LIMIT_DEFAULT;
    if (got <= 0)
        return got;
    errno = 0;
    long v = strtol(text, &end, 10);
    bool integer = text[0] != '\0' && *end == '\0' && errno == 0 &&
                   (text[0] == '-' || (text[0] >= '0' && text[0] <= '9'));
    free(text);
    if (!integer) {
        response_invalid(resp, "query", "limit",
                         "Input should be a valid integer, unable to parse string as an integer",
                         "int_parsing");
        return -1;
    }
    if (v < 1 || v > STORYSTORE_LIST_MAX) {
        response_invalid(resp, "query", "limit",
                         v < 1 ? "Input should be greater than or equal to 1"
                               : "Input should be less than or equal to 100",
                         v < 1 ? "greater_than_equal" : "less_than_equal");
        return -1;
    }
    *limit = (size_t)v;
    return 0;
}

/* ?cursor= decoded into after ("" when absent); 0, or -1 (422). */
static int stories_cursor(struct handler_ctx *ctx, char after[CURSOR_MEMBER_LEN + 1],
                          struct response *resp)
{
    char *text = NULL;
    int got = stories_query(ctx->req, "cursor", &text, resp);

    after[0] = '\0';
    if (got <= 0)
        return got;
    int rc = cursor_decode(ctx->cfg->jwt_secret, ctx->cfg->jwt_secret_len, ctx->user, text, after);
    free(text);
    if (rc != 0)
        response_invalid(resp, "query", "cursor", "Invalid cursor", "value_error");
    return rc;
}

void stories_list(struct handler_ctx *ctx, struct response *resp)
{
    char after[CURSOR_MEMBER_LEN + 1], next[CURSOR_MEMBER_LEN + 1], cursor[CURSOR_TEXT_MAX];
    json_t *stories = NULL;
    size_t limit;

    if (stories_limit(ctx->req, &limit, resp) != 0 || stories_cursor(ctx, after, resp) != 0)
        return;
    enum storystore_status st =
        storystore_list(ctx->redis, ctx->user, after, limit, &stories, next);
    if (st != STORYSTORE_OK) {
        stories_store_error(st, resp);
        return;
    }
    bool more = next[0] != '\0' && cursor_encode(ctx->cfg->jwt_secret, ctx->cfg->jwt_secret_len,
                                                 ctx->user, next, cursor) == 0;
    json_t *answer =
        json_pack("{s:o, s:s?}", "stories", stories, "next_cursor", more ? cursor : NULL);
    if (answer == NULL)
        response_detail(resp, 500, "Internal Server Error");
    else
        response_json(resp, 200, answer);
}

void stories_get(struct handler_ctx *ctx, struct response *resp)
{
    struct storystore_ref ref;
    json_t *story = NULL;

    enum storystore_status st =
        storystore_get(ctx->redis, ctx->user, ctx->param ? ctx->param : "", false, &story, &ref);
    stories_answer(st, &story, resp);
    json_decref(story);
}

void stories_delete(struct handler_ctx *ctx, struct response *resp)
{
    enum storystore_status st =
        storystore_delete(ctx->redis, ctx->user, ctx->param ? ctx->param : "");
    if (st != STORYSTORE_OK)
        stories_store_error(st, resp);
    else
        response_json(resp, 204, NULL);
}
