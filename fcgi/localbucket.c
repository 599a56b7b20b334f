/*
 * localbucket: the in-process token buckets of RATE_LIMIT_FAIL_MODE=local (SPEC
 * 5.6), used while Redis is unreachable. Same arithmetic as lua/token_bucket.lua.
 * See include/localbucket.h for the contract.
 *
 * The table is open-addressed: a bucket lives in one of PROBE_WINDOW slots after
 * the slot its keyed hash names. A bucket that would be full again by now is as
 * good as absent (a missing bucket is a full one), so its slot is free; when the
 * whole window is taken, the least recently used bucket in it is forgotten. The
 * hash is SipHash with a random key, so clients cannot pick identifiers that
 * crowd one window to push someone else's bucket out.
 */
#include "localbucket.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#define PROBE_WINDOW 8
/* tier name, a NUL, then the identifier: what the hash reads */
#define HASH_INPUT_MAX (TIERS_TIER_NAME_MAX + 1 + RATELIMIT_IDENTIFIER_MAX)

_Static_assert((LOCALBUCKET_SLOTS & (LOCALBUCKET_SLOTS - 1)) == 0,
               "LOCALBUCKET_SLOTS must be a power of two");
_Static_assert(PROBE_WINDOW <= LOCALBUCKET_SLOTS, "probe window larger than the table");

struct localbucket_entry {
    const struct tier *tier; /* borrowed, only compared, never read; NULL: empty slot */
    double tokens;           /* after the last charge */
    double last_update;      /* clock of the last refill, as in the script */
    double full_at;          /* when the bucket is full again: the slot is free from then */
    uint64_t last_used;      /* use_clock at the last charge, for LRU eviction */
    char identifier[RATELIMIT_IDENTIFIER_MAX + 1];
};

/*
 * localbucket_lock guards table and use_clock: every read and write of either
 * happens with it held, and nothing under it blocks or does I/O.
 */
static pthread_mutex_t localbucket_lock = PTHREAD_MUTEX_INITIALIZER;
static struct localbucket_entry table[LOCALBUCKET_SLOTS];
static uint64_t use_clock;

/* Written once under hash_key_once, read-only afterwards. */
static pthread_once_t hash_key_once = PTHREAD_ONCE_INIT;
static unsigned char hash_key[crypto_shorthash_KEYBYTES];

static void hash_key_init(void)
{
    /* sodium_init is idempotent and thread-safe; randombytes_buf works either way. */
    int ready = sodium_init();
    (void)ready;
    randombytes_buf(hash_key, sizeof hash_key);
}

static size_t bucket_home(const char *tier_name, const char *identifier, size_t id_len)
{
    unsigned char in[HASH_INPUT_MAX];
    unsigned char out[crypto_shorthash_BYTES];
    size_t name_len = strnlen(tier_name, TIERS_TIER_NAME_MAX);

    memcpy(in, tier_name, name_len);
    in[name_len] = '\0';
    memcpy(in + name_len + 1, identifier, id_len);
    pthread_once(&hash_key_once, hash_key_init);
    crypto_shorthash(out, in, name_len + 1 + id_len, hash_key);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return (size_t)(h & (LOCALBUCKET_SLOTS - 1));
}

/*
 * The slot for (tier, identifier) in the window at home: its own bucket if it is
 * there, else a free slot, else the least recently used one. Lock held.
 */
static struct localbucket_entry *bucket_slot(size_t home, const struct tier *tier,
                                             const char *identifier, size_t id_len, double now,
                                             bool *found)
{
    struct localbucket_entry *free_slot = NULL, *oldest = NULL;

    for (size_t i = 0; i < PROBE_WINDOW; i++) {
        struct localbucket_entry *e = &table[(home + i) & (LOCALBUCKET_SLOTS - 1)];
        if (e->tier == tier && memcmp(e->identifier, identifier, id_len) == 0 &&
            e->identifier[id_len] == '\0') {
            *found = true;
            return e;
        }
        if (free_slot == NULL && (e->tier == NULL || now >= e->full_at))
            free_slot = e;
        if (oldest == NULL || e->last_used < oldest->last_used)
            oldest = e;
    }
    *found = false;
    return free_slot != NULL ? free_slot : oldest;
}

void localbucket_charge(const struct tier *tier, const char *identifier, double now,
                        struct ratelimit_verdict *v)
{
    if (v == NULL)
        return;
    if (tier == NULL || identifier == NULL) {
        ratelimit_verdict_fill(v, tier, true, 0, now); /* nothing to charge: let it pass */
        return;
    }
    if (!isfinite(now))
        now = 0;
    /* The contract bounds identifiers; a longer one is cut, never read past. */
    size_t id_len = strnlen(identifier, RATELIMIT_IDENTIFIER_MAX);
    double capacity = (double)tier->capacity;
    size_t home = bucket_home(tier->name, identifier, id_len);
    bool found, allowed;
    double tokens;

    pthread_mutex_lock(&localbucket_lock);
    struct localbucket_entry *e = bucket_slot(home, tier, identifier, id_len, now, &found);
    if (!found) {
        /* A bucket never seen (or forgotten) is full, like a missing Redis key. */
        e->tier = tier;
        memcpy(e->identifier, identifier, id_len);
        e->identifier[id_len] = '\0';
        e->tokens = capacity;
        e->last_update = now;
    }
    if (now > e->last_update) {
        e->tokens = fmin(capacity, e->tokens + (now - e->last_update) * tier->rate);
        e->last_update = now;
    }
    allowed = e->tokens >= 1;
    if (allowed)
        e->tokens -= 1;
    e->full_at = tier->rate > 0 ? e->last_update + (capacity - e->tokens) / tier->rate : INFINITY;
    e->last_used = ++use_clock;
    tokens = e->tokens;
    pthread_mutex_unlock(&localbucket_lock);

    ratelimit_verdict_fill(v, tier, allowed, tokens, now);
}

void localbucket_reset(void)
{
    pthread_mutex_lock(&localbucket_lock);
    memset(table, 0, sizeof table);
    use_clock = 0;
    pthread_mutex_unlock(&localbucket_lock);
}
