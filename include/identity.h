/*
 * identity: HS256 JWTs (SPEC 5.2, 6) with libjwt, pinned to HS256.
 *
 * libjwt 1.10.2 verifies with whatever "alg" the token names and never checks
 * "exp", so this module reads the header itself (base64url via libsodium, JSON
 * via jansson), accepts only {"alg":"HS256"} and checks exp, iss and sub.
 * Thread-safe: no shared state; an identity_cache belongs to one thread.
 */
#ifndef SG_IDENTITY_H
#define SG_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <sodium.h>

#define IDENTITY_ISSUER "story-gateway"
#define IDENTITY_TOKEN_MAX 4096 /* bytes of a bearer token; longer is invalid */
#define IDENTITY_SUB_MAX 64     /* bytes of "sub"; [A-Za-z0-9_-] only */
#define IDENTITY_SECRET_MIN 32  /* bytes of JWT_SECRET */
#define IDENTITY_CLOCK_SKEW 60  /* seconds an "iat" may lie ahead of our clock */
#define IDENTITY_CACHE_SLOTS 64 /* tokens one identity_cache remembers */
#define IDENTITY_DIGEST_LEN crypto_generichash_BYTES /* 32: BLAKE2b-256 */

enum identity_status {
    IDENTITY_NONE,    /* no Authorization header, or not the Bearer scheme */
    IDENTITY_USER,    /* a valid token: sub filled */
    IDENTITY_INVALID, /* Bearer with a token that fails any check */
};

/*
 * Checks an Authorization header value (borrowed, may be NULL). The scheme
 * "Bearer" is matched case-insensitively and followed by one or more spaces.
 * A valid token: alg HS256 in the header, signature by key, "exp" a number later
 * than now, "iat" a number not later than now + IDENTITY_CLOCK_SKEW, "iss" equal to
 * IDENTITY_ISSUER, "sub" a string of 1..IDENTITY_SUB_MAX
 * bytes of [A-Za-z0-9_-]. On IDENTITY_USER, sub holds it NUL-terminated; sub is
 * untouched otherwise.
 */
enum identity_status identity_check(const char *authorization, const unsigned char *key,
                                    size_t key_len, time_t now, char sub[IDENTITY_SUB_MAX + 1]);

/*
 * Tokens already verified, so that a client sending the same token again costs one
 * keyed BLAKE2b hash instead of the header parse, the HMAC and libjwt's JSON work (over
 * half of a request's instructions when measured). Per thread, no lock: each request
 * thread owns one (struct gateway_worker). A slot holds the keyed digest of a token that
 * passed every check of identity_check, its sub and its exp; never the token itself.
 * The hash key is random per cache, digests are compared in constant time, and exp is
 * checked against the clock on every hit, so a hit answers exactly what identity_check
 * would: the token's signature and claims cannot change, only the time.
 */
struct identity_cache_slot {
    unsigned char digest[IDENTITY_DIGEST_LEN];
    long long exp; /* the token's exp; 0: the slot is empty */
    char sub[IDENTITY_SUB_MAX + 1];
};

struct identity_cache {
    unsigned char hash_key[crypto_generichash_KEYBYTES];
    struct identity_cache_slot slots[IDENTITY_CACHE_SLOTS];
    unsigned long hits; /* answers given from the cache, for tests */
};

/* Empties c and draws its hash key. Needs sodium_init() done (main does it). */
void identity_cache_init(struct identity_cache *c);

/* Wipes c (digests and subs). */
void identity_cache_clear(struct identity_cache *c);

/*
 * identity_check through c (not NULL): the same answer, from the cache when this
 * token was verified before by this cache and its exp is still later than now.
 */
enum identity_status identity_check_cached(struct identity_cache *c, const char *authorization,
                                           const unsigned char *key, size_t key_len, time_t now,
                                           char sub[IDENTITY_SUB_MAX + 1]);

/*
 * Issues a token for sub (borrowed) with iat = now, exp = now + ttl, iss.
 * Returns a new NUL-terminated string (free() it), or NULL on failure.
 */
char *identity_issue(const unsigned char *key, size_t key_len, const char *sub, time_t now,
                     long ttl);

#endif
