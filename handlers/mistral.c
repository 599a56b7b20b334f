/*
 * mistral: the MistralAI chat completions client. See include/mistral.h.
 *
 * One blocking POST per attempt on the thread's own curl handle (reset before
 * each attempt, which keeps its connection cache, so keep-alive survives), all
 * attempts inside one deadline of cfg->mistral_timeout seconds on the monotonic
 * clock. The Authorization header is built in a local buffer and wiped after
 * use; the key never reaches a log line, and neither does an upstream body
 * (only a cleaned excerpt of an error's "message").
 */
#include "mistral.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "log.h"
#include "metrics.h"

#define MISTRAL_PATH "/v1/chat/completions"
#define MISTRAL_URL_MAX (sizeof((struct config *)0)->mistral_api_url + sizeof MISTRAL_PATH)
#define MISTRAL_AUTH_PREFIX "Authorization: Bearer "
#define MISTRAL_AUTH_MAX (sizeof MISTRAL_AUTH_PREFIX + sizeof((struct config *)0)->mistral_api_key)
#define MISTRAL_RETRY_AFTER_MAX 3600L /* seconds: a longer Retry-After is cut to this */
#define MISTRAL_HEADER_VALUE_MAX 64   /* bytes of a Retry-After value we look at */
#define MISTRAL_MIN_ATTEMPT_MS 1000   /* an attempt with less time than this is not started */
#define MISTRAL_BODY_START 16384      /* first size of the answer buffer */
#define MISTRAL_EXCERPT_MAX 160       /* bytes of an upstream error message in a log line */
#define MISTRAL_USER_AGENT "story-gateway"

/* One answer as it arrives: body (bounded) and the Retry-After header. */
struct mistral_answer {
    char *body;
    size_t len, cap;
    bool oversize; /* over MISTRAL_RESPONSE_MAX bytes: the transfer was stopped */
    bool has_retry_after;
    char retry_after[MISTRAL_HEADER_VALUE_MAX + 1];
};

/* The request of every attempt: its URL, body and headers. */
struct mistral_request {
    char url[MISTRAL_URL_MAX];
    char *body;
    struct curl_slist *headers;
};

void mistral_init(struct mistral_client *mc)
{
    if (mc != NULL)
        mc->curl = NULL;
}

void mistral_free(struct mistral_client *mc)
{
    if (mc == NULL)
        return;
    if (mc->curl != NULL)
        curl_easy_cleanup(mc->curl);
    mc->curl = NULL;
}

char *mistral_request_body(const char *model, json_t *messages, double temperature, int max_tokens)
{
    json_t *req;
    char *text;

    if (model == NULL || !json_is_array(messages))
        return NULL;
    req = json_pack("{s:s, s:O, s:f, s:i}", "model", model, "messages", messages, "temperature",
                    temperature, "max_tokens", max_tokens);
    if (req == NULL)
        return NULL;
    text = json_dumps(req, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    json_decref(req);
    return text;
}

/* Whether s (n bytes) is a model name we pass on: printable ASCII, no space. */
static bool mistral_model_ok(const char *s, size_t n)
{
    if (n == 0 || n > TALE_MODEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

int mistral_parse_response(const char *body, size_t len, char **content,
                           char model[TALE_MODEL_MAX + 1])
{
    json_t *doc = NULL, *message, *text, *name;
    char *copy;
    size_t n;
    int rc = -1;

    if (body == NULL || content == NULL || len > MISTRAL_RESPONSE_MAX)
        return -1;
    doc = json_loadb(body, len, 0, NULL);
    if (!json_is_object(doc))
        goto out;
    message = json_object_get(json_array_get(json_object_get(doc, "choices"), 0), "message");
    text = json_object_get(message, "content");
    if (!json_is_object(message) || !json_is_string(text))
        goto out;
    n = json_string_length(text);
    if (n == 0 || n > TALE_TEXT_MAX)
        goto out;
    if ((copy = malloc(n + 1)) == NULL)
        goto out;
    memcpy(copy, json_string_value(text), n + 1); /* jansson refused NULs when parsing */
    *content = copy;
    /* "model" is information only: one that is not a plain name is ignored */
    name = json_object_get(doc, "model");
    if (model != NULL && json_is_string(name) &&
        mistral_model_ok(json_string_value(name), json_string_length(name)))
        memcpy(model, json_string_value(name), json_string_length(name) + 1);
    rc = 0;
out:
    json_decref(doc);
    return rc;
}

long mistral_retry_after(const char *value, time_t now)
{
    char buf[MISTRAL_HEADER_VALUE_MAX + 1];
    size_t n;
    const char *s;

    if (value == NULL)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    n = strnlen(value, MISTRAL_HEADER_VALUE_MAX + 1);
    if (n > MISTRAL_HEADER_VALUE_MAX)
        return -1;
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t' || value[n - 1] == '\r' ||
                     value[n - 1] == '\n'))
        n--;
    if (n == 0)
        return -1;
    memcpy(buf, value, n);
    buf[n] = '\0';
    if (buf[0] >= '0' && buf[0] <= '9') { /* delay-seconds: 1*DIGIT */
        long secs = 0;
        for (s = buf; *s; s++) {
            if (*s < '0' || *s > '9')
                return -1;
            if (secs <= MISTRAL_RETRY_AFTER_MAX)
                secs = secs * 10 + (*s - '0');
        }
        return secs > MISTRAL_RETRY_AFTER_MAX ? MISTRAL_RETRY_AFTER_MAX : secs;
    }
    if (!((buf[0] >= 'A' && buf[0] <= 'Z') || (buf[0] >= 'a' && buf[0] <= 'z')))
        return -1; /* an HTTP-date starts with the day's name */
    time_t when = curl_getdate(buf, NULL);
    if (when == (time_t)-1)
        return -1;
    if (when <= now)
        return 0;
    return when - now > MISTRAL_RETRY_AFTER_MAX ? MISTRAL_RETRY_AFTER_MAX : (long)(when - now);
}

/* ---- one attempt ---- */

static size_t mistral_on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    struct mistral_answer *a = userdata;
    size_t n = size * nmemb; /* size is always 1 */

    if (n > MISTRAL_RESPONSE_MAX - a->len) {
        a->oversize = true;
        return 0; /* n > 0 here: curl stops with CURLE_WRITE_ERROR */
    }
    if (a->len + n > a->cap) {
        size_t cap = a->cap ? a->cap : MISTRAL_BODY_START;
        while (cap < a->len + n)
            cap *= 2;
        if (cap > MISTRAL_RESPONSE_MAX)
            cap = MISTRAL_RESPONSE_MAX;
        char *grown = realloc(a->body, cap);
        if (grown == NULL)
            return 0;
        a->body = grown;
        a->cap = cap;
    }
    memcpy(a->body + a->len, data, n);
    a->len += n;
    return n;
}

/* Keeps the Retry-After header of the last response (a 1xx starts a new one). */
static size_t mistral_on_header(char *data, size_t size, size_t nitems, void *userdata)
{
    struct mistral_answer *a = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        a->has_retry_after = false;
    } else if (n > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *v = data + sizeof name - 1;
        size_t vlen = n - (sizeof name - 1);
        while (vlen > 0 && (*v == ' ' || *v == '\t'))
            v++, vlen--;
        while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ' ||
                            v[vlen - 1] == '\t'))
            vlen--;
        a->has_retry_after = vlen > 0 && vlen <= MISTRAL_HEADER_VALUE_MAX;
        if (a->has_retry_after) {
            memcpy(a->retry_after, v, vlen);
            a->retry_after[vlen] = '\0';
        }
    }
    return n;
}

static int64_t mistral_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void mistral_sleep_ms(int64_t ms)
{
    struct timespec left = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (ms > 0 && nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}

/*
 * Sends rq once with at most left_ms milliseconds. The answer lands in a
 * (emptied first) and *status (0 when none came). Returns curl's result.
 */
static CURLcode mistral_attempt(CURL *curl, const struct mistral_request *rq, int64_t left_ms,
                                struct mistral_answer *a, long *status)
{
    int64_t connect_ms =
        left_ms < MISTRAL_CONNECT_TIMEOUT_S * 1000L ? left_ms : MISTRAL_CONNECT_TIMEOUT_S * 1000L;
    CURLcode rc = CURLE_OK;

    a->len = 0;
    a->oversize = false;
    a->has_retry_after = false;
    *status = 0;
    curl_easy_reset(curl);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85.0 */
    rc |= curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    rc |= curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    rc |= curl_easy_setopt(curl, CURLOPT_URL, rq->url);
    rc |= curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    rc |= curl_easy_setopt(curl, CURLOPT_VERBOSE, 0L);
    rc |= curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    rc |= curl_easy_setopt(curl, CURLOPT_USERAGENT, MISTRAL_USER_AGENT);
    rc |= curl_easy_setopt(curl, CURLOPT_HTTPHEADER, rq->headers);
    rc |= curl_easy_setopt(curl, CURLOPT_POSTFIELDS, rq->body);
    rc |= curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(rq->body));
    rc |= curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
    rc |= curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)left_ms);
    rc |= curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MISTRAL_RESPONSE_MAX);
    rc |= curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, mistral_on_body);
    rc |= curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
    rc |= curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, mistral_on_header);
    rc |= curl_easy_setopt(curl, CURLOPT_HEADERDATA, a);
    if (rc != CURLE_OK)
        return CURLE_FAILED_INIT;
    rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
    return rc;
}

/* ---- logging ---- */

/*
 * One "upstream_error" line. a: the answer whose error "message" is quoted (made
 * printable, and left out if it holds the key), or NULL. retry_ms < 0: no retry
 * follows.
 */
static void mistral_log(enum log_level level, long status, int attempt, const char *reason,
                        const struct mistral_answer *a, const struct config *cfg, int64_t retry_ms)
{
    json_t *fields = json_pack("{s:I, s:i, s:s}", "status", (json_int_t)status, "attempt", attempt,
                               "reason", reason);
    json_t *doc = NULL;

    if (fields == NULL || !log_enabled(level))
        goto out;
    if (retry_ms >= 0)
        json_object_set_new(fields, "retry_in_ms", json_integer(retry_ms));
    if (a != NULL && a->len > 0 && (status < 200 || status > 299))
        doc = json_loadb(a->body, a->len, 0, NULL);
    const char *msg = json_string_value(json_object_get(doc, "message"));
    if (msg == NULL)
        msg = json_string_value(json_object_get(doc, "detail"));
    if (msg != NULL && strstr(msg, cfg->mistral_api_key) == NULL) {
        char excerpt[MISTRAL_EXCERPT_MAX + 4];
        log_printable(msg, MISTRAL_EXCERPT_MAX, excerpt, sizeof excerpt);
        json_object_set_new(fields, "upstream_message", json_string(excerpt));
    }
    log_event(level, "upstream_error", fields);
    fields = NULL;
out:
    json_decref(doc);
    json_decref(fields);
}

/* ---- the chat call ---- */

/* The headers of every attempt, or NULL. Free (and wipe) with mistral_headers_free. */
static struct curl_slist *mistral_headers(const struct config *cfg)
{
    char auth[MISTRAL_AUTH_MAX];
    struct curl_slist *h = NULL, *t;
    const char *fixed[] = {"Content-Type: application/json", "Accept: application/json",
                           "Expect:", NULL};

    for (size_t i = 0; fixed[i] != NULL; i++) {
        if ((t = curl_slist_append(h, fixed[i])) == NULL)
            goto fail;
        h = t;
    }
    snprintf(auth, sizeof auth, "%s%s", MISTRAL_AUTH_PREFIX, cfg->mistral_api_key);
    t = curl_slist_append(h, auth);
    sodium_memzero(auth, sizeof auth);
    if (t == NULL)
        goto fail;
    return t;
fail:
    curl_slist_free_all(h);
    return NULL;
}

static void mistral_headers_free(struct curl_slist *h)
{
    for (struct curl_slist *p = h; p != NULL; p = p->next)
        sodium_memzero(p->data, strlen(p->data));
    curl_slist_free_all(h);
}

/* Fills rq for cfg: 0, or -1 when memory ran out. Free with mistral_request_free. */
static int mistral_request_init(struct mistral_request *rq, const struct config *cfg,
                                json_t *messages, double temperature, int max_tokens)
{
    size_t base = strnlen(cfg->mistral_api_url, sizeof cfg->mistral_api_url);

    if (base > 0 && cfg->mistral_api_url[base - 1] == '/')
        base--;
    snprintf(rq->url, sizeof rq->url, "%.*s%s", (int)base, cfg->mistral_api_url, MISTRAL_PATH);
    rq->body = mistral_request_body(cfg->mistral_model, messages, temperature, max_tokens);
    rq->headers = mistral_headers(cfg);
    return rq->body != NULL && rq->headers != NULL ? 0 : -1;
}

static void mistral_request_free(struct mistral_request *rq)
{
    mistral_headers_free(rq->headers);
    free(rq->body);
}

/*
 * What one attempt's outcome means: *result, and true when it may be retried
 * (429 or 5xx), with *retry_after_s the upstream's Retry-After (-1 when none).
 * Logs every outcome but a success and a retryable answer (the caller logs
 * those).
 */
static bool mistral_judge(CURLcode rc, long status, int attempt, struct mistral_answer *a,
                          const struct config *cfg, char **content, char model[TALE_MODEL_MAX + 1],
                          enum tale_status *result, int64_t *retry_after_s)
{
    const char *reason = NULL;

    *result = TALE_BAD_GATEWAY;
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        *result = TALE_TIMEOUT;
        mistral_log(LOG_WARN, status, attempt, "timed out", NULL, cfg, -1);
        return false;
    }
    if (a->oversize || rc == CURLE_FILESIZE_EXCEEDED)
        reason = "answer too large";
    else if (rc != CURLE_OK)
        reason = curl_easy_strerror(rc);
    else if (status >= 200 && status <= 299) {
        if (mistral_parse_response(a->body, a->len, content, model) == 0) {
            *result = TALE_OK;
            return false;
        }
        reason = "malformed answer";
    }
    if (reason != NULL) {
        mistral_log(LOG_ERROR, status, attempt, reason, NULL, cfg, -1);
        return false;
    }
    if (status != 429 && (status < 500 || status > 599)) {
        mistral_log(LOG_ERROR, status, attempt, "refused", a, cfg, -1);
        return false;
    }
    if (status == 429)
        *result = TALE_RATE_LIMITED;
    *retry_after_s = mistral_retry_after(a->has_retry_after ? a->retry_after : NULL, time(NULL));
    return true;
}

/* What one attempt counts as in story_gateway_mistral_requests_total (include/metrics.h). */
static enum metrics_upstream mistral_metric(CURLcode rc, long status,
                                            const struct mistral_answer *a, enum tale_status result)
{
    switch (rc) {
    case CURLE_OK: break;
    case CURLE_OPERATION_TIMEDOUT: return METRICS_UPSTREAM_TIMEOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return METRICS_UPSTREAM_CONNECT;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: return METRICS_UPSTREAM_RESET;
    case CURLE_FILESIZE_EXCEEDED: return METRICS_UPSTREAM_MALFORMED;
    default: return a->oversize ? METRICS_UPSTREAM_MALFORMED : METRICS_UPSTREAM_OTHER;
    }
    if (status >= 200 && status <= 299)
        return result == TALE_OK ? METRICS_UPSTREAM_OK : METRICS_UPSTREAM_MALFORMED;
    if (status == 429)
        return METRICS_UPSTREAM_HTTP_429;
    if (status >= 400 && status <= 499)
        return METRICS_UPSTREAM_HTTP_4XX;
    if (status >= 500 && status <= 599)
        return METRICS_UPSTREAM_HTTP_5XX;
    return METRICS_UPSTREAM_OTHER;
}

enum tale_status mistral_chat(struct mistral_client *mc, const struct config *cfg, json_t *messages,
                              double temperature, int max_tokens, char **content,
                              char model[TALE_MODEL_MAX + 1], long *retry_after)
{
    int64_t deadline = mistral_now_ms(), backoff = MISTRAL_BACKOFF_MS, ra, wait;
    struct mistral_answer a = {0};
    struct mistral_request rq = {0};
    enum tale_status result = TALE_NO_MEMORY;
    long status;

    if (retry_after != NULL)
        *retry_after = 1;
    if (mc == NULL || cfg == NULL || messages == NULL || content == NULL || model == NULL)
        return TALE_BAD_GATEWAY;
    deadline += (int64_t)cfg->mistral_timeout * 1000;
    if ((mc->curl == NULL && (mc->curl = curl_easy_init()) == NULL) ||
        mistral_request_init(&rq, cfg, messages, temperature, max_tokens) < 0)
        goto out;
    snprintf(model, TALE_MODEL_MAX + 1, "%s", cfg->mistral_model);

    for (int attempt = 1;; attempt++) {
        int64_t left = deadline - mistral_now_ms();
        if (left <= 0) {
            mistral_log(LOG_WARN, 0, attempt, "deadline passed", NULL, cfg, -1);
            result = TALE_TIMEOUT;
            break;
        }
        uint64_t t0 = metrics_now_us();
        CURLcode rc = mistral_attempt(mc->curl, &rq, left, &a, &status);
        bool retry = mistral_judge(rc, status, attempt, &a, cfg, content, model, &result, &ra);
        metrics_upstream(mistral_metric(rc, status, &a, result), metrics_now_us() - t0);
        if (!retry)
            break;
        /* 429 or 5xx: retried while attempts and time remain */
        wait = ra >= 0 ? ra * 1000 : backoff;
        backoff *= 2;
        if (retry_after != NULL && status == 429)
            *retry_after = ra >= 1 ? (long)ra : 1;
        const char *reason = status == 429 ? "rate limited" : "server error";
        if (attempt > MISTRAL_RETRIES ||
            mistral_now_ms() + wait + MISTRAL_MIN_ATTEMPT_MS > deadline) {
            mistral_log(status == 429 ? LOG_WARN : LOG_ERROR, status, attempt, reason, &a, cfg, -1);
            break;
        }
        mistral_log(LOG_WARN, status, attempt, reason, &a, cfg, wait);
        mistral_sleep_ms(wait);
    }
out:
    if (result == TALE_NO_MEMORY)
        mistral_log(LOG_ERROR, 0, 0, "out of memory", NULL, cfg, -1);
    mistral_request_free(&rq);
    free(a.body);
    return result;
}
