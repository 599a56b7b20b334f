/* metricstext: the metrics page. See include/metricstext.h. */
#include "metricstext.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_PAGE_START (16 * 1024) /* first size of the page buffer */

/* The page as it is written: capped at METRICS_PAGE_MAX; failed once anything did not fit. */
struct metricstext_page {
    char *text;
    size_t len, cap;
    bool failed;
};

static void metricstext_printf(struct metricstext_page *pg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void metricstext_printf(struct metricstext_page *pg, const char *fmt, ...)
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

bool metricstext_escape_label(const char *s, char *out, size_t outlen)
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
static bool metricstext_label_text(const struct metrics_label *l, char *out, size_t outlen)
{
    char name[METRICS_LABEL_MAX + 1];

    if (atomic_load_explicit(&l->used, memory_order_acquire) == 0)
        return false;
    memcpy(name, l->name, sizeof name);
    name[METRICS_LABEL_MAX] = '\0';
    return metricstext_escape_label(name, out, outlen);
}

static void metricstext_head(struct metricstext_page *pg, const char *name, const char *type,
                             const char *help)
{
    metricstext_printf(pg, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t metricstext_get(const _Atomic uint64_t *counter)
{
    return atomic_load_explicit(counter, memory_order_relaxed);
}

/* Every non-zero (route, tier, outcome, caller) series: most combinations cannot happen. */
static void metricstext_render_requests(struct metricstext_page *pg, const struct metrics_shared *s)
{
    char route[2 * METRICS_LABEL_MAX + 1], tier[2 * METRICS_LABEL_MAX + 1];

    metricstext_head(pg, "story_gateway_requests_total", "counter",
                     "Requests answered by the gateway processes of this host, by route, tier "
                     "charged, outcome of the rate limit and caller.");
    for (size_t r = 0; r < METRICS_ROUTE_SLOTS; r++) {
        if (!metricstext_label_text(&s->routes[r], route, sizeof route))
            continue;
        for (size_t t = 0; t < METRICS_TIER_SLOTS; t++) {
            if (!metricstext_label_text(&s->tiers[t], tier, sizeof tier))
                continue;
            for (size_t o = 0; o < METRICS_OUTCOMES; o++) {
                for (size_t c = 0; c < METRICS_CALLERS; c++) {
                    uint64_t v = metricstext_get(&s->requests[r][t][o][c]);
                    if (v == 0)
                        continue;
                    metricstext_printf(pg,
                                       "story_gateway_requests_total{route=\"%s\",tier=\"%s\","
                                       "outcome=\"%s\",caller=\"%s\"} %llu\n",
                                       route, tier, metricsshm_outcomes[o], metricsshm_callers[c],
                                       (unsigned long long)v);
                }
            }
        }
    }
}

static void metricstext_render_too_many(struct metricstext_page *pg, const struct metrics_shared *s)
{
    char route[2 * METRICS_LABEL_MAX + 1];

    metricstext_head(pg, "story_gateway_rate_limited_total", "counter",
                     "429 answers by route (the tier's bucket, or the per-account log-in limit).");
    for (size_t r = 0; r < METRICS_ROUTE_SLOTS; r++) {
        if (metricstext_label_text(&s->routes[r], route, sizeof route))
            metricstext_printf(pg, "story_gateway_rate_limited_total{route=\"%s\"} %llu\n", route,
                               (unsigned long long)metricstext_get(&s->too_many[r]));
    }
}

/* A value in the definition's unit, as the page writes it. */
static void metricstext_value(struct metricstext_page *pg, const struct metrics_histogram_def *def,
                              uint64_t v)
{
    if (def->micros)
        metricstext_printf(pg, "%llu.%06llu", (unsigned long long)(v / 1000000u),
                           (unsigned long long)(v % 1000000u));
    else
        metricstext_printf(pg, "%llu", (unsigned long long)v);
}

static void metricstext_render_histogram(struct metricstext_page *pg,
                                         const struct metrics_histogram *h,
                                         const struct metrics_histogram_def *def)
{
    uint64_t cumulative = 0;

    metricstext_head(pg, def->name, "histogram", def->help);
    for (size_t i = 0; i <= def->n; i++) {
        cumulative += metricstext_get(&h->buckets[i]);
        metricstext_printf(pg, "%s_bucket{le=\"%s\"} %llu\n", def->name,
                           i < def->n ? def->le[i] : "+Inf", (unsigned long long)cumulative);
    }
    metricstext_printf(pg, "%s_sum ", def->name);
    metricstext_value(pg, def, metricstext_get(&h->sum));
    metricstext_printf(pg, "\n%s_count %llu\n", def->name, (unsigned long long)cumulative);
}

/* A counter with one label over a fixed set of values, zeros included. */
static void metricstext_render_set(struct metricstext_page *pg, const char *name, const char *help,
                                   const char *label, const char *const *values,
                                   const _Atomic uint64_t *counters, size_t n)
{
    metricstext_head(pg, name, "counter", help);
    for (size_t i = 0; i < n; i++)
        metricstext_printf(pg, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
                           (unsigned long long)metricstext_get(&counters[i]));
}

/* The processes that still run, and what each answered since it started. */
static void metricstext_render_procs(struct metricstext_page *pg, const struct metrics_shared *s)
{
    int alive[METRICS_PROC_SLOTS];
    size_t count = 0;

    for (int i = 0; i < METRICS_PROC_SLOTS; i++) {
        if (metricsshm_proc_alive(&s->procs[i]))
            alive[count++] = i;
    }
    metricstext_head(pg, "story_gateway_processes", "gauge",
                     "Gateway processes running that share these metrics.");
    metricstext_printf(pg, "story_gateway_processes %zu\n", count);
    metricstext_head(pg, "story_gateway_process_requests_total", "counter",
                     "Requests answered by each running gateway process since it started.");
    for (size_t i = 0; i < count; i++) {
        const struct metrics_proc *p = &s->procs[alive[i]];
        metricstext_printf(pg, "story_gateway_process_requests_total{pid=\"%d\"} %llu\n",
                           (int)atomic_load(&p->pid),
                           (unsigned long long)metricstext_get(&p->requests));
    }
}

char *metricstext_render(const struct metrics_shared *s, size_t *len)
{
    struct metricstext_page pg = {0};

    if (s == NULL || len == NULL)
        return NULL;
    metricstext_render_requests(&pg, s);
    metricstext_render_too_many(&pg, s);
    metricstext_render_histogram(&pg, &s->retry_after, &metricsshm_retry_after);
    metricstext_render_set(&pg, "story_gateway_redis_errors_total",
                           "Failed Redis commands and connections, by kind.", "kind",
                           metricsshm_redis_errors, s->redis_errors, METRICS_REDIS_ERRORS);
    metricstext_render_histogram(&pg, &s->redis_latency, &metricsshm_redis_latency);
    metricstext_render_set(&pg, "story_gateway_mistral_requests_total",
                           "HTTP requests to MistralAI (each retry is one), by result.", "result",
                           metricsshm_upstreams, s->upstream, METRICS_UPSTREAM_RESULTS);
    metricstext_render_histogram(&pg, &s->upstream_latency, &metricsshm_upstream_latency);
    metricstext_render_procs(&pg, s);
    if (pg.failed || pg.text == NULL) {
        free(pg.text);
        return NULL;
    }
    *len = pg.len;
    return pg.text;
}
