/*
 * mint: valid gateway tokens for the benchmark's users, with libjwt as the gateway's
 * identity_issue makes them (HS256 with JWT_SECRET; sub, iss "story-gateway", iat now,
 * exp now + BENCH_TOKEN_TTL, default 3600 s).
 *
 *   JWT_SECRET=... mint PREFIX COUNT
 *
 * prints COUNT lines "<sub> <token>"; the i-th sub (from 0) is PREFIX (1 to 8 hex digits)
 * followed by i in hex, 32 hex digits in all, the shape of the gateway's user ids.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jwt.h>

#define MINT_SUB_LEN 32
#define MINT_COUNT_MAX 1000000L

static long mint_number(const char *s, long min, long max)
{
    char *end = NULL;

    errno = 0;
    long n = s != NULL ? strtol(s, &end, 10) : -1;
    if (s == NULL || errno != 0 || end == s || *end != '\0' || n < min || n > max)
        return -1;
    return n;
}

/* One token for sub, or NULL. New string: free() it. */
static char *mint_token(const char *secret, const char *sub, long now, long ttl)
{
    jwt_t *jwt = NULL;
    char *token = NULL;

    if (jwt_new(&jwt) != 0)
        return NULL;
    if (jwt_add_grant(jwt, "sub", sub) == 0 && jwt_add_grant(jwt, "iss", "story-gateway") == 0 &&
        jwt_add_grant_int(jwt, "iat", now) == 0 && jwt_add_grant_int(jwt, "exp", now + ttl) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret)) == 0)
        token = jwt_encode_str(jwt);
    jwt_free(jwt);
    return token;
}

int main(int argc, char **argv)
{
    const char *secret = getenv("JWT_SECRET");
    const char *ttl_text = getenv("BENCH_TOKEN_TTL");
    long count = argc == 3 ? mint_number(argv[2], 1, MINT_COUNT_MAX) : -1;
    long ttl = ttl_text != NULL ? mint_number(ttl_text, 60, 86400) : 3600;
    size_t prefix_len = argc == 3 ? strlen(argv[1]) : 0;
    char sub[MINT_SUB_LEN + 1];

    if (count < 0 || prefix_len < 1 || prefix_len > 8 ||
        strspn(argv[1], "0123456789abcdef") != prefix_len || ttl < 0) {
        fprintf(stderr, "usage: JWT_SECRET=... mint PREFIX(1-8 hex) COUNT [BENCH_TOKEN_TTL]\n");
        return 2;
    }
    if (secret == NULL || strlen(secret) < 32) {
        fprintf(stderr, "mint: JWT_SECRET must have at least 32 bytes\n");
        return 2;
    }
    long now = (long)time(NULL);
    for (long i = 0; i < count; i++) {
        snprintf(sub, sizeof sub, "%s%0*lx", argv[1], (int)(MINT_SUB_LEN - prefix_len), i);
        char *token = mint_token(secret, sub, now, ttl);
        if (token == NULL) {
            fprintf(stderr, "mint: libjwt failed\n");
            return 1;
        }
        printf("%s %s\n", sub, token);
        free(token);
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
