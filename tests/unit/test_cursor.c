/* Unit tests for cursor: page cursors round-trip, and nothing else decodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "cursor.h"

static const unsigned char SECRET[] = "0123456789abcdef0123456789abcdef";
static const unsigned char OTHER[] = "fedcba9876543210fedcba9876543210";
#define MEMBER "00060f1c2b3a4d5e0123456789abcdef0123456789abcdef"

static int test_setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

static void test_cursor_round_trip(void **state)
{
    (void)state;
    char text[CURSOR_TEXT_MAX], member[CURSOR_MEMBER_LEN + 1];

    assert_int_equal(cursor_encode(SECRET, 32, "alice", MEMBER, text), 0);
    assert_true(strlen(text) < CURSOR_TEXT_MAX);
    assert_null(strpbrk(text, "+/="));
    assert_int_equal(cursor_decode(SECRET, 32, "alice", text, member), 0);
    assert_string_equal(member, MEMBER);
}

static void test_cursor_encode_rejects_bad_members(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *member;
    } cases[] = {
        {__LINE__, ""},
        {__LINE__, "00060f1c2b3a4d5e0123456789abcdef0123456789abcde"},   /* 47 */
        {__LINE__, "00060f1c2b3a4d5e0123456789abcdef0123456789abcdef0"}, /* 49 */
        {__LINE__, "00060F1C2B3A4D5E0123456789ABCDEF0123456789ABCDEF"},  /* upper case */
        {__LINE__, "00060f1c2b3a4d5e0123456789abcdef0123456789abcdeg"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[CURSOR_TEXT_MAX];
        print_message("line %d\n", cases[i].line);
        assert_int_equal(cursor_encode(SECRET, 32, "alice", cases[i].member, text), -1);
    }
}

/* Every way a cursor can be wrong: none decodes. */
static void test_cursor_decode_rejects(void **state)
{
    (void)state;
    char good[CURSOR_TEXT_MAX], member[CURSOR_MEMBER_LEN + 1], text[CURSOR_TEXT_MAX * 2];
    assert_int_equal(cursor_encode(SECRET, 32, "alice", MEMBER, good), 0);
    size_t len = strlen(good);

    /* Another user, another secret. */
    assert_int_equal(cursor_decode(SECRET, 32, "bob", good, member), -1);
    assert_int_equal(cursor_decode(SECRET, 32, "alic", good, member), -1);
    assert_int_equal(cursor_decode(OTHER, 32, "alice", good, member), -1);
    /* Each character changed in turn. */
    for (size_t i = 0; i < len; i++) {
        memcpy(text, good, len + 1);
        text[i] = text[i] == 'A' ? 'B' : 'A';
        assert_int_equal(cursor_decode(SECRET, 32, "alice", text, member), -1);
    }
    /* Cut, extended, padded, garbage, empty, overlong. */
    static const char *const bad[] = {"", "abc", "!!!!", "null", "0"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cursor_decode(SECRET, 32, "alice", bad[i], member), -1);
    memcpy(text, good, len - 1);
    text[len - 1] = '\0';
    assert_int_equal(cursor_decode(SECRET, 32, "alice", text, member), -1);
    snprintf(text, sizeof text, "%sA", good);
    assert_int_equal(cursor_decode(SECRET, 32, "alice", text, member), -1);
    snprintf(text, sizeof text, "%s=", good);
    assert_int_equal(cursor_decode(SECRET, 32, "alice", text, member), -1);
    memset(text, 'A', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    assert_int_equal(cursor_decode(SECRET, 32, "alice", text, member), -1);
}

/* A well-formed blob with a forged MAC: the MAC, not the shape, decides. */
static void test_cursor_decode_rejects_forged_mac(void **state)
{
    (void)state;
    unsigned char raw[1 + 24 + crypto_auth_BYTES] = {1};
    char text[CURSOR_TEXT_MAX], member[CURSOR_MEMBER_LEN + 1];

    sodium_bin2base64(text, sizeof text, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_int_equal(cursor_decode(SECRET, 32, "alice", text, member), -1);
}

/*
 * Found by tests/fuzz/fuzz_cursor: libsodium 1.0.18 decodes any byte from 0x80 up as '_',
 * so a cursor with its '_' replaced by such a byte decoded as the same cursor. Every
 * character of a cursor is tried with bytes outside the alphabet; none may decode.
 */
static void test_cursor_decode_rejects_non_alphabet(void **state)
{
    (void)state;
    char good[CURSOR_TEXT_MAX], text[CURSOR_TEXT_MAX], member[CURSOR_MEMBER_LEN + 1];
    static const unsigned char outside[] = {0x80, 0xa9, 0xdf, 0xff, '+', '/', '=', '.', ' '};
    bool underscore = false;

    for (int m = 0; m < 64; m++) {
        char name[CURSOR_MEMBER_LEN + 1];
        snprintf(name, sizeof name, "%016x0123456789abcdef0123456789abcdef", (unsigned)m);
        assert_int_equal(cursor_encode(SECRET, 32, "alice", name, good), 0);
        underscore |= strchr(good, '_') != NULL;
        for (size_t i = 0; good[i] != '\0'; i++) {
            for (size_t k = 0; k < sizeof outside; k++) {
                memcpy(text, good, sizeof text);
                text[i] = (char)outside[k];
                assert_int_equal(cursor_decode(SECRET, 32, "alice", text, member), -1);
            }
        }
    }
    assert_true(underscore); /* the case that decoded before the fix was tried */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cursor_round_trip),
        cmocka_unit_test(test_cursor_encode_rejects_bad_members),
        cmocka_unit_test(test_cursor_decode_rejects),
        cmocka_unit_test(test_cursor_decode_rejects_non_alphabet),
        cmocka_unit_test(test_cursor_decode_rejects_forged_mac),
    };
    return cmocka_run_group_tests(tests, test_setup, NULL);
}
