/*
 * validate: request bodies and fields checked the FastAPI way. Each *_or_reply
 * function either returns the value or fills resp with the 422 of SPEC 8
 * ({"detail":[{"loc":["body","field"],"msg":...,"type":...}]}) so the handler just
 * returns. Thread-safe.
 */
#ifndef SG_VALIDATE_H
#define SG_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "request.h"
#include "response.h"

#define VALIDATE_JSON_DEPTH 16 /* deepest nesting a body may have */

/*
 * The request body as a JSON object (new reference), or NULL with a 422 in resp:
 * an empty body, invalid JSON, nesting deeper than VALIDATE_JSON_DEPTH, duplicate
 * keys or anything but an object.
 */
json_t *validate_body_object_or_reply(const struct request *req, struct response *resp);

/*
 * obj[field] as a string of min..max characters (UTF-8 code points; jansson has
 * already rejected invalid UTF-8 and NUL). Returns a borrowed string, or NULL with
 * a 422 in resp (missing, not a string, too short, too long).
 */
const char *validate_string_or_reply(json_t *obj, const char *field, size_t min, size_t max,
                                     struct response *resp);

/* Number of UTF-8 code points in s (valid UTF-8 assumed). */
size_t validate_utf8_length(const char *s);

#endif
