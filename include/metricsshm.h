/*
 * metricsshm: the layout of the host-wide metrics segment (include/metrics.h) and its
 * fixed tables: what the counting (fcgi/metrics.c) writes and the page
 * (fcgi/metricstext.c) reads. Everything in the segment is an atomic or written once
 * before it is published, so any process and thread may read it without a lock.
 */
#ifndef SG_METRICSSHM_H
#define SG_METRICSSHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics.h"

#define METRICS_CALLERS 2 /* anonymous, authenticated */

struct metrics_label {
    _Atomic uint32_t used; /* 1 once name is written (release): names never change */
    char name[METRICS_LABEL_MAX + 1];
};

struct metrics_histogram {
    _Atomic uint64_t buckets[METRICS_BUCKETS_MAX + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t sum;                              /* in the definition's unit */
};

struct metrics_proc {
    _Atomic int32_t pid;    /* 0: free; stored last when claimed */
    _Atomic uint64_t start; /* its start time (field 22 of /proc/<pid>/stat) */
    _Atomic uint64_t requests;
};

/* The segment. Its layout is METRICS_LAYOUT_VERSION: change one, change the other. */
struct metrics_shared {
    uint64_t magic;
    uint32_t version;
    _Atomic uint32_t ready; /* 1 once initialised (under the lock) */
    uint64_t size;          /* sizeof (struct metrics_shared) */
    struct metrics_label routes[METRICS_ROUTE_SLOTS];
    struct metrics_label tiers[METRICS_TIER_SLOTS];
    _Atomic uint64_t
        requests[METRICS_ROUTE_SLOTS][METRICS_TIER_SLOTS][METRICS_OUTCOMES][METRICS_CALLERS];
    _Atomic uint64_t too_many[METRICS_ROUTE_SLOTS]; /* 429 answers */
    struct metrics_histogram retry_after, redis_latency, upstream_latency;
    _Atomic uint64_t redis_errors[METRICS_REDIS_ERRORS];
    _Atomic uint64_t upstream[METRICS_UPSTREAM_RESULTS];
    struct metrics_proc procs[METRICS_PROC_SLOTS];
};

/* A histogram's fixed buckets: upper bounds in its unit and as the page writes them. */
struct metrics_histogram_def {
    const char *name, *help;
    size_t n;
    uint64_t bounds[METRICS_BUCKETS_MAX];
    const char *le[METRICS_BUCKETS_MAX];
    bool micros; /* counted in microseconds, shown in seconds */
};

/* The three histograms' buckets. */
extern const struct metrics_histogram_def metricsshm_retry_after, metricsshm_redis_latency,
    metricsshm_upstream_latency;

/* Label values, by index of the counters they name. */
extern const char *const metricsshm_outcomes[METRICS_OUTCOMES];
extern const char *const metricsshm_callers[METRICS_CALLERS];
extern const char *const metricsshm_redis_errors[METRICS_REDIS_ERRORS];
extern const char *const metricsshm_upstreams[METRICS_UPSTREAM_RESULTS];

/*
 * The start time of process pid (clock ticks since boot, field 22 of /proc/<pid>/stat):
 * with the PID it names one process for good, as a PID alone does not.
 * Returns 0, or -1 when there is no such process.
 */
int metricsshm_proc_start(long pid, uint64_t *out);

/* True when the process of slot still runs (same PID, same start time). */
bool metricsshm_proc_alive(const struct metrics_proc *slot);

#endif
