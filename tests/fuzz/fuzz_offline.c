/*
 * fuzz_offline: the offline storyteller (handlers/offline.c: offline_write), which takes
 * the client's genre, characters, opening line and input apart (names, commas, the
 * story so far) to write a part, a title or suggestions.
 *
 * Input: "KIND\nGENRE\nCHARACTERS\nOPENING\nTITLE\nINPUT\nPARTS", the parts separated by
 * 0x1E; the first byte of KIND picks the kind. Only what a handler can pass is tried:
 * valid UTF-8 within SPEC 7's lengths (other inputs are rejected, return -1). Checked, as
 * offline.h promises: the call succeeds; every string is non-empty valid UTF-8 within its
 * TALE_*_MAX; the model is "offline"; and the same request gives the same bytes again.
 */
#include <string.h>

#include "fuzz.h"
#include "offline.h"
#include "storystore.h"
#include "validate.h"

#define PARTS_MAX (STORYSTORE_PARTS_MAX + 1)

/* s (len bytes, NUL-terminated) is what a handler passes: UTF-8, no NUL, min..max chars. */
static bool acceptable(const char *s, size_t len, size_t min, size_t max)
{
    return strlen(s) == len && fuzz_utf8_valid(s, len) && validate_utf8_length(s) >= min &&
           validate_utf8_length(s) <= max;
}

static void check_string(const char *s, size_t max_chars, size_t max_bytes)
{
    FUZZ_CHECK(s != NULL && s[0] != '\0' && strlen(s) <= max_bytes);
    FUZZ_CHECK(fuzz_utf8_valid(s, strlen(s)) && validate_utf8_length(s) <= max_chars);
}

static void check_result(enum tale_kind kind, const struct tale_result *r)
{
    FUZZ_CHECK(strcmp(r->model, OFFLINE_MODEL) == 0);
    if (kind == TALE_SUGGESTIONS || kind == TALE_IDEAS) {
        for (int i = 0; i < TALE_SUGGESTION_COUNT; i++)
            check_string(r->suggestions[i], TALE_SUGGESTION_MAX, 4 * TALE_SUGGESTION_MAX);
        return;
    }
    check_string(r->text, TALE_TEXT_MAX, TALE_TEXT_MAX);
    if (kind == TALE_OPENING)
        check_string(r->title, TALE_TITLE_MAX, 4 * TALE_TITLE_MAX);
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Splits the parts at 0x1E into texts; false when one is not a part a story can hold. */
static bool split_parts(char *s, const char *texts[PARTS_MAX], size_t *n)
{
    for (*n = 0; *s != '\0' && *n < PARTS_MAX; (*n)++) {
        char *end = strchr(s, '\x1e');
        if (end != NULL)
            *end = '\0';
        if (!acceptable(s, strlen(s), 1, TALE_TEXT_MAX) || strlen(s) > TALE_TEXT_MAX)
            return false;
        texts[*n] = s;
        if (end == NULL)
            return true;
        s = end + 1;
    }
    return *s == '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *f[7], *texts[PARTS_MAX];
    size_t len[7];
    struct tale_result a = {0}, b = {0};
    int rc = -1;
    char *buf = fuzz_fields(data, size, 7, f, len);

    if (buf == NULL)
        return -1;
    enum tale_kind kind = (enum tale_kind)((len[0] > 0 ? (unsigned char)f[0][0] : 0) % 5);
    struct tale_request rq = {.kind = kind};
    if (kind != TALE_IDEAS) {
        if (!acceptable(f[1], len[1], 1, TALE_GENRE_MAX) ||
            !acceptable(f[2], len[2], 1, TALE_CHARACTERS_MAX) ||
            !acceptable(f[3], len[3], 0, TALE_OPENING_MAX) ||
            !acceptable(f[4], len[4], 0, TALE_TITLE_MAX) ||
            !acceptable(f[5], len[5], 0, TALE_INPUT_MAX) || strlen(f[6]) != len[6] ||
            !split_parts((char *)f[6], texts, &rq.nparts))
            goto out;
        rq.genre = f[1];
        rq.characters = f[2];
        rq.opening_line = f[3];
        rq.title = kind == TALE_OPENING ? NULL : f[4];
        rq.user_input = kind == TALE_CONTINUATION ? f[5] : NULL;
        rq.parts = rq.nparts > 0 ? texts : NULL;
    }
    FUZZ_CHECK(offline_write(&rq, &a) == 0);
    check_result(kind, &a);
    FUZZ_CHECK(offline_write(&rq, &b) == 0);
    FUZZ_CHECK(same(a.text, b.text) && same(a.title, b.title));
    for (int i = 0; i < TALE_SUGGESTION_COUNT; i++)
        FUZZ_CHECK(same(a.suggestions[i], b.suggestions[i]));
    rc = 0;
out:
    tale_result_free(&a);
    tale_result_free(&b);
    free(buf);
    return rc;
}
