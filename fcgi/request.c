/* request: CGI parameters, bounded body and form decoding. See include/request.h. */
#include "request.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

static const char *request_param(char **envp, const char *name)
{
    return FCGX_GetParam(name, envp);
}

static void request_set_path(struct request *req, const char *uri)
{
    size_t n = strcspn(uri, "?#");
    if (n > REQUEST_PATH_MAX) {
        req->path_too_long = true;
        n = 0;
    }
    memcpy(req->path, uri, n);
    req->path[n] = '\0';
}

enum { P_URI, P_METHOD, P_SCRIPT, P_QUERY, P_CTYPE, P_AUTH, P_XFF, P_ACCEPT, P_ADDR, P_COUNT };

/* The parameters request_init reads, with their lengths (compared first). */
// clang-format off
#define REQUEST_PARAM(name) {name, sizeof name - 1}
// clang-format on
static const struct {
    const char *name;
    size_t len;
} request_wanted[P_COUNT] = {
    [P_URI] = REQUEST_PARAM("REQUEST_URI"),          [P_METHOD] = REQUEST_PARAM("REQUEST_METHOD"),
    [P_SCRIPT] = REQUEST_PARAM("SCRIPT_NAME"),       [P_QUERY] = REQUEST_PARAM("QUERY_STRING"),
    [P_CTYPE] = REQUEST_PARAM("CONTENT_TYPE"),       [P_AUTH] = REQUEST_PARAM("HTTP_AUTHORIZATION"),
    [P_XFF] = REQUEST_PARAM("HTTP_X_FORWARDED_FOR"), [P_ACCEPT] = REQUEST_PARAM("HTTP_ACCEPT"),
    [P_ADDR] = REQUEST_PARAM("REMOTE_ADDR"),
};
#undef REQUEST_PARAM

/*
 * One pass over envp for every parameter request_init reads (FCGX_GetParam would scan
 * it once per name): the first "NAME=value" of each name wins, as with FCGX_GetParam.
 */
static void request_params(char **envp, const char *out[P_COUNT])
{
    for (size_t i = 0; i < P_COUNT; i++)
        out[i] = NULL;
    for (; envp != NULL && *envp != NULL; envp++) {
        const char *eq = strchr(*envp, '=');
        if (eq == NULL)
            continue;
        size_t len = (size_t)(eq - *envp);
        for (size_t i = 0; i < P_COUNT; i++) {
            if (request_wanted[i].len == len && out[i] == NULL &&
                memcmp(*envp, request_wanted[i].name, len) == 0) {
                out[i] = eq + 1;
                break;
            }
        }
    }
}

void request_init(struct request *req, char **envp)
{
    const char *p[P_COUNT];

    request_params(envp, p);
    memset(req, 0, sizeof *req);
    req->method = p[P_METHOD] ? p[P_METHOD] : "";
    const char *uri = p[P_URI] ? p[P_URI] : p[P_SCRIPT] ? p[P_SCRIPT] : "";
    request_set_path(req, uri);
    req->query = p[P_QUERY] ? p[P_QUERY] : "";
    req->content_type = p[P_CTYPE];
    if (req->content_type != NULL && req->content_type[0] == '\0')
        req->content_type = NULL;
    req->content = request_content_kind(req->content_type);
    req->authorization = p[P_AUTH];
    req->forwarded_for = p[P_XFF];
    req->accept = p[P_ACCEPT];
    req->remote_addr = p[P_ADDR];
}

/* True when the media type at ct (up to ';' or blanks) equals type, ignoring case. */
static bool request_media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    if (strncasecmp(ct, type, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}

enum request_content request_content_kind(const char *content_type)
{
    if (content_type == NULL)
        return REQUEST_CONTENT_NONE;
    while (*content_type == ' ' || *content_type == '\t')
        content_type++;
    if (*content_type == '\0')
        return REQUEST_CONTENT_NONE;
    if (request_media_is(content_type, "application/json"))
        return REQUEST_CONTENT_JSON;
    if (request_media_is(content_type, "application/x-www-form-urlencoded"))
        return REQUEST_CONTENT_FORM;
    return REQUEST_CONTENT_OTHER;
}

/* Parses CONTENT_LENGTH: 0 when absent; -1 when malformed. */
static long request_content_length(const char *s)
{
    char *end;
    long n;

    if (s == NULL || *s == '\0')
        return 0;
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    n = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    return n;
}

enum request_body_status request_read_body(struct request *req, char **envp, FCGX_Stream *in)
{
    long announced = request_content_length(request_param(envp, "CONTENT_LENGTH"));

    if (announced < 0)
        return REQUEST_BODY_BAD;
    if (announced > REQUEST_BODY_MAX)
        return REQUEST_BODY_TOO_LARGE;
    if (announced == 0)
        return REQUEST_BODY_OK;
    req->body = malloc((size_t)announced + 1);
    if (req->body == NULL)
        return REQUEST_BODY_BAD;
    int got = FCGX_GetStr(req->body, (int)announced, in);
    if (got != (int)announced) {
        free(req->body);
        req->body = NULL;
        return REQUEST_BODY_BAD;
    }
    req->body[announced] = '\0';
    req->body_len = (size_t)announced;
    return REQUEST_BODY_OK;
}

bool request_wants_problem(const struct request *req)
{
    return req->accept != NULL && strcasestr(req->accept, "application/problem+json") != NULL;
}

void request_free(struct request *req)
{
    if (req == NULL)
        return;
    free(req->body);
    req->body = NULL;
    req->body_len = 0;
}

/* Decodes one raw form value of len bytes into a new string; NULL when malformed. */
static char *request_form_decode(const char *raw, size_t len)
{
    char *plus = NULL, *out = NULL, *decoded = NULL;
    int olen = 0;

    if (len > 3 * REQUEST_FIELD_MAX)
        return NULL;
    plus = malloc(len + 1);
    if (plus == NULL)
        goto out;
    for (size_t i = 0; i < len; i++)
        plus[i] = raw[i] == '+' ? ' ' : raw[i];
    plus[len] = '\0';
    decoded = curl_easy_unescape(NULL, plus, (int)len, &olen);
    if (decoded == NULL || olen < 0 || (size_t)olen > REQUEST_FIELD_MAX)
        goto out;
    if (memchr(decoded, '\0', (size_t)olen) != NULL)
        goto out;
    out = strndup(decoded, (size_t)olen);
out:
    curl_free(decoded);
    free(plus);
    return out;
}

int request_form_value(const char *form, size_t len, const char *name, char **value)
{
    size_t name_len = strlen(name);
    const char *p = form, *end = form + len;

    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pair_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *key_end = eq ? eq : pair_end;

        if ((size_t)(key_end - p) == name_len && memcmp(p, name, name_len) == 0) {
            const char *v = eq ? eq + 1 : pair_end;
            char *decoded = request_form_decode(v, (size_t)(pair_end - v));
            if (decoded == NULL)
                return -1;
            *value = decoded;
            return 1;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}
