/* response: the handler's answer and its one writer. See include/response.h. */
#include "response.h"

#include <stdlib.h>
#include <string.h>

void response_init(struct response *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->status = 500;
}

void response_free(struct response *resp)
{
    if (resp == NULL)
        return;
    json_decref(resp->body);
    resp->body = NULL;
    free(resp->text);
    resp->text = NULL;
    resp->text_len = 0;
}

void response_json(struct response *resp, int status, json_t *body)
{
    response_free(resp);
    resp->status = status;
    resp->body = body;
}

void response_text(struct response *resp, int status, const char *content_type, char *text,
                   size_t len)
{
    response_free(resp);
    resp->status = status;
    resp->content_type = content_type;
    resp->text = text;
    resp->text_len = text != NULL ? len : 0;
}

void response_detail(struct response *resp, int status, const char *detail)
{
    response_json(resp, status, json_pack("{s:s}", "detail", detail));
}

void response_invalid(struct response *resp, const char *where, const char *field, const char *msg,
                      const char *type)
{
    json_t *loc = field ? json_pack("[s, s]", where, field) : json_pack("[s]", where);
    json_t *item = json_pack("{s:o, s:s, s:s}", "loc", loc, "msg", msg, "type", type);
    response_json(resp, 422, json_pack("{s:[o]}", "detail", item));
}

int response_headers_raw(struct response *resp, const char *lines, size_t len)
{
    if (len >= sizeof resp->headers - resp->headers_len)
        return -1;
    memcpy(resp->headers + resp->headers_len, lines, len);
    resp->headers_len += len;
    resp->headers[resp->headers_len] = '\0';
    return 0;
}

int response_header(struct response *resp, const char *name, const char *value)
{
    char line[RESPONSE_HEADERS_MAX];

    if (strpbrk(value, "\r\n") != NULL || strpbrk(name, "\r\n: ") != NULL)
        return -1;
    int n = snprintf(line, sizeof line, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= sizeof line)
        return -1;
    return response_headers_raw(resp, line, (size_t)n);
}

static const char *response_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

char *response_serialize(const struct response *resp, size_t *len)
{
    char *body = NULL, *out = NULL;
    size_t body_len = 0;
    char head[256];

    if (resp->body != NULL) {
        body = json_dumps(resp->body, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (body == NULL)
            goto out;
        body_len = strlen(body);
    }
    const char *text = body != NULL ? body : resp->text;
    if (body == NULL)
        body_len = resp->text_len;
    int n;
    if (text != NULL)
        n = snprintf(head, sizeof head,
                     "Status: %d %s\r\nContent-Type: %s\r\n"
                     "Content-Length: %zu\r\n",
                     resp->status, response_reason(resp->status),
                     resp->content_type ? resp->content_type : "application/json", body_len);
    else
        n = snprintf(head, sizeof head, "Status: %d %s\r\n", resp->status,
                     response_reason(resp->status));
    if (n < 0 || (size_t)n >= sizeof head)
        goto out;
    size_t total = (size_t)n + resp->headers_len + 2 + body_len;
    out = malloc(total + 1);
    if (out == NULL)
        goto out;
    memcpy(out, head, (size_t)n);
    memcpy(out + n, resp->headers, resp->headers_len);
    memcpy(out + n + resp->headers_len, "\r\n", 2);
    if (body_len > 0)
        memcpy(out + n + resp->headers_len + 2, text, body_len);
    out[total] = '\0';
    *len = total;
out:
    free(body);
    return out;
}

int response_write(const struct response *resp, FCGX_Stream *out)
{
    size_t len = 0;
    char *text = response_serialize(resp, &len);
    int rc = -1;

    if (text == NULL)
        return -1;
    if (FCGX_PutStr(text, (int)len, out) == (int)len)
        rc = 0;
    free(text);
    return rc;
}
