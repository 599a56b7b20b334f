/*
 * Unit tests of fcgi/refusecache.c: the refusals a process answers without Redis.
 * Every clock is injected: "local" times are what refusecache_clock would return, and
 * a simulated Redis (the arithmetic of lua/token_bucket.lua) runs on a clock that is
 * the local one plus an offset, as Redis TIME on another host would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refusecache.h"
#include "unit_tier.h"

#define OFFSET 1699899000.0 /* Redis TIME minus the local monotonic clock */
#define L0 1000.0           /* a local monotonic instant */

static struct tier ai_auth, ai_anon, api_auth, slow;

static int setup(void **state)
{
    ai_auth = unit_tier("ai_authenticated", 5, 2);
    ai_anon = unit_tier("ai_anonymous", 2, 0.5);
    api_auth = unit_tier("api_authenticated", 20, 10);
    slow = unit_tier("slow", 1, 0.001);
    *state = refusecache_new(REFUSECACHE_ENTRIES);
    return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    refusecache_free(*state);
    return 0;
}

/* ---- a simulated Redis bucket: lua/token_bucket.lua, on the clock local + OFFSET ---- */

struct sim {
    const struct tier *tier;
    bool exists;
    double tokens, last; /* as the hash holds them */
};

/* Tokens at Redis time t, without charging (the script's refill). */
static double sim_tokens_at(const struct sim *s, double t)
{
    if (!s->exists)
        return (double)s->tier->capacity;
    double tokens = s->tokens;
    if (t > s->last)
        tokens = fmin((double)s->tier->capacity, tokens + (t - s->last) * s->tier->rate);
    return tokens;
}

/* One EVALSHA at Redis time t: the verdict ratelimit_charge would return. */
static void sim_charge(struct sim *s, double t, struct ratelimit_verdict *v)
{
    double tokens = sim_tokens_at(s, t);
    bool allowed = tokens >= 1;
    if (allowed)
        tokens -= 1;
    s->tokens = tokens;
    if (!s->exists || t > s->last)
        s->last = t;
    s->exists = true;
    ratelimit_verdict_fill(v, s->tier, allowed, tokens, t);
}

/* What Redis would answer at Redis time t (a refusal only if tokens < 1), not charged. */
static void sim_would(const struct sim *s, double t, struct ratelimit_verdict *v)
{
    double tokens = sim_tokens_at(s, t);
    ratelimit_verdict_fill(v, s->tier, tokens >= 1, tokens >= 1 ? tokens - 1 : tokens, t);
}

/* A request through the cache at local time now, with send latency d1 and reply
 * latency d2 when Redis is asked. Returns true when refused locally (*v the answer). */
static bool through(struct refusecache *c, struct sim *s, const char *id, double now, double d1,
                    double d2, struct ratelimit_verdict *v)
{
    if (refusecache_refused(c, s->tier, id, now, v))
        return true;
    sim_charge(s, now + d1 + OFFSET, v);
    refusecache_record(c, id, v, now, now + d1 + d2);
    return false;
}

/* ---- the deadline and the answer ---- */

/* ai_authenticated (2/s): Redis refused with 0.25 tokens left; the next token is due
 * (1 - 0.25) / 2 = 0.375 s after the script ran, so locally before started + 0.375. */
static void test_refusecache_deadline_arithmetic(void **state)
{
    struct refusecache *c = *state;
    struct ratelimit_verdict v, local;

    ratelimit_verdict_fill(&v, &ai_auth, false, 0.25, L0 + OFFSET + 0.004);
    refusecache_record(c, "user:a", &v, L0, L0 + 0.01);
    double deadline = L0 + 0.375 * (1 - REFUSECACHE_RATE_SLACK);

    assert_true(refusecache_refused(c, &ai_auth, "user:a", L0 + 0.01, &local));
    assert_true(refusecache_refused(c, &ai_auth, "user:a", nextafter(deadline, 0), &local));
    assert_false(local.allowed);
    assert_true(local.tokens < 1);
    /* at L0 + 0.2: tokens estimated from the answer (0.25 + 2 * 0.19 = 0.63) */
    assert_true(refusecache_refused(c, &ai_auth, "user:a", L0 + 0.2, &local));
    assert_true(fabs(local.tokens - 0.63) < 1e-9);
    assert_int_equal(local.remaining, 0);
    assert_int_equal(local.retry_after, 1);       /* ceil(0.37 / 2) */
    assert_int_equal(local.reset_after, 3);       /* ceil((5 - 0.63) / 2) = ceil(2.185) */
    assert_int_equal(local.reset_at, v.reset_at); /* Redis's own instant of "full" */
    assert_ptr_equal(local.tier, &ai_auth);
    /* from the deadline on, Redis decides; the entry is gone */
    assert_false(refusecache_refused(c, &ai_auth, "user:a", deadline, &local));
    assert_false(refusecache_refused(c, &ai_auth, "user:a", L0 + 0.01, &local));
}

/* An admission that took the last whole token is a known refusal too. */
static void test_refusecache_admission_below_one_token(void **state)
{
    struct refusecache *c = *state;
    struct ratelimit_verdict v, local;

    ratelimit_verdict_fill(&v, &api_auth, true, 0.5, L0 + OFFSET);
    refusecache_record(c, "user:b", &v, L0, L0);
    assert_true(refusecache_refused(c, &api_auth, "user:b", L0 + 0.049, &local));
    assert_false(local.allowed);
    assert_int_equal(local.retry_after, 1);
    assert_false(refusecache_refused(c, &api_auth, "user:b", L0 + 0.05, &local));
    /* a whole token left: nothing to refuse */
    ratelimit_verdict_fill(&v, &api_auth, true, 1.0, L0 + OFFSET);
    refusecache_record(c, "user:c", &v, L0, L0);
    assert_false(refusecache_refused(c, &api_auth, "user:c", L0, &local));
}

/*
 * Zero latency: the local answer is exactly what Redis would answer at that instant,
 * every field, at instants chosen on the boundaries of the rounding (0.5/s: Retry-After
 * goes from 2 to 1 when exactly one second of wait is left).
 */
static void test_refusecache_same_answer_as_redis(void **state)
{
    struct refusecache *c = *state;
    struct sim s = {.tier = &ai_anon};
    struct ratelimit_verdict v, local, redis;
    /* multiples of 1/64 s: exact in binary and in microseconds, so that neither the
     * Redis side nor the local one rounds them (fill rounds Redis TIME to the us) */
    static const double after[] = {0,   1 / 64.0,  0.25, 0.5,  63 / 64.0,
                                   1.0, 65 / 64.0, 1.5,  1.75, 127 / 64.0};

    sim_charge(&s, L0 + OFFSET, &v);
    sim_charge(&s, L0 + OFFSET, &v);
    sim_charge(&s, L0 + OFFSET, &v); /* refused, 0 tokens */
    assert_false(v.allowed);
    refusecache_record(c, "ip:192.0.2.1", &v, L0, L0);
    for (size_t i = 0; i < sizeof after / sizeof after[0]; i++) {
        assert_true(refusecache_refused(c, &ai_anon, "ip:192.0.2.1", L0 + after[i], &local));
        sim_would(&s, L0 + OFFSET + after[i], &redis);
        assert_false(redis.allowed);
        assert_int_equal(local.remaining, redis.remaining);
        assert_int_equal(local.retry_after, redis.retry_after);
        assert_int_equal(local.reset_after, redis.reset_after);
        assert_int_equal(local.reset_at, redis.reset_at);
        assert_true(fabs(local.tokens - redis.tokens) < 1e-6);
    }
    assert_true(refusecache_refused(c, &ai_anon, "ip:192.0.2.1", L0 + 0.5, &local));
    assert_int_equal(local.retry_after, 2); /* 1.5 s of wait */
    assert_true(refusecache_refused(c, &ai_anon, "ip:192.0.2.1", L0 + 1.0, &local));
    assert_int_equal(local.retry_after, 1); /* exactly 1 s */
    assert_true(refusecache_refused(c, &ai_anon, "ip:192.0.2.1", L0 + 1.75, &local));
    assert_int_equal(local.retry_after, 1); /* never below 1 */
    assert_true(local.retry_after <= local.reset_after);
    assert_false(refusecache_refused(c, &ai_anon, "ip:192.0.2.1", L0 + 2.0, &local));
}

/*
 * The proof of exactness against the simulated Redis: 200000 requests of one key per
 * tier, with random gaps and latencies (a client that waits for each answer), and
 * another gateway taking tokens directly in between. Whenever the cache refuses, Redis
 * holds less than one token at that very instant (it would have refused too); the
 * answer holds no more tokens than Redis, and no fewer than Redis held one reply
 * latency earlier, so Retry-After is never shorter than the real wait (the token is
 * there when the client comes back) and never longer than Redis's own answer of one
 * round trip before; RateLimit-Reset is Redis's.
 */
#define PROOF_LATENCY_MAX 0.005 /* seconds each way */

static void test_refusecache_never_refuses_what_redis_allows(void **state)
{
    struct refusecache *c = *state;
    static const struct tier *const tiers[] = {&ai_auth, &ai_anon, &api_auth};
    unsigned seed = 12345;
    long local_refusals = 0, redis_refusals = 0;

    for (size_t k = 0; k < 3; k++) {
        struct sim s = {.tier = tiers[k]};
        double now = L0, rate = tiers[k]->rate;
        for (int i = 0; i < 200000 / 3; i++) {
            struct ratelimit_verdict v, redis_now, redis_before;
            /* Redis's answer now, and the one it gave one reply latency before: the
             * bucket held at least held - rate * latency since its last decision */
            now += (double)rand_r(&seed) / RAND_MAX * 0.1 / rate / 8;
            double d1 = (double)rand_r(&seed) / RAND_MAX * PROOF_LATENCY_MAX;
            double d2 = (double)rand_r(&seed) / RAND_MAX * PROOF_LATENCY_MAX;
            if (rand_r(&seed) % 4 == 0) { /* another gateway takes what it can */
                sim_charge(&s, now + OFFSET, &v);
                continue;
            }
            double held = sim_tokens_at(&s, now + OFFSET);
            sim_would(&s, now + OFFSET, &redis_now);
            ratelimit_verdict_fill(&redis_before, s.tier, false,
                                   fmax(0, held - rate * PROOF_LATENCY_MAX), now + OFFSET);
            if (!through(c, &s, "user:proof", now, d1, d2, &v)) {
                redis_refusals += !v.allowed;
                now += d1 + d2; /* the client waits for its answer */
                continue;
            }
            local_refusals++;
            assert_true(held < 1); /* Redis would have refused, now */
            assert_false(v.allowed);
            assert_int_equal(v.remaining, 0);
            assert_true(v.tokens <= held + 1e-9);
            assert_true(v.tokens >= redis_before.tokens - 1e-9);
            assert_true(v.retry_after >= 1 && v.retry_after <= v.reset_after);
            assert_true(v.retry_after >= redis_now.retry_after);
            assert_true(v.retry_after <= redis_before.retry_after);
            assert_true(v.reset_after >= redis_now.reset_after);
            assert_true(v.reset_after <= redis_before.reset_after);
            assert_int_equal(v.reset_at, redis_now.reset_at);
            /* the client that waits Retry-After finds its token */
            assert_true(sim_tokens_at(&s, now + OFFSET + (double)v.retry_after) >= 1);
        }
    }
    printf("# local refusals %ld, refusals by Redis %ld\n", local_refusals, redis_refusals);
    assert_true(local_refusals > 10 * redis_refusals); /* and it does save round trips */
}

/* ---- which entry is kept ---- */

static void refuse_with(struct refusecache *c, const struct tier *t, const char *id, double tokens,
                        double started)
{
    struct ratelimit_verdict v;
    ratelimit_verdict_fill(&v, t, false, tokens, started + OFFSET);
    refusecache_record(c, id, &v, started, started);
}

static void test_refusecache_later_deadline_wins(void **state)
{
    struct refusecache *c = *state;
    struct ratelimit_verdict v;

    refuse_with(c, &ai_auth, "user:d", 0.0, L0); /* due at L0 + 0.5 */
    refuse_with(c, &ai_auth, "user:d", 0.8, L0); /* due at L0 + 0.1: keeps the first */
    assert_true(refusecache_refused(c, &ai_auth, "user:d", L0 + 0.4, &v));
    refuse_with(c, &ai_auth, "user:d", 0.5, L0 + 0.4); /* due at L0 + 0.65: replaces */
    assert_true(refusecache_refused(c, &ai_auth, "user:d", L0 + 0.6, &v));
    assert_false(refusecache_refused(c, &ai_auth, "user:d", L0 + 0.65, &v));
}

/* A whole token where the cache knew none: someone DELeted the bucket. The entry is
 * dropped only if it was answered before this request was sent. */
static void test_refusecache_token_back_forgets(void **state)
{
    struct refusecache *c = *state;
    struct ratelimit_verdict v, full;

    refuse_with(c, &ai_auth, "user:e", 0.0, L0);
    ratelimit_verdict_fill(&full, &ai_auth, true, 4, L0 + OFFSET + 0.1);
    refusecache_record(c, "user:e", &full, L0 - 0.1, L0 + 0.1); /* sent before: stale */
    assert_true(refusecache_refused(c, &ai_auth, "user:e", L0 + 0.2, &v));
    refusecache_record(c, "user:e", &full, L0 + 0.05, L0 + 0.1); /* sent after */
    assert_false(refusecache_refused(c, &ai_auth, "user:e", L0 + 0.2, &v));
}

/* A tier so slow that the next token is 1000 s away: asked again after the horizon. */
static void test_refusecache_horizon(void **state)
{
    struct refusecache *c = *state;
    struct ratelimit_verdict v;

    refuse_with(c, &slow, "user:f", 0.0, L0);
    assert_true(refusecache_refused(c, &slow, "user:f", L0 + REFUSECACHE_HORIZON_S - 0.001, &v));
    assert_int_equal(v.retry_after, 991); /* ceil(1000 - 9.999): the real wait, not the horizon */
    assert_false(refusecache_refused(c, &slow, "user:f", L0 + REFUSECACHE_HORIZON_S, &v));
}

/* ---- keys ---- */

/* A table of one set: every key lands in it, so only the full key tells them apart. */
static void test_refusecache_key_collisions(void **state)
{
    (void)state;
    struct refusecache *c = refusecache_new(1);
    struct ratelimit_verdict v;
    struct tier ai_auth_copy = ai_auth; /* same name, another tier of another config */

    assert_non_null(c);
    refuse_with(c, &ai_auth, "user:a", 0.0, L0);
    assert_true(refusecache_refused(c, &ai_auth, "user:a", L0, &v));
    assert_false(refusecache_refused(c, &ai_auth, "user:ab", L0, &v));
    assert_false(refusecache_refused(c, &ai_auth, "user:", L0, &v));
    assert_false(refusecache_refused(c, &ai_auth, "user:A", L0, &v));
    assert_false(refusecache_refused(c, &api_auth, "user:a", L0, &v));
    assert_false(refusecache_refused(c, &ai_auth_copy, "user:a", L0, &v));
    refuse_with(c, &api_auth, "user:a", 0.0, L0);
    assert_true(refusecache_refused(c, &api_auth, "user:a", L0, &v));
    assert_ptr_equal(v.tier, &api_auth);
    assert_true(refusecache_refused(c, &ai_auth, "user:a", L0, &v));
    assert_ptr_equal(v.tier, &ai_auth);
    refusecache_free(c);
}

/* Identifiers over RATELIMIT_IDENTIFIER_MAX are never cached (nor read past). */
static void test_refusecache_long_identifier(void **state)
{
    struct refusecache *c = *state;
    struct ratelimit_verdict v;
    char id[RATELIMIT_IDENTIFIER_MAX + 2];

    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    refuse_with(c, &ai_auth, id, 0.0, L0);
    assert_false(refusecache_refused(c, &ai_auth, id, L0, &v));
    id[RATELIMIT_IDENTIFIER_MAX] = '\0'; /* exactly the maximum: cached */
    refuse_with(c, &ai_auth, id, 0.0, L0);
    assert_true(refusecache_refused(c, &ai_auth, id, L0, &v));
    assert_false(refusecache_refused(NULL, &ai_auth, id, L0, &v));
    refusecache_record(NULL, id, &v, L0, L0);
    assert_false(refusecache_refused(c, NULL, id, L0, &v));
    assert_false(refusecache_refused(c, &ai_auth, NULL, L0, &v));
}

/* A full set: an expired entry is reused first, else the one due first is dropped. */
static void test_refusecache_eviction_when_full(void **state)
{
    (void)state;
    struct refusecache *c = refusecache_new(REFUSECACHE_WAYS);
    struct ratelimit_verdict v;
    char id[32];

    assert_non_null(c);
    for (int i = 0; i < REFUSECACHE_WAYS; i++) { /* user:0 due first, user:7 last */
        snprintf(id, sizeof id, "user:%d", i);
        refuse_with(c, &ai_anon, id, 0.9 - 0.1 * i, L0);
    }
    refuse_with(c, &ai_anon, "user:new", 0.0, L0);
    assert_false(refusecache_refused(c, &ai_anon, "user:0", L0, &v));
    for (int i = 1; i < REFUSECACHE_WAYS; i++) {
        snprintf(id, sizeof id, "user:%d", i);
        assert_true(refusecache_refused(c, &ai_anon, id, L0, &v));
    }
    assert_true(refusecache_refused(c, &ai_anon, "user:new", L0, &v));
    /* user:1 (0.8 tokens) is due at L0 + 0.4: after that its entry is taken before any
     * live one, so user:2 (due first among the live) stays */
    refuse_with(c, &ai_anon, "user:later", 0.0, L0 + 0.5);
    assert_false(refusecache_refused(c, &ai_anon, "user:1", L0 + 0.5, &v));
    assert_true(refusecache_refused(c, &ai_anon, "user:2", L0 + 0.5, &v));
    assert_true(refusecache_refused(c, &ai_anon, "user:later", L0 + 0.5, &v));
    refusecache_free(c);
}

/* ---- threads ---- */

#define HAMMER_THREADS 8
#define HAMMER_KEYS 64
#define HAMMER_ROUNDS 20000

struct hammer_arg {
    struct refusecache *c;
    int index;
    long hits, wrong;
};

/* Every thread writes and reads the same keys in a table smaller than them; each
 * key's entry carries its own reset_at (= the key's number), so an answer holding
 * another key's fields or a torn entry is caught. */
static void *hammer(void *p)
{
    struct hammer_arg *a = p;
    unsigned seed = (unsigned)a->index * 7919u + 1;
    char id[32];

    for (int r = 0; r < HAMMER_ROUNDS; r++) {
        int k = (int)(rand_r(&seed) % HAMMER_KEYS);
        snprintf(id, sizeof id, "user:%d", k);
        struct ratelimit_verdict v;
        if (rand_r(&seed) % 2 == 0) {
            ratelimit_verdict_fill(&v, &ai_anon, false, 0.0, L0 + OFFSET);
            v.reset_at = k;
            refusecache_record(a->c, id, &v, L0 + r * 1e-6, L0 + r * 1e-6);
        } else if (refusecache_refused(a->c, &ai_anon, id, L0 + r * 1e-6, &v)) {
            a->hits++;
            a->wrong += v.reset_at != k || v.allowed || v.tier != &ai_anon;
        }
    }
    return NULL;
}

static void test_refusecache_threads(void **state)
{
    (void)state;
    struct refusecache *c = refusecache_new(32); /* 4 sets of 8: keys fight for entries */
    pthread_t threads[HAMMER_THREADS];
    struct hammer_arg args[HAMMER_THREADS];
    long hits = 0;

    assert_non_null(c);
    for (int i = 0; i < HAMMER_THREADS; i++) {
        args[i] = (struct hammer_arg){.c = c, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(args[i].wrong, 0);
        hits += args[i].hits;
    }
    assert_true(hits > 0);
    refusecache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refusecache_deadline_arithmetic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_admission_below_one_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_same_answer_as_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_never_refuses_what_redis_allows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_later_deadline_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_token_back_forgets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_horizon, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_key_collisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_long_identifier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_eviction_when_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusecache_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
