/*
 * fuzz_validate: the JSON body checks every JSON endpoint starts with
 * (handlers/validate.c): validate_body_object_or_reply, then validate_string_or_reply
 * for each field of SPEC 6 and 7 with the bounds the handlers use.
 *
 * Input: a request body. Checked: a refused body always leaves a 422 whose JSON says
 * where ({"detail":[{"loc":["body",...],"msg","type"}]}) and can be serialised; an
 * accepted one is an object; a returned string is valid UTF-8 of a length within the
 * bounds asked.
 */
#include <stdint.h>
#include <string.h>

#include "accounts.h"
#include "fuzz.h"
#include "tale.h"
#include "validate.h"

/* The fields the handlers read, with their bounds in characters (SPEC 6, 7). */
static const struct {
    const char *name;
    size_t min, max;
} fields[] = {
    {"email", 1, ACCOUNTS_EMAIL_MAX},
    {"password", ACCOUNTS_PASSWORD_MIN, ACCOUNTS_PASSWORD_MAX},
    {"genre", 1, TALE_GENRE_MAX},
    {"characters", 1, TALE_CHARACTERS_MAX},
    {"opening_line", 0, TALE_OPENING_MAX},
    {"user_input", 0, TALE_INPUT_MAX},
    {"story_id", 0, SIZE_MAX},
};

/* A 422 in the FastAPI shape whose first loc is "body", and a body that serialises. */
static void check_422(const struct response *resp)
{
    json_t *first = json_array_get(json_object_get(resp->body, "detail"), 0);

    FUZZ_CHECK(resp->status == 422 && resp->body != NULL);
    const char *where = json_string_value(json_array_get(json_object_get(first, "loc"), 0));
    FUZZ_CHECK(where != NULL && strcmp(where, "body") == 0);
    FUZZ_CHECK(json_is_string(json_object_get(first, "msg")));
    FUZZ_CHECK(json_is_string(json_object_get(first, "type")));
    char *text = json_dumps(resp->body, JSON_COMPACT);
    FUZZ_CHECK(text != NULL);
    free(text);
}

static void check_fields(json_t *obj)
{
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        struct response resp;
        response_init(&resp);
        const char *v =
            validate_string_or_reply(obj, fields[i].name, fields[i].min, fields[i].max, &resp);
        if (v == NULL) {
            check_422(&resp);
        } else {
            size_t n = validate_utf8_length(v);
            FUZZ_CHECK(n >= fields[i].min && n <= fields[i].max);
            FUZZ_CHECK(fuzz_utf8_valid(v, strlen(v)) && resp.body == NULL);
        }
        response_free(&resp);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The body as request_read_body leaves it: size bytes and a NUL. */
    struct request req = {.body = malloc(size + 1), .body_len = size};
    struct response resp;

    if (req.body == NULL)
        return 0;
    memcpy(req.body, data, size);
    req.body[size] = '\0';
    response_init(&resp);
    json_t *obj = validate_body_object_or_reply(&req, &resp);
    if (obj == NULL) {
        check_422(&resp);
    } else {
        FUZZ_CHECK(json_is_object(obj) && resp.body == NULL);
        check_fields(obj);
    }
    json_decref(obj);
    response_free(&resp);
    free(req.body);
    return 0;
}
