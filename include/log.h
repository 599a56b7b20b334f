/*
 * log: one JSON object per line on stderr (lighttpd's error log).
 *
 * {"ts":"2026-11-28T12:00:00.123Z","level":"warn","event":"rate_limited",...fields}
 *
 * Thread-safe: each line is built in memory and written with one write(2)
 * under a mutex, so lines from different threads never interleave.
 * Never pass a secret in fields.
 */
#ifndef SG_LOG_H
#define SG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Parses "debug", "info", "warn" or "error" into *out. False on anything else. */
bool log_parse_level(const char *s, enum log_level *out);

/* Sets the lowest level written. Call before threads start. */
void log_set_level(enum log_level level);

/* True when a line of this level would be written (to skip building fields). */
bool log_enabled(enum log_level level);

/*
 * Writes one line. event: borrowed, not NULL. fields: stolen (decref'd here),
 * may be NULL; its keys are copied after ts, level and event.
 */
void log_event(enum log_level level, const char *event, json_t *fields);

/*
 * A line a thread writes again and again (include/refusal.h): {"ts":"","level":...,
 * "event":...} (event borrowed); append members with json_object_set_new, then
 * change their values in place between writes. NULL on allocation failure.
 */
json_t *log_line_new(enum log_level level, const char *event);
/* Writes line (borrowed, from log_line_new) after setting its ts to now. */
void log_line_write(enum log_level level, json_t *line);
/* Convenience: one line with a single "message" string field (borrowed). */
void log_message(enum log_level level, const char *event, const char *message);

/*
 * Copies at most max bytes of s into out (outlen > max + 3 to show a cut), replacing
 * control characters, non-ASCII, '"' and '\\' with '?' and marking a cut with "...":
 * client or configuration text made safe to quote on one line.
 */
void log_printable(const char *s, size_t max, char *out, size_t outlen);

#endif
