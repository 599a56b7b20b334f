/*
 * metrics: host-wide counters in a POSIX shared-memory segment (its layout:
 * include/metricsshm.h; its page: fcgi/metricstext.c). See include/metrics.h for the
 * naming and locking scheme.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metricsshm.h"
#include "metricstext.h"

#define METRICS_MAGIC 0x43495254454d4753ULL /* "SGMETRIC" */
#define METRICS_LOCK_TRIES 2000             /* flock attempts 1 ms apart: 2 s */
#define METRICS_UNMATCHED "unmatched"       /* route label of 404 and 405 */
#define METRICS_NO_TIER "none"              /* tier label of unlimited routes */
#define METRICS_ERR_MAX 128                 /* bytes of an errno text */

/*
 * The process's view of the segment: written by metrics_attach before the request
 * threads start and by metrics_detach after they end, read-only in between (what it
 * points to is atomics), so no lock.
 */
static struct metrics_shared *shared;
static char segment_name[METRICS_SHM_NAME_MAX + 1];
static const struct tiers *tier_table;      /* borrowed from the config */
static int route_slot[METRICS_ROUTE_SLOTS]; /* by router index; -1: not counted */
static int tier_slot[TIERS_MAX];            /* by index in tier_table; -1: not counted */
static int unmatched_slot = -1, none_slot = -1, proc_slot = -1;

/* ---- processes ------------------------------------------------------------------------ */

/* Takes a free slot, or one of a process that is gone, for this process. Under the lock. */
static int metrics_claim_proc(struct metrics_shared *s)
{
    uint64_t start;

    if (metricsshm_proc_start(getpid(), &start) != 0)
        return -1;
    for (int i = 0; i < METRICS_PROC_SLOTS; i++) {
        struct metrics_proc *slot = &s->procs[i];
        if (atomic_load(&slot->pid) != 0 && metricsshm_proc_alive(slot))
            continue;
        atomic_store(&slot->pid, 0);
        atomic_store(&slot->requests, 0);
        atomic_store(&slot->start, start);
        atomic_store_explicit(&slot->pid, (int32_t)getpid(), memory_order_release);
        return i;
    }
    return -1;
}

/* ---- the segment's name --------------------------------------------------------------- */

/* True for "/" followed by 1 or more of [A-Za-z0-9._-], at most METRICS_SHM_NAME_MAX. */
static bool metrics_name_ok(const char *name)
{
    size_t n = strnlen(name, METRICS_SHM_NAME_MAX + 1);

    if (n < 2 || n > METRICS_SHM_NAME_MAX || name[0] != '/' || strcmp(name, "/.") == 0 ||
        strcmp(name, "/..") == 0)
        return false;
    return strspn(name + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
           n - 1;
}

/* "/sg-metrics-<uid>-<parent pid>-<parent start time>-v<layout>" */
static void metrics_default_name(char *out, size_t len)
{
    long parent = (long)getppid();
    uint64_t start = 0;

    if (metricsshm_proc_start(parent, &start) != 0)
        start = 0; /* no /proc: the PID alone */
    snprintf(out, len, "/" METRICS_SHM_PREFIX "%lu-%ld-%llu-v%d", (unsigned long)getuid(), parent,
             (unsigned long long)start, METRICS_LAYOUT_VERSION);
}

/*
 * True when the default name (without '/') belongs to this user and names a parent that
 * is gone: no process with that PID, or one with another start time.
 */
static bool metrics_name_stale(const char *entry)
{
    char prefix[64];
    char *end = NULL;
    uint64_t running;

    int n = snprintf(prefix, sizeof prefix, METRICS_SHM_PREFIX "%lu-", (unsigned long)getuid());
    if (n < 0 || (size_t)n >= sizeof prefix || strncmp(entry, prefix, (size_t)n) != 0)
        return false;
    const char *p = entry + n;
    errno = 0;
    long parent = strtol(p, &end, 10);
    if (errno != 0 || end == p || *end != '-' || parent <= 0)
        return false;
    p = end + 1;
    unsigned long long start = strtoull(p, &end, 10);
    if (errno != 0 || end == p || *end != '-')
        return false;
    if (metricsshm_proc_start(parent, &running) != 0) /* gone, unless /proc hides it */
        return kill((pid_t)parent, 0) != 0 && errno == ESRCH;
    return start != 0 && running != start; /* the PID was given to another process */
}

/* Removes the default-named segments of this user whose front server is gone. */
static void metrics_remove_stale(void)
{
    char name[METRICS_SHM_NAME_MAX + 2];
    int removed = 0;
    DIR *dir = opendir(METRICS_SHM_DIR);

    if (dir == NULL)
        return;
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir)) {
        if (!metrics_name_stale(e->d_name))
            continue;
        int n = snprintf(name, sizeof name, "/%s", e->d_name);
        if (n > 0 && (size_t)n < sizeof name && shm_unlink(name) == 0)
            removed++;
    }
    closedir(dir);
    if (removed > 0)
        log_event(LOG_INFO, "metrics_stale_removed", json_pack("{s:i}", "segments", removed));
}

/* ---- opening, under flock ------------------------------------------------------------- */

static void metrics_errno(char *err, size_t errlen, const char *what, int err_no)
{
    char text[METRICS_ERR_MAX];

    snprintf(err, errlen, "%s: %s", what, strerror_r(err_no, text, sizeof text));
}

/* flock(LOCK_EX) with a bound: a holder only initialises or registers, in microseconds. */
static int metrics_lock(int fd)
{
    const struct timespec pause = {0, 1000000L};

    for (int i = 0; i < METRICS_LOCK_TRIES; i++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        nanosleep(&pause, NULL);
    }
    errno = ETIMEDOUT;
    return -1;
}

/* Sizes (when new) and maps the segment on fd, which the caller holds locked. */
static struct metrics_shared *metrics_map(int fd, char *err, size_t errlen)
{
    struct stat st;

    if (fstat(fd, &st) != 0) {
        metrics_errno(err, errlen, "fstat", errno);
        return NULL;
    }
    if (st.st_size == 0 && ftruncate(fd, (off_t)sizeof(struct metrics_shared)) != 0) {
        metrics_errno(err, errlen, "ftruncate", errno);
        return NULL;
    }
    if (st.st_size != 0 && (size_t)st.st_size != sizeof(struct metrics_shared)) {
        snprintf(err, errlen,
                 "segment of %lld bytes, this build's layout has %zu: another "
                 "build uses this METRICS_SHM name",
                 (long long)st.st_size, sizeof(struct metrics_shared));
        return NULL;
    }
    void *p = mmap(NULL, sizeof(struct metrics_shared), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        metrics_errno(err, errlen, "mmap", errno);
        return NULL;
    }
    return p;
}

/* Initialises a segment nobody finished (new, or its creator died), or checks its header. */
static int metrics_prepare(struct metrics_shared *s, char *err, size_t errlen)
{
    if (atomic_load_explicit(&s->ready, memory_order_acquire) != 1) {
        memset(s, 0, sizeof *s);
        s->magic = METRICS_MAGIC;
        s->version = METRICS_LAYOUT_VERSION;
        s->size = sizeof *s;
        atomic_store_explicit(&s->ready, 1, memory_order_release);
        return 0;
    }
    if (s->magic != METRICS_MAGIC || s->version != METRICS_LAYOUT_VERSION || s->size != sizeof *s) {
        snprintf(err, errlen,
                 "segment has layout version %u, this build %d: another build uses "
                 "this METRICS_SHM name",
                 s->version, METRICS_LAYOUT_VERSION);
        return -1;
    }
    return 0;
}

/* The slot holding label name, registering it in a free one first. -1 when full. */
static int metrics_label_slot(struct metrics_label *slots, size_t n, const char *name)
{
    if (strlen(name) > METRICS_LABEL_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (atomic_load_explicit(&slots[i].used, memory_order_acquire) == 0) {
            memset(slots[i].name, 0, sizeof slots[i].name);
            memcpy(slots[i].name, name, strlen(name));
            atomic_store_explicit(&slots[i].used, 1, memory_order_release);
            return (int)i;
        }
        if (strcmp(slots[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

/* Registers this build's routes and the configured tiers. Under the lock. */
static void metrics_register(struct metrics_shared *s, const struct tiers *limits)
{
    char label[METRICS_LABEL_MAX + 64];
    int missing = 0;

    for (size_t i = 0; i < METRICS_ROUTE_SLOTS; i++) {
        const struct router_route *r = router_at(i);
        route_slot[i] = -1;
        if (r == NULL)
            continue;
        snprintf(label, sizeof label, "%s %s", r->method, r->pattern);
        route_slot[i] = metrics_label_slot(s->routes, METRICS_ROUTE_SLOTS, label);
        missing += route_slot[i] < 0;
    }
    missing +=
        router_count() > METRICS_ROUTE_SLOTS ? (int)(router_count() - METRICS_ROUTE_SLOTS) : 0;
    unmatched_slot = metrics_label_slot(s->routes, METRICS_ROUTE_SLOTS, METRICS_UNMATCHED);
    none_slot = metrics_label_slot(s->tiers, METRICS_TIER_SLOTS, METRICS_NO_TIER);
    for (size_t i = 0; i < TIERS_MAX; i++) {
        tier_slot[i] = i < limits->count
                           ? metrics_label_slot(s->tiers, METRICS_TIER_SLOTS, limits->tiers[i].name)
                           : -1;
        missing += i < limits->count && tier_slot[i] < 0;
    }
    missing += unmatched_slot < 0 || none_slot < 0;
    if (missing > 0)
        log_event(LOG_WARN, "metrics_labels_full",
                  json_pack("{s:i, s:s}", "uncounted_labels", missing, "hint",
                            "the segment's label slots are taken by other builds or tier "
                            "files: those requests are not counted by route and tier"));
}

/* Maps and prepares the segment called name; NULL with the reason in err. */
static struct metrics_shared *metrics_open(const char *name, const struct tiers *limits, char *err,
                                           size_t errlen)
{
    struct metrics_shared *s = NULL;
    int fd = shm_open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    if (fd < 0) {
        metrics_errno(err, errlen, "shm_open", errno);
        return NULL;
    }
    if (metrics_lock(fd) != 0) {
        metrics_errno(err, errlen, "flock", errno);
        goto close_fd;
    }
    s = metrics_map(fd, err, errlen);
    if (s == NULL)
        goto unlock;
    if (metrics_prepare(s, err, errlen) != 0) {
        munmap(s, sizeof *s);
        s = NULL;
        goto unlock;
    }
    metrics_register(s, limits);
    proc_slot = metrics_claim_proc(s);
unlock:
    flock(fd, LOCK_UN);
close_fd:
    close(fd); /* the mapping stays */
    return s;
}

int metrics_attach(const char *name, const struct tiers *limits, char *err, size_t errlen)
{
    char full[METRICS_SHM_NAME_MAX + 2];

    if (shared != NULL || limits == NULL) {
        snprintf(err, errlen, "metrics: %s", shared ? "already attached" : "no tiers");
        return -1;
    }
    metrics_remove_stale(); /* whatever name this process uses */
    if (name == NULL || name[0] == '\0') {
        metrics_default_name(full, sizeof full);
    } else {
        snprintf(full, sizeof full, "%s%s", name[0] == '/' ? "" : "/", name);
    }
    if (!metrics_name_ok(full)) {
        snprintf(err, errlen, "metrics: not a segment name: \"/\" and 1 to %d of [A-Za-z0-9._-]",
                 METRICS_SHM_NAME_MAX - 1);
        return -1;
    }
    struct metrics_shared *s = metrics_open(full, limits, err, errlen);
    if (s == NULL)
        return -1;
    memcpy(segment_name, full, strlen(full) + 1);
    tier_table = limits;
    shared = s;
    return 0;
}

const char *metrics_segment_name(void)
{
    return shared != NULL ? segment_name : "";
}

bool metrics_enabled(void)
{
    return shared != NULL;
}

void metrics_detach(bool unlink)
{
    if (shared == NULL)
        return;
    /* Frees this process's slot; a forked child that inherited the mapping leaves it. */
    int32_t self = (int32_t)getpid();
    if (proc_slot >= 0)
        atomic_compare_exchange_strong(&shared->procs[proc_slot].pid, &self, 0);
    munmap(shared, sizeof *shared);
    if (unlink)
        shm_unlink(segment_name);
    shared = NULL;
    segment_name[0] = '\0';
    tier_table = NULL;
    proc_slot = unmatched_slot = none_slot = -1;
}

/* ---- counting ------------------------------------------------------------------------- */

static void metrics_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

size_t metrics_bucket(const uint64_t *bounds, size_t n, uint64_t value)
{
    size_t i = 0;

    while (i < n && value > bounds[i])
        i++;
    return i;
}

static void metrics_observe(struct metrics_histogram *h, const struct metrics_histogram_def *def,
                            uint64_t value)
{
    metrics_add(&h->buckets[metrics_bucket(def->bounds, def->n, value)], 1);
    metrics_add(&h->sum, value);
}

/* The tier's slot, or -1 when it is not one of the attached table's. */
static int metrics_tier_slot(const struct tier *tier)
{
    if (tier == NULL)
        return none_slot;
    for (size_t i = 0; i < tier_table->count && i < TIERS_MAX; i++) {
        if (tier == &tier_table->tiers[i])
            return tier_slot[i];
    }
    return -1;
}

void metrics_request(const struct router_route *route, const struct tier *tier,
                     enum metrics_outcome outcome, bool authenticated, int status)
{
    if (shared == NULL || (unsigned)outcome >= METRICS_OUTCOMES)
        return;
    long index = route != NULL ? router_index(route) : -1;
    int r = route == NULL                               ? unmatched_slot
            : index >= 0 && index < METRICS_ROUTE_SLOTS ? route_slot[index]
                                                        : -1;
    int t = metrics_tier_slot(tier);
    if (r >= 0 && t >= 0)
        metrics_add(&shared->requests[r][t][outcome][authenticated ? 1 : 0], 1);
    if (r >= 0 && status == 429)
        metrics_add(&shared->too_many[r], 1);
    if (proc_slot >= 0)
        metrics_add(&shared->procs[proc_slot].requests, 1);
}

void metrics_retry_after(long seconds)
{
    if (shared != NULL)
        metrics_observe(&shared->retry_after, &metricsshm_retry_after,
                        seconds > 0 ? (uint64_t)seconds : 0);
}

void metrics_redis_error(enum metrics_redis_error kind)
{
    if (shared != NULL && (unsigned)kind < METRICS_REDIS_ERRORS)
        metrics_add(&shared->redis_errors[kind], 1);
}

void metrics_redis_latency(uint64_t micros)
{
    if (shared != NULL)
        metrics_observe(&shared->redis_latency, &metricsshm_redis_latency, micros);
}

void metrics_upstream(enum metrics_upstream result, uint64_t micros)
{
    if (shared == NULL || (unsigned)result >= METRICS_UPSTREAM_RESULTS)
        return;
    metrics_add(&shared->upstream[result], 1);
    metrics_observe(&shared->upstream_latency, &metricsshm_upstream_latency, micros);
}

uint64_t metrics_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- the page ------------------------------------------------------------------------- */

char *metrics_render(size_t *len)
{
    return metricstext_render(shared, len);
}
