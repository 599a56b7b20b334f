/*
 * Unit tests for identity: the HS256 pin, exp/iss/sub checks and the Bearer scheme
 * (SPEC 5.2). Hostile tokens are built here with libsodium (base64url, HMAC-SHA256
 * and HMAC-SHA512), not with libjwt, so the tests do not trust the library under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jwt.h>
#include <sodium.h>

#include "identity.h"

#define NOW 1700000000L
#define NOW_S "1700000000"
#define FUTURE_S "1700003600"
#define PAST_S "1699999999"
#define TOKEN_CAP (IDENTITY_TOKEN_MAX * 2)
#define PART_CAP (IDENTITY_TOKEN_MAX * 2)
#define VALID_PAYLOAD                                                                              \
    "{\"sub\":\"user_42\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}"
#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static const unsigned char test_key[] = "0123456789abcdef0123456789abcdef-secret!";
#define TEST_KEY_LEN (sizeof(test_key) - 1) /* 40 bytes */
static const unsigned char other_key[] = "fedcba9876543210fedcba9876543210-secret?";

#define ROW_CHECK(line, cond)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg("row at line %d: %s", (line), #cond);                                         \
    } while (0)

enum sig_kind {
    SIG_HS256,       /* HMAC-SHA256 with test_key */
    SIG_HS512,       /* HMAC-SHA512 with test_key */
    SIG_HS256_OTHER, /* HMAC-SHA256 with other_key */
    SIG_EMPTY,       /* "header.payload." */
    SIG_JUNK,        /* a base64url string that is no MAC */
};

static void b64url(const void *bin, size_t len, char *out, size_t cap)
{
    assert_true(sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING) <= cap);
    sodium_bin2base64(out, cap, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Builds header.payload.signature from JSON texts into out. */
static void make_token(char *out, size_t cap, const char *header, const char *payload,
                       enum sig_kind kind)
{
    char h[PART_CAP], p[PART_CAP], s[PART_CAP] = "";
    char input[TOKEN_CAP];
    unsigned char mac[crypto_auth_hmacsha512_BYTES];
    int n;

    b64url(header, strlen(header), h, sizeof(h));
    b64url(payload, strlen(payload), p, sizeof(p));
    n = snprintf(input, sizeof(input), "%s.%s", h, p);
    assert_true(n > 0 && (size_t)n < sizeof(input));
    switch (kind) {
    case SIG_HS256:
    case SIG_HS256_OTHER: {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, kind == SIG_HS256 ? test_key : other_key, TEST_KEY_LEN);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *)input, (size_t)n);
        crypto_auth_hmacsha256_final(&st, mac);
        b64url(mac, crypto_auth_hmacsha256_BYTES, s, sizeof(s));
        break;
    }
    case SIG_HS512: {
        crypto_auth_hmacsha512_state st;
        crypto_auth_hmacsha512_init(&st, test_key, TEST_KEY_LEN);
        crypto_auth_hmacsha512_update(&st, (const unsigned char *)input, (size_t)n);
        crypto_auth_hmacsha512_final(&st, mac);
        b64url(mac, crypto_auth_hmacsha512_BYTES, s, sizeof(s));
        break;
    }
    case SIG_EMPTY: break;
    case SIG_JUNK: memcpy(s, "c2lnbmF0dXJl", sizeof("c2lnbmF0dXJl")); break;
    }
    n = snprintf(out, cap, "%s.%s", input, s);
    assert_true(n > 0 && (size_t)n < cap);
}

static enum identity_status check(const char *value, char sub[IDENTITY_SUB_MAX + 1])
{
    return identity_check(value, test_key, TEST_KEY_LEN, NOW, sub);
}

static enum identity_status check_token(const char *token, char sub[IDENTITY_SUB_MAX + 1])
{
    char value[TOKEN_CAP + 16];

    snprintf(value, sizeof(value), "Bearer %s", token);
    return check(value, sub);
}

static const char *status_name(enum identity_status s)
{
    return s == IDENTITY_NONE ? "NONE" : s == IDENTITY_USER ? "USER" : "INVALID";
}

/* ---- token table: header, payload, signature ---- */

struct token_row {
    int line;
    const char *header;
    const char *payload;
    enum sig_kind sig;
    enum identity_status want;
    const char *sub; /* on IDENTITY_USER */
};

static const struct token_row token_rows[] = {
    /* valid */
    {__LINE__, HS256_HEADER, VALID_PAYLOAD, SIG_HS256, IDENTITY_USER, "user_42"},
    {__LINE__, "{\"alg\":\"HS256\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_USER, "user_42"},
    {__LINE__, "{\"typ\":\"JWT\",\"alg\":\"HS256\",\"kid\":\"k1\"}", VALID_PAYLOAD, SIG_HS256,
     IDENTITY_USER, "user_42"},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"Ab-_09\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_USER, "Ab-_09"},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":1700000001}", SIG_HS256,
     IDENTITY_USER, "u"},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"0123456789012345678901234567890123456789012345678901234567890123\","
     "\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_USER, "0123456789012345678901234567890123456789012345678901234567890123"},
    /* iat: required, an integer, not in the future beyond IDENTITY_CLOCK_SKEW */
    {__LINE__, HS256_HEADER, "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":\"" NOW_S "\",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":1700000060,\"exp\":" FUTURE_S "}", SIG_HS256,
     IDENTITY_USER, "u"},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":1700000061,\"exp\":" FUTURE_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    /* algorithm: only HS256 */
    {__LINE__, "{\"alg\":\"none\"}", VALID_PAYLOAD, SIG_EMPTY, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"none\",\"typ\":\"JWT\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID,
     NULL},
    {__LINE__, "{\"alg\":\"None\"}", VALID_PAYLOAD, SIG_JUNK, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", VALID_PAYLOAD, SIG_HS512, IDENTITY_INVALID,
     NULL},
    {__LINE__, "{\"alg\":\"HS512\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID,
     NULL},
    {__LINE__, "{\"alg\":\"ES256\"}", VALID_PAYLOAD, SIG_JUNK, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"hs256\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"HS256 \"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":[\"HS256\"]}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"typ\":\"JWT\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"none\",\"alg\":\"HS256\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID,
     NULL},
    {__LINE__, "{\"alg\":\"HS256\",\"alg\":\"HS256\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID,
     NULL},
    {__LINE__, "{\"alg\":\"HS256\",\"typ\":\"JOSE+JSON\"}", VALID_PAYLOAD, SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"HS256\",\"typ\":1}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID,
     NULL},
    {__LINE__, "[\"HS256\"]", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "\"HS256\"", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"HS256\"", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"HS256\"}x", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, "{\"alg\":\"HS256\\u0000\"}", VALID_PAYLOAD, SIG_HS256, IDENTITY_INVALID, NULL},
    /* signature */
    {__LINE__, HS256_HEADER, VALID_PAYLOAD, SIG_HS256_OTHER, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, VALID_PAYLOAD, SIG_JUNK, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, VALID_PAYLOAD, SIG_EMPTY, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, VALID_PAYLOAD, SIG_HS512, IDENTITY_INVALID, NULL},
    /* exp */
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" PAST_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" NOW_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, "{\"sub\":\"u\",\"iss\":\"story-gateway\"}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":\"" FUTURE_S "\"}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":1700003600.5}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":1.7e12}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":null}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":true}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":[" FUTURE_S "]}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":-1}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S
     ",\"exp\":100000000000000000000000000000}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    /* iss */
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"evil\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, "{\"sub\":\"u\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"Story-Gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":\"story-gateway \",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, "{\"sub\":\"u\",\"iss\":\"\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"u\",\"iss\":[\"story-gateway\"],\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, "{\"sub\":\"u\",\"iss\":null,\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    /* sub */
    {__LINE__, HS256_HEADER, "{\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":42,\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}", SIG_HS256,
     IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"a b\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"a:b\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"a/b\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"a.b\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"a\\r\\nb\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"\\u00fcser\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"a\\u0000b\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER,
     "{\"sub\":\"01234567890123456789012345678901234567890123456789012345678901234\","
     "\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S "}",
     SIG_HS256, IDENTITY_INVALID, NULL},
    /* payload not an object, or not JSON */
    {__LINE__, HS256_HEADER, "[1,2,3]", SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, "not json", SIG_HS256, IDENTITY_INVALID, NULL},
    {__LINE__, HS256_HEADER, "", SIG_HS256, IDENTITY_INVALID, NULL},
};

static void test_identity_check_token_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(token_rows) / sizeof(token_rows[0]); i++) {
        const struct token_row *r = &token_rows[i];
        char token[TOKEN_CAP];
        char sub[IDENTITY_SUB_MAX + 1];
        enum identity_status got;

        memset(sub, 'Z', sizeof(sub));
        make_token(token, sizeof(token), r->header, r->payload, r->sig);
        got = check_token(token, sub);
        if (got != r->want)
            fail_msg("row at line %d: %s, want %s", r->line, status_name(got),
                     status_name(r->want));
        if (got == IDENTITY_USER) {
            ROW_CHECK(r->line, strcmp(sub, r->sub) == 0);
        } else {
            for (size_t b = 0; b < sizeof(sub); b++)
                ROW_CHECK(r->line, sub[b] == 'Z'); /* untouched */
        }
    }
}

/* The HS512 token is correctly signed with the same secret: only the pin refuses it. */
static void test_identity_check_hs512_same_key_pinned(void **state)
{
    char token[TOKEN_CAP];
    char sub[IDENTITY_SUB_MAX + 1];
    jwt_t *jwt = NULL;

    (void)state;
    make_token(token, sizeof(token), "{\"alg\":\"HS512\",\"typ\":\"JWT\"}", VALID_PAYLOAD,
               SIG_HS512);
    assert_int_equal(jwt_decode(&jwt, token, test_key, (int)TEST_KEY_LEN), 0);
    assert_int_equal(jwt_get_alg(jwt), JWT_ALG_HS512);
    jwt_free(jwt);
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
}

/* HS384 (libsodium has no SHA-384): made by libjwt, which accepts it back unpinned. */
static void test_identity_check_hs384_pinned(void **state)
{
    char sub[IDENTITY_SUB_MAX + 1];
    jwt_t *jwt = NULL, *back = NULL;
    char *token;

    (void)state;
    assert_int_equal(jwt_new(&jwt), 0);
    assert_int_equal(jwt_add_grant(jwt, "sub", "user_42"), 0);
    assert_int_equal(jwt_add_grant(jwt, "iss", IDENTITY_ISSUER), 0);
    assert_int_equal(jwt_add_grant_int(jwt, "exp", NOW + 3600), 0);
    assert_int_equal(jwt_set_alg(jwt, JWT_ALG_HS384, test_key, (int)TEST_KEY_LEN), 0);
    token = jwt_encode_str(jwt);
    assert_non_null(token);
    jwt_free(jwt);
    assert_int_equal(jwt_decode(&back, token, test_key, (int)TEST_KEY_LEN), 0);
    assert_int_equal(jwt_get_alg(back), JWT_ALG_HS384);
    jwt_free(back);
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
    free(token);
}

static void test_identity_check_alg_none_unsigned(void **state)
{
    char token[TOKEN_CAP];
    char sub[IDENTITY_SUB_MAX + 1];

    (void)state;
    /* "header.payload." and "header.payload": the classic alg=none forms */
    make_token(token, sizeof(token), "{\"alg\":\"none\",\"typ\":\"JWT\"}", VALID_PAYLOAD,
               SIG_EMPTY);
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
    token[strlen(token) - 1] = '\0';
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
}

static void test_identity_check_bad_signature(void **state)
{
    char token[TOKEN_CAP];
    char sub[IDENTITY_SUB_MAX + 1];
    char *sig;

    (void)state;
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    assert_int_equal(check_token(token, sub), IDENTITY_USER);
    sig = strrchr(token, '.') + 1;
    sig[5] = sig[5] == 'A' ? 'B' : 'A'; /* a bit in the middle of the MAC */
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
    /* the same MAC with other unused trailing bits in its last character */
    {
        static const char alpha[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        char *last;
        int idx;

        make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
        last = token + strlen(token) - 1;
        idx = (int)(strchr(alpha, *last) - alpha);
        assert_int_equal(idx & 3, 0); /* 32 bytes: the last character has 2 unused bits */
        for (int d = 1; d < 4; d++) {
            *last = alpha[idx | d];
            assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
        }
    }
    /* the signature cut short, or one character longer */
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    token[strlen(token) - 1] = '\0';
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    memcpy(token + strlen(token), "A", 2);
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
}

static void test_identity_check_tampered_payload(void **state)
{
    char good[TOKEN_CAP], evil[TOKEN_CAP], spliced[TOKEN_CAP];
    size_t head_len;
    char sub[IDENTITY_SUB_MAX + 1];
    const char *good_sig, *evil_dot;

    (void)state;
    make_token(good, sizeof(good), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    make_token(evil, sizeof(evil), HS256_HEADER,
               "{\"sub\":\"admin\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":" FUTURE_S
               "}",
               SIG_HS256_OTHER);
    /* the evil header.payload with the good signature */
    good_sig = strrchr(good, '.');
    evil_dot = strrchr(evil, '.');
    head_len = (size_t)(evil_dot - evil);
    assert_true(head_len + strlen(good_sig) < sizeof(spliced));
    memcpy(spliced, evil, head_len);
    memcpy(spliced + head_len, good_sig, strlen(good_sig) + 1);
    assert_int_equal(check_token(spliced, sub), IDENTITY_INVALID);
}

static void test_identity_check_exp_boundary(void **state)
{
    char token[TOKEN_CAP];
    char sub[IDENTITY_SUB_MAX + 1];

    (void)state;
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    assert_int_equal(check_token(token, sub), IDENTITY_USER);
    {
        char value[TOKEN_CAP + 16];
        snprintf(value, sizeof(value), "Bearer %s", token);
        assert_int_equal(identity_check(value, test_key, TEST_KEY_LEN, NOW + 3599, sub),
                         IDENTITY_USER);
        assert_int_equal(identity_check(value, test_key, TEST_KEY_LEN, NOW + 3600, sub),
                         IDENTITY_INVALID);
        assert_int_equal(identity_check(value, test_key, TEST_KEY_LEN, NOW + 100000, sub),
                         IDENTITY_INVALID);
    }
}

/*
 * libjwt reads a non-integer exp as 0 with errno 0, which "exp > now" alone would let
 * through for a clock at or before 1970: the type is checked on its own.
 */
static void test_identity_check_exp_type_not_just_value(void **state)
{
    static const char *const payloads[] = {
        "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":\"" FUTURE_S "\"}",
        "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":1700003600.5}",
        "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":null}",
        "{\"sub\":\"u\",\"iss\":\"story-gateway\",\"iat\":" NOW_S ",\"exp\":{}}",
    };
    char token[TOKEN_CAP], value[TOKEN_CAP + 16];
    char sub[IDENTITY_SUB_MAX + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        make_token(token, sizeof(token), HS256_HEADER, payloads[i], SIG_HS256);
        snprintf(value, sizeof(value), "Bearer %s", token);
        if (identity_check(value, test_key, TEST_KEY_LEN, -1, sub) != IDENTITY_INVALID)
            fail_msg("payload %zu accepted", i);
    }
}

static void test_identity_check_key_requirements(void **state)
{
    char token[TOKEN_CAP], value[TOKEN_CAP + 16];
    char sub[IDENTITY_SUB_MAX + 1];

    (void)state;
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    snprintf(value, sizeof(value), "Bearer %s", token);
    assert_int_equal(identity_check(value, other_key, TEST_KEY_LEN, NOW, sub), IDENTITY_INVALID);
    assert_int_equal(identity_check(value, NULL, 0, NOW, sub), IDENTITY_INVALID);
    assert_int_equal(identity_check(value, test_key, IDENTITY_SECRET_MIN - 1, NOW, sub),
                     IDENTITY_INVALID);
    assert_int_equal(identity_check(value, test_key, TEST_KEY_LEN - 1, NOW, sub), IDENTITY_INVALID);
    /* no header at all is not an error, whatever the key */
    assert_int_equal(identity_check(NULL, NULL, 0, NOW, sub), IDENTITY_NONE);
}

/* ---- the shape of the token and of the header value ---- */

struct value_row {
    int line;
    const char *value;
    enum identity_status want;
};

static const struct value_row value_rows[] = {
    {__LINE__, "", IDENTITY_NONE},
    {__LINE__, "Basic dXNlcjpwYXNzd29yZA==", IDENTITY_NONE},
    {__LINE__, "Basic eyJhbGciOiJIUzI1NiJ9.e30.c2ln", IDENTITY_NONE},
    {__LINE__, "Token abc", IDENTITY_NONE},
    {__LINE__, "Digest username=\"u\"", IDENTITY_NONE},
    {__LINE__, "Bearerx abc.def.ghi", IDENTITY_NONE},
    {__LINE__, "Bear abc", IDENTITY_NONE},
    {__LINE__, "Bearer", IDENTITY_INVALID},
    {__LINE__, "bearer", IDENTITY_INVALID},
    {__LINE__, "Bearer ", IDENTITY_INVALID},
    {__LINE__, "Bearer     ", IDENTITY_INVALID},
    {__LINE__, "Bearer \t ", IDENTITY_INVALID},
    {__LINE__, "Bearer x", IDENTITY_INVALID},
    {__LINE__, "Bearer garbage", IDENTITY_INVALID},
    {__LINE__, "Bearer a.b", IDENTITY_INVALID},
    {__LINE__, "Bearer a.b.c", IDENTITY_INVALID},
    {__LINE__, "Bearer a.b.c.d", IDENTITY_INVALID},
    {__LINE__, "Bearer a..c", IDENTITY_INVALID},
    {__LINE__, "Bearer .b.c", IDENTITY_INVALID},
    {__LINE__, "Bearer a.b.", IDENTITY_INVALID},
    {__LINE__, "Bearer ..", IDENTITY_INVALID},
    {__LINE__, "Bearer ...", IDENTITY_INVALID},
    {__LINE__, "Bearer .", IDENTITY_INVALID},
    {__LINE__, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln extra", IDENTITY_INVALID},
    {__LINE__, "Bearer eyJhbGciOiJIUzI1NiJ9==.e30.c2ln", IDENTITY_INVALID},
    {__LINE__, "Bearer eyJhbGciOiJIUzI1NiJ9.e30=.c2ln", IDENTITY_INVALID},
    {__LINE__, "Bearer eyJhbGciOiJIUzI1NiJ9.e3+/.c2ln", IDENTITY_INVALID},
    {__LINE__, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln\r\n", IDENTITY_INVALID},
    {__LINE__, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2l\xc3\xa9", IDENTITY_INVALID},
    {__LINE__, "Bearer \"eyJhbGciOiJIUzI1NiJ9.e30.c2ln\"", IDENTITY_INVALID},
    {__LINE__, "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2ln,Bearer x", IDENTITY_INVALID},
    {__LINE__, "Bearer e.e30.c2ln", IDENTITY_INVALID}, /* 1 char: not base64 */
    {__LINE__, "Bearer eyJhbGciOiJIUzI1NiJ9A.e30.c2ln", IDENTITY_INVALID},
};

static void test_identity_check_value_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(value_rows) / sizeof(value_rows[0]); i++) {
        const struct value_row *r = &value_rows[i];
        char sub[IDENTITY_SUB_MAX + 1];
        enum identity_status got;

        memset(sub, 'Z', sizeof(sub));
        got = check(r->value, sub);
        if (got != r->want)
            fail_msg("row at line %d: %s, want %s", r->line, status_name(got),
                     status_name(r->want));
        ROW_CHECK(r->line, sub[0] == 'Z' && sub[IDENTITY_SUB_MAX] == 'Z');
    }
    assert_int_equal(check(NULL, NULL), IDENTITY_NONE);
}

static void test_identity_check_scheme_case_and_spaces(void **state)
{
    static const char *const forms[] = {
        "Bearer %s",    "bearer %s",   "BEARER %s",   "BeArEr %s",
        "Bearer    %s", "Bearer %s  ", "Bearer %s\t", " \tBearer %s \t ",
    };
    char token[TOKEN_CAP], value[TOKEN_CAP + 32];
    char sub[IDENTITY_SUB_MAX + 1];

    (void)state;
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        memset(sub, 0, sizeof(sub));
        snprintf(value, sizeof(value), forms[i], token);
        if (check(value, sub) != IDENTITY_USER)
            fail_msg("form '%s' refused", forms[i]);
        assert_string_equal(sub, "user_42");
    }
    /* a tab is no separator (RFC 7235: 1*SP): not the Bearer scheme */
    snprintf(value, sizeof(value), "Bearer\t%s", token);
    assert_int_equal(check(value, sub), IDENTITY_NONE);
    snprintf(value, sizeof(value), "Basic %s", token);
    assert_int_equal(check(value, sub), IDENTITY_NONE);
}

/* Makes a valid token of about want bytes, padded by a "pad" claim. Returns its length. */
static size_t make_token_of_length(char *out, size_t cap, size_t want)
{
    char payload[TOKEN_CAP];
    char pad[IDENTITY_TOKEN_MAX];

    for (size_t n = 0; n < sizeof(pad) - 1; n++) {
        memset(pad, 'p', n);
        pad[n] = '\0';
        snprintf(payload, sizeof(payload),
                 "{\"sub\":\"user_42\",\"iss\":\"story-gateway\",\"iat\":" NOW_S
                 ",\"exp\":" FUTURE_S ",\"pad\":\"%s\"}",
                 pad);
        make_token(out, cap, HS256_HEADER, payload, SIG_HS256);
        if (strlen(out) >= want)
            return strlen(out);
    }
    fail_msg("no token of %zu bytes", want);
    return 0;
}

static void test_identity_check_token_length_cap(void **state)
{
    char token[TOKEN_CAP];
    char sub[IDENTITY_SUB_MAX + 1];
    size_t len;

    (void)state;
    len = make_token_of_length(token, sizeof(token), IDENTITY_TOKEN_MAX - 1);
    assert_true(len <= IDENTITY_TOKEN_MAX);
    assert_int_equal(check_token(token, sub), IDENTITY_USER);
    len = make_token_of_length(token, sizeof(token), IDENTITY_TOKEN_MAX + 1);
    assert_true(len > IDENTITY_TOKEN_MAX);
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
}

static void test_identity_check_huge_values(void **state)
{
    size_t big = 1024 * 1024;
    char *value = malloc(big + 1);
    char sub[IDENTITY_SUB_MAX + 1];
    char token[TOKEN_CAP];

    (void)state;
    assert_non_null(value);
    memcpy(value, "Bearer ", 7);
    memset(value + 7, 'A', big - 7);
    value[big] = '\0';
    assert_int_equal(check(value, sub), IDENTITY_INVALID);
    memset(value + 7, '.', big - 7);
    assert_int_equal(check(value, sub), IDENTITY_INVALID);
    /* a valid token followed by a megabyte of blanks: bounded, refused */
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    memset(value + 7, ' ', big - 7);
    memcpy(value + 7, token, strlen(token));
    assert_int_equal(check(value, sub), IDENTITY_INVALID);
    /* a 3000-byte header part within the token cap: the bounded decode refuses it */
    memset(value + 7, 'e', 3000);
    memcpy(value + 7 + 3000, ".e30.c2ln", 10);
    assert_int_equal(check(value, sub), IDENTITY_INVALID);
    free(value);
}

/* A header nested deeper than anything the bounded buffer allows to matter. */
static void test_identity_check_deep_header(void **state)
{
    char header[1024], token[TOKEN_CAP];
    char sub[IDENTITY_SUB_MAX + 1];
    size_t depth = 250; /* 500 bytes: fits the decode buffer */

    (void)state;
    memset(header, '[', depth);
    memset(header + depth, ']', depth);
    header[2 * depth] = '\0';
    make_token(token, sizeof(token), header, VALID_PAYLOAD, SIG_HS256);
    assert_int_equal(check_token(token, sub), IDENTITY_INVALID);
}

/* ---- issuing ---- */

static void test_identity_issue_round_trip(void **state)
{
    char sub[IDENTITY_SUB_MAX + 1];
    char value[TOKEN_CAP + 16];
    unsigned char raw[TOKEN_CAP];
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;
    char expect_sig[PART_CAP];
    size_t raw_len;
    const char *dot1, *dot2;
    char *token = identity_issue(test_key, TEST_KEY_LEN, "user_42", NOW, 3600);

    (void)state;
    assert_non_null(token);
    snprintf(value, sizeof(value), "Bearer %s", token);
    assert_int_equal(check(value, sub), IDENTITY_USER);
    assert_string_equal(sub, "user_42");
    assert_int_equal(identity_check(value, test_key, TEST_KEY_LEN, NOW + 3599, sub), IDENTITY_USER);
    assert_int_equal(identity_check(value, test_key, TEST_KEY_LEN, NOW + 3600, sub),
                     IDENTITY_INVALID);

    /* the header says HS256, the payload holds the four claims, the MAC is HMAC-SHA256 */
    dot1 = strchr(token, '.');
    dot2 = strrchr(token, '.');
    assert_true(dot1 != NULL && dot2 != dot1);
    assert_int_equal(sodium_base642bin(raw, sizeof(raw) - 1, token, (size_t)(dot1 - token), NULL,
                                       &raw_len, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    raw[raw_len] = '\0';
    assert_non_null(strstr((char *)raw, "\"alg\":\"HS256\""));
    assert_int_equal(sodium_base642bin(raw, sizeof(raw) - 1, dot1 + 1, (size_t)(dot2 - dot1 - 1),
                                       NULL, &raw_len, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    raw[raw_len] = '\0';
    assert_non_null(strstr((char *)raw, "\"sub\":\"user_42\""));
    assert_non_null(strstr((char *)raw, "\"iss\":\"story-gateway\""));
    assert_non_null(strstr((char *)raw, "\"iat\":" NOW_S));
    assert_non_null(strstr((char *)raw, "\"exp\":" FUTURE_S));
    crypto_auth_hmacsha256_init(&st, test_key, TEST_KEY_LEN);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)token, (size_t)(dot2 - token));
    crypto_auth_hmacsha256_final(&st, mac);
    b64url(mac, sizeof(mac), expect_sig, sizeof(expect_sig));
    assert_string_equal(dot2 + 1, expect_sig);
    free(token);
}

static void test_identity_issue_refuses_bad_input(void **state)
{
    char sub65[IDENTITY_SUB_MAX + 2];

    (void)state;
    memset(sub65, 'a', sizeof(sub65) - 1);
    sub65[sizeof(sub65) - 1] = '\0';
    assert_null(identity_issue(NULL, 0, "u", NOW, 3600));
    assert_null(identity_issue(test_key, IDENTITY_SECRET_MIN - 1, "u", NOW, 3600));
    assert_null(identity_issue(test_key, TEST_KEY_LEN, NULL, NOW, 3600));
    assert_null(identity_issue(test_key, TEST_KEY_LEN, "", NOW, 3600));
    assert_null(identity_issue(test_key, TEST_KEY_LEN, "a b", NOW, 3600));
    assert_null(identity_issue(test_key, TEST_KEY_LEN, "a\"b", NOW, 3600));
    assert_null(identity_issue(test_key, TEST_KEY_LEN, sub65, NOW, 3600));
    assert_null(identity_issue(test_key, TEST_KEY_LEN, "u", NOW, 0));
    assert_null(identity_issue(test_key, TEST_KEY_LEN, "u", NOW, -5));
    assert_null(identity_issue(test_key, TEST_KEY_LEN, "u", NOW, __LONG_MAX__));
    sub65[IDENTITY_SUB_MAX] = '\0'; /* 64 bytes: fine */
    {
        char *token = identity_issue(test_key, TEST_KEY_LEN, sub65, NOW, 60);
        char sub[IDENTITY_SUB_MAX + 1];
        char value[TOKEN_CAP + 16];

        assert_non_null(token);
        snprintf(value, sizeof(value), "Bearer %s", token);
        assert_int_equal(check(value, sub), IDENTITY_USER);
        assert_string_equal(sub, sub65);
        free(token);
    }
}

/* The cache answers every row of the table as identity_check does, the second time too. */
static void test_identity_cache_table_agrees(void **state)
{
    static struct identity_cache cache;

    (void)state;
    identity_cache_init(&cache);
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(token_rows) / sizeof(token_rows[0]); i++) {
            const struct token_row *r = &token_rows[i];
            char token[TOKEN_CAP], value[TOKEN_CAP + 16];
            char sub[IDENTITY_SUB_MAX + 1], want_sub[IDENTITY_SUB_MAX + 1];

            make_token(token, sizeof(token), r->header, r->payload, r->sig);
            snprintf(value, sizeof(value), "Bearer %s", token);
            memset(sub, 'Z', sizeof(sub));
            memset(want_sub, 'Z', sizeof(want_sub));
            enum identity_status want = check(value, want_sub);
            enum identity_status got =
                identity_check_cached(&cache, value, test_key, TEST_KEY_LEN, NOW, sub);
            ROW_CHECK(r->line, got == want);
            ROW_CHECK(r->line, memcmp(sub, want_sub, sizeof(sub)) == 0);
        }
    }
    /* Valid rows were answered from the cache the second time (two may share a slot). */
    assert_true(cache.hits > 0);
    identity_cache_clear(&cache);
}

/* A remembered token stops being valid at its exp, exactly as without the cache. */
static void test_identity_cache_exp(void **state)
{
    static struct identity_cache cache;
    char token[TOKEN_CAP], value[TOKEN_CAP + 16], sub[IDENTITY_SUB_MAX + 1];

    (void)state;
    identity_cache_init(&cache);
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    snprintf(value, sizeof(value), "Bearer %s", token);
    assert_int_equal(identity_check_cached(&cache, value, test_key, TEST_KEY_LEN, NOW, sub),
                     IDENTITY_USER);
    assert_int_equal(identity_check_cached(&cache, value, test_key, TEST_KEY_LEN, NOW + 3599, sub),
                     IDENTITY_USER);
    assert_string_equal(sub, "user_42");
    assert_int_equal(cache.hits, 1);
    assert_int_equal(identity_check_cached(&cache, value, test_key, TEST_KEY_LEN, NOW + 3600, sub),
                     IDENTITY_INVALID);
    assert_int_equal(identity_check_cached(&cache, value, test_key, TEST_KEY_LEN, NOW + 3600, sub),
                     IDENTITY_INVALID);
    assert_int_equal(cache.hits, 1);
    identity_cache_clear(&cache);
}

/* A remembered token does not vouch for a token that differs in one byte, and
 * many tokens sharing the 64 slots are each answered right. */
static void test_identity_cache_no_false_hits(void **state)
{
    static struct identity_cache cache;
    char token[TOKEN_CAP], value[TOKEN_CAP + 16], sub[IDENTITY_SUB_MAX + 1];
    char payload[256], want[IDENTITY_SUB_MAX + 1];

    (void)state;
    identity_cache_init(&cache);
    make_token(token, sizeof(token), HS256_HEADER, VALID_PAYLOAD, SIG_HS256);
    snprintf(value, sizeof(value), "Bearer %s", token);
    assert_int_equal(identity_check_cached(&cache, value, test_key, TEST_KEY_LEN, NOW, sub),
                     IDENTITY_USER);
    size_t last = strlen(value) - 1;
    value[last] = value[last] == 'A' ? 'B' : 'A'; /* the signature's last character */
    assert_int_equal(identity_check_cached(&cache, value, test_key, TEST_KEY_LEN, NOW, sub),
                     IDENTITY_INVALID);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 300; i++) {
            snprintf(payload, sizeof(payload),
                     "{\"sub\":\"u%d\",\"iss\":\"story-gateway\",\"iat\":" NOW_S
                     ",\"exp\":" FUTURE_S "}",
                     i);
            snprintf(want, sizeof(want), "u%d", i);
            make_token(token, sizeof(token), HS256_HEADER, payload, SIG_HS256);
            snprintf(value, sizeof(value), "Bearer %s", token);
            assert_int_equal(identity_check_cached(&cache, value, test_key, TEST_KEY_LEN, NOW, sub),
                             IDENTITY_USER);
            assert_string_equal(sub, want);
        }
    }
    /* 300 tokens in 64 slots: nearly every answer came after an eviction. */
    identity_cache_clear(&cache);
}

static int setup_sodium(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_check_token_table),
        cmocka_unit_test(test_identity_check_hs512_same_key_pinned),
        cmocka_unit_test(test_identity_check_hs384_pinned),
        cmocka_unit_test(test_identity_check_alg_none_unsigned),
        cmocka_unit_test(test_identity_check_bad_signature),
        cmocka_unit_test(test_identity_check_tampered_payload),
        cmocka_unit_test(test_identity_check_exp_boundary),
        cmocka_unit_test(test_identity_check_exp_type_not_just_value),
        cmocka_unit_test(test_identity_check_key_requirements),
        cmocka_unit_test(test_identity_check_value_table),
        cmocka_unit_test(test_identity_check_scheme_case_and_spaces),
        cmocka_unit_test(test_identity_check_token_length_cap),
        cmocka_unit_test(test_identity_check_huge_values),
        cmocka_unit_test(test_identity_check_deep_header),
        cmocka_unit_test(test_identity_issue_round_trip),
        cmocka_unit_test(test_identity_issue_refuses_bad_input),
        cmocka_unit_test(test_identity_cache_table_agrees),
        cmocka_unit_test(test_identity_cache_exp),
        cmocka_unit_test(test_identity_cache_no_false_hits),
    };

    return cmocka_run_group_tests(tests, setup_sodium, NULL);
}
