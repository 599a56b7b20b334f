/*
 * fuzz_request: the front of every request (fcgi/request.c and fcgi/router.c): the
 * FastCGI parameters (request_init: path cut at '?' or '#', Content-Type, headers), the
 * bounded body read from the FastCGI stream (request_read_body: CONTENT_LENGTH), the
 * Accept test and the route match (router_match: path parameter, Allow).
 *
 * Input: CGI parameters "NAME=value" one a line, an empty line, then the bytes the
 * FastCGI stdin stream holds.
 */
#include <string.h>

#include "fuzz.h"
#include "request.h"
#include "router.h"

static void check_route(const struct request *req)
{
    const struct router_route *route = NULL;
    char param[HANDLER_PARAM_MAX + 1], allow[ROUTER_ALLOW_MAX];

    switch (router_match(req->method, req->path, &route, param, allow)) {
    case ROUTER_FOUND:
        FUZZ_CHECK(route != NULL && strcmp(route->method, req->method) == 0);
        FUZZ_CHECK(strlen(param) <= HANDLER_PARAM_MAX && strchr(param, '/') == NULL);
        FUZZ_CHECK(strchr(route->pattern, '{') != NULL || param[0] == '\0');
        break;
    case ROUTER_METHOD_NOT_ALLOWED:
        /* Allow names the methods of this path, and the request's is not one of them. */
        FUZZ_CHECK(allow[0] != '\0' && strlen(allow) < ROUTER_ALLOW_MAX);
        for (char *m = allow, *next; m != NULL; m = next) {
            char again[ROUTER_ALLOW_MAX];
            if ((next = strstr(m, ", ")) != NULL) {
                *next = '\0';
                next += 2;
            }
            FUZZ_CHECK(strcmp(m, req->method) != 0);
            FUZZ_CHECK(router_match(m, req->path, &route, param, again) == ROUTER_FOUND);
        }
        break;
    case ROUTER_NOT_FOUND: break;
    }
}

static void check_body(struct request *req, char **envp, unsigned char *stdin_bytes,
                       size_t stdin_len)
{
    FCGX_Stream in;

    fuzz_reader(&in, stdin_bytes, stdin_len);
    enum request_body_status st = request_read_body(req, envp, &in);
    if (st != REQUEST_BODY_OK) {
        FUZZ_CHECK(req->body == NULL && req->body_len == 0);
        return;
    }
    FUZZ_CHECK(req->body_len <= REQUEST_BODY_MAX && req->body_len <= stdin_len);
    FUZZ_CHECK((req->body == NULL) == (req->body_len == 0));
    if (req->body != NULL) {
        FUZZ_CHECK(memcmp(req->body, stdin_bytes, req->body_len) == 0);
        FUZZ_CHECK(req->body[req->body_len] == '\0');
    }
    if (req->content == REQUEST_CONTENT_FORM) {
        char *v = NULL;
        if (request_form_value(req->body ? req->body : "", req->body_len, "username", &v) == 1)
            FUZZ_CHECK(strlen(v) <= REQUEST_FIELD_MAX);
        free(v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *envp[FUZZ_PARAMS_MAX + 1];
    char *text = malloc(size + 1);
    struct request req;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t body = fuzz_envp(text, size, envp);
    unsigned char *stdin_bytes = (unsigned char *)fuzz_copy(text + body, size - body);

    request_init(&req, envp);
    FUZZ_CHECK(req.method != NULL && req.query != NULL);
    FUZZ_CHECK(strlen(req.path) <= REQUEST_PATH_MAX && strcspn(req.path, "?#") == strlen(req.path));
    FUZZ_CHECK(!req.path_too_long || req.path[0] == '\0');
    FUZZ_CHECK((req.content == REQUEST_CONTENT_NONE) ==
               (request_content_kind(req.content_type) == REQUEST_CONTENT_NONE));
    (void)request_wants_problem(&req);
    if (!req.path_too_long)
        check_route(&req);
    check_body(&req, envp, stdin_bytes, size - body);
    request_free(&req);
    FUZZ_CHECK(req.body == NULL);
    free(stdin_bytes);
    free(text);
    return 0;
}
