/*
 * mistral: the MistralAI chat completions client (libcurl).
 *
 * POST {MISTRAL_API_URL}/v1/chat/completions with "Authorization: Bearer <key>",
 * {"model","messages","temperature","max_tokens"}; the answer's text is
 * choices[0].message.content. One client per request thread: its curl handle is
 * reused (keep-alive) and never shared. The API key is never logged, never put in an
 * error and never returned.
 */
#ifndef SG_MISTRAL_H
#define SG_MISTRAL_H

#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

#include "config.h"
#include "tale.h"

#define MISTRAL_RESPONSE_MAX (256 * 1024) /* bytes of an upstream answer we read */
#define MISTRAL_RETRIES 2                 /* retries after a 429 or 5xx, at most */
#define MISTRAL_BACKOFF_MS 500            /* first backoff without Retry-After; doubles */
#define MISTRAL_CONNECT_TIMEOUT_S 10      /* at most; never past the deadline */

struct mistral_client {
    CURL *curl; /* owned; created on first use */
};

/* Prepares mc (no handle yet). */
void mistral_init(struct mistral_client *mc);

/* Frees the handle. mc may be NULL. */
void mistral_free(struct mistral_client *mc);

/*
 * The request body for model, messages (borrowed), temperature and max_tokens:
 * a new JSON text (free() it), or NULL when memory ran out.
 */
char *mistral_request_body(const char *model, json_t *messages, double temperature, int max_tokens);

/*
 * Parses an upstream answer body (len bytes, not NUL-terminated). Expects an object
 * with choices: a non-empty array whose [0].message is an object with a string
 * "content"; "model" (a string of 1..TALE_MODEL_MAX bytes) is optional.
 * Returns 0 with *content a new string (free() it) and model filled (or left alone
 * when the answer has none), or -1 for anything else: invalid JSON, missing fields,
 * wrong types, empty content, content over TALE_TEXT_MAX bytes.
 */
int mistral_parse_response(const char *body, size_t len, char **content,
                           char model[TALE_MODEL_MAX + 1]);

/*
 * Parses a Retry-After value (delay seconds, or an HTTP date relative to now).
 * Returns the delay in seconds (0 for a date in the past), or -1 when absent
 * (NULL) or malformed.
 */
long mistral_retry_after(const char *value, time_t now);

/*
 * Sends one chat completion for cfg's model and key and waits for it: at most
 * cfg->mistral_timeout seconds in all, retries included. A 429 or 5xx is retried at
 * most MISTRAL_RETRIES times after waiting the upstream's Retry-After (or a doubling
 * backoff from MISTRAL_BACKOFF_MS), but never when the wait would pass the deadline.
 * On TALE_OK *content is a new string (free() it) and model is filled (the
 * configured model when the answer names none). On TALE_RATE_LIMITED *retry_after
 * is the upstream's Retry-After, or 1. Every failure is logged once (event
 * "upstream_error": status, attempt, reason; never the key).
 */
enum tale_status mistral_chat(struct mistral_client *mc, const struct config *cfg, json_t *messages,
                              double temperature, int max_tokens, char **content,
                              char model[TALE_MODEL_MAX + 1], long *retry_after);

#endif
