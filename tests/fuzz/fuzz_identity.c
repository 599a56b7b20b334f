/*
 * fuzz_identity: the bearer-token path (fcgi/identity.c: identity_check), from the
 * Authorization header to a verified user, with FUZZ_SECRET as JWT_SECRET and the clock
 * at FUZZ_NOW. The seeds hold tokens signed with that secret (make fuzz-seeds), so the
 * fuzzer starts past base64url and the signature.
 *
 * Each input is tried twice:
 * - as the header value (a CGI parameter: it ends at its first NUL). Checked
 *   independently of libjwt: a token is accepted only when its signature is HMAC-SHA-256
 *   of "header.payload" under the secret and its header names HS256; then sub is
 *   1..IDENTITY_SUB_MAX bytes of [A-Za-z0-9_-]. A refused token leaves sub untouched.
 * - as "HEADER_JSON\nPAYLOAD_JSON", which the target encodes and signs itself, so the
 *   checks behind the signature are fuzzed too: the token must be accepted exactly when
 *   a reference reading of SPEC 5.2 accepts it (alg HS256, typ JWT or none, no crit;
 *   exp an integer after now, iat an integer at most IDENTITY_CLOCK_SKEW ahead, iss
 *   "story-gateway", sub well formed), with the same sub.
 */
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "fuzz.h"
#include "identity.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_CHECK(sodium_init() >= 0);
    return 0;
}

/* The token of a "Bearer" header value, blanks around it dropped; NULL for none. */
static const char *token_of(const char *value, size_t *len)
{
    while (*value == ' ' || *value == '\t')
        value++;
    if (strncasecmp(value, "Bearer ", 7) != 0)
        return NULL;
    for (value += 7; *value == ' ';)
        value++;
    *len = strlen(value);
    while (*len > 0 && (value[*len - 1] == ' ' || value[*len - 1] == '\t'))
        (*len)--;
    return value;
}

/* True when the token's third part is the HMAC-SHA-256 of the first two under the secret,
 * and its first part decodes to a header with "alg":"HS256". */
static bool signed_by_us(const char *token, size_t len)
{
    unsigned char mac[crypto_auth_hmacsha256_BYTES], sig[64], head[512];
    crypto_auth_hmacsha256_state st;
    size_t sig_len = 0, head_len = 0;
    const char *dot2 = memrchr(token, '.', len), *dot1 = memchr(token, '.', len);

    if (dot1 == NULL || dot2 == dot1)
        return false;
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)FUZZ_SECRET, FUZZ_SECRET_LEN);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, (size_t)(dot2 - token));
    crypto_auth_hmacsha256_final(&st, mac);
    if (sodium_base642bin(sig, sizeof sig, dot2 + 1, len - (size_t)(dot2 + 1 - token), NULL,
                          &sig_len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        sig_len != sizeof mac || memcmp(sig, mac, sizeof mac) != 0)
        return false;
    if (sodium_base642bin(head, sizeof head - 1, token, (size_t)(dot1 - token), NULL, &head_len,
                          NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return false;
    json_t *h = json_loadb((const char *)head, head_len, 0, NULL);
    bool hs256 = json_is_string(json_object_get(h, "alg")) &&
                 strcmp(json_string_value(json_object_get(h, "alg")), "HS256") == 0;
    json_decref(h);
    return hs256;
}

/* The reference: SPEC 5.2's checks on the decoded header and payload. */
static bool claims_ok(const char *header, const char *payload, char sub[IDENTITY_SUB_MAX + 1])
{
    json_t *h = json_loads(header, JSON_REJECT_DUPLICATES, NULL), *p = json_loads(payload, 0, NULL);
    json_t *alg = json_object_get(h, "alg"), *typ = json_object_get(h, "typ");
    json_t *exp = json_object_get(p, "exp"), *iat = json_object_get(p, "iat");
    const char *iss = json_string_value(json_object_get(p, "iss"));
    const char *who = json_string_value(json_object_get(p, "sub"));
    size_t n = who != NULL ? strlen(who) : 0;
    bool ok =
        json_is_object(h) && json_is_object(p) && json_is_string(alg) &&
        strcmp(json_string_value(alg), "HS256") == 0 &&
        (typ == NULL || (json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0)) &&
        json_object_get(h, "crit") == NULL && json_is_integer(exp) &&
        json_integer_value(exp) > FUZZ_NOW && json_is_integer(iat) &&
        json_integer_value(iat) <= FUZZ_NOW + IDENTITY_CLOCK_SKEW && iss != NULL &&
        strcmp(iss, IDENTITY_ISSUER) == 0 && n >= 1 && n <= IDENTITY_SUB_MAX &&
        strspn(who, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
    if (ok)
        memcpy(sub, who, n + 1);
    json_decref(h);
    json_decref(p);
    return ok;
}

/* Appends the base64url of len bytes at *at. */
static void append_b64(char **at, const void *bytes, size_t len)
{
    size_t room = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_bin2base64(*at, room, bytes, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    *at += strlen(*at);
}

/* "HEADER\nPAYLOAD" signed with the secret, checked against claims_ok. */
static void check_signed(const uint8_t *data, size_t size)
{
    const char *f[2];
    size_t len[2];
    char *buf = fuzz_fields(data, size, 2, f, len);
    char want[IDENTITY_SUB_MAX + 1], sub[IDENTITY_SUB_MAX + 1];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;

    /* Only what fits the token limit and has no NUL (libjwt reads C strings). */
    if (buf == NULL || strlen(f[0]) != len[0] || strlen(f[1]) != len[1] || len[0] > 1024 ||
        len[1] > 1024) {
        free(buf);
        return;
    }
    char *value = malloc(16 + 2 * (len[0] + len[1]) + 64), *at = value;
    if (value == NULL) {
        free(buf);
        return;
    }
    memcpy(at, "Bearer ", 7);
    at += 7;
    const char *token = at;
    append_b64(&at, f[0], len[0]);
    *at++ = '.';
    append_b64(&at, f[1], len[1]);
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)FUZZ_SECRET, FUZZ_SECRET_LEN);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, (size_t)(at - token));
    crypto_auth_hmacsha256_final(&st, mac);
    *at++ = '.';
    append_b64(&at, mac, sizeof mac);
    bool expected = claims_ok(f[0], f[1], want) && strlen(token) <= IDENTITY_TOKEN_MAX &&
                    len[0] <= 512; /* IDENTITY_HEADER_JSON_MAX in identity.c */
    enum identity_status got =
        identity_check(value, (const unsigned char *)FUZZ_SECRET, FUZZ_SECRET_LEN, FUZZ_NOW, sub);
    FUZZ_CHECK((got == IDENTITY_USER) == expected);
    if (expected)
        FUZZ_CHECK(strcmp(sub, want) == 0);
    free(value);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sub[IDENTITY_SUB_MAX + 1], untouched[IDENTITY_SUB_MAX + 1];
    char *value = malloc(size + 1);
    size_t len = 0;

    if (value == NULL)
        return 0;
    memcpy(value, data, size);
    value[size] = '\0';
    memset(sub, '#', sizeof sub);
    memcpy(untouched, sub, sizeof sub);
    enum identity_status st =
        identity_check(value, (const unsigned char *)FUZZ_SECRET, FUZZ_SECRET_LEN, FUZZ_NOW, sub);
    const char *token = token_of(value, &len);
    if (st == IDENTITY_USER) {
        FUZZ_CHECK(token != NULL && signed_by_us(token, len));
        size_t n = strnlen(sub, sizeof sub);
        FUZZ_CHECK(n >= 1 && n <= IDENTITY_SUB_MAX &&
                   strspn(sub, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz"
                               "0123456789_-") == n);
    } else {
        FUZZ_CHECK(memcmp(sub, untouched, sizeof sub) == 0);
        FUZZ_CHECK(st == IDENTITY_INVALID || st == IDENTITY_NONE);
    }
    free(value);
    check_signed(data, size);
    return 0;
}
