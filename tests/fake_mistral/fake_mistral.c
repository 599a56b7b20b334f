/*
 * fake_mistral: a stand-in for MistralAI's chat completions API, for the integration
 * tests (tests/integration/fake_mistral.sh starts it behind its own lighttpd, configured
 * by tests/fake_mistral/lighttpd.conf).
 *
 * A FastCGI program: FAKE_THREADS request threads, FCGX_Accept_r serialised by one
 * mutex as in fcgi/main.c. It answers POST /v1/chat/completions only, like the real API:
 *   - "Authorization: Bearer <key>" checked against env FAKE_MISTRAL_KEY (default
 *     "test-key"): missing or wrong -> 401 {"message":"Unauthorized","request_id":...};
 *   - the body must be a JSON object with "model" (string) and "messages" (non-empty
 *     array of {"role","content"}), optional numeric "temperature" and integer
 *     "max_tokens", no unknown field: not JSON -> 400, else 422 with a "detail" list;
 *   - the answer is a chat.completion object that echoes the request's model. Its text
 *     fits what was asked: a "Title: ..." first line when the system or last user message
 *     says "Title:", three lines when it says "three", else a few sentences; it quotes
 *     the start of the last user message (of the string values of its first line that
 *     is a JSON object, when it has one: the gateway sends the reader's data so) so that
 *     a test can see the request got through.
 *
 * Behaviour is steered by the file $FAKE_DIR/mode, re-read at every request: one mode a
 * line (blank lines skipped); the k-th request (0-based) since the file last changed
 * (inode, size or mtime) uses line min(k, lines - 1); no file or no line: normal.
 *   normal | slow N | 429 [N] | 500 | 502 | 503 | 401 | malformed | wrongshape | empty |
 *   content TEXT | huge | reset | reset headers | reset early
 * (slow: sleep N seconds then answer normally; 429 N: with Retry-After: N; content: the
 * text with "\n" turned into newlines and "\\" into "\"; huge: 100 KiB of text). An
 * unknown mode answers 500 with a message naming it. Other paths answer 404, other
 * methods 405, a body over FAKE_BODY_MAX bytes 413; the mode still applies to "slow".
 *
 * The reset modes need the raw HTTP server below (behind lighttpd the program does not
 * own the client's socket; there they answer 500 saying so). After the key and the body
 * passed, the connection is reset (SO_LINGER 0 + close: a TCP RST) mid-answer:
 *   reset           the status line, the headers (Content-Length of the whole answer) and
 *                   half of a normal answer's JSON, FAKE_RESET_PAUSE_MS, then the reset;
 *   reset headers   half of the header block, the pause, then the reset;
 *   reset early     the reset as soon as the request is read, no byte of answer.
 * Their log line's "status" is 200, the answer that was cut (0 for "reset early").
 *
 * Raw HTTP server: `fake-mistral --http PORT` serves the same API itself on
 * 127.0.0.1:PORT (HTTP/1.1, one request per connection, "Connection: close",
 * Content-Length bodies only), one thread per connection (at most FAKE_HTTP_CONNS_MAX),
 * with the same modes, checks and request log; FAKE_DIR and FAKE_MISTRAL_KEY as above.
 * Without arguments it is the FastCGI program.
 *
 * Every request is appended to $FAKE_DIR/requests.log as one JSON line, with one
 * write(2) under a mutex, before the answer (and before any sleep):
 *   {"n":k,"seq":s,"mode":"<line>","method":..,"path":..,"authorization":<header or null>,
 *    "content_type":<header or null>,"status":<status answered>,"body":<parsed or null>}
 * (k: index since the mode file changed; s: index since start; "body_error" when the body
 * was not JSON).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <jansson.h>

#define FAKE_THREADS 64             /* request threads */
#define FAKE_BODY_MAX (1024 * 1024) /* bytes of a request body we read */
#define FAKE_MODE_FILE_MAX 16384    /* bytes of the mode file we read */
#define FAKE_MODE_LINES_MAX 512     /* lines of the mode file we look at */
#define FAKE_MODE_LINE_MAX 1024     /* bytes of one mode line */
#define FAKE_HEADER_MAX 8192        /* bytes of a header value we log */
#define FAKE_PARAM_MAX 2048         /* bytes of a CGI param (method, path) we use */
#define FAKE_EXCERPT_CHARS 60       /* characters of the last user message quoted */
#define FAKE_QUOTE_MAX 1024         /* bytes of the text an excerpt is taken from */
#define FAKE_EXCERPT_MAX (FAKE_EXCERPT_CHARS * 4 + 1)
#define FAKE_TEXT_MAX 2048           /* bytes of a generated answer */
#define FAKE_HUGE_BYTES (100 * 1024) /* bytes of the "huge" answer */
#define FAKE_SLOW_MAX 600.0          /* seconds a "slow" mode may sleep */
#define FAKE_RETRY_AFTER_MAX 86400L  /* seconds of a "429 N" Retry-After */
#define FAKE_TEMPERATURE_MAX 2.0     /* largest temperature accepted */
#define FAKE_DEFAULT_KEY "test-key"
#define FAKE_CHAT_PATH "/v1/chat/completions"
#define FAKE_HEAD_MAX 16384       /* raw server: bytes of a request line and headers */
#define FAKE_HTTP_CONNS_MAX 256   /* raw server: connections served at once */
#define FAKE_HTTP_IO_TIMEOUT_S 30 /* raw server: a silent client is dropped after this */
#define FAKE_RESET_PAUSE_MS 200   /* reset modes: between the partial answer and the RST */

enum fake_mode_kind {
    FAKE_NORMAL,
    FAKE_SLOW,
    FAKE_429,
    FAKE_500,
    FAKE_502,
    FAKE_503,
    FAKE_401,
    FAKE_MALFORMED,
    FAKE_WRONGSHAPE,
    FAKE_EMPTY,
    FAKE_CONTENT,
    FAKE_HUGE,
    FAKE_RESET,         /* raw server only: headers, half the body, RST */
    FAKE_RESET_HEADERS, /* raw server only: half the headers, RST */
    FAKE_RESET_EARLY,   /* raw server only: RST before any byte */
    FAKE_UNKNOWN,
};

struct fake_mode {
    enum fake_mode_kind kind;
    double slow_s;    /* FAKE_SLOW */
    long retry_after; /* FAKE_429: -1 when none */
    const char *text; /* FAKE_CONTENT: borrowed from the line, escapes not yet expanded */
    const char *line; /* the whole line (borrowed) */
};

/* What one request is answered. */
struct fake_reply {
    int status;
    long retry_after;        /* -1: no Retry-After header */
    bool allow_post;         /* add "Allow: POST" (405) */
    enum fake_mode_kind cut; /* FAKE_RESET*: how the raw server cuts it; else FAKE_NORMAL */
    char *body;              /* owned; NULL means an empty body */
    size_t len;
};

/* One per thread. */
struct fake_worker {
    FCGX_Request fcgx;
    char *body; /* FAKE_BODY_MAX + 1 bytes, owned */
};

/* Read-only after main() starts the threads. */
static char fake_dir[PATH_MAX];
static const char *fake_key = FAKE_DEFAULT_KEY;

/* Serialises FCGX_Accept_r: libfcgi allows one accepting thread at a time. */
static pthread_mutex_t fake_accept_lock = PTHREAD_MUTEX_INITIALIZER;

/* Guards fake_mode_seen: the identity of the mode file and the requests since it changed. */
static pthread_mutex_t fake_mode_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    bool present;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    unsigned long count;
} fake_mode_seen;

/* Guards fake_seq and the appends to requests.log. */
static pthread_mutex_t fake_log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long fake_seq;

/* ------------------------------------------------------------------------ helpers */

/* A JSON string of s (at most cap bytes), bytes of invalid UTF-8 replaced by '?'. */
static json_t *fake_json_text(const char *s, size_t cap)
{
    size_t len = strnlen(s, cap);
    json_t *j = json_stringn(s, len);
    if (j != NULL)
        return j;
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++)
        copy[i] = (unsigned char)s[i] < 0x80 && s[i] != '\0' ? s[i] : '?';
    j = json_stringn(copy, len);
    free(copy);
    return j;
}

/* A request id like Mistral's: 32 hex chars. */
static void fake_request_id(char out[33])
{
    unsigned char raw[16];
    static const char hex[] = "0123456789abcdef";

    if (getrandom(raw, sizeof raw, GRND_NONBLOCK) != (ssize_t)sizeof raw) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t a = (uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)ts.tv_sec;
        uint64_t b = (uint64_t)(uintptr_t)out ^ (a << 7);
        memcpy(raw, &a, 8);
        memcpy(raw + 8, &b, 8);
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[32] = '\0';
}

/* Sets rp to status with the JSON body (stolen; NULL: out of memory -> empty body). */
static void fake_reply_json(struct fake_reply *rp, int status, json_t *body)
{
    rp->status = status;
    free(rp->body);
    rp->body = NULL;
    rp->len = 0;
    if (body == NULL)
        return;
    rp->body = json_dumps(body, JSON_COMPACT);
    rp->len = rp->body != NULL ? strlen(rp->body) : 0;
    json_decref(body);
}

/* Mistral's error object: {"object":"error","message":..,"type":..,"param":null,"code":..}. */
static void fake_reply_error(struct fake_reply *rp, int status, json_t *message, const char *type,
                             const char *code)
{
    fake_reply_json(rp, status,
                    json_pack("{s:s, s:o, s:s, s:n, s:s?}", "object", "error", "message", message,
                              "type", type, "param", "code", code));
}

static void fake_reply_unauthorized(struct fake_reply *rp, const char *message)
{
    char rid[33];
    fake_request_id(rid);
    fake_reply_json(rp, 401, json_pack("{s:s, s:s}", "message", message, "request_id", rid));
}

static const char *fake_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

/* ---------------------------------------------------------------------- the mode */

/*
 * Copies into line the mode line for this request (see the file comment) and sets *k to
 * the request's index since the mode file changed.
 */
static void fake_mode_line(char line[FAKE_MODE_LINE_MAX], unsigned long *k)
{
    char path[PATH_MAX + 16], buf[FAKE_MODE_FILE_MAX + 1];
    struct stat st;
    ssize_t got = 0;
    bool present = false;

    snprintf(path, sizeof path, "%s/mode", fake_dir);
    pthread_mutex_lock(&fake_mode_lock);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &st) == 0) {
        present = true;
        size_t off = 0;
        while (off < FAKE_MODE_FILE_MAX) {
            ssize_t n = read(fd, buf + off, FAKE_MODE_FILE_MAX - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        got = (ssize_t)off;
    }
    if (fd >= 0)
        close(fd);
    bool same = present == fake_mode_seen.present &&
                (!present || (st.st_dev == fake_mode_seen.dev && st.st_ino == fake_mode_seen.ino &&
                              st.st_size == fake_mode_seen.size &&
                              st.st_mtim.tv_sec == fake_mode_seen.mtime.tv_sec &&
                              st.st_mtim.tv_nsec == fake_mode_seen.mtime.tv_nsec));
    if (!same) {
        fake_mode_seen.present = present;
        if (present) {
            fake_mode_seen.dev = st.st_dev;
            fake_mode_seen.ino = st.st_ino;
            fake_mode_seen.size = st.st_size;
            fake_mode_seen.mtime = st.st_mtim;
        }
        fake_mode_seen.count = 0;
    }
    *k = fake_mode_seen.count++;
    pthread_mutex_unlock(&fake_mode_lock);

    /* The non-blank lines, trimmed. */
    const char *start[FAKE_MODE_LINES_MAX];
    size_t len[FAKE_MODE_LINES_MAX], nlines = 0;
    buf[got] = '\0';
    for (char *p = buf; p < buf + got && nlines < FAKE_MODE_LINES_MAX;) {
        char *end = memchr(p, '\n', (size_t)(buf + got - p));
        if (end == NULL)
            end = buf + got;
        char *a = p, *b = end;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\r'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
            b--;
        if (b > a) {
            start[nlines] = a;
            len[nlines] = (size_t)(b - a);
            nlines++;
        }
        p = end + 1;
    }
    if (nlines == 0) {
        snprintf(line, FAKE_MODE_LINE_MAX, "normal");
        return;
    }
    size_t i = *k < nlines ? (size_t)*k : nlines - 1;
    size_t n = len[i] < FAKE_MODE_LINE_MAX - 1 ? len[i] : FAKE_MODE_LINE_MAX - 1;
    memcpy(line, start[i], n);
    line[n] = '\0';
}

/* Parses a whole-string number into *out within [lo, hi]; false when it is not one. */
static bool fake_number(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void fake_mode_parse(const char *line, struct fake_mode *m)
{
    static const struct {
        const char *word;
        enum fake_mode_kind kind;
    } plain[] = {
        {"normal", FAKE_NORMAL},
        {"500", FAKE_500},
        {"502", FAKE_502},
        {"503", FAKE_503},
        {"401", FAKE_401},
        {"malformed", FAKE_MALFORMED},
        {"wrongshape", FAKE_WRONGSHAPE},
        {"empty", FAKE_EMPTY},
        {"huge", FAKE_HUGE},
        {"429", FAKE_429},
    };
    const char *sp = strchr(line, ' ');
    size_t wlen = sp != NULL ? (size_t)(sp - line) : strlen(line);
    const char *arg = sp != NULL ? sp + 1 : NULL;
    double v;

    m->kind = FAKE_UNKNOWN;
    m->line = line;
    m->slow_s = 0;
    m->retry_after = -1;
    m->text = NULL;
    if (wlen == 7 && strncmp(line, "content", 7) == 0) {
        m->kind = FAKE_CONTENT;
        m->text = arg != NULL ? arg : "";
        return;
    }
    if (wlen == 5 && strncmp(line, "reset", 5) == 0) {
        if (arg == NULL)
            m->kind = FAKE_RESET;
        else if (strcmp(arg, "headers") == 0)
            m->kind = FAKE_RESET_HEADERS;
        else if (strcmp(arg, "early") == 0)
            m->kind = FAKE_RESET_EARLY;
        return;
    }
    if (wlen == 4 && strncmp(line, "slow", 4) == 0) {
        if (arg != NULL && fake_number(arg, 0, FAKE_SLOW_MAX, &v)) {
            m->kind = FAKE_SLOW;
            m->slow_s = v;
        }
        return;
    }
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        if (strlen(plain[i].word) != wlen || strncmp(line, plain[i].word, wlen) != 0)
            continue;
        if (arg == NULL)
            m->kind = plain[i].kind;
        else if (plain[i].kind == FAKE_429 &&
                 fake_number(arg, 0, (double)FAKE_RETRY_AFTER_MAX, &v) && v == floor(v)) {
            m->kind = FAKE_429;
            m->retry_after = (long)v;
        }
        return;
    }
}

/* ------------------------------------------------------------------ validation */

/* Appends one pydantic-style error to detail; loc is stolen, input borrowed (may be NULL). */
static void fake_detail(json_t *detail, const char *type, json_t *loc, const char *msg,
                        json_t *input)
{
    json_array_append_new(detail, json_pack("{s:s, s:o, s:s, s:O?}", "type", type, "loc", loc,
                                            "msg", msg, "input", input));
}

static void fake_check_message(json_t *detail, json_t *msg, size_t i)
{
    static const char *const roles[] = {"system", "user", "assistant", "tool"};

    if (!json_is_object(msg)) {
        fake_detail(detail, "model_attributes_type",
                    json_pack("[s, s, I]", "body", "messages", (json_int_t)i),
                    "Input should be a valid dictionary or object to extract fields from", msg);
        return;
    }
    json_t *role = json_object_get(msg, "role"), *content = json_object_get(msg, "content");
    bool known = false;
    for (size_t r = 0; json_is_string(role) && r < sizeof roles / sizeof roles[0]; r++)
        known = known || strcmp(json_string_value(role), roles[r]) == 0;
    if (role == NULL)
        fake_detail(detail, "missing",
                    json_pack("[s, s, I, s]", "body", "messages", (json_int_t)i, "role"),
                    "Field required", msg);
    else if (!known)
        fake_detail(detail, "literal_error",
                    json_pack("[s, s, I, s]", "body", "messages", (json_int_t)i, "role"),
                    "Input should be 'system', 'user', 'assistant' or 'tool'", role);
    if (content == NULL)
        fake_detail(detail, "missing",
                    json_pack("[s, s, I, s]", "body", "messages", (json_int_t)i, "content"),
                    "Field required", msg);
    else if (!json_is_string(content))
        fake_detail(detail, "string_type",
                    json_pack("[s, s, I, s]", "body", "messages", (json_int_t)i, "content"),
                    "Input should be a valid string", content);
}

/* The "detail" list of what is wrong with the request body (new), or NULL when it is fine. */
static json_t *fake_validate(json_t *req)
{
    static const char *const allowed[] = {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "safe_prompt",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
    };
    json_t *detail = json_array();
    if (detail == NULL)
        return NULL;

    if (!json_is_object(req)) {
        fake_detail(detail, "model_attributes_type", json_pack("[s]", "body"),
                    "Input should be a valid dictionary or object to extract fields from", req);
        return detail;
    }
    json_t *model = json_object_get(req, "model"), *messages = json_object_get(req, "messages");
    json_t *temp = json_object_get(req, "temperature"), *max = json_object_get(req, "max_tokens");
    if (model == NULL)
        fake_detail(detail, "missing", json_pack("[s, s]", "body", "model"), "Field required", req);
    else if (!json_is_string(model))
        fake_detail(detail, "string_type", json_pack("[s, s]", "body", "model"),
                    "Input should be a valid string", model);
    if (messages == NULL)
        fake_detail(detail, "missing", json_pack("[s, s]", "body", "messages"), "Field required",
                    req);
    else if (!json_is_array(messages))
        fake_detail(detail, "list_type", json_pack("[s, s]", "body", "messages"),
                    "Input should be a valid list", messages);
    else if (json_array_size(messages) == 0)
        fake_detail(detail, "too_short", json_pack("[s, s]", "body", "messages"),
                    "List should have at least 1 item after validation, not 0", messages);
    for (size_t i = 0; json_is_array(messages) && i < json_array_size(messages); i++)
        fake_check_message(detail, json_array_get(messages, i), i);
    if (temp != NULL && !json_is_null(temp) &&
        (!json_is_number(temp) || json_number_value(temp) < 0 ||
         json_number_value(temp) > FAKE_TEMPERATURE_MAX))
        fake_detail(detail, json_is_number(temp) ? "less_than_equal" : "float_type",
                    json_pack("[s, s]", "body", "temperature"),
                    json_is_number(temp) ? "Input should be between 0 and 2"
                                         : "Input should be a valid number",
                    temp);
    if (max != NULL && !json_is_null(max) && (!json_is_integer(max) || json_integer_value(max) < 0))
        fake_detail(detail, json_is_integer(max) ? "greater_than_equal" : "int_type",
                    json_pack("[s, s]", "body", "max_tokens"),
                    json_is_integer(max) ? "Input should be greater than or equal to 0"
                                         : "Input should be a valid integer",
                    max);
    const char *key;
    json_t *value;
    json_object_foreach(req, key, value)
    {
        bool ok = false;
        for (size_t a = 0; a < sizeof allowed / sizeof allowed[0]; a++)
            ok = ok || strcmp(key, allowed[a]) == 0;
        if (!ok)
            fake_detail(detail, "extra_forbidden", json_pack("[s, s]", "body", key),
                        "Extra inputs are not permitted", value);
    }
    if (json_array_size(detail) == 0) {
        json_decref(detail);
        return NULL;
    }
    return detail;
}

/* ------------------------------------------------------------------ the answers */

/* The content of the first message with role (first: true) or the last one, or "". */
static const char *fake_message_text(json_t *messages, const char *role, bool first)
{
    const char *found = "";
    for (size_t i = 0; i < json_array_size(messages); i++) {
        json_t *m = json_array_get(messages, i);
        const char *r = json_string_value(json_object_get(m, "role"));
        const char *c = json_string_value(json_object_get(m, "content"));
        if (r == NULL || c == NULL || strcmp(r, role) != 0)
            continue;
        found = c;
        if (first)
            break;
    }
    return found;
}

/*
 * The text an answer quotes from the last user message s: the string values of its first
 * line that is a JSON object (how the gateway sends the reader's setup and direction),
 * joined by " / "; else s itself. Into out (cap bytes; may end mid-character).
 */
static void fake_quote_source(const char *s, char *out, size_t cap)
{
    snprintf(out, cap, "%s", s);
    for (const char *p = s; *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        json_t *data = *p == '{' ? json_loadb(p, n, 0, NULL) : NULL;
        if (json_is_object(data)) {
            const char *key;
            json_t *v;
            size_t o = 0;
            out[0] = '\0';
            json_object_foreach(data, key, v)
            {
                if (!json_is_string(v) || o >= cap)
                    continue;
                int w =
                    snprintf(out + o, cap - o, "%s%s", o > 0 ? " / " : "", json_string_value(v));
                o = w < 0 ? cap : o + (size_t)w;
            }
            json_decref(data);
            return;
        }
        json_decref(data);
        p += n + (end != NULL);
    }
}

/* The first FAKE_EXCERPT_CHARS characters of s (valid UTF-8), control chars as spaces. */
static void fake_excerpt(const char *s, char out[FAKE_EXCERPT_MAX])
{
    size_t o = 0, chars = 0;
    for (const unsigned char *p = (const unsigned char *)s;
         *p != '\0' && chars < FAKE_EXCERPT_CHARS;) {
        size_t n = *p < 0x80 ? 1 : *p >= 0xf0 ? 4 : *p >= 0xe0 ? 3 : 2;
        if (strnlen((const char *)p, n) < n || o + n >= FAKE_EXCERPT_MAX)
            break;
        if (n == 1) {
            out[o++] = *p < 0x20 || *p == 0x7f ? ' ' : (char)*p;
        } else {
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
        chars++;
    }
    out[o] = '\0';
}

/* FNV-1a of s: picks the generated title so that different stories get different ones. */
static uint32_t fake_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The generated text for messages (validated) into out. */
static void fake_story(json_t *messages, char out[FAKE_TEXT_MAX])
{
    static const char *const adjectives[] = {"Silver", "Hidden", "Last",    "Burning",
                                             "Quiet",  "Lost",   "Crimson", "Northern"};
    static const char *const nouns[] = {"Lantern", "Harbour", "Key",   "Forest",
                                        "Promise", "Tower",   "River", "Letter"};
    const char *sys = fake_message_text(messages, "system", true);
    const char *user = fake_message_text(messages, "user", false);
    char ex[FAKE_EXCERPT_MAX], quote[FAKE_QUOTE_MAX];

    fake_quote_source(user, quote, sizeof quote);
    fake_excerpt(quote[0] != '\0' ? quote : "nothing at all", ex);
    uint32_t h = fake_hash(user);
    if (strstr(sys, "Title:") != NULL || strstr(user, "Title:") != NULL)
        snprintf(out, FAKE_TEXT_MAX,
                 "Title: The %s %s\n\n"
                 "Fog rolled over the rooftops as the tale began. Everyone would remember "
                 "the words \"%s\" long after that night. Nobody yet knew what the morning "
                 "would bring.",
                 adjectives[h % 8], nouns[(h >> 8) % 8], ex);
    else if (strcasestr(sys, "three") != NULL || strcasestr(user, "three") != NULL)
        snprintf(out, FAKE_TEXT_MAX,
                 "1. A stranger arrives with news about \"%s\".\n"
                 "2. An old map reveals a door hidden beneath the town.\n"
                 "3. A storm forces everyone to shelter in the lighthouse.",
                 ex);
    else
        snprintf(out, FAKE_TEXT_MAX,
                 "The story went on, and \"%s\" echoed through every step. The wind changed, "
                 "and the mood of the day with it. By nightfall nothing was quite the same.",
                 ex);
}

/* text with the two-character escapes "\n" and "\\" expanded (new string, or NULL). */
static char *fake_unescape(const char *text)
{
    size_t len = strlen(text), o = 0;
    char *out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\\' && i + 1 < len && (text[i + 1] == 'n' || text[i + 1] == '\\')) {
            out[o++] = text[i + 1] == 'n' ? '\n' : '\\';
            i++;
        } else {
            out[o++] = text[i];
        }
    }
    out[o] = '\0';
    return out;
}

/*
 * A chat.completion for model with content (len bytes), or without "choices" when
 * with_choices is false (new; NULL when the content is not UTF-8 or memory ran out).
 */
static json_t *fake_completion(const char *model, const char *content, size_t len,
                               size_t prompt_bytes, bool with_choices)
{
    char id[33];
    fake_request_id(id);
    json_t *text = json_stringn(content, len);
    if (text == NULL)
        return NULL;
    json_int_t pt = (json_int_t)(prompt_bytes / 4 + 1), ct = (json_int_t)(len / 4);
    json_t *c =
        json_pack("{s:s+, s:s, s:I, s:s, s:{s:I, s:I, s:I}}", "id", "cmpl-", id, "object",
                  "chat.completion", "created", (json_int_t)time(NULL), "model", model, "usage",
                  "prompt_tokens", pt, "completion_tokens", ct, "total_tokens", pt + ct);
    if (c != NULL && with_choices)
        json_object_set_new(c, "choices",
                            json_pack("[{s:i, s:{s:s, s:O, s:n}, s:s}]", "index", 0, "message",
                                      "role", "assistant", "content", text, "tool_calls",
                                      "finish_reason", "stop"));
    json_decref(text);
    return c;
}

/* Fills rp with a 200 completion for req (validated) in mode m. */
static void fake_answer(struct fake_reply *rp, json_t *req, const struct fake_mode *m,
                        size_t req_len)
{
    const char *model = json_string_value(json_object_get(req, "model"));
    char text[FAKE_TEXT_MAX];
    char *owned = NULL;
    const char *content = text;
    size_t len;

    switch (m->kind) {
    case FAKE_EMPTY: content = ""; break;
    case FAKE_CONTENT: content = owned = fake_unescape(m->text); break;
    case FAKE_HUGE:
        owned = malloc(FAKE_HUGE_BYTES + 1);
        if (owned != NULL) {
            static const char word[] = "All work and no play makes a very long story. ";
            for (size_t i = 0; i < FAKE_HUGE_BYTES; i++)
                owned[i] = word[i % (sizeof word - 1)];
            owned[FAKE_HUGE_BYTES] = '\0';
        }
        content = owned;
        break;
    default: fake_story(json_object_get(req, "messages"), text); break;
    }
    if (content == NULL) {
        fake_reply_error(rp, 500, json_string("fake_mistral: out of memory"),
                         "internal_server_error", NULL);
        return;
    }
    len = strlen(content);
    json_t *c = fake_completion(model, content, len, req_len, m->kind != FAKE_WRONGSHAPE);
    free(owned);
    if (c == NULL) {
        fake_reply_error(rp, 500, json_string("fake_mistral: content is not UTF-8"),
                         "internal_server_error", NULL);
        return;
    }
    fake_reply_json(rp, 200, c);
    if (m->kind == FAKE_MALFORMED && rp->body != NULL) /* cut mid-way: invalid JSON */
        rp->len = rp->len / 2;
}

/*
 * Decides the answer to one request: routing, key, body, then the mode. body_err is
 * the parse error when the body was not JSON (req NULL). raw: served by the raw HTTP
 * server, which alone can carry out the reset modes.
 */
static void fake_decide(struct fake_reply *rp, const char *method, const char *path,
                        const char *auth, json_t *req, size_t len, bool too_big,
                        const struct fake_mode *m, bool raw)
{
    static const char bearer[] = "Bearer ";

    rp->retry_after = -1;
    if (strcmp(path, FAKE_CHAT_PATH) != 0) {
        fake_reply_json(rp, 404, json_pack("{s:s}", "detail", "Not Found"));
        return;
    }
    if (strcmp(method, "POST") != 0) {
        rp->allow_post = true;
        fake_reply_json(rp, 405, json_pack("{s:s}", "detail", "Method Not Allowed"));
        return;
    }
    if (auth == NULL || auth[0] == '\0') {
        fake_reply_unauthorized(rp, "No API key found in request");
        return;
    }
    if (m->kind == FAKE_401 || strncasecmp(auth, bearer, sizeof bearer - 1) != 0 ||
        strcmp(auth + sizeof bearer - 1, fake_key) != 0) {
        fake_reply_unauthorized(rp, "Unauthorized");
        return;
    }
    if (too_big) {
        fake_reply_error(rp, 413, json_string("Request body too large"), "invalid_request_error",
                         NULL);
        return;
    }
    if (req == NULL) {
        fake_reply_error(rp, 400,
                         json_string(len == 0 ? "Request body is empty" : "Invalid JSON body"),
                         "invalid_request_error", NULL);
        return;
    }
    json_t *detail = fake_validate(req);
    if (detail != NULL) {
        fake_reply_error(rp, 422, json_pack("{s:o}", "detail", detail), "invalid_request_error",
                         NULL);
        return;
    }
    switch (m->kind) {
    case FAKE_429:
        rp->retry_after = m->retry_after;
        fake_reply_error(rp, 429, json_string("Rate limit exceeded"), "rate_limited", "1300");
        return;
    case FAKE_500:
        fake_reply_error(rp, 500, json_string("Internal server error"), "internal_server_error",
                         NULL);
        return;
    case FAKE_502:
        fake_reply_error(rp, 502, json_string("Bad gateway"), "bad_gateway", NULL);
        return;
    case FAKE_503:
        fake_reply_error(rp, 503, json_string("Service unavailable"), "service_unavailable", NULL);
        return;
    case FAKE_RESET:
    case FAKE_RESET_HEADERS:
    case FAKE_RESET_EARLY:
        if (!raw) {
            fake_reply_error(rp, 500,
                             json_string("fake_mistral: the reset modes need the raw HTTP "
                                         "server (fake-mistral --http PORT)"),
                             "fake_mode_error", NULL);
            return;
        }
        fake_answer(rp, req, m, len);
        if (rp->status == 200)
            rp->cut = m->kind;
        return;
    case FAKE_UNKNOWN: {
        char msg[FAKE_MODE_LINE_MAX + 64];
        snprintf(msg, sizeof msg, "fake_mistral: unknown mode line \"%s\"", m->line);
        fake_reply_error(rp, 500, fake_json_text(msg, sizeof msg), "fake_mode_error", NULL);
        return;
    }
    default: fake_answer(rp, req, m, len); return;
    }
}

/* -------------------------------------------------------------------- the request */

/* A CGI param of r, or "" (cut to FAKE_PARAM_MAX - 1 bytes into buf). */
static const char *fake_param(FCGX_Request *r, const char *name, char buf[FAKE_PARAM_MAX])
{
    const char *v = FCGX_GetParam(name, r->envp);
    snprintf(buf, FAKE_PARAM_MAX, "%s", v != NULL ? v : "");
    return buf;
}

/* Reads the body into w->body; *too_big when it had more than FAKE_BODY_MAX bytes. */
static size_t fake_read_body(struct fake_worker *w, bool *too_big)
{
    size_t len = 0;
    char sink[4096];

    *too_big = false;
    for (;;) {
        int n = FCGX_GetStr(w->body + len, (int)(FAKE_BODY_MAX - len), w->fcgx.in);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == FAKE_BODY_MAX) {
            while (FCGX_GetStr(sink, (int)sizeof sink, w->fcgx.in) > 0) /* drain */
                *too_big = true;
            break;
        }
    }
    w->body[len] = '\0';
    return len;
}

/* Appends one line to $FAKE_DIR/requests.log (one write(2) under fake_log_lock). */
static void fake_log(unsigned long k, const char *line, const char *method, const char *path,
                     const char *auth, const char *ctype, int status, json_t *req,
                     const char *body_error)
{
    char file[PATH_MAX + 32];
    snprintf(file, sizeof file, "%s/requests.log", fake_dir);

    pthread_mutex_lock(&fake_log_lock);
    unsigned long seq = fake_seq++;
    json_t *j = json_pack(
        "{s:I, s:I, s:o, s:o, s:o, s:o?, s:o?, s:i, s:O?}", "n", (json_int_t)k, "seq",
        (json_int_t)seq, "mode", fake_json_text(line, FAKE_MODE_LINE_MAX), "method",
        fake_json_text(method, FAKE_PARAM_MAX), "path", fake_json_text(path, FAKE_PARAM_MAX),
        "authorization", auth != NULL ? fake_json_text(auth, FAKE_HEADER_MAX) : NULL,
        "content_type", ctype != NULL ? fake_json_text(ctype, FAKE_HEADER_MAX) : NULL, "status",
        status, "body", req);
    if (j != NULL && body_error != NULL)
        json_object_set_new(j, "body_error", fake_json_text(body_error, FAKE_HEADER_MAX));
    char *text = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
    if (text == NULL)
        text = strdup("{\"error\":\"fake_mistral: could not log this request\"}");
    int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0 && text != NULL) {
        size_t n = strlen(text);
        text[n] = '\n'; /* json_dumps leaves the NUL: overwrite it, write n + 1 bytes */
        const char *p = text;
        size_t left = n + 1;
        while (left > 0) {
            ssize_t wr = write(fd, p, left);
            if (wr < 0 && errno == EINTR)
                continue;
            if (wr <= 0)
                break;
            p += wr;
            left -= (size_t)wr;
        }
    }
    if (fd >= 0)
        close(fd);
    pthread_mutex_unlock(&fake_log_lock);
    free(text);
    json_decref(j);
}

static void fake_sleep(double seconds)
{
    struct timespec ts = {.tv_sec = (time_t)seconds,
                          .tv_nsec = (long)((seconds - floor(seconds)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* One request as both servers hand it over: what fake_process needs. */
struct fake_request {
    const char *method, *path; /* the path without its query */
    const char *auth, *ctype;  /* headers, or NULL when absent */
    const char *body;          /* len bytes */
    size_t len;
    bool too_big; /* the body had more than FAKE_BODY_MAX bytes */
};

/*
 * The answer to rq into rp (free rp->body): the mode line is picked and parsed, the
 * answer decided and logged, then a "slow" mode sleeps.
 */
static void fake_process(const struct fake_request *rq, bool raw, struct fake_reply *rp)
{
    char line[FAKE_MODE_LINE_MAX];
    struct fake_mode m;
    json_error_t jerr;
    unsigned long k;
    json_t *req = rq->len > 0 && !rq->too_big ? json_loadb(rq->body, rq->len, 0, &jerr) : NULL;

    fake_mode_line(line, &k);
    fake_mode_parse(line, &m);
    fake_decide(rp, rq->method, rq->path, rq->auth, req, rq->len, rq->too_big, &m, raw);
    fake_log(k, line, rq->method, rq->path, rq->auth, rq->ctype,
             rp->cut == FAKE_RESET_EARLY ? 0 : rp->status, req,
             rq->len > 0 && req == NULL ? (rq->too_big ? "body too large" : jerr.text) : NULL);
    if (m.kind == FAKE_SLOW)
        fake_sleep(m.slow_s);
    json_decref(req);
}

static void fake_handle(struct fake_worker *w)
{
    char method[FAKE_PARAM_MAX], path[FAKE_PARAM_MAX];
    struct fake_reply rp = {.retry_after = -1, .cut = FAKE_NORMAL};
    struct fake_request rq = {.method = method, .path = path, .body = w->body};

    fake_param(&w->fcgx, "REQUEST_METHOD", method);
    fake_param(&w->fcgx, "REQUEST_URI", path);
    path[strcspn(path, "?")] = '\0';
    rq.auth = FCGX_GetParam("HTTP_AUTHORIZATION", w->fcgx.envp);
    rq.ctype = FCGX_GetParam("CONTENT_TYPE", w->fcgx.envp);
    rq.len = fake_read_body(w, &rq.too_big);
    fake_process(&rq, false, &rp);

    FCGX_FPrintF(w->fcgx.out, "Status: %d %s\r\nContent-Type: application/json\r\n", rp.status,
                 fake_reason(rp.status));
    if (rp.retry_after >= 0)
        FCGX_FPrintF(w->fcgx.out, "Retry-After: %ld\r\n", rp.retry_after);
    if (rp.allow_post)
        FCGX_FPrintF(w->fcgx.out, "Allow: POST\r\n");
    FCGX_FPrintF(w->fcgx.out, "\r\n");
    if (rp.body != NULL && rp.len > 0)
        FCGX_PutStr(rp.body, (int)rp.len, w->fcgx.out);
    free(rp.body);
}

/* ------------------------------------------------------------ the raw HTTP server */

/* Connections the raw server is serving now. */
static atomic_int fake_http_conns;

/* Writes all n bytes of p to fd; false when the peer went away. */
static bool fake_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/*
 * Reads a request head (line and headers, up to the blank line) into buf (cap bytes).
 * Returns the head's length with its blank line, and in *got every byte read (the
 * start of the body may follow the head); -1 when the client closed, timed out or sent
 * more than cap bytes without a blank line.
 */
static ssize_t fake_http_read_head(int fd, char *buf, size_t cap, size_t *got)
{
    size_t n = 0;

    for (;;) {
        const char *end = n >= 4 ? memmem(buf, n, "\r\n\r\n", 4) : NULL;
        if (end != NULL) {
            *got = n;
            return end - buf + 4;
        }
        if (n == cap)
            return -1;
        ssize_t r = recv(fd, buf + n, cap - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        n += (size_t)r;
    }
}

/*
 * The value of header name in head (hlen bytes, "\r\n" lines, the request line first),
 * trimmed, into out (cap bytes, cut); false when absent.
 */
static bool fake_http_header(const char *head, size_t hlen, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *p = memmem(head, hlen, "\r\n", 2), *end = head + hlen;

    while (p != NULL && p + 2 < end) {
        p += 2;
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            size_t vlen = (size_t)(eol - v);
            while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
            snprintf(out, cap, "%.*s", (int)(vlen < cap ? vlen : cap - 1), v);
            return true;
        }
        p = eol;
    }
    return false;
}

/* Resets the connection: SO_LINGER 0 makes close() send a TCP RST. */
static void fake_http_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Sends rp on fd as HTTP/1.1 (or cuts it as rp->cut says) and closes fd. */
static void fake_http_answer(int fd, const struct fake_reply *rp)
{
    char head[512];
    size_t len = rp->body != NULL ? rp->len : 0;
    int n =
        snprintf(head, sizeof head,
                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n%s",
                 rp->status, fake_reason(rp->status), len, rp->allow_post ? "Allow: POST\r\n" : "");
    if (rp->retry_after >= 0)
        n += snprintf(head + n, sizeof head - (size_t)n, "Retry-After: %ld\r\n", rp->retry_after);
    n += snprintf(head + n, sizeof head - (size_t)n, "\r\n");

    switch (rp->cut) {
    case FAKE_RESET_EARLY: fake_http_reset(fd); return;
    case FAKE_RESET_HEADERS:
        fake_write_all(fd, head, (size_t)n / 2);
        fake_sleep(FAKE_RESET_PAUSE_MS / 1000.0);
        fake_http_reset(fd);
        return;
    case FAKE_RESET:
        if (fake_write_all(fd, head, (size_t)n))
            fake_write_all(fd, rp->body, len / 2);
        fake_sleep(FAKE_RESET_PAUSE_MS / 1000.0);
        fake_http_reset(fd);
        return;
    default:
        if (fake_write_all(fd, head, (size_t)n) && len > 0)
            fake_write_all(fd, rp->body, len);
        shutdown(fd, SHUT_WR);
        close(fd);
        return;
    }
}

/*
 * Reads the body announced by head into body (FAKE_BODY_MAX + 1 bytes): the extra bytes
 * already read (have, at extra) first. Sets rq->len and rq->too_big; false when the
 * client went away first.
 */
static bool fake_http_read_body(int fd, const char *head, size_t hlen, const char *extra,
                                size_t have, char *body, struct fake_request *rq)
{
    char value[64], sink[4096];
    unsigned long long want = 0;

    if (fake_http_header(head, hlen, "Content-Length", value, sizeof value)) {
        char *end;
        errno = 0;
        want = strtoull(value, &end, 10);
        if (end == value || *end != '\0' || errno != 0)
            return false;
    }
    rq->too_big = want > FAKE_BODY_MAX;
    rq->len = 0;
    for (unsigned long long seen = 0; seen < want;) {
        ssize_t r;
        if (have > 0) {
            r = (ssize_t)(have < want - seen ? have : want - seen);
            if (!rq->too_big)
                memcpy(body + seen, extra, (size_t)r);
            have = 0;
        } else if (rq->too_big) {
            r = recv(fd, sink, sizeof sink, 0);
        } else {
            r = recv(fd, body + seen, (size_t)(want - seen), 0);
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        seen += (unsigned long long)r;
    }
    if (!rq->too_big)
        rq->len = (size_t)want;
    body[rq->len] = '\0';
    return true;
}

/* Serves one connection (arg: its fd, malloc'd): one request, then close. */
static void *fake_http_conn(void *arg)
{
    int fd = *(int *)arg;
    char *head = malloc(FAKE_HEAD_MAX), *body = malloc(FAKE_BODY_MAX + 1);
    char method[FAKE_PARAM_MAX], path[FAKE_PARAM_MAX], auth[FAKE_HEADER_MAX],
        ctype[FAKE_HEADER_MAX];
    struct fake_request rq = {.method = method, .path = path, .body = body};
    struct fake_reply rp = {.retry_after = -1, .cut = FAKE_NORMAL};
    size_t got = 0;
    ssize_t hlen;

    free(arg);
    if (head == NULL || body == NULL ||
        (hlen = fake_http_read_head(fd, head, FAKE_HEAD_MAX, &got)) < 0) {
        close(fd);
        goto out;
    }
    /* "METHOD SP target SP version" */
    const char *sp1 = memchr(head, ' ', (size_t)hlen), *sp2;
    sp2 = sp1 != NULL ? memchr(sp1 + 1, ' ', (size_t)(head + hlen - sp1 - 1)) : NULL;
    if (sp2 == NULL) {
        close(fd);
        goto out;
    }
    snprintf(method, sizeof method, "%.*s", (int)(sp1 - head), head);
    snprintf(path, sizeof path, "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
    path[strcspn(path, "?")] = '\0';
    rq.auth =
        fake_http_header(head, (size_t)hlen, "Authorization", auth, sizeof auth) ? auth : NULL;
    rq.ctype =
        fake_http_header(head, (size_t)hlen, "Content-Type", ctype, sizeof ctype) ? ctype : NULL;
    if (!fake_http_read_body(fd, head, (size_t)hlen, head + hlen, got - (size_t)hlen, body, &rq)) {
        close(fd);
        goto out;
    }
    fake_process(&rq, true, &rp);
    fake_http_answer(fd, &rp);
    free(rp.body);
out:
    free(head);
    free(body);
    atomic_fetch_sub(&fake_http_conns, 1);
    return NULL;
}

/* The raw HTTP server on 127.0.0.1:port; returns only when it cannot listen (1). */
static int fake_http_main(const char *port_text)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval io = {.tv_sec = FAKE_HTTP_IO_TIMEOUT_S};
    double port;
    int one = 1, lfd;

    if (!fake_number(port_text, 1, 65535, &port) || port != floor(port)) {
        fprintf(stderr, "fake_mistral: --http needs a port number, not \"%s\"\n", port_text);
        return 1;
    }
    sa.sin_port = htons((uint16_t)port);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 128) != 0) {
        char err[128];
        fprintf(stderr, "fake_mistral: 127.0.0.1:%d: %s\n", (int)port,
                strerror_r(errno, err, sizeof err));
        return 1;
    }
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE)
                continue;
            return 1;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &io, sizeof io);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &io, sizeof io);
        int *arg = malloc(sizeof *arg);
        pthread_t t;
        pthread_attr_t attr;
        if (arg == NULL || atomic_fetch_add(&fake_http_conns, 1) >= FAKE_HTTP_CONNS_MAX) {
            if (arg != NULL)
                atomic_fetch_sub(&fake_http_conns, 1);
            free(arg);
            close(fd);
            continue;
        }
        *arg = fd;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, fake_http_conn, arg) != 0) {
            atomic_fetch_sub(&fake_http_conns, 1);
            free(arg);
            close(fd);
        }
        pthread_attr_destroy(&attr);
    }
}

/* ------------------------------------------------------------------------- main */

static void *fake_worker_run(void *arg)
{
    struct fake_worker *w = arg;

    for (;;) {
        pthread_mutex_lock(&fake_accept_lock);
        int rc = FCGX_Accept_r(&w->fcgx);
        pthread_mutex_unlock(&fake_accept_lock);
        if (rc < 0)
            break;
        fake_handle(w);
        FCGX_Finish_r(&w->fcgx);
    }
    return NULL;
}

/* lighttpd stops its FastCGI children with SIGTERM: end at once, as fcgi/main.c does. */
static void *fake_wait_for_stop(void *arg)
{
    const sigset_t *set = arg;
    int sig = 0;

    while (sigwait(set, &sig) != 0)
        ;
    _exit(0);
}

int main(int argc, char **argv)
{
    static struct fake_worker workers[FAKE_THREADS];
    static sigset_t stop;
    pthread_t threads[FAKE_THREADS], stopper;
    int started = 0;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    const char *dir = getenv("FAKE_DIR");
    if (dir == NULL || dir[0] == '\0' || strlen(dir) >= sizeof fake_dir - 32) {
        fprintf(stderr, "fake_mistral: FAKE_DIR must name a writable folder\n");
        return 1;
    }
    snprintf(fake_dir, sizeof fake_dir, "%s", dir);
    const char *key = getenv("FAKE_MISTRAL_KEY");
    if (key != NULL && key[0] != '\0')
        fake_key = key;
    json_object_seed(0);
    if (pthread_create(&stopper, NULL, fake_wait_for_stop, &stop) != 0)
        return 1;
    pthread_detach(stopper);
    if (argc == 3 && strcmp(argv[1], "--http") == 0)
        return fake_http_main(argv[2]);
    if (argc != 1) {
        fprintf(stderr,
                "usage: fake-mistral (FastCGI, behind lighttpd) | fake-mistral --http PORT\n");
        return 2;
    }
    if (FCGX_Init() != 0) {
        fprintf(stderr, "fake_mistral: libfcgi failed to initialise\n");
        return 1;
    }
    for (int i = 0; i < FAKE_THREADS; i++) {
        workers[i].body = malloc(FAKE_BODY_MAX + 1);
        if (workers[i].body == NULL)
            break;
        FCGX_InitRequest(&workers[i].fcgx, 0, 0);
        if (pthread_create(&threads[i], NULL, fake_worker_run, &workers[i]) != 0) {
            free(workers[i].body);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < started; i++)
        free(workers[i].body);
    return started == FAKE_THREADS ? 0 : 1;
}
