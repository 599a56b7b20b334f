/*
 * fuzz_gateway: one whole request through gateway_handle (fcgi/gateway.c) without a web
 * server: the FastCGI parameters and stdin come from the input, the answer goes to
 * memory. Route, bearer token (FUZZ_SECRET, real clock), client IP through X-Forwarded-
 * For (TRUSTED_PROXIES = FUZZ_PROXIES), body bounds and Content-Type, the handler, and
 * the one writer. Redis is unreachable (fuzz_redis_down) and the fail mode is open, so
 * every request is let through to its handler, which answers 503 where it needs storage.
 *
 * Input: CGI parameters "NAME=value" one a line, an empty line, then stdin. Checked (SPEC
 * 4, 8): the answer is one CGI response "Status: NNN" that is never a 5xx other than
 * 503, whose header lines are "Name: value" with no stray CR, LF or NUL, with
 * Cache-Control: no-store, and whose body is the JSON its Content-Length announces.
 * FUZZ_DUMP=1 build/fuzz/fuzz_gateway FILE prints the answer to FILE on stderr.
 */
#include <ctype.h>
#include <string.h>

#include "fuzz.h"
#include "gateway.h"

/* Set once by LLVMFuzzerInitialize; read-only afterwards but for the Redis state. */
static struct config cfg;
static struct rconn redis;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_config(&cfg);
    fuzz_redis_down(&redis, &cfg);
    return 0;
}

/* One header line of len bytes (CRLF excluded): a token name, ": ", a clean value. */
static void check_header(const char *line, size_t len, long *content_length, bool *no_store)
{
    const char *colon = memchr(line, ':', len);

    FUZZ_CHECK(colon != NULL && colon > line && colon + 1 < line + len && colon[1] == ' ');
    for (const char *p = line; p < colon; p++)
        FUZZ_CHECK(isalnum((unsigned char)*p) || *p == '-');
    for (const char *p = colon + 2; p < line + len; p++)
        FUZZ_CHECK(*p != '\r' && *p != '\n' && *p != '\0');
    if (len > 16 && strncmp(line, "Content-Length: ", 16) == 0)
        *content_length = strtol(line + 16, NULL, 10);
    if (len == 23 && strncmp(line, "Cache-Control: no-store", 23) == 0)
        *no_store = true;
}

static void check_answer(const char *out, size_t len)
{
    const char *end = memmem(out, len, "\r\n\r\n", 4);
    long content_length = -1;
    bool no_store = false;

    FUZZ_CHECK(len > 12 && strncmp(out, "Status: ", 8) == 0 && end != NULL);
    int status = (out[8] - '0') * 100 + (out[9] - '0') * 10 + (out[10] - '0');
    FUZZ_CHECK(status >= 200 && status <= 599 && (status < 500 || status == 503));
    for (const char *line = out; line <= end;) {
        const char *crlf = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        check_header(line, (size_t)(crlf - line), &content_length, &no_store);
        line = crlf + 2;
    }
    FUZZ_CHECK(no_store);
    const char *body = end + 4;
    size_t body_len = len - (size_t)(body - out);
    FUZZ_CHECK(content_length < 0 ? body_len == 0 : (size_t)content_length == body_len);
    if (body_len > 0) {
        json_t *doc = json_loadb(body, body_len, 0, NULL);
        FUZZ_CHECK(doc != NULL);
        json_decref(doc);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    unsigned char *out = malloc(FUZZ_OUT_MAX);
    FCGX_Stream in, answer;
    struct gateway_worker w;

    if (text == NULL || out == NULL)
        goto done;
    memcpy(text, data, size);
    text[size] = '\0';
    char *envp[FUZZ_PARAMS_MAX + 1];
    size_t body = fuzz_envp(text, size, envp);
    /* stdin: an exact-size copy, so a read past what the client sent is an ASan report. */
    unsigned char *stdin_bytes = (unsigned char *)fuzz_copy(text + body, size - body);
    if (stdin_bytes == NULL)
        goto done;
    fuzz_reader(&in, stdin_bytes, size - body);
    fuzz_writer(&answer, out, FUZZ_OUT_MAX);
    memset(&w, 0, sizeof w);
    w.fcgx.in = &in;
    w.fcgx.out = &answer;
    w.fcgx.envp = envp;
    w.redis = redis;
    w.cfg = &cfg;
    mistral_init(&w.ai);
    gateway_handle(&w);
    if (getenv("FUZZ_DUMP") != NULL) /* FUZZ_DUMP=1 fuzz_gateway FILE: show the answer */
        fwrite(out, 1, (size_t)(answer.wrNext - out), stderr);
    FUZZ_CHECK(!answer.isClosed);
    check_answer((const char *)out, (size_t)(answer.wrNext - out));
    mistral_free(&w.ai);
    refusal_free(&w.refusal);
    free(stdin_bytes);
done:
    free(out);
    free(text);
    return 0;
}
