/*
 * refusecache: refusals a gateway process answers without asking Redis. See
 * include/refusecache.h for the contract and why it never refuses a request that
 * Redis would have allowed.
 *
 * Layout: 2^k sets of REFUSECACHE_WAYS entries, each set with its own mutex. A key
 * (tier, identifier) lives in the set its keyed hash names; the hash is SipHash with a
 * random key per cache, so clients cannot choose identifiers that crowd one set to
 * push out someone else's entry. The hash only picks the set and skips most compares:
 * a match is the same tier and the same identifier, byte for byte. An entry whose
 * deadline has passed is as good as absent; when a set is full of live entries, the
 * one whose deadline comes first is dropped (it had the least to save). Losing an
 * entry only costs a round trip to Redis, never a wrong answer.
 */
#include "refusecache.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

/* tier name, a NUL, then the identifier: what the hash reads */
#define HASH_INPUT_MAX (TIERS_TIER_NAME_MAX + 1 + RATELIMIT_IDENTIFIER_MAX)

_Static_assert((REFUSECACHE_WAYS & (REFUSECACHE_WAYS - 1)) == 0, "ways: a power of two");

struct refusecache_entry {
    const struct tier *tier; /* borrowed from the config; NULL: a free entry */
    uint64_t hash;           /* of the key, to skip most compares */
    double answered;         /* monotonic: Redis's reply had come by then */
    double tokens;           /* what Redis left in the bucket, < 1 */
    double deadline;         /* monotonic: refused locally while now < deadline */
    long reset_at;           /* Redis's RateLimit-Reset: the bucket is full again */
    size_t id_len;
    char identifier[RATELIMIT_IDENTIFIER_MAX + 1];
};

/* lock guards ways: every read and write of an entry happens with it held. */
struct refusecache_set {
    pthread_mutex_t lock;
    struct refusecache_entry ways[REFUSECACHE_WAYS];
};

struct refusecache {
    size_t mask;                                       /* sets - 1 */
    unsigned char hash_key[crypto_shorthash_KEYBYTES]; /* written once in _new */
    struct refusecache_set *sets;
};

/* CLOCK_BOOTTIME: monotonic, and unlike CLOCK_MONOTONIC it goes on while the host is
 * suspended, as Redis's clock does: a suspended host must not find its deadlines later. */
double refusecache_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct refusecache *refusecache_new(size_t entries)
{
    size_t sets = 1;
    while (sets * REFUSECACHE_WAYS < entries && sets < ((size_t)1 << 24))
        sets <<= 1;
    struct refusecache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->sets = calloc(sets, sizeof *c->sets);
    if (c->sets == NULL)
        goto fail;
    c->mask = sets - 1;
    /* sodium_init is idempotent and thread-safe; randombytes_buf works either way. */
    if (sodium_init() < 0)
        goto fail;
    randombytes_buf(c->hash_key, sizeof c->hash_key);
    for (size_t i = 0; i < sets; i++)
        pthread_mutex_init(&c->sets[i].lock, NULL);
    return c;
fail:
    free(c->sets);
    free(c);
    return NULL;
}

void refusecache_free(struct refusecache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i <= c->mask; i++)
        pthread_mutex_destroy(&c->sets[i].lock);
    free(c->sets);
    free(c);
}

/* The key's hash, or false when the key cannot be cached (too long, no tier). */
static bool refusecache_hash(const struct refusecache *c, const struct tier *tier,
                             const char *identifier, size_t *id_len, uint64_t *hash)
{
    unsigned char in[HASH_INPUT_MAX];
    unsigned char out[crypto_shorthash_BYTES];

    if (tier == NULL || identifier == NULL)
        return false;
    size_t name_len = strnlen(tier->name, sizeof tier->name);
    size_t n = strnlen(identifier, RATELIMIT_IDENTIFIER_MAX + 1);
    if (name_len > TIERS_TIER_NAME_MAX || n > RATELIMIT_IDENTIFIER_MAX)
        return false;
    memcpy(in, tier->name, name_len);
    in[name_len] = '\0';
    memcpy(in + name_len + 1, identifier, n);
    crypto_shorthash(out, in, name_len + 1 + n, c->hash_key);
    memcpy(hash, out, sizeof *hash);
    *id_len = n;
    return true;
}

/* The entry of the key in set s, or NULL. Lock held. */
static struct refusecache_entry *refusecache_find(struct refusecache_set *s,
                                                  const struct tier *tier, uint64_t hash,
                                                  const char *identifier, size_t id_len)
{
    for (size_t i = 0; i < REFUSECACHE_WAYS; i++) {
        struct refusecache_entry *e = &s->ways[i];
        if (e->tier == tier && e->hash == hash && e->id_len == id_len &&
            memcmp(e->identifier, identifier, id_len) == 0)
            return e;
    }
    return NULL;
}

/* Where a new key goes in set s at now: a free or expired entry, else the one whose
 * deadline comes first. Lock held. */
static struct refusecache_entry *refusecache_victim(struct refusecache_set *s, double now)
{
    struct refusecache_entry *soonest = &s->ways[0];

    for (size_t i = 0; i < REFUSECACHE_WAYS; i++) {
        struct refusecache_entry *e = &s->ways[i];
        if (e->tier == NULL || !(now < e->deadline))
            return e;
        if (e->deadline < soonest->deadline)
            soonest = e;
    }
    return soonest;
}

/*
 * The local deadline of a verdict that left tokens < 1: Redis's next token comes
 * (1 - tokens) / rate after the script ran, and the script ran after started, so
 * started + that wait is never later. The wait is shortened by REFUSECACHE_RATE_SLACK
 * (clocks of two hosts may tick at rates a few hundred ppm apart) and capped at
 * REFUSECACHE_HORIZON_S. Returns started when nothing may be refused.
 */
static double refusecache_deadline(const struct tier *tier, double tokens, double started)
{
    if (!(tier->rate > 0) || !isfinite(tier->rate) || !(tokens < 1) || !isfinite(started))
        return started;
    double wait = (1 - (tokens > 0 ? tokens : 0)) / tier->rate * (1 - REFUSECACHE_RATE_SLACK);
    return started + (wait < REFUSECACHE_HORIZON_S ? wait : REFUSECACHE_HORIZON_S);
}

void refusecache_record(struct refusecache *c, const char *identifier,
                        const struct ratelimit_verdict *v, double started, double answered)
{
    size_t id_len;
    uint64_t hash;

    if (c == NULL || v == NULL || !refusecache_hash(c, v->tier, identifier, &id_len, &hash))
        return;
    double deadline = refusecache_deadline(v->tier, v->tokens, started);
    struct refusecache_set *s = &c->sets[hash & c->mask];

    pthread_mutex_lock(&s->lock);
    struct refusecache_entry *e = refusecache_find(s, v->tier, hash, identifier, id_len);
    if (!(deadline > started)) {
        /* A whole token or more: if the entry known was answered before this request
         * was even sent, tokens came back behind our back (a DEL): forget it. An entry
         * answered later is newer news than this verdict: keep it. */
        if (e != NULL && e->answered <= started)
            e->tier = NULL;
        goto out;
    }
    if (e != NULL && e->deadline >= deadline)
        goto out; /* both are right; the later deadline refuses more */
    if (e == NULL) {
        e = refusecache_victim(s, answered);
        e->tier = v->tier;
        e->hash = hash;
        e->id_len = id_len;
        memcpy(e->identifier, identifier, id_len);
        e->identifier[id_len] = '\0';
    }
    e->answered = answered;
    e->tokens = v->tokens > 0 ? v->tokens : 0;
    e->deadline = deadline;
    e->reset_at = v->reset_at;
out:
    pthread_mutex_unlock(&s->lock);
}

bool refusecache_refused(struct refusecache *c, const struct tier *tier, const char *identifier,
                         double now, struct ratelimit_verdict *v)
{
    size_t id_len;
    uint64_t hash;
    double answered = 0, tokens = 0;
    long reset_at = 0;
    bool hit = false;

    if (c == NULL || v == NULL || !refusecache_hash(c, tier, identifier, &id_len, &hash))
        return false;
    struct refusecache_set *s = &c->sets[hash & c->mask];

    pthread_mutex_lock(&s->lock);
    struct refusecache_entry *e = refusecache_find(s, tier, hash, identifier, id_len);
    if (e != NULL && now < e->deadline) {
        hit = true;
        answered = e->answered;
        tokens = e->tokens;
        reset_at = e->reset_at;
    } else if (e != NULL) {
        e->tier = NULL; /* its token is due: Redis decides from now on */
    }
    pthread_mutex_unlock(&s->lock);
    if (!hit)
        return false;

    /* The smaller bound of the tokens now (see the header): Redis may have run the
     * script as late as answered. Below the deadline it is below 1; checked anyway, so
     * that rounding can never turn a local answer into a refusal with a token left. */
    double est = tokens + tier->rate * (now > answered ? now - answered : 0);
    if (!(est < 1))
        return false;
    /*
     * ratelimit_verdict_fill computes every field from est but RateLimit-Reset, which
     * needs Redis's clock: the instant the bucket is full again does not move while
     * it holds less than one token (nobody can take one), so Redis's own value stands.
     * The now given to fill (0) only feeds that field, replaced right after.
     */
    ratelimit_verdict_fill(v, tier, false, est, 0);
    v->reset_at = reset_at;
    return true;
}
