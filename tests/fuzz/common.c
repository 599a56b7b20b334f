/* common: what the fuzz targets share. See tests/fuzz/fuzz.h. */
#include "fuzz.h"

#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"

/* The repository's limits.json, linked in as data by tests/fuzz/fuzz.mk. */
extern const char _binary_limits_json_start[];
extern const char _binary_limits_json_end[];

/* RATE_LIMITS_FILE of fuzz_config: "/proc/self/fd/N" of a memfd. Written once by
 * fuzz_config, before any input runs. */
static char fuzz_limits_path[64];

char *fuzz_fields(const uint8_t *data, size_t size, size_t n, const char **field, size_t *len)
{
    char *buf = malloc(size + 1);
    size_t start = 0, i = 0;

    if (buf == NULL)
        return NULL;
    memcpy(buf, data, size);
    buf[size] = '\0';
    for (; i + 1 < n; i++) {
        char *nl = memchr(buf + start, '\n', size - start);
        if (nl == NULL)
            break;
        *nl = '\0';
        field[i] = buf + start;
        len[i] = (size_t)(nl - (buf + start));
        start = (size_t)(nl - buf) + 1;
    }
    field[i] = buf + start;
    len[i] = size - start;
    for (i++; i < n; i++) {
        field[i] = buf + size; /* the final NUL: "" */
        len[i] = 0;
    }
    return buf;
}

char *fuzz_copy(const char *p, size_t len)
{
    char *copy = malloc(len); /* 0 bytes: a pointer ASan lets nobody read through */

    if (copy != NULL && len > 0)
        memcpy(copy, p, len);
    return copy;
}

bool fuzz_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;

    for (size_t i = 0; i < len;) {
        unsigned c = u[i];
        size_t n = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
        if (n == 0 || i + n > len)
            return false;
        uint32_t cp = n == 1 ? c : c & (0x7F >> n);
        for (size_t k = 1; k < n; k++) {
            if ((u[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
            return false;
        i += n;
    }
    return true;
}

bool fuzz_printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

static const char *fuzz_getenv(const char *name)
{
    static const char *const env[][2] = {
        {"REDIS_URL", "unix:///nonexistent/story-gateway-fuzz.sock"},
        {"JWT_SECRET", FUZZ_SECRET},
        {"TRUSTED_PROXIES", FUZZ_PROXIES},
        {"RATE_LIMIT_FAIL_MODE", "open"},
        {"GATEWAY_THREADS", "4"},
        {"LOG_LEVEL", "error"},
        {"RATE_LIMITS_FILE", fuzz_limits_path},
    };

    for (size_t i = 0; i < sizeof env / sizeof env[0]; i++)
        if (strcmp(env[i][0], name) == 0)
            return env[i][1];
    return NULL;
}

void fuzz_config(struct config *cfg)
{
    size_t len = (size_t)(_binary_limits_json_end - _binary_limits_json_start);
    char err[512];
    int fd = memfd_create("limits.json", MFD_CLOEXEC);

    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, _binary_limits_json_start, len) == (ssize_t)len);
    snprintf(fuzz_limits_path, sizeof fuzz_limits_path, "/proc/self/fd/%d", fd);
    if (config_load(cfg, fuzz_getenv, fuzz_limits_path, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_config: %s\n", err);
        abort();
    }
    log_set_level(cfg->log_level);
}

void fuzz_redis_down(struct rconn *rc, const struct config *cfg)
{
    const char *ping[] = {"PING"};

    rconn_init(rc, &cfg->redis);
    FUZZ_CHECK(rconn_command(rc, 1, ping, NULL) == NULL);
    FUZZ_CHECK(rconn_outage());
}

size_t fuzz_envp(char *text, size_t len, char *envp[FUZZ_PARAMS_MAX + 1])
{
    size_t n = 0, pos = 0;

    while (pos < len) {
        char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        bool blank = end == pos; /* the empty line: the body follows */

        if (nl != NULL)
            *nl = '\0';
        if (!blank && n < FUZZ_PARAMS_MAX)
            envp[n++] = text + pos;
        pos = nl != NULL ? end + 1 : len;
        if (blank)
            break;
    }
    envp[n] = NULL;
    return pos;
}

static void fuzz_stream_close(FCGX_Stream *s)
{
    s->isClosed = 1;
}

static void fuzz_stream_full(FCGX_Stream *s, int do_close)
{
    (void)do_close;
    s->isClosed = 1;
}

void fuzz_reader(FCGX_Stream *s, unsigned char *buf, size_t len)
{
    memset(s, 0, sizeof *s);
    s->rdNext = s->stopUnget = buf;
    s->stop = s->wrNext = buf + len;
    s->isReader = 1;
    s->fillBuffProc = fuzz_stream_close;
}

void fuzz_writer(FCGX_Stream *s, unsigned char *buf, size_t cap)
{
    memset(s, 0, sizeof *s);
    s->rdNext = s->wrNext = buf;
    s->stop = buf + cap;
    s->emptyBuffProc = fuzz_stream_full;
}
