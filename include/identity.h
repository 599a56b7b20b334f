/*
 * identity: HS256 JWTs (SPEC 5.2, 6) with libjwt, pinned to HS256.
 *
 * libjwt 1.10.2 verifies with whatever "alg" the token names and never checks
 * "exp", so this module reads the header itself (base64url via libsodium, JSON
 * via jansson), accepts only {"alg":"HS256"} and checks exp, iss and sub.
 * Thread-safe: no shared state.
 */
#ifndef SG_IDENTITY_H
#define SG_IDENTITY_H

#include <stddef.h>
#include <time.h>

#define IDENTITY_ISSUER "story-gateway"
#define IDENTITY_TOKEN_MAX 4096 /* bytes of a bearer token; longer is invalid */
#define IDENTITY_SUB_MAX 64     /* bytes of "sub"; [A-Za-z0-9_-] only */
#define IDENTITY_SECRET_MIN 32  /* bytes of JWT_SECRET */
#define IDENTITY_CLOCK_SKEW 60  /* seconds an "iat" may lie ahead of our clock */

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
 * Issues a token for sub (borrowed) with iat = now, exp = now + ttl, iss.
 * Returns a new NUL-terminated string (free() it), or NULL on failure.
 */
char *identity_issue(const unsigned char *key, size_t key_len, const char *sub, time_t now,
                     long ttl);

#endif
