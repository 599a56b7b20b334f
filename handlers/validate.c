/* validate: bodies and fields, 422 in the FastAPI shape. See include/validate.h. */
#include "validate.h"

#include <stdio.h>
#include <string.h>

/* Depth of the deepest array or object in j (1 for a scalar). */
static size_t validate_depth(json_t *j, size_t limit)
{
    size_t deepest = 0, d;
    const char *key;
    json_t *v;
    size_t i;

    if (limit == 0)
        return 1;
    if (json_is_object(j)) {
        json_object_foreach(j, key, v)
        {
            if ((d = validate_depth(v, limit - 1)) > deepest)
                deepest = d;
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v)
        {
            if ((d = validate_depth(v, limit - 1)) > deepest)
                deepest = d;
        }
    } else {
        return 1;
    }
    return deepest + 1;
}

/*
 * jansson's error text quotes the bytes near the error, which may stop inside a UTF-8
 * sequence or be no UTF-8 at all; jansson would then refuse the message and the 422
 * would go out without its body. Anything but printable ASCII becomes '?'.
 */
static void validate_ascii_only(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            *s = '?';
}

static void validate_json_error(struct response *resp, int position, const char *msg)
{
    json_t *item = json_pack("{s:[s, i], s:s, s:s}", "loc", "body", position, "msg", msg, "type",
                             "json_invalid");
    response_json(resp, 422, json_pack("{s:[o]}", "detail", item));
}

json_t *validate_body_object_or_reply(const struct request *req, struct response *resp)
{
    json_error_t error;
    json_t *doc;

    if (req->body_len == 0) {
        response_invalid(resp, "body", NULL, "Field required", "missing");
        return NULL;
    }
    doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &error);
    if (doc == NULL) {
        char msg[200];
        snprintf(msg, sizeof msg, "JSON decode error: %s", error.text);
        validate_ascii_only(msg);
        validate_json_error(resp, error.position, msg);
        return NULL;
    }
    if (validate_depth(doc, VALIDATE_JSON_DEPTH + 1) > VALIDATE_JSON_DEPTH) {
        validate_json_error(resp, 0, "JSON decode error: nested too deeply");
        json_decref(doc);
        return NULL;
    }
    if (!json_is_object(doc)) {
        response_invalid(resp, "body", NULL, "Input should be a valid dictionary", "dict_type");
        json_decref(doc);
        return NULL;
    }
    return doc;
}

size_t validate_utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return n;
}

const char *validate_string_or_reply(json_t *obj, const char *field, size_t min, size_t max,
                                     struct response *resp)
{
    json_t *v = json_object_get(obj, field);
    char msg[96];

    if (v == NULL) {
        response_invalid(resp, "body", field, "Field required", "missing");
        return NULL;
    }
    if (!json_is_string(v)) {
        response_invalid(resp, "body", field, "Input should be a valid string", "string_type");
        return NULL;
    }
    size_t len = validate_utf8_length(json_string_value(v));
    if (len < min) {
        snprintf(msg, sizeof msg, "String should have at least %zu character%s", min,
                 min == 1 ? "" : "s");
        response_invalid(resp, "body", field, msg, "string_too_short");
        return NULL;
    }
    if (len > max) {
        snprintf(msg, sizeof msg, "String should have at most %zu character%s", max,
                 max == 1 ? "" : "s");
        response_invalid(resp, "body", field, msg, "string_too_long");
        return NULL;
    }
    return json_string_value(v);
}
