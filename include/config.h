/*
 * config: the environment of SPEC 3, parsed and validated once at start-up.
 *
 * Every variable has a safe default; a bad value fails config_load with one clear
 * line. The struct is read-only once threads start. Secrets live only here and
 * are wiped by config_free.
 */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "clientip.h"
#include "tiers.h"
#include "log.h"

#define CONFIG_SECRET_MAX 512
#define CONFIG_THREADS_MAX 256
#define CONFIG_METRICS_TOKEN_MIN 16 /* bytes of METRICS_TOKEN, when set */
#define CONFIG_METRICS_TOKEN_MAX 256
#define CONFIG_METRICS_SHM_MAX 200 /* bytes of METRICS_SHM, '/' included (metrics.h) */

enum config_fail_mode { FAIL_OPEN, FAIL_CLOSED, FAIL_LOCAL };

/* REDIS_URL: redis://[user:password@]host:port/db or unix:///path/redis.sock */
struct config_redis {
    bool unix_socket;
    char host[256];     /* TCP host (name or address; [v6] brackets removed) */
    int port;           /* 1..65535, default 6379 */
    char path[108];     /* unix socket path */
    char user[128];     /* may be empty */
    char password[256]; /* may be empty; a secret */
    int db;             /* 0..15 by default range check 0..1000 */
};

struct config {
    struct config_redis redis;
    char limits_file[4096];
    enum config_fail_mode fail_mode;
    struct clientip_proxies trusted_proxies;
    unsigned char jwt_secret[CONFIG_SECRET_MAX]; /* a secret */
    size_t jwt_secret_len;
    long jwt_ttl;              /* 60 .. 30 days */
    char mistral_api_key[512]; /* a secret; empty: offline storyteller */
    char mistral_api_url[1024];
    char mistral_model[128];
    long mistral_timeout; /* 1 .. 600 seconds */
    int threads;          /* 1 .. CONFIG_THREADS_MAX */
    bool development;     /* ENVIRONMENT=development */
    enum log_level log_level;
    char metrics_token[CONFIG_METRICS_TOKEN_MAX + 1]; /* a secret; empty: loopback only */
    size_t metrics_token_len;
    char metrics_shm[CONFIG_METRICS_SHM_MAX + 1]; /* "/name", or "": the default name */
    struct tiers tiers;                           /* loaded from limits_file */
};

/* Looks a variable up; NULL when unset. getenv() fits; tests pass their own. */
typedef const char *(*config_getenv_fn)(const char *name);

/*
 * Fills *cfg from the environment and loads the tiers. default_limits_file: the
 * limits.json used when RATE_LIMITS_FILE is unset (borrowed).
 * Returns 0, or -1 with one line naming the variable and the problem in err
 * (never containing a secret's value).
 */
int config_load(struct config *cfg, config_getenv_fn get, const char *default_limits_file,
                char *err, size_t errlen);

/* Parses a REDIS_URL into *out. Returns 0 or -1 with a reason in err. */
int config_parse_redis_url(const char *url, struct config_redis *out, char *err, size_t errlen);

/* Logs the start-up summary (no secrets: only whether they are set). */
void config_log_summary(const struct config *cfg);

/* Wipes the secrets. cfg may be NULL. */
void config_free(struct config *cfg);

#endif
