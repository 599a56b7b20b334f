/*
 * metrics: host-wide counters in a POSIX shared-memory segment, and their page in the
 * Prometheus text format. See include/metrics.h for the naming and locking scheme.
 */
#include "metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
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

/* Counting across processes needs atomics that take no lock (a lock would live in one
 * process's memory only). */
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2 &&
                   ATOMIC_INT_LOCK_FREE == 2,
               "64-bit atomics must be lock-free to be shared between processes");

#define METRICS_MAGIC 0x43495254454d4753ULL /* "SGMETRIC" */
#define METRICS_CALLERS 2                   /* anonymous, authenticated */
#define METRICS_LOCK_TRIES 2000             /* flock attempts 1 ms apart: 2 s */
#define METRICS_STAT_MAX 1024               /* bytes of /proc/<pid>/stat read */
#define METRICS_PAGE_START (16 * 1024)      /* first size of the page buffer */
#define METRICS_UNMATCHED "unmatched"       /* route label of 404 and 405 */
#define METRICS_NO_TIER "none"              /* tier label of unlimited routes */
#define METRICS_ERR_MAX 128                 /* bytes of an errno text */

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

/* Retry-After is whole seconds, at least 1. */
static const struct metrics_histogram_def retry_after_def = {
    "story_gateway_retry_after_seconds",
    "Retry-After of the 429 rate-limit answers, in seconds.",
    10,
    {1, 2, 5, 10, 30, 60, 300, 900, 3600, 86400},
    {"1", "2", "5", "10", "30", "60", "300", "900", "3600", "86400"},
    false};

/* A command answers in well under a millisecond on a healthy host; the timeout is 0.5 s. */
static const struct metrics_histogram_def redis_def = {
    "story_gateway_redis_command_duration_seconds",
    "Time a Redis command took to answer or fail (the outage monitor's PINGs included).",
    12,
    {250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000},
    {"0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5",
     "1"},
    true};

/* A generation takes seconds; MISTRAL_TIMEOUT is 30 s by default, 600 s at most. */
static const struct metrics_histogram_def upstream_def = {
    "story_gateway_mistral_request_duration_seconds",
    "Time one HTTP request to MistralAI took (each retry is one).",
    12,
    {100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 20000000, 30000000, 60000000,
     120000000, 600000000},
    {"0.1", "0.25", "0.5", "1", "2.5", "5", "10", "20", "30", "60", "120", "600"},
    true};

static const char *const outcome_names[METRICS_OUTCOMES] = {
    "unlimited",         "allowed",           "limited",          "limited_local",
    "passed_redis_down", "closed_redis_down", "fallback_allowed", "fallback_limited"};
static const char *const caller_names[METRICS_CALLERS] = {"anonymous", "authenticated"};
static const char *const redis_error_names[METRICS_REDIS_ERRORS] = {
    "connect", "timeout", "io", "unavailable", "error_reply", "bad_reply"};
static const char *const upstream_names[METRICS_UPSTREAM_RESULTS] = {
    "ok", "malformed", "http_429", "http_4xx", "http_5xx", "timeout", "connect", "reset", "other"};

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

/*
 * The start time of process pid (clock ticks since boot, field 22 of /proc/<pid>/stat):
 * with the PID it names one process for good, as a PID alone does not.
 * Returns 0, or -1 when there is no such process.
 */
static int metrics_proc_start(long pid, uint64_t *out)
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

/* True when the process of slot still runs (same PID, same start time). */
static bool metrics_proc_alive(const struct metrics_proc *slot)
{
    int32_t pid = atomic_load_explicit(&slot->pid, memory_order_acquire);
    uint64_t start;

    return pid > 0 && metrics_proc_start(pid, &start) == 0 &&
           start == atomic_load_explicit(&slot->start, memory_order_relaxed);
}

/* Takes a free slot, or one of a process that is gone, for this process. Under the lock. */
static int metrics_claim_proc(struct metrics_shared *s)
{
    uint64_t start;

    if (metrics_proc_start(getpid(), &start) != 0)
        return -1;
    for (int i = 0; i < METRICS_PROC_SLOTS; i++) {
        struct metrics_proc *slot = &s->procs[i];
        if (atomic_load(&slot->pid) != 0 && metrics_proc_alive(slot))
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

    if (metrics_proc_start(parent, &start) != 0)
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
    if (metrics_proc_start(parent, &running) != 0) /* gone, unless /proc hides it */
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
        metrics_observe(&shared->retry_after, &retry_after_def,
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
        metrics_observe(&shared->redis_latency, &redis_def, micros);
}

void metrics_upstream(enum metrics_upstream result, uint64_t micros)
{
    if (shared == NULL || (unsigned)result >= METRICS_UPSTREAM_RESULTS)
        return;
    metrics_add(&shared->upstream[result], 1);
    metrics_observe(&shared->upstream_latency, &upstream_def, micros);
}

uint64_t metrics_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- the page ------------------------------------------------------------------------- */

/* The page as it is written: capped at METRICS_PAGE_MAX; failed once anything did not fit. */
struct metrics_page {
    char *text;
    size_t len, cap;
    bool failed;
};

static void metrics_printf(struct metrics_page *pg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void metrics_printf(struct metrics_page *pg, const char *fmt, ...)
{
    va_list ap;

    while (!pg->failed) {
        if (pg->text != NULL) {
            va_start(ap, fmt);
            int n = vsnprintf(pg->text + pg->len, pg->cap - pg->len, fmt, ap);
            va_end(ap);
            if (n < 0) {
                pg->failed = true;
                return;
            }
            if ((size_t)n < pg->cap - pg->len) {
                pg->len += (size_t)n;
                return;
            }
        }
        /* Did not fit: double the buffer, up to the cap, and write it again. */
        size_t cap = pg->cap ? pg->cap * 2 : METRICS_PAGE_START;
        char *grown = cap <= METRICS_PAGE_MAX ? realloc(pg->text, cap) : NULL;
        if (grown == NULL) {
            pg->failed = true;
            return;
        }
        pg->text = grown;
        pg->cap = cap;
    }
}

bool metrics_escape_label(const char *s, char *out, size_t outlen)
{
    size_t o = 0;

    for (; *s != '\0'; s++) {
        const char *rep = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        size_t n = rep != NULL ? 2 : 1;
        if (o + n >= outlen) {
            if (outlen > 0)
                out[0] = '\0';
            return false;
        }
        memcpy(out + o, rep != NULL ? rep : s, n);
        o += n;
    }
    if (outlen == 0)
        return false;
    out[o] = '\0';
    return true;
}

/* A registered label's value, escaped, or false when the slot is unused. */
static bool metrics_label_text(const struct metrics_label *l, char *out, size_t outlen)
{
    char name[METRICS_LABEL_MAX + 1];

    if (atomic_load_explicit(&l->used, memory_order_acquire) == 0)
        return false;
    memcpy(name, l->name, sizeof name);
    name[METRICS_LABEL_MAX] = '\0';
    return metrics_escape_label(name, out, outlen);
}

static void metrics_head(struct metrics_page *pg, const char *name, const char *type,
                         const char *help)
{
    metrics_printf(pg, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t metrics_get(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* Every non-zero (route, tier, outcome, caller) series: most combinations cannot happen. */
static void metrics_render_requests(struct metrics_page *pg, const struct metrics_shared *s)
{
    char route[2 * METRICS_LABEL_MAX + 1], tier[2 * METRICS_LABEL_MAX + 1];

    metrics_head(pg, "story_gateway_requests_total", "counter",
                 "Requests answered by the gateway processes of this host, by route, tier "
                 "charged, outcome of the rate limit and caller.");
    for (size_t r = 0; r < METRICS_ROUTE_SLOTS; r++) {
        if (!metrics_label_text(&s->routes[r], route, sizeof route))
            continue;
        for (size_t t = 0; t < METRICS_TIER_SLOTS; t++) {
            if (!metrics_label_text(&s->tiers[t], tier, sizeof tier))
                continue;
            for (size_t o = 0; o < METRICS_OUTCOMES; o++) {
                for (size_t c = 0; c < METRICS_CALLERS; c++) {
                    uint64_t v = metrics_get(&s->requests[r][t][o][c]);
                    if (v == 0)
                        continue;
                    metrics_printf(pg,
                                   "story_gateway_requests_total{route=\"%s\",tier=\"%s\","
                                   "outcome=\"%s\",caller=\"%s\"} %llu\n",
                                   route, tier, outcome_names[o], caller_names[c],
                                   (unsigned long long)v);
                }
            }
        }
    }
}

static void metrics_render_too_many(struct metrics_page *pg, const struct metrics_shared *s)
{
    char route[2 * METRICS_LABEL_MAX + 1];

    metrics_head(pg, "story_gateway_rate_limited_total", "counter",
                 "429 answers by route (the tier's bucket, or the per-account log-in limit).");
    for (size_t r = 0; r < METRICS_ROUTE_SLOTS; r++) {
        if (metrics_label_text(&s->routes[r], route, sizeof route))
            metrics_printf(pg, "story_gateway_rate_limited_total{route=\"%s\"} %llu\n", route,
                           (unsigned long long)metrics_get(&s->too_many[r]));
    }
}

/* A value in the definition's unit, as the page writes it. */
static void metrics_value(struct metrics_page *pg, const struct metrics_histogram_def *def,
                          uint64_t v)
{
    if (def->micros)
        metrics_printf(pg, "%llu.%06llu", (unsigned long long)(v / 1000000u),
                       (unsigned long long)(v % 1000000u));
    else
        metrics_printf(pg, "%llu", (unsigned long long)v);
}

static void metrics_render_histogram(struct metrics_page *pg, const struct metrics_histogram *h,
                                     const struct metrics_histogram_def *def)
{
    uint64_t cumulative = 0;

    metrics_head(pg, def->name, "histogram", def->help);
    for (size_t i = 0; i <= def->n; i++) {
        cumulative += metrics_get(&h->buckets[i]);
        metrics_printf(pg, "%s_bucket{le=\"%s\"} %llu\n", def->name,
                       i < def->n ? def->le[i] : "+Inf", (unsigned long long)cumulative);
    }
    metrics_printf(pg, "%s_sum ", def->name);
    metrics_value(pg, def, metrics_get(&h->sum));
    metrics_printf(pg, "\n%s_count %llu\n", def->name, (unsigned long long)cumulative);
}

/* A counter with one label over a fixed set of values, zeros included. */
static void metrics_render_set(struct metrics_page *pg, const char *name, const char *help,
                               const char *label, const char *const *values,
                               const _Atomic uint64_t *counters, size_t n)
{
    metrics_head(pg, name, "counter", help);
    for (size_t i = 0; i < n; i++)
        metrics_printf(pg, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
                       (unsigned long long)metrics_get(&counters[i]));
}

/* The processes that still run, and what each answered since it started. */
static void metrics_render_procs(struct metrics_page *pg, const struct metrics_shared *s)
{
    int alive[METRICS_PROC_SLOTS];
    size_t count = 0;

    for (int i = 0; i < METRICS_PROC_SLOTS; i++) {
        if (metrics_proc_alive(&s->procs[i]))
            alive[count++] = i;
    }
    metrics_head(pg, "story_gateway_processes", "gauge",
                 "Gateway processes running that share these metrics.");
    metrics_printf(pg, "story_gateway_processes %zu\n", count);
    metrics_head(pg, "story_gateway_process_requests_total", "counter",
                 "Requests answered by each running gateway process since it started.");
    for (size_t i = 0; i < count; i++) {
        const struct metrics_proc *p = &s->procs[alive[i]];
        metrics_printf(pg, "story_gateway_process_requests_total{pid=\"%d\"} %llu\n",
                       (int)atomic_load(&p->pid), (unsigned long long)metrics_get(&p->requests));
    }
}

char *metrics_render(size_t *len)
{
    struct metrics_page pg = {0};
    const struct metrics_shared *s = shared;

    if (s == NULL || len == NULL)
        return NULL;
    metrics_render_requests(&pg, s);
    metrics_render_too_many(&pg, s);
    metrics_render_histogram(&pg, &s->retry_after, &retry_after_def);
    metrics_render_set(&pg, "story_gateway_redis_errors_total",
                       "Failed Redis commands and connections, by kind.", "kind", redis_error_names,
                       s->redis_errors, METRICS_REDIS_ERRORS);
    metrics_render_histogram(&pg, &s->redis_latency, &redis_def);
    metrics_render_set(&pg, "story_gateway_mistral_requests_total",
                       "HTTP requests to MistralAI (each retry is one), by result.", "result",
                       upstream_names, s->upstream, METRICS_UPSTREAM_RESULTS);
    metrics_render_histogram(&pg, &s->upstream_latency, &upstream_def);
    metrics_render_procs(&pg, s);
    if (pg.failed || pg.text == NULL) {
        free(pg.text);
        return NULL;
    }
    *len = pg.len;
    return pg.text;
}
