/*
 * identity: checks and issues the gateway's HS256 bearer tokens (SPEC 5.2, 6).
 *
 * libjwt 1.10.2 verifies a token with whatever "alg" the token itself names (an HS512
 * token signed with our secret passes when HS256 was meant, "none" passes with no key)
 * and checks no claim at all. So before libjwt sees a token, this module checks its
 * shape (three non-empty base64url parts) and reads the header itself (libsodium
 * base64url, jansson), accepting only {"alg":"HS256"}; after libjwt verified the
 * signature it pins the algorithm again and checks exp, iss and sub.
 *
 * libjwt 1.10.2 facts this relies on (checked against the installed library):
 * - jwt_get_grant_int() sets errno to 0, returns -1 with ENOENT for a missing grant,
 *   but returns 0 with errno 0 for a grant that is not an integer (string, real,
 *   null): the type is checked separately through jwt_get_grants_json().
 * - jwt_get_grant() returns NULL for a missing or non-string grant.
 * - the signature is checked by jwt_verify_sha_hmac(): OpenSSL's HMAC, then the
 *   library's own jwt_strcmp(), which XORs every byte of both base64url signatures up
 *   to the longer one and returns no earlier: the comparison takes the same time
 *   wherever a forged signature differs (read from the library's code with objdump).
 *   The secret itself is only ever handed to HMAC.
 * - jwt_encode_str() and jwt_get_grants_json() return malloc'd memory (the library has
 *   no allocator hooks and no jwt_free_str in this version): free() releases it.
 *
 * Thread-safe: no shared state; an identity_cache belongs to one thread.
 */
#include "identity.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <jwt.h>
#include <sodium.h>

/* jwt_decode() and jwt_set_alg() take the key length as an int. */
#define IDENTITY_KEY_LEN_MAX ((size_t)INT_MAX)
/* Bytes of an Authorization value read: the token plus room for trailing blanks. */
#define IDENTITY_VALUE_MAX (IDENTITY_TOKEN_MAX + 256)
/* Decoded bytes of a JWT header ({"alg":"HS256","typ":"JWT"} is 27). */
#define IDENTITY_HEADER_JSON_MAX 512
/* Characters of an integer claim as JSON text ("-9223372036854775808"). */
#define IDENTITY_INT_TEXT_MAX 20

static const char identity_scheme[] = "Bearer";

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* [A-Za-z0-9_-]: the base64url alphabet, and the characters allowed in "sub". */
static bool is_b64url(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* A key libjwt can take (an int length) and long enough for HS256 (SPEC 3). */
static bool key_ok(const unsigned char *key, size_t key_len)
{
    return key != NULL && key_len >= IDENTITY_SECRET_MIN && key_len <= IDENTITY_KEY_LEN_MAX;
}

/* True for 1..IDENTITY_SUB_MAX bytes of [A-Za-z0-9_-], NUL-terminated. */
static bool sub_valid(const char *sub)
{
    size_t len;

    if (sub == NULL)
        return false;
    len = strnlen(sub, IDENTITY_SUB_MAX + 1);
    if (len == 0 || len > IDENTITY_SUB_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_b64url(sub[i]))
            return false;
    }
    return true;
}

/*
 * Finds the token in an Authorization value. Returns IDENTITY_USER with *token and
 * *len set when the scheme is Bearer and a token of 1..IDENTITY_TOKEN_MAX bytes
 * follows (trailing blanks dropped); IDENTITY_NONE for no header or another scheme;
 * IDENTITY_INVALID for Bearer with an empty or over-long token.
 */
static enum identity_status bearer_token(const char *value, const char **token, size_t *len)
{
    const size_t scheme_len = sizeof(identity_scheme) - 1;
    size_t n;

    if (value == NULL)
        return IDENTITY_NONE;
    while (is_blank(*value))
        value++;
    if (strncasecmp(value, identity_scheme, scheme_len) != 0)
        return IDENTITY_NONE;
    value += scheme_len;
    if (*value == '\0')
        return IDENTITY_INVALID; /* "Bearer" and nothing else */
    if (*value != ' ')
        return IDENTITY_NONE; /* "Bearerfoo ...": another scheme */
    while (*value == ' ')
        value++;
    n = strnlen(value, IDENTITY_VALUE_MAX);
    if (n == IDENTITY_VALUE_MAX)
        return IDENTITY_INVALID;
    while (n > 0 && is_blank(value[n - 1]))
        n--;
    if (n == 0 || n > IDENTITY_TOKEN_MAX)
        return IDENTITY_INVALID;
    *token = value;
    *len = n;
    return IDENTITY_USER;
}

/* Exactly three non-empty dot-separated parts of base64url characters (no '='). */
static bool token_shape_ok(const char *token, size_t len, size_t *header_len)
{
    size_t dots = 0, part = 0;

    for (size_t i = 0; i < len; i++) {
        if (token[i] == '.') {
            if (part == 0 || ++dots > 2)
                return false;
            if (dots == 1)
                *header_len = i;
            part = 0;
        } else if (is_b64url(token[i])) {
            part++;
        } else {
            return false;
        }
    }
    return dots == 2 && part > 0;
}

/* True when a JSON member is absent or exactly the string want. */
static bool member_is(json_t *obj, const char *key, const char *want, bool required)
{
    json_t *v = json_object_get(obj, key);
    size_t want_len = strlen(want);

    if (v == NULL)
        return !required;
    return json_is_string(v) && json_string_length(v) == want_len &&
           memcmp(json_string_value(v), want, want_len) == 0;
}

/* The pin: the header decodes to a JSON object with "alg":"HS256" (and "typ":"JWT"). */
static bool header_ok(const char *b64, size_t len)
{
    unsigned char buf[IDENTITY_HEADER_JSON_MAX];
    size_t buf_len = 0;
    json_t *header = NULL;
    bool ok = false;

    if (sodium_base642bin(buf, sizeof(buf), b64, len, NULL, &buf_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        goto out;
    header = json_loadb((const char *)buf, buf_len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(header))
        goto out;
    /* "crit" names extensions a recipient must understand (RFC 7515 4.1.11): none here. */
    ok = member_is(header, "alg", "HS256", true) && member_is(header, "typ", "JWT", false) &&
         json_object_get(header, "crit") == NULL;
out:
    json_decref(header);
    return ok;
}

/* True when the grant is a JSON integer: jwt_get_grant_int() cannot tell. */
static bool grant_is_integer(jwt_t *jwt, const char *grant)
{
    char *text = jwt_get_grants_json(jwt, grant);
    size_t i = 0, len;
    bool ok = false;

    if (text == NULL)
        return false;
    len = strnlen(text, IDENTITY_INT_TEXT_MAX + 1);
    if (len > IDENTITY_INT_TEXT_MAX)
        goto out;
    if (text[0] == '-')
        i++;
    if (i == len)
        goto out;
    for (; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            goto out;
    }
    ok = true;
out:
    free(text);
    return ok;
}

/*
 * The claims of a verified token: exp an integer later than now, iat an integer not
 * later than now (with IDENTITY_CLOCK_SKEW), iss ours, sub well formed. Returns sub
 * (borrowed from jwt) or NULL.
 */
static const char *claims_sub(jwt_t *jwt, time_t now)
{
    const char *iss, *sub;
    long exp, iat;

    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0 || !grant_is_integer(jwt, "exp"))
        return NULL; /* missing, or a string, real, boolean or null */
    if ((long long)exp <= (long long)now)
        return NULL;
    errno = 0;
    iat = jwt_get_grant_int(jwt, "iat");
    if (errno != 0 || !grant_is_integer(jwt, "iat"))
        return NULL;
    if ((long long)iat > (long long)now + IDENTITY_CLOCK_SKEW)
        return NULL; /* issued in the future: not by us */
    iss = jwt_get_grant(jwt, "iss");
    if (iss == NULL || strcmp(iss, IDENTITY_ISSUER) != 0)
        return NULL;
    sub = jwt_get_grant(jwt, "sub");
    return sub_valid(sub) ? sub : NULL;
}

/*
 * The checks after the Bearer scheme: shape, header pin, signature, claims. On
 * IDENTITY_USER, sub is filled and *exp holds the token's exp.
 */
static enum identity_status token_check(const char *value, size_t len, const unsigned char *key,
                                        size_t key_len, time_t now, char sub[IDENTITY_SUB_MAX + 1],
                                        long long *exp)
{
    char token[IDENTITY_TOKEN_MAX + 1];
    size_t header_len = 0;
    jwt_t *jwt = NULL;
    const char *claimed;
    enum identity_status status = IDENTITY_INVALID;

    if (!key_ok(key, key_len) || sub == NULL)
        return status;
    if (!token_shape_ok(value, len, &header_len) || !header_ok(value, header_len))
        return status;

    memcpy(token, value, len);
    token[len] = '\0';
    if (jwt_decode(&jwt, token, key, (int)key_len) != 0 || jwt == NULL)
        goto out;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256)
        goto out;
    claimed = claims_sub(jwt, now);
    if (claimed == NULL)
        goto out;
    memcpy(sub, claimed, strlen(claimed) + 1); /* 1..IDENTITY_SUB_MAX bytes, checked */
    *exp = (long long)jwt_get_grant_int(jwt, "exp");
    status = IDENTITY_USER;
out:
    jwt_free(jwt);
    sodium_memzero(token, len + 1); /* the bytes copied, not the whole buffer */
    return status;
}

enum identity_status identity_check(const char *authorization, const unsigned char *key,
                                    size_t key_len, time_t now, char sub[IDENTITY_SUB_MAX + 1])
{
    const char *value = NULL;
    size_t len = 0;
    long long exp;
    enum identity_status status = bearer_token(authorization, &value, &len);

    if (status != IDENTITY_USER)
        return status;
    return token_check(value, len, key, key_len, now, sub, &exp);
}

void identity_cache_init(struct identity_cache *c)
{
    memset(c, 0, sizeof *c);
    randombytes_buf(c->hash_key, sizeof c->hash_key);
}

void identity_cache_clear(struct identity_cache *c)
{
    sodium_memzero(c, sizeof *c);
}

/* The slot a digest belongs to: its first bytes (uniform: a keyed hash). */
static struct identity_cache_slot *cache_slot(struct identity_cache *c, const unsigned char *digest)
{
    unsigned idx = ((unsigned)digest[0] | (unsigned)digest[1] << 8) % IDENTITY_CACHE_SLOTS;
    return &c->slots[idx];
}

enum identity_status identity_check_cached(struct identity_cache *c, const char *authorization,
                                           const unsigned char *key, size_t key_len, time_t now,
                                           char sub[IDENTITY_SUB_MAX + 1])
{
    unsigned char digest[IDENTITY_DIGEST_LEN];
    const char *value = NULL;
    size_t len = 0;
    long long exp = 0;
    enum identity_status status = bearer_token(authorization, &value, &len);

    if (status != IDENTITY_USER)
        return status;
    crypto_generichash(digest, sizeof digest, (const unsigned char *)value, len, c->hash_key,
                       sizeof c->hash_key);
    struct identity_cache_slot *slot = cache_slot(c, digest);
    if (slot->exp != 0 && sodium_memcmp(slot->digest, digest, sizeof digest) == 0) {
        if (slot->exp > (long long)now && sub != NULL && key_ok(key, key_len)) {
            memcpy(sub, slot->sub, strlen(slot->sub) + 1);
            c->hits++;
            return IDENTITY_USER;
        }
        sodium_memzero(slot, sizeof *slot); /* expired: identity_check says invalid too */
    }
    status = token_check(value, len, key, key_len, now, sub, &exp);
    if (status == IDENTITY_USER && exp > 0) {
        memcpy(slot->digest, digest, sizeof digest);
        memcpy(slot->sub, sub, strlen(sub) + 1); /* checked: 1..IDENTITY_SUB_MAX */
        slot->exp = exp;
    }
    return status;
}

char *identity_issue(const unsigned char *key, size_t key_len, const char *sub, time_t now,
                     long ttl)
{
    jwt_t *jwt = NULL;
    char *token = NULL;
    long exp;

    if (!key_ok(key, key_len) || !sub_valid(sub))
        return NULL;
    if (ttl <= 0 || now < 0 || __builtin_add_overflow((long)now, ttl, &exp))
        return NULL;
    if (jwt_new(&jwt) != 0 || jwt == NULL)
        return NULL;
    if (jwt_add_grant(jwt, "sub", sub) != 0 || jwt_add_grant(jwt, "iss", IDENTITY_ISSUER) != 0 ||
        jwt_add_grant_int(jwt, "iat", (long)now) != 0 || jwt_add_grant_int(jwt, "exp", exp) != 0)
        goto out;
    if (jwt_set_alg(jwt, JWT_ALG_HS256, key, (int)key_len) != 0)
        goto out;
    token = jwt_encode_str(jwt);
out:
    jwt_free(jwt);
    return token;
}
