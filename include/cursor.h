/*
 * cursor: the opaque next_cursor of GET /stories (SPEC 7).
 *
 * A cursor names the last story of a page (its index member) and is bound to the
 * user it was issued to: base64url (no padding) of a version byte, the member's 24
 * bytes (8 of creation time, 16 of story id) and an HMAC-SHA-512-256 (libsodium
 * crypto_auth) under a key derived from JWT_SECRET. Anything the gateway did not
 * issue to this user fails to decode. Pure functions: thread-safe.
 */
#ifndef SG_CURSOR_H
#define SG_CURSOR_H

#include <stdbool.h>
#include <stddef.h>

#define CURSOR_MEMBER_LEN 48 /* hex characters of an index member */
#define CURSOR_TEXT_MAX 128  /* bytes of an encoded cursor, NUL included */

/*
 * Encodes member (CURSOR_MEMBER_LEN lowercase hex characters) for user into out.
 * Returns 0, or -1 when member is malformed.
 */
int cursor_encode(const unsigned char *secret, size_t secret_len, const char *user,
                  const char *member, char out[CURSOR_TEXT_MAX]);

/*
 * Decodes text into member (lowercase hex, NUL-terminated) when it is a cursor this
 * secret issued to user. Returns 0, or -1 for anything else (wrong length, bad
 * base64url, wrong version, wrong MAC, another user's cursor).
 */
int cursor_decode(const unsigned char *secret, size_t secret_len, const char *user,
                  const char *text, char member[CURSOR_MEMBER_LEN + 1]);

#endif
