/* metricsshm: the metrics segment's layout and tables. See include/metricsshm.h. */
#include "metricsshm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Counting across processes needs atomics that take no lock (a lock would live in one
 * process's memory only). */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2 &&
                   ATOMIC_INT_LOCK_FREE == 2,
               "64-bit atomics must be lock-free to be shared between processes");

#define METRICS_STAT_MAX 1024 /* bytes of /proc/<pid>/stat read */

/* Retry-After is whole seconds, at least 1. */
const struct metrics_histogram_def metricsshm_retry_after = {
    "story_gateway_retry_after_seconds",
    "Retry-After of the 429 rate-limit answers, in seconds.",
    10,
    {1, 2, 5, 10, 30, 60, 300, 900, 3600, 86400},
    {"1", "2", "5", "10", "30", "60", "300", "900", "3600", "86400"},
    false};

/* A command answers in well under a millisecond on a healthy host; the timeout is 0.5 s. */
const struct metrics_histogram_def metricsshm_redis_latency = {
    "story_gateway_redis_command_duration_seconds",
    "Time a Redis round trip took to answer or fail: one command, or GET /me's EVALSHA and "
    "HMGET sent together (the outage monitor's PINGs included).",
    12,
    {250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000},
    {"0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
     "1"},
    true};

/* A generation takes seconds; MISTRAL_TIMEOUT is 30 s by default, 600 s at most. */
const struct metrics_histogram_def metricsshm_upstream_latency = {
    "story_gateway_mistral_request_duration_seconds",
    "Time one HTTP request to MistralAI took (each retry is one).",
    12,
    {100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 20000000, 30000000, 60000000,
     120000000, 600000000},
    {"0.1", "0.25", "0.5", "1", "2.5", "5", "10", "20", "30", "60", "120", "600"},
    true};

const char *const metricsshm_outcomes[METRICS_OUTCOMES] = {
    "unlimited",         "allowed",           "limited",          "limited_local",
    "passed_redis_down", "closed_redis_down", "fallback_allowed", "fallback_limited"};
const char *const metricsshm_callers[METRICS_CALLERS] = {"anonymous", "authenticated"};
const char *const metricsshm_redis_errors[METRICS_REDIS_ERRORS] = {
    "connect", "timeout", "io", "unavailable", "error_reply", "bad_reply"};
const char *const metricsshm_upstreams[METRICS_UPSTREAM_RESULTS] = {
    "ok", "malformed", "http_429", "http_4xx", "http_5xx", "timeout", "connect", "reset", "other"};

int metricsshm_proc_start(long pid, uint64_t *out)
{
    char path[64], buf[METRICS_STAT_MAX];
    int rc = -1;

    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and ')': fields 3.. follow the last ')'. */
    const char *p = strrchr(buf, ')');
    for (int field = 2; p != NULL && field < 22; field++) {
        p = strchr(p + 1, ' ');
    }
    if (p != NULL) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(p + 1, &end, 10);
        if (errno == 0 && end != p + 1 && (*end == ' ' || *end == '\0')) {
            *out = v;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}

bool metricsshm_proc_alive(const struct metrics_proc *slot)
{
    int32_t pid = atomic_load_explicit(&slot->pid, memory_order_acquire);
    uint64_t start;

    return pid > 0 && metricsshm_proc_start(pid, &start) == 0 &&
           start == atomic_load_explicit(&slot->start, memory_order_relaxed);
}
