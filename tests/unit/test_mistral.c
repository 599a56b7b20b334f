/*
 * Unit tests for mistral: the request body, the answer parser, Retry-After, and
 * mistral_chat against a scripted HTTP responder on a loopback port (a thread of this
 * test): retries, deadline, status mapping, keep-alive and the key kept out of logs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mistral.h"
#include "tale.h"

#define TEST_KEY "test-key-0123456789abcdef"
#define TEST_REQUEST_MAX (256 * 1024)
#define TEST_SCRIPT_MAX 8

static const char VALID_ANSWER[] =
    "{\"id\":\"cmpl-e5cc70bb28c444948073e77776eb30ef\",\"object\":\"chat.completion\","
    "\"created\":1702256327,\"model\":\"mistral-small-2503\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"Once upon a time\",\"tool_calls\":null},"
    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":34,"
    "\"total_tokens\":50}}";

/* ---- mistral_request_body ---- */

static void test_mistral_request_body_shape(void **state)
{
    (void)state;
    json_t *messages = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content",
                                 "Be a storyteller.", "role", "user", "content", "Go \"on\"");
    char *body = mistral_request_body("mistral-small-latest", messages, 0.7, 600);
    json_t *doc;

    assert_non_null(body);
    assert_int_equal(messages->refcount, 1); /* borrowed, not stolen */
    doc = json_loads(body, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(doc);
    assert_int_equal(json_object_size(doc), 4);
    assert_string_equal(json_string_value(json_object_get(doc, "model")), "mistral-small-latest");
    assert_true(json_equal(json_object_get(doc, "messages"), messages));
    assert_true(json_is_real(json_object_get(doc, "temperature")));
    assert_true(json_real_value(json_object_get(doc, "temperature")) > 0.69 &&
                json_real_value(json_object_get(doc, "temperature")) < 0.71);
    assert_non_null(strstr(body, "\"temperature\":0.7,")); /* short, as a person writes it */
    assert_int_equal(json_integer_value(json_object_get(doc, "max_tokens")), 600);
    json_decref(doc);
    free(body);

    assert_null(mistral_request_body(NULL, messages, 0.7, 10));
    assert_null(mistral_request_body("m", NULL, 0.7, 10));
    json_t *obj = json_object();
    assert_null(mistral_request_body("m", obj, 0.7, 10));
    json_decref(obj);
    json_decref(messages);
}

/* ---- mistral_parse_response ---- */

static void test_mistral_parse_response_cases(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *body;
        int rc;
        const char *content;
        const char *model; /* after the call; "configured" when left alone */
    } cases[] = {
        {__LINE__, VALID_ANSWER, 0, "Once upon a time", "mistral-small-2503"},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}", 0, "Hi", "configured"},
        {__LINE__, "{\"model\":\"m1\",\"choices\":[{\"message\":{\"content\":\"Hi\"}},{}]}", 0,
         "Hi", "m1"},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":\"caf\\u00e9 \\ud83d\\ude00\"}}]}", 0,
         "caf\xc3\xa9 \xf0\x9f\x98\x80", "configured"},
        /* model: information only, a bad one is ignored */
        {__LINE__, "{\"model\":\"\",\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}", 0, "Hi",
         "configured"},
        {__LINE__, "{\"model\":7,\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}", 0, "Hi",
         "configured"},
        {__LINE__, "{\"model\":\"a b\",\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}", 0, "Hi",
         "configured"},
        {__LINE__, "{\"model\":\"a\\nb\",\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}", 0,
         "Hi", "configured"},
        {__LINE__, "{\"model\":\"\\u00e9\",\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}", 0,
         "Hi", "configured"},
        /* missing fields and wrong types */
        {__LINE__, "{}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":{}}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":\"Hi\"}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":null}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[null]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[\"Hi\"]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{}]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":\"Hi\"}]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":[]}]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":{}}]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":null}}]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":\"\"}}]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":42}}]}", -1, NULL, NULL},
        {__LINE__,
         "{\"choices\":[{\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}}]}", -1,
         NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":\"a\\u0000b\"}}]}", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"text\":\"Hi\"}]}", -1, NULL, NULL},
        /* an error body, other documents, not JSON */
        {__LINE__,
         "{\"object\":\"error\",\"message\":\"Unauthorized\",\"type\":\"invalid_request_error\"}",
         -1, NULL, NULL},
        {__LINE__, "[{\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}]", -1, NULL, NULL},
        {__LINE__, "\"Hi\"", -1, NULL, NULL},
        {__LINE__, "null", -1, NULL, NULL},
        {__LINE__, "", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":\"Hi\"}}]", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":\"Hi\"}}]} trailing", -1, NULL, NULL},
        {__LINE__, "<html>502 Bad Gateway</html>", -1, NULL, NULL},
        {__LINE__, "{\"choices\":[{\"message\":{\"content\":\"\xff\"}}]}", -1, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char model[TALE_MODEL_MAX + 1] = "configured";
        char *content = NULL;
        print_message("line %d\n", cases[i].line);
        assert_int_equal(
            mistral_parse_response(cases[i].body, strlen(cases[i].body), &content, model),
            cases[i].rc);
        if (cases[i].rc == 0) {
            assert_string_equal(content, cases[i].content);
            assert_string_equal(model, cases[i].model);
        } else {
            assert_null(content);
        }
        free(content);
    }
}

/* Content and model at and past their bounds; a body that is not NUL-terminated. */
static void test_mistral_parse_response_bounds(void **state)
{
    (void)state;
    size_t cap = TALE_TEXT_MAX + 2 * TALE_MODEL_MAX + 256;
    char *body = malloc(cap), *content = NULL;
    char model[TALE_MODEL_MAX + 1];
    char text[TALE_TEXT_MAX + 2], name[TALE_MODEL_MAX + 2];

    assert_non_null(body);
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    memset(name, 'm', sizeof name - 1);
    name[sizeof name - 1] = '\0';

    /* TALE_TEXT_MAX + 1 bytes of content: refused */
    snprintf(body, cap, "{\"choices\":[{\"message\":{\"content\":\"%s\"}}]}", text);
    assert_int_equal(mistral_parse_response(body, strlen(body), &content, model), -1);
    assert_null(content);

    /* exactly TALE_TEXT_MAX, model of TALE_MODEL_MAX + 1 bytes: read, model ignored */
    text[TALE_TEXT_MAX] = '\0';
    snprintf(body, cap, "{\"model\":\"%s\",\"choices\":[{\"message\":{\"content\":\"%s\"}}]}", name,
             text);
    memcpy(model, "configured", 11);
    assert_int_equal(mistral_parse_response(body, strlen(body), &content, model), 0);
    assert_int_equal(strlen(content), TALE_TEXT_MAX);
    assert_string_equal(model, "configured");
    free(content);
    content = NULL;

    /* model of exactly TALE_MODEL_MAX bytes: taken */
    name[TALE_MODEL_MAX] = '\0';
    snprintf(body, cap, "{\"model\":\"%s\",\"choices\":[{\"message\":{\"content\":\"x\"}}]}", name);
    assert_int_equal(mistral_parse_response(body, strlen(body), &content, model), 0);
    assert_string_equal(model, name);
    free(content);
    content = NULL;

    /* only len bytes are read */
    snprintf(body, cap, "{\"choices\":[{\"message\":{\"content\":\"x\"}}]}GARBAGE");
    assert_int_equal(mistral_parse_response(body, strlen(body) - 7, &content, model), 0);
    assert_string_equal(content, "x");
    free(content);
    content = NULL;
    assert_int_equal(mistral_parse_response(body, strlen(body), &content, model), -1);

    /* over MISTRAL_RESPONSE_MAX: refused before parsing; NULL arguments */
    assert_int_equal(mistral_parse_response(body, MISTRAL_RESPONSE_MAX + 1, &content, model), -1);
    assert_int_equal(mistral_parse_response(NULL, 0, &content, model), -1);
    assert_int_equal(mistral_parse_response(body, 10, NULL, model), -1);
    free(body);
}

/* ---- mistral_retry_after ---- */

static void test_mistral_retry_after_cases(void **state)
{
    (void)state;
    time_t now = curl_getdate("Wed, 21 Oct 2015 07:28:00 GMT", NULL);
    static const struct {
        int line;
        const char *value;
        long want;
    } cases[] = {
        {__LINE__, NULL, -1},
        {__LINE__, "", -1},
        {__LINE__, "   ", -1},
        {__LINE__, "0", 0},
        {__LINE__, "1", 1},
        {__LINE__, "  5\t", 5},
        {__LINE__, "120", 120},
        {__LINE__, "007", 7},
        {__LINE__, "3600", 3600},
        {__LINE__, "3601", 3600},
        {__LINE__, "99999999999999999999999999999999", 3600},
        {__LINE__, "-1", -1},
        {__LINE__, "+5", -1},
        {__LINE__, "1.5", -1},
        {__LINE__, "5s", -1},
        {__LINE__, "5 5", -1},
        {__LINE__, "0x10", -1},
        {__LINE__, "abc", -1},
        {__LINE__, "Sun", -1},
        {__LINE__, "soon", -1},
        {__LINE__, "\xff\xfe", -1},
        {__LINE__, "1111111111111111111111111111111111111111111111111111111111111111111111", -1},
        /* HTTP dates, relative to now */
        {__LINE__, "Wed, 21 Oct 2015 07:28:30 GMT", 30},
        {__LINE__, "Wed, 21 Oct 2015 07:28:00 GMT", 0},
        {__LINE__, "Wed, 21 Oct 2015 07:27:00 GMT", 0},
        {__LINE__, "Sun, 06 Nov 1994 08:49:37 GMT", 0},
        {__LINE__, "Wednesday, 21-Oct-15 07:29:00 GMT", 60},
        {__LINE__, "Wed Oct 21 07:28:05 2015", 5},
        {__LINE__, "Thu, 22 Oct 2015 07:28:00 GMT", 3600},
        {__LINE__, "Fri, 31 Dec 9999 23:59:59 GMT", 3600},
    };
    assert_true(now > 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("line %d\n", cases[i].line);
        assert_int_equal(mistral_retry_after(cases[i].value, now), cases[i].want);
    }
}

/* ---- mistral_chat against a scripted responder ---- */

struct test_reply {
    int status;
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;    /* NULL: a body of big_body bytes */
    int delay_ms;        /* before answering */
};

/* In a reply's headers: no Content-Length, the body ends when the connection closes. */
#define H_CLOSE "X-Test-Close: 1\r\n"

struct test_server {
    int fd, port;
    pthread_t thread;
    struct test_reply script[TEST_SCRIPT_MAX];
    size_t nscript;
    size_t big_body;
    /* written by the server thread, read after mistral_chat returned */
    pthread_mutex_t lock;
    size_t requests, connections;
    char last[TEST_REQUEST_MAX + 1];
    volatile int stop;
};

static void test_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        s += w;
        n -= (size_t)w;
    }
}

/* Reads one request into srv->last. 0, or -1 at end of connection. */
static int test_read_request(struct test_server *srv, int fd, char *buf, size_t *have)
{
    char *end;
    long clen = 0;

    for (;;) {
        buf[*have] = '\0';
        if ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            const char *cl = strcasestr(buf, "\r\nContent-Length:");
            if (cl != NULL && cl < end)
                clen = strtol(cl + 17, NULL, 10);
            size_t total = (size_t)(end + 4 - buf) + (size_t)clen;
            if (*have >= total) {
                pthread_mutex_lock(&srv->lock);
                memcpy(srv->last, buf, total);
                srv->last[total] = '\0';
                pthread_mutex_unlock(&srv->lock);
                memmove(buf, buf + total, *have - total);
                *have -= total;
                return 0;
            }
        }
        if (*have >= TEST_REQUEST_MAX)
            return -1;
        ssize_t r = recv(fd, buf + *have, TEST_REQUEST_MAX - *have, 0);
        if (r <= 0)
            return -1;
        *have += (size_t)r;
    }
}

static void test_answer(struct test_server *srv, int fd, const struct test_reply *rp)
{
    char head[1024];
    char *big = NULL;
    const char *body = rp->body;
    size_t blen;

    if (body == NULL) {
        big = malloc(srv->big_body);
        memset(big, ' ', srv->big_body);
        body = big;
        blen = srv->big_body;
    } else {
        blen = strlen(body);
    }
    if (rp->delay_ms > 0)
        test_sleep_ms(rp->delay_ms);
    int n, close_delimited = rp->headers != NULL && strstr(rp->headers, H_CLOSE) != NULL;
    if (close_delimited)
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     "Connection: close\r\n%s\r\n",
                     rp->status, rp->headers ? rp->headers : "");
    else
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s\r\n",
                     rp->status, blen, rp->headers ? rp->headers : "");
    test_send_all(fd, head, (size_t)n);
    test_send_all(fd, body, blen);
    if (close_delimited)
        shutdown(fd, SHUT_WR);
    free(big);
}

static void *test_server_main(void *arg)
{
    struct test_server *srv = arg;
    char *buf = malloc(TEST_REQUEST_MAX + 1);

    while (!srv->stop) {
        struct pollfd p = {.fd = srv->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(srv->fd, NULL, NULL);
        if (c < 0)
            continue;
        pthread_mutex_lock(&srv->lock);
        srv->connections++;
        pthread_mutex_unlock(&srv->lock);
        size_t have = 0;
        while (!srv->stop && test_read_request(srv, c, buf, &have) == 0) {
            pthread_mutex_lock(&srv->lock);
            size_t k = srv->requests++;
            pthread_mutex_unlock(&srv->lock);
            test_answer(srv, c, &srv->script[k < srv->nscript ? k : srv->nscript - 1]);
        }
        close(c);
    }
    free(buf);
    return NULL;
}

static struct test_server *test_server_start(const struct test_reply *script, size_t n)
{
    struct test_server *srv = calloc(1, sizeof *srv);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;

    assert_non_null(srv);
    assert_true(n > 0 && n <= TEST_SCRIPT_MAX);
    memcpy(srv->script, script, n * sizeof *script);
    srv->nscript = n;
    pthread_mutex_init(&srv->lock, NULL);
    srv->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(srv->fd >= 0);
    assert_int_equal(bind(srv->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(srv->fd, 8), 0);
    assert_int_equal(getsockname(srv->fd, (struct sockaddr *)&sa, &len), 0);
    srv->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&srv->thread, NULL, test_server_main, srv), 0);
    return srv;
}

static void test_server_stop(struct test_server *srv)
{
    srv->stop = 1;
    pthread_join(srv->thread, NULL);
    close(srv->fd);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

static void test_config(struct config *cfg, int port, long timeout, const char *suffix)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->mistral_api_key, sizeof cfg->mistral_api_key, "%s", TEST_KEY);
    snprintf(cfg->mistral_api_url, sizeof cfg->mistral_api_url, "http://127.0.0.1:%d%s", port,
             suffix);
    snprintf(cfg->mistral_model, sizeof cfg->mistral_model, "mistral-small-latest");
    cfg->mistral_timeout = timeout;
}

static int64_t test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One mistral_chat call against a fresh client. */
static enum tale_status test_chat(const struct config *cfg, char **content,
                                  char model[TALE_MODEL_MAX + 1], long *retry_after)
{
    struct mistral_client mc;
    json_t *messages = json_pack("[{s:s, s:s}]", "role", "user", "content", "Tell a story.");

    mistral_init(&mc);
    enum tale_status st = mistral_chat(&mc, cfg, messages, 0.7, 100, content, model, retry_after);
    mistral_free(&mc);
    json_decref(messages);
    return st;
}

#define H_RA0 "Retry-After: 0\r\n"
#define OK_BODY "{\"model\":\"echoed-model\",\"choices\":[{\"message\":{\"content\":\"Hello\"}}]}"
#define ERR_BODY "{\"object\":\"error\",\"message\":\"Bad key " TEST_KEY "\",\"type\":\"x\"}"

static void test_mistral_chat_script(void **state)
{
    (void)state;
    static const struct {
        int line;
        struct test_reply script[TEST_SCRIPT_MAX];
        size_t nscript;
        long timeout;
        enum tale_status want;
        size_t requests;
        long retry_after; /* for TALE_RATE_LIMITED */
        long max_ms;      /* the call took at most this long */
    } cases[] = {
        {__LINE__, {{200, NULL, OK_BODY, 0}}, 1, 5, TALE_OK, 1, 0, 2000},
        {__LINE__, {{429, H_RA0, "{}", 0}}, 1, 5, TALE_RATE_LIMITED, 3, 1, 2000},
        {__LINE__, {{429, "Retry-After: 1\r\n", "{}", 0}}, 1, 10, TALE_RATE_LIMITED, 3, 1, 3500},
        {__LINE__, {{429, "Retry-After: 7\r\n", "{}", 0}}, 1, 5, TALE_RATE_LIMITED, 1, 7, 2000},
        {__LINE__,
         {{429, "Retry-After: 9999\r\n", "{}", 0}},
         1,
         5,
         TALE_RATE_LIMITED,
         1,
         3600,
         2000},
        {__LINE__, {{429, NULL, "{}", 0}}, 1, 10, TALE_RATE_LIMITED, 3, 1, 3500},
        {__LINE__, {{429, NULL, "{}", 0}}, 1, 1, TALE_RATE_LIMITED, 1, 1, 2000},
        {__LINE__, {{429, H_RA0, "{}", 0}, {200, NULL, OK_BODY, 0}}, 2, 5, TALE_OK, 2, 0, 2000},
        {__LINE__,
         {{500, H_RA0, "{}", 0}, {502, H_RA0, "", 0}, {200, NULL, OK_BODY, 0}},
         3,
         5,
         TALE_OK,
         3,
         0,
         2000},
        {__LINE__, {{503, H_RA0, "{}", 0}}, 1, 5, TALE_BAD_GATEWAY, 3, 0, 2000},
        {__LINE__,
         {{503, H_RA0, "{}", 0}, {429, H_RA0, "{}", 0}},
         2,
         5,
         TALE_RATE_LIMITED,
         3,
         1,
         2000},
        {__LINE__, {{401, NULL, ERR_BODY, 0}}, 1, 5, TALE_BAD_GATEWAY, 1, 0, 2000},
        {__LINE__, {{400, NULL, "{}", 0}}, 1, 5, TALE_BAD_GATEWAY, 1, 0, 2000},
        {__LINE__, {{404, NULL, "", 0}}, 1, 5, TALE_BAD_GATEWAY, 1, 0, 2000},
        {__LINE__,
         {{301, "Location: http://127.0.0.1:1/\r\n", "", 0}},
         1,
         5,
         TALE_BAD_GATEWAY,
         1,
         0,
         2000},
        {__LINE__, {{200, NULL, "not json", 0}}, 1, 5, TALE_BAD_GATEWAY, 1, 0, 2000},
        {__LINE__, {{200, NULL, "{\"choices\":[]}", 0}}, 1, 5, TALE_BAD_GATEWAY, 1, 0, 2000},
        {__LINE__, {{200, NULL, OK_BODY, 1300}}, 1, 1, TALE_TIMEOUT, 1, 0, 1250},
        {__LINE__,
         {{500, H_RA0, "{}", 0}, {200, NULL, OK_BODY, 2300}},
         2,
         2,
         TALE_TIMEOUT,
         2,
         0,
         2250},
        {__LINE__, {{200, NULL, NULL, 0}}, 1, 5, TALE_BAD_GATEWAY, 1, 0, 3000},
        {__LINE__, {{200, H_CLOSE, NULL, 0}}, 1, 5, TALE_BAD_GATEWAY, 1, 0, 3000},
        {__LINE__, {{200, H_CLOSE, OK_BODY, 0}}, 1, 5, TALE_OK, 1, 0, 2000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct test_server *srv;
        struct config cfg;
        char model[TALE_MODEL_MAX + 1] = "";
        char *content = NULL;
        long retry_after = -5;

        print_message("line %d\n", cases[i].line);
        srv = test_server_start(cases[i].script, cases[i].nscript);
        srv->big_body = MISTRAL_RESPONSE_MAX + 1;
        test_config(&cfg, srv->port, cases[i].timeout, "");
        int64_t t0 = test_now_ms();
        enum tale_status st = test_chat(&cfg, &content, model, &retry_after);
        int64_t took = test_now_ms() - t0;
        assert_int_equal(st, cases[i].want);
        assert_true(took <= cases[i].max_ms);
        pthread_mutex_lock(&srv->lock);
        assert_int_equal(srv->requests, cases[i].requests);
        pthread_mutex_unlock(&srv->lock);
        if (st == TALE_OK) {
            assert_string_equal(content, "Hello");
            assert_string_equal(model, "echoed-model");
        } else {
            assert_null(content);
        }
        if (st == TALE_RATE_LIMITED)
            assert_int_equal(retry_after, cases[i].retry_after);
        else
            assert_int_equal(retry_after, 1);
        free(content);
        test_server_stop(srv);
    }
}

/* What is sent: path, method, headers (key in Authorization only), the body. */
static void test_mistral_chat_request_sent(void **state)
{
    (void)state;
    static const struct test_reply ok[] = {
        {200, NULL, "{\"choices\":[{\"message\":{\"content\":\"Hi\"}}]}", 0}};
    struct test_server *srv = test_server_start(ok, 1);
    struct config cfg;
    char model[TALE_MODEL_MAX + 1], *content = NULL;
    long ra;

    test_config(&cfg, srv->port, 5, "/");
    assert_int_equal(test_chat(&cfg, &content, model, &ra), TALE_OK);
    assert_string_equal(content, "Hi");
    assert_string_equal(model, "mistral-small-latest"); /* none in the answer */
    free(content);
    pthread_mutex_lock(&srv->lock);
    assert_memory_equal(srv->last, "POST /v1/chat/completions HTTP/1.1\r\n", 36);
    assert_non_null(strcasestr(srv->last, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strcasestr(srv->last, "\r\nAccept: application/json\r\n"));
    assert_non_null(strstr(srv->last, "\r\nAuthorization: Bearer " TEST_KEY "\r\n"));
    assert_null(strcasestr(srv->last, "\r\nExpect:"));
    const char *body = strstr(srv->last, "\r\n\r\n") + 4;
    json_t *doc = json_loads(body, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "model")), "mistral-small-latest");
    assert_int_equal(json_array_size(json_object_get(doc, "messages")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "max_tokens")), 100);
    assert_null(strstr(body, TEST_KEY));
    json_decref(doc);
    pthread_mutex_unlock(&srv->lock);
    test_server_stop(srv);
}

/* Two calls on one client share one connection. */
static void test_mistral_chat_keep_alive(void **state)
{
    (void)state;
    static const struct test_reply ok[] = {{200, NULL, OK_BODY, 0}};
    struct test_server *srv = test_server_start(ok, 1);
    struct mistral_client mc;
    struct config cfg;
    json_t *messages = json_pack("[{s:s, s:s}]", "role", "user", "content", "Hi");

    test_config(&cfg, srv->port, 5, "");
    mistral_init(&mc);
    assert_null(mc.curl);
    for (int i = 0; i < 3; i++) {
        char model[TALE_MODEL_MAX + 1], *content = NULL;
        long ra;
        assert_int_equal(mistral_chat(&mc, &cfg, messages, 0.5, 50, &content, model, &ra), TALE_OK);
        assert_non_null(mc.curl);
        free(content);
    }
    pthread_mutex_lock(&srv->lock);
    assert_int_equal(srv->requests, 3);
    assert_int_equal(srv->connections, 1);
    pthread_mutex_unlock(&srv->lock);
    mistral_free(&mc);
    assert_null(mc.curl);
    mistral_free(&mc);
    mistral_free(NULL);
    json_decref(messages);
    test_server_stop(srv);
}

/* No server: a connection error is a bad gateway, at once. */
static void test_mistral_chat_connection_refused(void **state)
{
    (void)state;
    static const struct test_reply ok[] = {{200, NULL, OK_BODY, 0}};
    struct test_server *srv = test_server_start(ok, 1);
    int port = srv->port;
    struct config cfg;
    char model[TALE_MODEL_MAX + 1], *content = NULL;
    long ra;

    test_server_stop(srv); /* the port is free again: nothing listens */
    test_config(&cfg, port, 5, "");
    assert_int_equal(test_chat(&cfg, &content, model, &ra), TALE_BAD_GATEWAY);
    assert_null(content);
    assert_int_equal(test_chat(NULL, &content, model, &ra), TALE_BAD_GATEWAY);
}

/* The log lines name status, attempt and reason, and never hold the key, even when
 * the upstream's error message repeats it. */
static void test_mistral_chat_key_not_logged(void **state)
{
    (void)state;
    static const struct test_reply script[] = {
        {503, H_RA0, ERR_BODY, 0},
        {503, H_RA0, "{\"message\":\"Service \\\"overloaded\\\"\\n\"}", 0},
        {401, NULL, ERR_BODY, 0}};
    struct test_server *srv = test_server_start(script, 3);
    struct config cfg;
    char model[TALE_MODEL_MAX + 1], *content = NULL, path[] = "/tmp/test_mistral_XXXXXX";
    char log[8192];
    long ra;
    int fd = mkstemp(path), saved = dup(2);

    assert_true(fd >= 0 && saved >= 0);
    unlink(path);
    test_config(&cfg, srv->port, 5, "");
    dup2(fd, 2);
    enum tale_status st = test_chat(&cfg, &content, model, &ra);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, log, sizeof log - 1, 0);
    close(fd);
    assert_int_equal(st, TALE_BAD_GATEWAY);
    assert_true(n > 0);
    log[n] = '\0';
    assert_null(strstr(log, TEST_KEY));
    assert_null(strstr(log, "0123456789abcdef"));
    assert_non_null(strstr(log, "\"event\":\"upstream_error\""));
    assert_non_null(strstr(log, "\"status\":503,\"attempt\":1"));
    assert_non_null(strstr(log, "\"status\":503,\"attempt\":2"));
    assert_non_null(strstr(log, "\"status\":401,\"attempt\":3"));
    /* an upstream message without the key is quoted, made printable */
    assert_non_null(strstr(log, "\"upstream_message\":\"Service ?overloaded??\""));
    test_server_stop(srv);
}

/* tale_write over MistralAI: the answer parsed into the result, failures mapped. */
static void test_mistral_tale_write_upstream(void **state)
{
    (void)state;
    static const struct {
        int line;
        enum tale_kind kind;
        struct test_reply reply;
        enum tale_status want;
        const char *title, *text, *first_suggestion;
        long retry_after;
    } cases[] = {
        {__LINE__,
         TALE_OPENING,
         {200, NULL,
          "{\"model\":\"m-echo\",\"choices\":[{\"message\":{\"content\":"
          "\"Title: The Fox\\n\\nOnce upon a time.\"}}]}",
          0},
         TALE_OK,
         "The Fox",
         "Once upon a time.",
         NULL,
         1},
        {__LINE__,
         TALE_SUGGESTIONS,
         {200, NULL, "{\"choices\":[{\"message\":{\"content\":\"1. A\\n2. B\\n3. C\"}}]}", 0},
         TALE_OK,
         NULL,
         NULL,
         "A",
         1},
        {__LINE__,
         TALE_SUGGESTIONS,
         {200, NULL, "{\"choices\":[{\"message\":{\"content\":\"only one\"}}]}", 0},
         TALE_BAD_GATEWAY,
         NULL,
         NULL,
         NULL,
         1},
        {__LINE__,
         TALE_OPENING,
         {200, NULL, "{\"choices\":[{\"message\":{\"content\":\"Title: X\"}}]}", 0},
         TALE_BAD_GATEWAY,
         NULL,
         NULL,
         NULL,
         1},
        {__LINE__,
         TALE_ENDING,
         {429, "Retry-After: 7\r\n", "{}", 0},
         TALE_RATE_LIMITED,
         NULL,
         NULL,
         NULL,
         7},
        {__LINE__, TALE_ENDING, {401, NULL, "{}", 0}, TALE_BAD_GATEWAY, NULL, NULL, NULL, 1},
    };
    const char *parts[] = {"Part one."};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct test_server *srv = test_server_start(&cases[i].reply, 1);
        struct mistral_client mc;
        struct config cfg;
        struct tale_result out;
        struct tale_request rq = {.kind = cases[i].kind,
                                  .genre = "fantasy",
                                  .characters = "a fox",
                                  .opening_line = "",
                                  .title = "T",
                                  .parts = parts,
                                  .nparts = 1};
        long ra = -5;

        print_message("line %d\n", cases[i].line);
        test_config(&cfg, srv->port, 5, "");
        mistral_init(&mc);
        memset(&out, 0x5a, sizeof out); /* tale_write zeroes it */
        assert_int_equal(tale_write(&cfg, &mc, &rq, &out, &ra), cases[i].want);
        assert_int_equal(ra, cases[i].retry_after);
        if (cases[i].want == TALE_OK) {
            assert_string_equal(out.model, cases[i].title ? "m-echo" : "mistral-small-latest");
            if (cases[i].title != NULL) {
                assert_string_equal(out.title, cases[i].title);
                assert_string_equal(out.text, cases[i].text);
            } else {
                assert_string_equal(out.suggestions[0], cases[i].first_suggestion);
                assert_non_null(out.suggestions[2]);
            }
        } else {
            assert_null(out.text);
            assert_null(out.title);
            assert_null(out.suggestions[0]);
        }
        tale_result_free(&out);
        assert_null(out.text);
        mistral_free(&mc);
        test_server_stop(srv);
    }
}

/* Without a key the offline storyteller answers; the backend names follow the key. */
static void test_mistral_tale_backend_choice(void **state)
{
    (void)state;
    struct config cfg;
    struct tale_result out;
    struct tale_request rq = {
        .kind = TALE_OPENING, .genre = "fantasy", .characters = "a fox", .opening_line = ""};
    long ra = -5;

    test_config(&cfg, 1, 5, "");
    assert_string_equal(tale_backend(&cfg), "mistral");
    cfg.mistral_api_key[0] = '\0';
    assert_string_equal(tale_backend(&cfg), "offline");
    assert_string_equal(tale_backend(NULL), "offline");
    assert_int_equal(tale_write(&cfg, NULL, &rq, &out, &ra), TALE_OK);
    assert_string_equal(out.model, "offline");
    assert_non_null(out.title);
    assert_non_null(out.text);
    assert_int_equal(ra, 1);
    tale_result_free(&out);
    tale_result_free(NULL);
    /* with a key but no client: an internal error, not a crash */
    test_config(&cfg, 1, 5, "");
    assert_int_equal(tale_write(&cfg, NULL, &rq, &out, &ra), TALE_NO_MEMORY);
    assert_int_equal(tale_write(NULL, NULL, &rq, &out, &ra), TALE_NO_MEMORY);
    assert_int_equal(tale_write(&cfg, NULL, &rq, NULL, &ra), TALE_NO_MEMORY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mistral_request_body_shape),
        cmocka_unit_test(test_mistral_parse_response_cases),
        cmocka_unit_test(test_mistral_parse_response_bounds),
        cmocka_unit_test(test_mistral_retry_after_cases),
        cmocka_unit_test(test_mistral_chat_script),
        cmocka_unit_test(test_mistral_chat_request_sent),
        cmocka_unit_test(test_mistral_chat_keep_alive),
        cmocka_unit_test(test_mistral_chat_connection_refused),
        cmocka_unit_test(test_mistral_chat_key_not_logged),
        cmocka_unit_test(test_mistral_tale_write_upstream),
        cmocka_unit_test(test_mistral_tale_backend_choice),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
