/*
 * response: what a handler answers, and the one writer that serialises it.
 *
 * A handler fills status, a JSON body (jansson) and extra headers; the gateway adds
 * the rate-limit headers and writes the response exactly once. Not shared between
 * threads.
 */
#ifndef SG_RESPONSE_H
#define SG_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include <fcgiapp.h>
#include <jansson.h>

#define RESPONSE_HEADERS_MAX 1024 /* bytes of extra header lines */

struct response {
    int status;
    json_t *body; /* owned; NULL: no body */
    char *text;   /* owned; a body that is not JSON, used when body is NULL */
    size_t text_len;
    const char *content_type;           /* static string; NULL means application/json */
    char headers[RESPONSE_HEADERS_MAX]; /* extra "Name: value\r\n" lines */
    size_t headers_len;
    bool ratelimit_done; /* the handler set rate-limit headers: the gateway adds none */
};

/* Status 500 with no body: a handler that forgets to answer is an error. */
void response_init(struct response *resp);

/* Drops the body. resp may be NULL. */
void response_free(struct response *resp);

/* Sets status and body (stolen; may be NULL), replacing any earlier body. */
void response_json(struct response *resp, int status, json_t *body);

/*
 * Sets status and a body that is not JSON (the metrics page): text (stolen, malloc'd,
 * len bytes) sent as content_type (a static string). Replaces any earlier body.
 */
void response_text(struct response *resp, int status, const char *content_type, char *text,
                   size_t len);

/* Sets status and {"detail": detail} (detail borrowed). */
void response_detail(struct response *resp, int status, const char *detail);

/*
 * Sets a 422 in the FastAPI shape:
 * {"detail":[{"loc":["body", field],"msg": msg,"type": type}]}. field may be NULL
 * (loc is then ["body"]); all borrowed.
 */
void response_invalid(struct response *resp, const char *where, const char *field, const char *msg,
                      const char *type);

/*
 * Appends "name: value\r\n". Returns 0, or -1 when value holds CR, LF or NUL or the
 * block would overflow (the header is then not added).
 */
int response_header(struct response *resp, const char *name, const char *value);

/* Appends preformatted header lines (trusted, from the gateway itself). 0 or -1. */
int response_headers_raw(struct response *resp, const char *lines, size_t len);

/*
 * Serialises status line, Content-Type, Content-Length, extra headers and body into
 * a new buffer (free() it) of *len bytes. NULL on allocation failure.
 */
char *response_serialize(const struct response *resp, size_t *len);

/* Serialises and writes to out. Returns 0 or -1 when the client went away. */
int response_write(const struct response *resp, FCGX_Stream *out);

#endif
