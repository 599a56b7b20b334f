/*
 * tiers: the tier table of SPEC 5.1, loaded from limits.json.
 *
 * {"tiers": {"ai_authenticated": {"tokens_per_second": 2, "burst_capacity": 5,
 *                                 "description": "..."}, ...},
 *  "login_failures": {"max_failures": 10, "window_seconds": 900}}
 *
 * Loaded once at start-up; read-only afterwards, so any thread may read it.
 */
#ifndef SG_TIERS_H
#define SG_TIERS_H

#include <stdbool.h>
#include <stddef.h>

#define TIERS_TIER_NAME_MAX 64      /* bytes, without the NUL */
#define TIERS_MAX 64                /* tiers in one file */
#define TIERS_FILE_MAX (256 * 1024) /* bytes of limits.json */

/* The five tiers the gateway itself picks (SPEC 5.1); a file must define all five. */
#define TIER_AI_AUTH "ai_authenticated"
#define TIER_AI_ANON "ai_anonymous"
#define TIER_API_AUTH "api_authenticated"
#define TIER_API_ANON "api_anonymous"
#define TIER_AUTH "auth"

/*
 * Failed log-ins per account (any IP): an optional "login_failures" object beside
 * "tiers", {"max_failures": 10, "window_seconds": 900, "description": "..."} by default.
 * It is kept as a bucket of max_failures tokens refilled in window_seconds.
 */
#define TIER_LOGIN_FAILURES "login_failures"
#define TIERS_LOGIN_MAX_FAILURES 10
#define TIERS_LOGIN_WINDOW_S 900
#define TIERS_RATE_TEXT_MAX 64 /* bytes of a tier's own "rate" text, NUL included */
#define TIERS_ARG_MAX 32       /* bytes of one script argument as text, NUL included */

struct tier {
    char name[TIERS_TIER_NAME_MAX + 1];  /* [A-Za-z0-9_.-]+ */
    double rate;                         /* tokens_per_second, > 0, finite, <= 1e6 */
    long capacity;                       /* burst_capacity, whole number 1..1e9 */
    long ttl;                            /* ceil(capacity / rate) + 1 seconds (SPEC 5.3) */
    long refill_seconds;                 /* ceil(capacity / rate): the "w" of RateLimit-Policy */
    char rate_text[TIERS_RATE_TEXT_MAX]; /* the 429's "rate" when not "N requests/second" */
    /* rate ("%.17g"), capacity and ttl as the token bucket script's arguments, printed
     * once when the tier is made (tiers_tier_args) instead of on every charge */
    char rate_arg[TIERS_ARG_MAX], capacity_arg[TIERS_ARG_MAX], ttl_arg[TIERS_ARG_MAX];
};

struct tiers {
    struct tier tiers[TIERS_MAX];
    size_t count;
    struct tier login_failures; /* not picked by a route: the log-in handler charges it */
};

/* Prints t's rate, capacity and ttl into its *_arg fields: after any change to them. */
void tiers_tier_args(struct tier *t);

/*
 * Parses a limits.json document of len bytes (need not be NUL-terminated) into *out.
 * development: ENVIRONMENT=development, which sets ai_authenticated to 10 tokens/s.
 * Returns 0, or -1 with a one-line reason in err (never longer than errlen).
 * *out is written only on success.
 */
int tiers_parse(const char *json, size_t len, bool development, struct tiers *out, char *err,
                size_t errlen);

/* Reads the file at path (at most TIERS_FILE_MAX bytes) and parses it as above. */
int tiers_load(const char *path, bool development, struct tiers *out, char *err, size_t errlen);

/* The tier called name, or NULL. limits and name borrowed. */
const struct tier *tiers_find(const struct tiers *limits, const char *name);

#endif
