/*
 * request: one FastCGI request as the gateway sees it: CGI parameters, the path
 * without its query, the bounded body, and decoding of query strings and forms.
 *
 * Strings are borrowed from the FastCGI environment (valid until the request is
 * finished) unless marked owned. Not shared between threads.
 */
#ifndef SG_REQUEST_H
#define SG_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

#include <fcgiapp.h>

#define REQUEST_BODY_MAX (64 * 1024) /* bytes of a request body (SPEC 8) */
#define REQUEST_PATH_MAX 2048        /* bytes of the path; longer is 404 */
#define REQUEST_FIELD_MAX 8192       /* bytes of one decoded form or query value */

enum request_content {
    REQUEST_CONTENT_NONE,  /* no Content-Type */
    REQUEST_CONTENT_JSON,  /* application/json[; params] */
    REQUEST_CONTENT_FORM,  /* application/x-www-form-urlencoded[; params] */
    REQUEST_CONTENT_OTHER, /* anything else */
};

enum request_body_status {
    REQUEST_BODY_OK,
    REQUEST_BODY_TOO_LARGE, /* over REQUEST_BODY_MAX: 413 */
    REQUEST_BODY_BAD,       /* CONTENT_LENGTH malformed or the stream ended early: 400 */
};

struct request {
    const char *method;              /* REQUEST_METHOD, "" when missing */
    char path[REQUEST_PATH_MAX + 1]; /* REQUEST_URI up to '?' (raw, not decoded) */
    bool path_too_long;
    const char *query;        /* QUERY_STRING, "" when missing */
    const char *content_type; /* CONTENT_TYPE or NULL */
    enum request_content content;
    const char *authorization; /* HTTP_AUTHORIZATION or NULL */
    const char *forwarded_for; /* HTTP_X_FORWARDED_FOR or NULL */
    const char *accept;        /* HTTP_ACCEPT or NULL */
    const char *remote_addr;   /* REMOTE_ADDR or NULL */
    char *body;                /* owned, NUL-terminated (may hold NULs), NULL when empty */
    size_t body_len;
};

/* Fills *req from envp (borrowed, the FastCGI parameters). Never fails. */
void request_init(struct request *req, char **envp);

/* Classifies a Content-Type value (NULL allowed): type compared case-insensitively. */
enum request_content request_content_kind(const char *content_type);

/*
 * Reads the body announced by CONTENT_LENGTH from in, at most REQUEST_BODY_MAX
 * bytes; a larger announced length is refused before reading anything.
 */
enum request_body_status request_read_body(struct request *req, char **envp, FCGX_Stream *in);

/* True when the client asks for RFC 9457 answers (Accept holds application/problem+json). */
bool request_wants_problem(const struct request *req);

/* Frees the body. req may be NULL. */
void request_free(struct request *req);

/*
 * Finds name in an application/x-www-form-urlencoded text (query string or form body)
 * of len bytes, and decodes its first value ('+' is a space, %XX a byte).
 * Returns 1 and a new NUL-terminated *value (free() it), 0 when absent, or -1 when
 * the value is malformed, longer than REQUEST_FIELD_MAX, or decodes to a NUL byte.
 */
int request_form_value(const char *form, size_t len, const char *name, char **value);

#endif
