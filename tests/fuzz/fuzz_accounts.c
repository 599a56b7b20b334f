/*
 * fuzz_accounts: the bodies of POST /signup and POST /login through the real handlers
 * (handlers/accounts.c: accounts_signup, accounts_login, whose field parsing is static:
 * validate_* for JSON, request_form_value for the OAuth2 form, accounts_email_normalise).
 *
 * No FastCGI request is needed: a handler takes a struct request. Redis is unreachable
 * (fuzz_redis_down), so a body that parses reaches its first Redis command and gets 503
 * before any password hashing; every other body must get the 422 of SPEC 8.
 *
 * Input: one byte choosing the endpoint and Content-Type (signup JSON, login JSON, login
 * form, login without Content-Type), then the body.
 */
#include <string.h>

#include "accounts.h"
#include "fuzz.h"

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

/* Every answer here is a JSON body: 422 where the body is wrong, 503 where it is right. */
static void check_answer(const struct response *resp)
{
    FUZZ_CHECK(resp->status == 422 || resp->status == 503);
    FUZZ_CHECK(resp->body != NULL);
    char *text = json_dumps(resp->body, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    free(text);
    if (resp->status == 422) {
        json_t *first = json_array_get(json_object_get(resp->body, "detail"), 0);
        const char *where = json_string_value(json_array_get(json_object_get(first, "loc"), 0));
        FUZZ_CHECK(where != NULL && strcmp(where, "body") == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum request_content kinds[] = {REQUEST_CONTENT_JSON, REQUEST_CONTENT_JSON,
                                                 REQUEST_CONTENT_FORM, REQUEST_CONTENT_NONE};
    struct mistral_client ai;
    struct response resp;

    if (size == 0)
        return 0;
    unsigned mode = data[0] % 4;
    struct request req = {.method = "POST", .query = "", .content = kinds[mode]};
    req.body_len = size - 1;
    req.body = req.body_len > 0 ? malloc(req.body_len + 1) : NULL;
    if (req.body_len > 0 && req.body == NULL)
        return 0;
    if (req.body != NULL) {
        memcpy(req.body, data + 1, req.body_len);
        req.body[req.body_len] = '\0';
    }
    mistral_init(&ai);
    struct handler_ctx ctx = {.cfg = &cfg, .redis = &redis, .ai = &ai, .req = &req};
    response_init(&resp);
    if (mode == 0)
        accounts_signup(&ctx, &resp);
    else
        accounts_login(&ctx, &resp);
    check_answer(&resp);
    response_free(&resp);
    mistral_free(&ai);
    request_free(&req);
    return 0;
}
