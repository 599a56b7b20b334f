/*
 * fuzz_cursor: the ?cursor= decoder of GET /stories (handlers/cursor.c: cursor_decode),
 * for FUZZ_USER with FUZZ_SECRET. The seeds hold cursors issued to that user (make
 * fuzz-seeds), so the fuzzer starts past base64url and the MAC.
 *
 * Input: the cursor text (a decoded query value: it ends at its first NUL). Checked: a
 * cursor that decodes names a member of CURSOR_MEMBER_LEN lowercase hex digits, encodes
 * back to exactly the same text, and decodes for no other user or secret.
 */
#include <string.h>

#include <sodium.h>

#include "cursor.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_CHECK(sodium_init() >= 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char secret[] = FUZZ_SECRET, other[] = FUZZ_SECRET "x";
    char member[CURSOR_MEMBER_LEN + 1], again[CURSOR_MEMBER_LEN + 1], text[CURSOR_TEXT_MAX];
    char *value = malloc(size + 1);

    if (value == NULL)
        return 0;
    memcpy(value, data, size);
    value[size] = '\0';
    if (cursor_decode(secret, FUZZ_SECRET_LEN, FUZZ_USER, value, member) == 0) {
        FUZZ_CHECK(strlen(member) == CURSOR_MEMBER_LEN &&
                   strspn(member, "0123456789abcdef") == CURSOR_MEMBER_LEN);
        FUZZ_CHECK(cursor_encode(secret, FUZZ_SECRET_LEN, FUZZ_USER, member, text) == 0);
        FUZZ_CHECK(strcmp(text, value) == 0);
        FUZZ_CHECK(cursor_decode(secret, FUZZ_SECRET_LEN, FUZZ_USER "x", value, again) != 0);
        FUZZ_CHECK(cursor_decode(secret, FUZZ_SECRET_LEN, "", value, again) != 0);
        FUZZ_CHECK(cursor_decode(other, sizeof other - 1, FUZZ_USER, value, again) != 0);
    }
    free(value);
    return 0;
}
