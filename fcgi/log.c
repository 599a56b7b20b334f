/* log: JSON lines on stderr. See include/log.h. */
#include "log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Set once before threads start, read-only afterwards. */
static enum log_level min_level = LOG_INFO;

/* Serialises write(2) of whole lines. */
static pthread_mutex_t log_write_lock = PTHREAD_MUTEX_INITIALIZER;

bool log_parse_level(const char *s, enum log_level *out)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (s != NULL && strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

void log_set_level(enum log_level level)
{
    min_level = level;
}

bool log_enabled(enum log_level level)
{
    return level >= min_level;
}

static void log_timestamp(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000L);
}

static void log_write_all(const char *s, size_t len)
{
    pthread_mutex_lock(&log_write_lock);
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, s, len);
        if (w <= 0)
            break;
        s += w;
        len -= (size_t)w;
    }
    pthread_mutex_unlock(&log_write_lock);
}

#define LOG_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6))
#define LOG_LINE_MAX 2048 /* bytes serialised on the stack; longer lines are allocated */

json_t *log_line_new(enum log_level level, const char *event)
{
    return json_pack("{s:s, s:s, s:s}", "ts", "", "level", level_names[level], "event", event);
}

void log_line_write(enum log_level level, json_t *line)
{
    char ts[40], buf[LOG_LINE_MAX];
    char *text = buf;

    if (!log_enabled(level))
        return;
    log_timestamp(ts, sizeof ts);
    if (json_string_set(json_object_get(line, "ts"), ts) != 0)
        return;
    size_t len = json_dumpb(line, buf, sizeof buf - 1, LOG_FLAGS);
    if (len == 0)
        return;
    if (len > sizeof buf - 1) {
        text = json_dumps(line, LOG_FLAGS);
        if (text == NULL)
            return;
        len = strlen(text);
        char *nl = realloc(text, len + 2);
        if (nl == NULL)
            goto out;
        text = nl;
    }
    text[len] = '\n';
    log_write_all(text, len + 1);
out:
    if (text != buf)
        free(text);
}

void log_event(enum log_level level, const char *event, json_t *fields)
{
    json_t *line = NULL;

    if (!log_enabled(level))
        goto out;
    line = log_line_new(level, event);
    if (line == NULL)
        goto out;
    if (fields != NULL)
        json_object_update_missing(line, fields);
    log_line_write(level, line);
out:
    json_decref(line);
    json_decref(fields);
}

void log_message(enum log_level level, const char *event, const char *message)
{
    if (!log_enabled(level))
        return;
    log_event(level, event, json_pack("{s:s}", "message", message ? message : ""));
}

void log_printable(const char *s, size_t max, char *out, size_t outlen)
{
    size_t i = 0, o = 0;

    for (; i < max && s[i] != '\0' && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') ? '?' : (char)c;
    }
    if (s[i] != '\0' && o + 4 <= outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}
