/* cursor: signed, user-bound page cursors for GET /stories. See include/cursor.h. */
#include "cursor.h"

#include <string.h>

#include <sodium.h>

#define CURSOR_VERSION 1
#define CURSOR_MEMBER_BYTES (CURSOR_MEMBER_LEN / 2)
#define CURSOR_RAW_BYTES (1 + CURSOR_MEMBER_BYTES + crypto_auth_BYTES)
#define CURSOR_CONTEXT "story-gateway cursor v1"

_Static_assert(CURSOR_TEXT_MAX >=
                   sodium_base64_ENCODED_LEN(CURSOR_RAW_BYTES,
                                             sodium_base64_VARIANT_URLSAFE_NO_PADDING),
               "CURSOR_TEXT_MAX holds an encoded cursor");

/* The MAC key: BLAKE2b of a fixed context and the JWT secret, so neither key serves
 * for the other's purpose. */
static void cursor_key(const unsigned char *secret, size_t secret_len,
                       unsigned char key[crypto_auth_KEYBYTES])
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, crypto_auth_KEYBYTES);
    crypto_generichash_update(&st, (const unsigned char *)CURSOR_CONTEXT, sizeof CURSOR_CONTEXT);
    crypto_generichash_update(&st, secret, secret_len);
    crypto_generichash_final(&st, key, crypto_auth_KEYBYTES);
}

/* The MAC of version and member for user. */
static void cursor_mac(const unsigned char *secret, size_t secret_len, const char *user,
                       const unsigned char *raw, unsigned char mac[crypto_auth_BYTES])
{
    unsigned char key[crypto_auth_KEYBYTES];
    crypto_auth_hmacsha512256_state st;
    size_t user_len = strlen(user);
    unsigned char len_be[4] = {(unsigned char)(user_len >> 24), (unsigned char)(user_len >> 16),
                               (unsigned char)(user_len >> 8), (unsigned char)user_len};

    cursor_key(secret, secret_len, key);
    crypto_auth_hmacsha512256_init(&st, key, sizeof key);
    crypto_auth_hmacsha512256_update(&st, len_be, sizeof len_be);
    crypto_auth_hmacsha512256_update(&st, (const unsigned char *)user, user_len);
    crypto_auth_hmacsha512256_update(&st, raw, 1 + CURSOR_MEMBER_BYTES);
    crypto_auth_hmacsha512256_final(&st, mac);
    sodium_memzero(key, sizeof key);
}

static bool cursor_member_ok(const char *member)
{
    if (strlen(member) != CURSOR_MEMBER_LEN)
        return false;
    for (const char *p = member; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

int cursor_encode(const unsigned char *secret, size_t secret_len, const char *user,
                  const char *member, char out[CURSOR_TEXT_MAX])
{
    unsigned char raw[CURSOR_RAW_BYTES];
    size_t bin_len = 0;

    if (!cursor_member_ok(member))
        return -1;
    raw[0] = CURSOR_VERSION;
    if (sodium_hex2bin(raw + 1, CURSOR_MEMBER_BYTES, member, CURSOR_MEMBER_LEN, NULL, &bin_len,
                       NULL) != 0 ||
        bin_len != CURSOR_MEMBER_BYTES)
        return -1;
    cursor_mac(secret, secret_len, user, raw, raw + 1 + CURSOR_MEMBER_BYTES);
    sodium_bin2base64(out, CURSOR_TEXT_MAX, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

/*
 * Only the base64url alphabet: libsodium 1.0.18 (Debian 12) decodes every byte from 0x80
 * up as '_', so without this one cursor would have many spellings that all decode.
 */
static bool cursor_text_ok(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

int cursor_decode(const unsigned char *secret, size_t secret_len, const char *user,
                  const char *text, char member[CURSOR_MEMBER_LEN + 1])
{
    unsigned char raw[CURSOR_RAW_BYTES], mac[crypto_auth_BYTES];
    size_t bin_len = 0;
    const char *end = NULL;
    size_t len = strnlen(text, CURSOR_TEXT_MAX);

    if (len == 0 || len >= CURSOR_TEXT_MAX || !cursor_text_ok(text, len))
        return -1;
    if (sodium_base642bin(raw, sizeof raw, text, len, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        bin_len != sizeof raw || end != text + len || raw[0] != CURSOR_VERSION)
        return -1;
    cursor_mac(secret, secret_len, user, raw, mac);
    if (sodium_memcmp(mac, raw + 1 + CURSOR_MEMBER_BYTES, sizeof mac) != 0)
        return -1;
    sodium_bin2hex(member, CURSOR_MEMBER_LEN + 1, raw + 1, CURSOR_MEMBER_BYTES);
    return 0;
}
