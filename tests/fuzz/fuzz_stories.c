/*
 * fuzz_stories: what the story endpoints read from the client, through the real handlers
 * (handlers/stories.c): the JSON bodies of POST /start-story, /continue-story and
 * /end-story, and the query strings of GET /suggestions (story_id) and GET /stories
 * (limit, and the cursor decoded with the user's key).
 *
 * Redis is unreachable (fuzz_redis_down): a request that parses gets 503 at its first
 * storage step, or 404 for a story id that cannot exist; GET /suggestions without a
 * story is answered by the offline storyteller (200). Anything else must be SPEC 8's 422.
 *
 * Input: one byte choosing the endpoint (and anonymous or signed-in caller), then the
 * body or the query string.
 */
#include <string.h>

#include "fuzz.h"
#include "stories.h"

/* Set once by LLVMFuzzerInitialize; read-only afterwards but for the Redis state. */
static struct config cfg;
static struct rconn redis;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_config(&cfg);
    fuzz_redis_down(&redis, &cfg);
    return 0;
}

static const struct {
    handler_fn fn;
    bool query; /* the input is the query string, not the body */
    bool user;  /* the route needs a user (SPEC 4) */
} endpoints[] = {
    {stories_start, false, false}, {stories_continue, false, false},
    {stories_end, false, false},   {stories_suggestions, true, false},
    {stories_list, true, true},
};

static void check_answer(const struct response *resp, const char *where)
{
    FUZZ_CHECK(resp->status == 200 || resp->status == 404 || resp->status == 422 ||
               resp->status == 503);
    FUZZ_CHECK(resp->body != NULL);
    char *text = json_dumps(resp->body, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    free(text);
    if (resp->status == 422) {
        json_t *first = json_array_get(json_object_get(resp->body, "detail"), 0);
        const char *loc = json_string_value(json_array_get(json_object_get(first, "loc"), 0));
        FUZZ_CHECK(loc != NULL && strcmp(loc, where) == 0);
    }
    if (resp->status == 200)
        FUZZ_CHECK(json_array_size(json_object_get(resp->body, "suggestions")) == 3);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mistral_client ai;
    struct response resp;

    if (size == 0)
        return 0;
    size_t e = (data[0] & 0x7f) % (sizeof endpoints / sizeof endpoints[0]);
    /* The input after the selector, NUL-terminated: a body may hold NULs, a query not. */
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    struct request req = {.method = endpoints[e].query ? "GET" : "POST", .query = ""};
    if (endpoints[e].query) {
        req.query = text;
    } else {
        req.content = REQUEST_CONTENT_JSON;
        req.body = size > 1 ? text : NULL;
        req.body_len = size - 1;
    }
    mistral_init(&ai);
    struct handler_ctx ctx = {.cfg = &cfg, .redis = &redis, .ai = &ai, .req = &req};
    if (endpoints[e].user || (data[0] & 0x80) != 0)
        ctx.user = FUZZ_USER;
    response_init(&resp);
    endpoints[e].fn(&ctx, &resp);
    check_answer(&resp, endpoints[e].query ? "query" : "body");
    response_free(&resp);
    mistral_free(&ai);
    free(text);
    return 0;
}
