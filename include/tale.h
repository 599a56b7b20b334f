/*
 * tale: what the storyteller is asked to write and what it answers, and the one
 * entry point that picks the backend: MistralAI when MISTRAL_API_KEY is set, the
 * offline storyteller otherwise (SPEC 7).
 *
 * A tale_request only borrows its strings; a tale_result owns what it holds.
 * Thread-safe as long as each thread passes its own mistral client.
 */
#ifndef SG_TALE_H
#define SG_TALE_H

#include <stddef.h>

#include "config.h"

#define TALE_GENRE_MAX 50       /* characters of a genre (SPEC 7) */
#define TALE_CHARACTERS_MAX 500 /* characters of the characters field */
#define TALE_OPENING_MAX 1000   /* characters of an opening line */
#define TALE_INPUT_MAX 1000     /* characters of a user input */
#define TALE_TEXT_MAX 8192      /* bytes of one generated part */
#define TALE_TITLE_MAX 100      /* characters of a title */
#define TALE_SUGGESTION_MAX 300 /* characters of one suggestion */
#define TALE_SUGGESTION_COUNT 3 /* suggestions per answer (SPEC 7) */
#define TALE_MODEL_MAX 127      /* bytes of a model name */

enum tale_kind {
    TALE_OPENING,      /* first part and a title */
    TALE_CONTINUATION, /* the next part, steered by user_input */
    TALE_ENDING,       /* the last part */
    TALE_SUGGESTIONS,  /* three things that could happen next in this story */
    TALE_IDEAS,        /* three ideas for a new story (no story: all fields NULL) */
};

struct tale_request {
    enum tale_kind kind;
    const char *genre;        /* 1..50 chars; NULL for TALE_IDEAS */
    const char *characters;   /* 1..500 chars; NULL for TALE_IDEAS */
    const char *opening_line; /* 0..1000 chars, may be "" ; NULL for TALE_IDEAS */
    const char *title;        /* the story's title; NULL for TALE_OPENING and TALE_IDEAS */
    const char *const *parts; /* texts of the parts so far, in order; NULL when nparts 0 */
    size_t nparts;
    const char *user_input; /* TALE_CONTINUATION only; NULL or "" when the user gave none */
};

struct tale_result {
    char *text;                               /* OPENING, CONTINUATION, ENDING: the part */
    char *title;                              /* OPENING: the story's title */
    char *suggestions[TALE_SUGGESTION_COUNT]; /* SUGGESTIONS, IDEAS: three strings */
    char model[TALE_MODEL_MAX + 1];           /* "offline" or the upstream model name */
};

enum tale_status {
    TALE_OK,
    TALE_TIMEOUT,      /* upstream did not answer within MISTRAL_TIMEOUT: 504 */
    TALE_RATE_LIMITED, /* upstream kept answering 429: 503 with Retry-After */
    TALE_BAD_GATEWAY,  /* any other upstream failure or unusable answer: 502 */
    TALE_NO_MEMORY,    /* allocation failed: 500 */
};

struct mistral_client;

/*
 * Writes what rq asks for into *out (zeroed first; free with tale_result_free).
 * With cfg->mistral_api_key empty it uses the offline storyteller (never fails but
 * for memory); otherwise MistralAI through mc, the calling thread's own client.
 * *retry_after: seconds to announce with TALE_RATE_LIMITED (at least 1).
 */
enum tale_status tale_write(const struct config *cfg, struct mistral_client *mc,
                            const struct tale_request *rq, struct tale_result *out,
                            long *retry_after);

/* Frees what out holds and zeroes it. out may be NULL. */
void tale_result_free(struct tale_result *out);

/* "offline" or "mistral": the backend cfg selects (for the start-up log line). */
const char *tale_backend(const struct config *cfg);

#endif
