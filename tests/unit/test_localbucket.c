/*
 * Unit tests of fcgi/localbucket.c: the in-process buckets of fail mode local
 * (SPEC 5.6): same answers as the Redis script, a bounded table, many threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "localbucket.h"
#include "unit_tier.h"

#define NOW0 1699900000.0

static struct tier ai_auth, ai_anon, api_anon;

static int setup(void **state)
{
    (void)state;
    ai_auth = unit_tier("ai_authenticated", 5, 2);
    ai_anon = unit_tier("ai_anonymous", 2, 0.5);
    api_anon = unit_tier("api_anonymous", 10, 5);
    localbucket_reset();
    return 0;
}

/* Charges n times at now; returns how many were allowed. */
static int charge_n(const struct tier *t, const char *id, double now, int n)
{
    struct ratelimit_verdict v;
    int allowed = 0;

    for (int i = 0; i < n; i++) {
        localbucket_charge(t, id, now, &v);
        allowed += v.allowed;
    }
    return allowed;
}

/* SPEC 5.3 seed timeline: five at once pass, the sixth waits 1 s, 0.5 s later one passes. */
static void test_localbucket_burst_then_refusal(void **state)
{
    struct ratelimit_verdict v;

    (void)state;
    for (long left = 4; left >= 0; left--) {
        localbucket_charge(&ai_auth, "user:abc123", NOW0, &v);
        assert_true(v.allowed);
        assert_ptr_equal(v.tier, &ai_auth);
        assert_int_equal(v.remaining, left);
    }
    localbucket_charge(&ai_auth, "user:abc123", NOW0, &v);
    assert_false(v.allowed);
    assert_int_equal(v.remaining, 0);
    assert_int_equal(v.retry_after, 1);
    assert_int_equal(v.reset_after, 3);
    assert_int_equal(v.reset_at, (long)NOW0 + 3);

    localbucket_charge(&ai_auth, "user:abc123", NOW0 + 0.5, &v);
    assert_true(v.allowed);
    localbucket_charge(&ai_auth, "user:abc123", NOW0 + 0.5, &v);
    assert_false(v.allowed);

    /* ai_anonymous: 2 burst, then 2 s for the next token. */
    assert_int_equal(charge_n(&ai_anon, "ip:192.0.2.7", NOW0, 2), 2);
    localbucket_charge(&ai_anon, "ip:192.0.2.7", NOW0, &v);
    assert_false(v.allowed);
    assert_int_equal(v.retry_after, 2);
    assert_int_equal(v.reset_after, 4);
}

static void test_localbucket_refill_over_time(void **state)
{
    struct ratelimit_verdict v;

    (void)state;
    assert_int_equal(charge_n(&ai_auth, "user:r", NOW0, 10), 5);
    /* 1 s at 2 per second: two tokens back. */
    assert_int_equal(charge_n(&ai_auth, "user:r", NOW0 + 1, 10), 2);
    /* 0.25 s: half a token, refused, and the half is kept. */
    localbucket_charge(&ai_auth, "user:r", NOW0 + 1.25, &v);
    assert_false(v.allowed);
    assert_true(fabs(v.tokens - 0.5) < 1e-9);
    assert_int_equal(v.retry_after, 1);
    localbucket_charge(&ai_auth, "user:r", NOW0 + 1.5, &v);
    assert_true(v.allowed);
    /* Long idle: full again, never more than the capacity. */
    assert_int_equal(charge_n(&ai_auth, "user:r", NOW0 + 1000, 10), 5);
    /* A clock that steps back refills nothing and breaks nothing. */
    localbucket_charge(&ai_auth, "user:r", NOW0, &v);
    assert_false(v.allowed);
    localbucket_charge(&ai_auth, "user:r", NOW0 + 1000.5, &v);
    assert_true(v.allowed);
}

static void test_localbucket_separate_buckets(void **state)
{
    (void)state;
    assert_int_equal(charge_n(&ai_auth, "user:a", NOW0, 10), 5);
    assert_int_equal(charge_n(&ai_auth, "user:b", NOW0, 10), 5);
    assert_int_equal(charge_n(&ai_anon, "user:a", NOW0, 10), 2);
    assert_int_equal(charge_n(&api_anon, "user:a", NOW0, 20), 10);
    /* A prefix of an identifier is another bucket. */
    assert_int_equal(charge_n(&ai_auth, "user:", NOW0, 10), 5);
    assert_int_equal(charge_n(&ai_auth, "user:aa", NOW0, 10), 5);
    assert_int_equal(charge_n(&ai_auth, "user:a", NOW0, 1), 0);
}

static void test_localbucket_reset(void **state)
{
    (void)state;
    assert_int_equal(charge_n(&ai_auth, "user:z", NOW0, 10), 5);
    localbucket_reset();
    assert_int_equal(charge_n(&ai_auth, "user:z", NOW0, 10), 5);
}

/* Identifiers are cut at RATELIMIT_IDENTIFIER_MAX bytes, never read past. */
static void test_localbucket_long_identifier(void **state)
{
    char a[RATELIMIT_IDENTIFIER_MAX + 40], b[RATELIMIT_IDENTIFIER_MAX + 40];
    struct ratelimit_verdict v;

    (void)state;
    memset(a, 'x', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[RATELIMIT_IDENTIFIER_MAX + 5] = 'y';
    assert_int_equal(charge_n(&ai_auth, a, NOW0, 10), 5);
    assert_int_equal(charge_n(&ai_auth, b, NOW0, 10), 0); /* same first 128 bytes */
    a[RATELIMIT_IDENTIFIER_MAX - 1] = 'q';
    assert_int_equal(charge_n(&ai_auth, a, NOW0, 10), 5);
    a[RATELIMIT_IDENTIFIER_MAX] = '\0';
    assert_int_equal(charge_n(&ai_auth, a, NOW0, 1), 0);
    localbucket_charge(&ai_auth, "", NOW0, &v);
    assert_true(v.allowed);
    localbucket_charge(NULL, "user:n", NOW0, &v); /* no tier: nothing to charge */
    assert_true(v.allowed);
    localbucket_charge(&ai_auth, NULL, NOW0, &v);
    assert_true(v.allowed);
    localbucket_charge(&ai_auth, "user:n", NOW0, NULL);
    localbucket_charge(&ai_auth, "user:nan", NAN, &v);
    assert_true(v.allowed);
}

/*
 * A full table forgets the least recently used bucket of a window. A bucket used
 * after every insert is never the oldest of its window, so it is never forgotten
 * however many strangers arrive; one left alone is forgotten (and so answers
 * full again, which only admits more).
 */
static void test_localbucket_table_full_eviction(void **state)
{
    char id[64];
    struct ratelimit_verdict v;
    const int strangers = 8 * LOCALBUCKET_SLOTS;

    (void)state;
    assert_int_equal(charge_n(&ai_auth, "user:busy", NOW0, 10), 5);
    assert_int_equal(charge_n(&ai_auth, "user:idle", NOW0, 10), 5);
    for (int i = 0; i < strangers; i++) {
        snprintf(id, sizeof id, "ip:10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        /* Same instant, so no stranger's bucket is full again and free. */
        localbucket_charge(&ai_auth, id, NOW0, &v);
        if (!v.allowed || v.remaining != 4)
            fail_msg("stranger %d: a new bucket must be full", i);
        localbucket_charge(&ai_auth, "user:busy", NOW0, &v);
        if (v.allowed)
            fail_msg("busy bucket forgotten after %d strangers", i);
    }
    /* 8 windows' worth of inserts per slot: the idle bucket is gone (the chance it
     * survives is far below 1e-12). */
    localbucket_charge(&ai_auth, "user:idle", NOW0, &v);
    assert_true(v.allowed);
}

/*
 * A bucket that is full again frees its slot: it is taken before any eviction.
 * The strangers refill in a microsecond, so each is free by the next insert; the
 * drained bucket is the oldest in its window all along, and LRU alone would
 * forget it within a few inserts.
 */
static void test_localbucket_full_bucket_frees_slot(void **state)
{
    struct tier quick;
    struct ratelimit_verdict v;
    char id[64];
    const int strangers = 8 * LOCALBUCKET_SLOTS;

    (void)state;
    quick = unit_tier("quick", 1, 1e6);
    assert_int_equal(charge_n(&ai_auth, "user:keep", NOW0, 10), 5);
    for (int i = 0; i < strangers; i++) {
        snprintf(id, sizeof id, "ip:q%d", i);
        if (charge_n(&quick, id, NOW0 + 1e-5 * (i + 1), 1) != 1)
            fail_msg("stranger %d refused", i);
    }
    /* 1.4 s after draining: 2.8 tokens, so 1 left after this one (4 if forgotten). */
    localbucket_charge(&ai_auth, "user:keep", NOW0 + 1.4, &v);
    assert_true(v.allowed);
    assert_int_equal(v.remaining, 1);
}

#define HAMMER_THREADS 4
#define HAMMER_CHARGES 10000
#define HAMMER_CAPACITY 1000
#define HAMMER_PRIVATE 50

static struct tier hammer_tier;

struct hammer_arg {
    int index;
    int shared_allowed;
    int private_allowed;
};

static void *hammer(void *p)
{
    struct hammer_arg *arg = p;
    struct ratelimit_verdict v;
    char id[64];

    for (int i = 0; i < HAMMER_CHARGES; i++) {
        localbucket_charge(&hammer_tier, "user:shared", NOW0, &v);
        arg->shared_allowed += v.allowed;
        snprintf(id, sizeof id, "user:t%d-%d", arg->index, i % HAMMER_PRIVATE);
        localbucket_charge(&hammer_tier, id, NOW0, &v);
        arg->private_allowed += v.allowed;
    }
    return NULL;
}

/* 4 threads x 10000 charges of one bucket at one instant: exactly the capacity
 * passes, never one more (run under -fsanitize=thread to check the locking). */
static void test_localbucket_threads_hammer(void **state)
{
    pthread_t threads[HAMMER_THREADS];
    struct hammer_arg args[HAMMER_THREADS];
    int shared = 0;

    (void)state;
    hammer_tier = unit_tier("api_authenticated", HAMMER_CAPACITY, 10);
    for (int i = 0; i < HAMMER_THREADS; i++) {
        args[i] = (struct hammer_arg){.index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < HAMMER_THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        shared += args[i].shared_allowed;
        /* each private bucket: 200 charges for a capacity of 1000 */
        assert_int_equal(args[i].private_allowed, HAMMER_CHARGES);
    }
    assert_int_equal(shared, HAMMER_CAPACITY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_localbucket_burst_then_refusal, setup),
        cmocka_unit_test_setup(test_localbucket_refill_over_time, setup),
        cmocka_unit_test_setup(test_localbucket_separate_buckets, setup),
        cmocka_unit_test_setup(test_localbucket_reset, setup),
        cmocka_unit_test_setup(test_localbucket_long_identifier, setup),
        cmocka_unit_test_setup(test_localbucket_table_full_eviction, setup),
        cmocka_unit_test_setup(test_localbucket_full_bucket_frees_slot, setup),
        cmocka_unit_test_setup(test_localbucket_threads_hammer, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
