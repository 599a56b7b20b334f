/*
 * Unit tests for offline: the storyteller is deterministic, fills the right fields,
 * stays valid UTF-8 within every TALE_*_MAX bound at the SPEC's maximum input lengths,
 * weaves in the opening line, the cast and the user input, and survives hostile text
 * and running out of memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "offline.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define PARTS_MAX 31 /* 30 parts, then the ending (SPEC 7) */

/* ---- allocation failures ---------------------------------------------------------- */

/* The test binary's malloc: glibc's, unless a failure is armed. Not under
 * AddressSanitizer, whose own malloc must serve every allocation (the test that needs
 * this one then skips). */
static long malloc_fail_in = -1; /* successful mallocs left before one fails; -1: never */

#ifndef __SANITIZE_ADDRESS__
extern void *__libc_malloc(size_t size);

void *malloc(size_t size)
{
    if (malloc_fail_in == 0)
        return NULL;
    if (malloc_fail_in > 0)
        malloc_fail_in--;
    return __libc_malloc(size);
}
#endif

/* ---- helpers ------------------------------------------------------------------------ */

static int test_setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

static void result_free(struct tale_result *r)
{
    free(r->text);
    free(r->title);
    for (size_t i = 0; i < TALE_SUGGESTION_COUNT; i++)
        free(r->suggestions[i]);
    memset(r, 0, sizeof *r);
}

/*
 * Characters (code points) of s when it is valid UTF-8 (shortest forms, no surrogates)
 * with no control character (C0, DEL, C1, U+2028/2029, bidirectional controls);
 * -1 otherwise.
 */
static long utf8_clean_chars(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    long chars = 0;

    while (*s != '\0') {
        uint32_t cp;
        size_t n;
        if (s[0] < 0x80)
            cp = s[0], n = 1;
        else if (s[0] >= 0xc2 && s[0] <= 0xdf)
            cp = s[0] & 0x1f, n = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef)
            cp = s[0] & 0x0f, n = 3;
        else if (s[0] >= 0xf0 && s[0] <= 0xf4)
            cp = s[0] & 0x07, n = 4;
        else
            return -1;
        for (size_t i = 1; i < n; i++) {
            if ((s[i] & 0xc0) != 0x80)
                return -1;
            cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return -1;
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
            (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
            return -1;
        s += n;
        chars++;
    }
    return chars;
}

/* Asserts every string of r is clean UTF-8, non-empty and within its bound. */
static void assert_result_sane(const struct tale_result *r)
{
    assert_string_equal(r->model, OFFLINE_MODEL);
    if (r->text != NULL) {
        assert_true(utf8_clean_chars(r->text) > 0);
        assert_true(strlen(r->text) < TALE_TEXT_MAX);
        assert_true(r->text[0] != ' ' && r->text[strlen(r->text) - 1] != ' ');
    }
    if (r->title != NULL) {
        long chars = utf8_clean_chars(r->title);
        assert_true(chars > 0 && chars <= TALE_TITLE_MAX);
    }
    for (size_t i = 0; i < TALE_SUGGESTION_COUNT; i++) {
        if (r->suggestions[i] == NULL)
            continue;
        long chars = utf8_clean_chars(r->suggestions[i]);
        assert_true(chars > 0 && chars <= TALE_SUGGESTION_MAX);
    }
}

/* A new string of n characters cycling through the UTF-8 pieces of pattern. */
static char *repeat(const char *const *pattern, size_t npattern, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(pattern[i % npattern]);
    char *s = test_malloc(len + 1), *p = s;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(pattern[i % npattern]);
        memcpy(p, pattern[i % npattern], l);
        p += l;
    }
    *p = '\0';
    return s;
}

static void write_ok(const struct tale_request *rq, struct tale_result *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(offline_write(rq, r), 0);
    assert_result_sane(r);
}

/* A story request of kind with the usual fields. */
static struct tale_request story(enum tale_kind kind, const char *genre, const char *cast,
                                 const char *line, const char *input)
{
    static const char *const parts[] = {"Part one.", "Part two.", "Part three."};
    struct tale_request rq = {
        .kind = kind, .genre = genre, .characters = cast, .opening_line = line};
    if (kind != TALE_OPENING) {
        rq.title = "A Title";
        rq.parts = parts;
        rq.nparts = COUNT(parts);
    }
    if (kind == TALE_CONTINUATION)
        rq.user_input = input;
    return rq;
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same_result(const struct tale_result *a, const struct tale_result *b)
{
    bool eq = same(a->text, b->text) && same(a->title, b->title) && strcmp(a->model, b->model) == 0;
    for (size_t i = 0; i < TALE_SUGGESTION_COUNT; i++)
        eq = eq && same(a->suggestions[i], b->suggestions[i]);
    return eq;
}

/* Sentences in s: runs of text ending in . ! or ? followed by a space or the end. */
static int sentences(const char *s)
{
    int n = 0;
    for (const char *p = s; *p != '\0'; p++)
        if (strchr(".!?", *p) != NULL && (p[1] == ' ' || p[1] == '\0'))
            n++;
    return n;
}

static int words(const char *s)
{
    int n = 0;
    for (const char *p = s; *p != '\0'; p++)
        if (*p != ' ' && (p == s || p[-1] == ' '))
            n++;
    return n;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_offline_same_request_same_bytes(void **state)
{
    (void)state;
    static const struct {
        int line;
        enum tale_kind kind;
        const char *genre, *cast, *opening, *input;
    } cases[] = {
        {__LINE__, TALE_OPENING, "fantasy", "Mira and her owl", "It was raining.", NULL},
        {__LINE__, TALE_OPENING, "sci-fi", "Ada", "", NULL},
        {__LINE__, TALE_CONTINUATION, "mystery", "Inspector Vale", "", "Vale opens the safe"},
        {__LINE__, TALE_CONTINUATION, "horror", "Ben", "Cold.", ""},
        {__LINE__, TALE_ENDING, "romance", "Lea and Sam", "", NULL},
        {__LINE__, TALE_SUGGESTIONS, "western", "Jo", "", NULL},
        {__LINE__, TALE_IDEAS, NULL, NULL, NULL, NULL},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        print_message("line %d\n", cases[i].line);
        struct tale_request rq =
            story(cases[i].kind, cases[i].genre, cases[i].cast, cases[i].opening, cases[i].input);
        struct tale_result a, b;
        write_ok(&rq, &a);
        write_ok(&rq, &b);
        assert_true(same_result(&a, &b));
        result_free(&a);
        result_free(&b);
    }
}

/* Output pinned across builds and runs: this request gives these bytes in every process
 * (change them only on purpose, when the storyteller itself changes). */
static void test_offline_output_is_stable_across_runs(void **state)
{
    (void)state;
    struct tale_request rq = story(TALE_OPENING, "fantasy", "Mira, a young mapmaker", "", NULL);
    struct tale_result r;

    write_ok(&rq, &r);
    assert_string_equal(r.title, "The Silver Crown");
    assert_string_equal(
        r.text, "Not so long ago, in the floating city of Aerith, a story was waiting to begin. "
                "This is the story of Mira, a young mapmaker. Far away, a bell rang although no "
                "hand had touched it. Tucked away where no one would think to look lay a silver "
                "key that hummed in the moonlight, and Mira picked it up without a second "
                "thought. But the witch of the northern marshes had been waiting a long time for "
                "exactly this. Now Mira had only one choice left: to reach the Tower of Dawn.");
    result_free(&r);
}

/* Changing any one input changes the text. */
static void test_offline_inputs_change_text(void **state)
{
    (void)state;
    static const char *const parts1[] = {"One."}, *const parts2[] = {"One.", "Two."};
    static const char *const other[] = {"Uno."};
    const struct tale_request base = {.kind = TALE_CONTINUATION,
                                      .genre = "fantasy",
                                      .characters = "Mira",
                                      .opening_line = "Dawn came.",
                                      .title = "T",
                                      .parts = parts1,
                                      .nparts = 1,
                                      .user_input = "Mira climbs the tower"};
    struct {
        int line;
        struct tale_request rq;
    } cases[] = {
        {__LINE__, base}, {__LINE__, base}, {__LINE__, base}, {__LINE__, base},
        {__LINE__, base}, {__LINE__, base}, {__LINE__, base}, {__LINE__, base},
    };
    cases[0].rq.genre = "Fantasy";
    cases[1].rq.characters = "Mira ";
    cases[2].rq.opening_line = "Dusk came.";
    cases[3].rq.title = "U";
    cases[4].rq.parts = parts2, cases[4].rq.nparts = 2;
    cases[5].rq.parts = other;
    cases[6].rq.user_input = "Mira climbs the wall";
    cases[7].rq.kind = TALE_ENDING;
    struct tale_result b;
    write_ok(&base, &b);
    for (size_t i = 0; i < COUNT(cases); i++) {
        struct tale_result r;
        print_message("line %d\n", cases[i].line);
        write_ok(&cases[i].rq, &r);
        assert_string_not_equal(r.text, b.text);
        result_free(&r);
    }
    result_free(&b);
}

/* Every continuation of one story differs from the others. */
static void test_offline_continuations_differ(void **state)
{
    (void)state;
    const char *parts[PARTS_MAX];
    char *texts[PARTS_MAX] = {0};
    struct tale_request rq = story(TALE_OPENING, "adventure", "Kit", "", NULL);
    struct tale_result r;

    write_ok(&rq, &r);
    texts[0] = r.text, r.text = NULL;
    parts[0] = texts[0];
    result_free(&r);
    rq.kind = TALE_CONTINUATION;
    rq.title = "Kit";
    rq.parts = parts;
    for (size_t n = 1; n < 30; n++) {
        rq.nparts = n;
        rq.user_input = n % 2 ? "" : "Kit jumps";
        write_ok(&rq, &r);
        for (size_t k = 1; k < n; k++)
            assert_string_not_equal(r.text, texts[k]);
        texts[n] = r.text, r.text = NULL;
        parts[n] = texts[n];
        result_free(&r);
    }
    for (size_t n = 0; n < 30; n++)
        free(texts[n]);
}

static void test_offline_kinds_fill_their_fields(void **state)
{
    (void)state;
    static const struct {
        int line;
        enum tale_kind kind;
        bool text, title, suggestions;
    } cases[] = {
        {__LINE__, TALE_OPENING, true, true, false},
        {__LINE__, TALE_CONTINUATION, true, false, false},
        {__LINE__, TALE_ENDING, true, false, false},
        {__LINE__, TALE_SUGGESTIONS, false, false, true},
        {__LINE__, TALE_IDEAS, false, false, true},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        print_message("line %d\n", cases[i].line);
        struct tale_request rq =
            cases[i].kind == TALE_IDEAS
                ? (struct tale_request){.kind = TALE_IDEAS}
                : story(cases[i].kind, "comedy", "Pip the penguin", "", "Pip dances");
        struct tale_result r;
        write_ok(&rq, &r);
        assert_int_equal(r.text != NULL, cases[i].text);
        assert_int_equal(r.title != NULL, cases[i].title);
        for (size_t k = 0; k < TALE_SUGGESTION_COUNT; k++)
            assert_int_equal(r.suggestions[k] != NULL, cases[i].suggestions);
        if (cases[i].suggestions) {
            assert_string_not_equal(r.suggestions[0], r.suggestions[1]);
            assert_string_not_equal(r.suggestions[0], r.suggestions[2]);
            assert_string_not_equal(r.suggestions[1], r.suggestions[2]);
        }
        result_free(&r);
    }
}

/* Every field at its SPEC maximum, in 1- to 4-byte characters, with and without
 * spaces and line breaks: every kind stays valid and within bounds. */
static void test_offline_bounds_at_max_lengths(void **state)
{
    (void)state;
    static const char *const four[] = {"\xf0\x9f\x90\x89"}; /* U+1F409 */
    static const char *const mixed[] = {"\xc3\xa9", "\xe2\x82\xac", "a", "\xf0\x9f\x98\x80"};
    static const char *const spaced[] = {"\xe2\x82\xac", "\xe2\x82\xac", " ", "\n", "\xc3\xa9"};
    static const char *const quotes[] = {"\"", "'", "%", "^", "N", "\\", "\xe2\x80\x9d", "\t"};
    static const char *const names[] = {
        /* 23-character words of 4-byte characters */
        "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89",
        "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89",
        "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89",
        "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89",
        "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89",
        "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", "\xf0\x9f\x90\x89", " "};
    static const struct {
        int line;
        const char *const *pattern;
        size_t n;
    } cases[] = {
        {__LINE__, four, COUNT(four)},     {__LINE__, names, COUNT(names)},
        {__LINE__, mixed, COUNT(mixed)},   {__LINE__, spaced, COUNT(spaced)},
        {__LINE__, quotes, COUNT(quotes)},
    };
    static const enum tale_kind kinds[] = {TALE_OPENING, TALE_CONTINUATION, TALE_ENDING,
                                           TALE_SUGGESTIONS};
    for (size_t i = 0; i < COUNT(cases); i++) {
        print_message("line %d\n", cases[i].line);
        char *genre = repeat(cases[i].pattern, cases[i].n, TALE_GENRE_MAX);
        char *cast = repeat(cases[i].pattern, cases[i].n, TALE_CHARACTERS_MAX);
        char *opening = repeat(cases[i].pattern, cases[i].n, TALE_OPENING_MAX);
        char *input = repeat(cases[i].pattern, cases[i].n, TALE_INPUT_MAX);
        char *title = repeat(cases[i].pattern, cases[i].n, TALE_TITLE_MAX);
        char *part = repeat(cases[i].pattern, cases[i].n, (TALE_TEXT_MAX - 1) / 4);
        const char *parts[PARTS_MAX];
        for (size_t k = 0; k < PARTS_MAX; k++)
            parts[k] = part;
        for (size_t k = 0; k < COUNT(kinds); k++) {
            struct tale_request rq = {.kind = kinds[k],
                                      .genre = genre,
                                      .characters = cast,
                                      .opening_line = opening,
                                      .title = title,
                                      .parts = parts,
                                      .nparts = 30,
                                      .user_input = input};
            struct tale_result r;
            write_ok(&rq, &r);
            if (r.text != NULL)
                print_message("  kind %d: %zu bytes\n", (int)kinds[k], strlen(r.text));
            result_free(&r);
        }
        test_free(genre);
        test_free(cast);
        test_free(opening);
        test_free(input);
        test_free(title);
        test_free(part);
    }
}

/* The opening starts from the opening line, cleaned; with none it starts with prose. */
static void test_offline_opening_starts_with_opening_line(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *opening, *start;
    } cases[] = {
        {__LINE__, "The rain had not stopped for days.", "The rain had not stopped for days. "},
        {__LINE__, "The rain had not stopped", "The rain had not stopped. "},
        {__LINE__, "  Who knocked?\n\nNobody answered.  ", "Who knocked? Nobody answered. "},
        {__LINE__, "\"Run!\" she said", "\"Run!\" she said. "},
        {__LINE__, "\xe2\x80\x9cRun!\xe2\x80\x9d", "\xe2\x80\x9cRun!\xe2\x80\x9d "},
        {__LINE__, "Il \xc3\xa9tait une fois\xe2\x80\xa6", "Il \xc3\xa9tait une fois\xe2\x80\xa6 "},
        {__LINE__, "\xe6\x98\x94\xe3\x80\x82", "\xe6\x98\x94\xe3\x80\x82 "},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        print_message("line %d\n", cases[i].line);
        struct tale_request rq = story(TALE_OPENING, "mystery", "Vale", cases[i].opening, NULL);
        struct tale_result r;
        write_ok(&rq, &r);
        assert_memory_equal(r.text, cases[i].start, strlen(cases[i].start));
        result_free(&r);
    }
}

/* No opening line ("", NULL or only blanks): the text starts with a capitalised
 * sentence of our own. */
static void test_offline_empty_opening_line(void **state)
{
    (void)state;
    static const char *const openings[] = {"", NULL, "   ", "\n\t\r", "\xe2\x80\xa8"};
    for (size_t i = 0; i < COUNT(openings); i++) {
        struct tale_request rq = story(TALE_OPENING, "fairy tale", "Hans", openings[i], NULL);
        struct tale_result r;
        print_message("opening %zu\n", i);
        write_ok(&rq, &r);
        assert_true(r.text[0] >= 'A' && r.text[0] <= 'Z');
        assert_non_null(strstr(r.text, "Hans"));
        result_free(&r);
    }
}

/* The continuation visibly follows the user: it quotes (an excerpt of) the input. */
static void test_offline_continuation_quotes_user_input(void **state)
{
    (void)state;
    char long_input[TALE_INPUT_MAX + 1];
    for (size_t i = 0; i < TALE_INPUT_MAX; i++)
        long_input[i] = "Mira opens every door in the castle "[i % 36];
    long_input[TALE_INPUT_MAX] = '\0';
    static const struct {
        int line;
        const char *input, *expect;
    } table[] = {
        {__LINE__, "Mira climbs the tower", "Mira climbs the tower."},
        {__LINE__, "Does the owl speak?", "Does the owl speak?"},
        {__LINE__, "make the\ndragon\tfriendly", "make the dragon friendly."},
        {__LINE__, "%N ^T %% ^Q", "%N ^T %% ^Q."}, /* client text is never a template */
        {__LINE__, NULL, "Mira opens every door in the castle Mira opens"},
    };
    for (size_t i = 0; i < COUNT(table); i++) {
        print_message("line %d\n", table[i].line);
        const char *input = table[i].input != NULL ? table[i].input : long_input;
        struct tale_request rq = story(TALE_CONTINUATION, "fantasy", "Mira", "", input);
        struct tale_result r;
        write_ok(&rq, &r);
        assert_non_null(strstr(r.text, table[i].expect));
        if (table[i].input == NULL) { /* excerpted at a word boundary, marked with … */
            assert_true(strlen(r.text) < 1000);
            assert_non_null(strstr(r.text, "\xe2\x80\xa6"));
            assert_null(strstr(r.text, "Mira opens every door in the castle Mira opens every "
                                       "door in the castle Mira opens every door in the castle "
                                       "Mira opens every door in the castle Mira opens every "
                                       "door in the castle Mira opens every door"));
        }
        result_free(&r);
    }
}

/* Control characters, line breaks and bidirectional overrides never reach the text. */
static void test_offline_control_characters_never_raw(void **state)
{
    (void)state;
    static const char hostile[] = "Ann\x01\x1b[31m\r\n\t\x7f\xc2\x85\xc2\x9b\xe2\x80\xa8"
                                  "\xe2\x80\xae\xe2\x81\xa6 and\fBo";
    static const enum tale_kind kinds[] = {TALE_OPENING, TALE_CONTINUATION, TALE_ENDING,
                                           TALE_SUGGESTIONS};
    for (size_t k = 0; k < COUNT(kinds); k++) {
        struct tale_request rq = story(kinds[k], hostile, hostile, hostile, hostile);
        struct tale_result r;
        print_message("kind %d\n", (int)kinds[k]);
        write_ok(&rq, &r); /* assert_result_sane checks for control characters */
        if (kinds[k] == TALE_OPENING)
            assert_memory_equal(r.text, "Ann [31m and Bo. ", 17);
        result_free(&r);
    }
}

/* Invalid UTF-8 from a caller that skipped validation still gives valid text. */
static void test_offline_invalid_utf8_input(void **state)
{
    (void)state;
    static const char bad[] = "Zo\xc3\x28\xe2\x82\xff\xf0\x9f\x98\xed\xa0\x80\xc0\xaf\xf8!";
    struct tale_request rq = story(TALE_OPENING, bad, bad, bad, NULL);
    struct tale_result r;

    write_ok(&rq, &r);
    result_free(&r);
}

static void test_offline_unknown_genre(void **state)
{
    (void)state;
    static const char *const genres[] = {
        "interpretive dance", "\xe3\x83\x95\xe3\x82\xa1", "", NULL, "???", "glove puppets"};
    for (size_t i = 0; i < COUNT(genres); i++) {
        struct tale_request rq = story(TALE_OPENING, genres[i], "Ola", "", NULL);
        struct tale_result r;
        print_message("genre %zu\n", i);
        write_ok(&rq, &r);
        assert_true(sentences(r.text) >= 4);
        result_free(&r);
    }
}

/* Genres are recognised case-insensitively; the last genre word named wins. The
 * opening names one of the genre's settings. */
static void test_offline_genre_flavour(void **state)
{
    (void)state;
    static const char *const fantasy[] = {"Eldermere", "Whispering Wood", "Aerith", "uphill"};
    static const char *const scifi[] = {"Kepler Nine", "Europa", "New Lagos", "Perihelion"};
    static const char *const mystery[] = {"Ashcombe", "grand hotel", "streetlights", "seaside"};
    static const char *const horror[] = {"Hollow Lane", "any map", "asylum", "snowbound"};
    static const char *const romance[] = {"Rue des Lilas", "summer", "vineyard", "mountain inn"};
    static const char *const adventure[] = {"Port Salvage", "jungle", "giant", "climbed"};
    static const char *const fairy[] = {"seven hills", "enchanted", "sugar", "Sundays"};
    static const char *const comedy[] = {"Mumbling", "coffee machine", "cruise", "cheese"};
    static const char *const western[] = {"Redemption Creek", "desert", "railroad", "border"};
    static const char *const thriller[] = {"Berlin", "financial", "Alps", "Vienna"};
    static const char *const generic[] = {"wide river", "never quite slept", "windy hill",
                                          "quiet island"};
    static const struct {
        int line;
        const char *genre;
        const char *const *words;
    } cases[] = {
        {__LINE__, "Fantasy", fantasy},
        {__LINE__, "DARK FANTASY", fantasy},
        {__LINE__, "sword and sorcery", fantasy},
        {__LINE__, "sci-fi", scifi},
        {__LINE__, "Science Fiction", scifi},
        {__LINE__, "space opera", scifi},
        {__LINE__, "mystery", mystery},
        {__LINE__, "Cozy detective story", mystery},
        {__LINE__, "Horror", horror},
        {__LINE__, "sci-fi horror", horror},
        {__LINE__, "lovecraftian", horror},
        {__LINE__, "romance", romance},
        {__LINE__, "Adventure", adventure},
        {__LINE__, "pirate tale", adventure},
        {__LINE__, "Fairy Tale", fairy},
        {__LINE__, "bedtime story", fairy},
        {__LINE__, "comedy", comedy},
        {__LINE__, "romantic comedy", comedy},
        {__LINE__, "Western", western},
        {__LINE__, "space western", western},
        {__LINE__, "thriller", thriller},
        {__LINE__, "spy\tthriller", thriller},
        {__LINE__, "poetry", generic},
        {__LINE__, "glove puppets", generic},
    };
    static const char *const casts[] = {"Ola", "Kai and Uma", "Nell", "a brave cat"};
    for (size_t i = 0; i < COUNT(cases); i++) {
        print_message("line %d\n", cases[i].line);
        for (size_t c = 0; c < COUNT(casts); c++) {
            struct tale_request rq = story(TALE_OPENING, cases[i].genre, casts[c], "", NULL);
            struct tale_result r;
            bool found = false;
            write_ok(&rq, &r);
            for (size_t w = 0; w < 4; w++)
                found = found || strstr(r.text, cases[i].words[w]) != NULL;
            if (!found)
                print_message("%s\n", r.text);
            assert_true(found);
            result_free(&r);
        }
    }
}

/* The name taken from the cast, as a continuation (which never quotes the whole cast)
 * uses it. */
static void test_offline_name_from_cast(void **state)
{
    (void)state;
    static const struct {
        int line;
        const char *cast, *name, *not ;
    } cases[] = {
        {__LINE__, "Alice, a brave knight, and Bob the wizard", "Alice", NULL},
        {__LINE__, "Captain Reyes and a mule", "Captain Reyes", NULL},
        {__LINE__, "Captain Ada Reyes", "Ada", "Captain Ada"},
        {__LINE__, "a knight named sam", "our hero ", NULL},
        {__LINE__, "The Queen and a frog", "our heroes", NULL},
        {__LINE__, "Bob's grumpy dog", "Bob", "Bob's"},
        {__LINE__, "\xc3\x89lodie et Marc", "\xc3\x89lodie", NULL},
        {__LINE__, "  \n ", "our hero ", NULL},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        print_message("line %d\n", cases[i].line);
        struct tale_request rq = story(TALE_CONTINUATION, "western", cases[i].cast, "", "");
        struct tale_result r;
        write_ok(&rq, &r);
        assert_non_null(strstr(r.text, cases[i].name));
        if (cases[i].not != NULL)
            assert_null(strstr(r.text, cases[i].not ));
        result_free(&r);
    }
}

/* A long cast is quoted only in part: at most ~120 characters, then "…". */
static void test_offline_long_cast_is_excerpted(void **state)
{
    (void)state;
    char cast[TALE_CHARACTERS_MAX + 1];
    size_t at = 0;
    for (int i = 0; at + 8 < TALE_CHARACTERS_MAX; i++) /* "Kid000, Kid001, ..." */
        at += (size_t)snprintf(cast + at, sizeof cast - at, "Kid%03d, ", i);
    struct tale_request rq = story(TALE_OPENING, "adventure", cast, "", NULL);
    struct tale_result r;

    write_ok(&rq, &r);
    assert_non_null(strstr(r.text, "Kid000, Kid001"));
    assert_null(strstr(r.text, "Kid016"));
    assert_non_null(strstr(r.text, "\xe2\x80\xa6"));
    result_free(&r);
}

/* Parts have the lengths asked for; an ending closes the story. */
static void test_offline_sentence_counts(void **state)
{
    (void)state;
    static const char *const genres[] = {"fantasy", "sci-fi",    "mystery",    "horror",
                                         "romance", "adventure", "fairy tale", "comedy",
                                         "western", "thriller",  "opera"};
    for (int i = 0; i < 60; i++) {
        char cast[32];
        snprintf(cast, sizeof cast, "Robin%d", i);
        const char *genre = genres[i % COUNT(genres)];
        struct tale_request rq = story(TALE_OPENING, genre, cast, "", NULL);
        struct tale_result r;
        write_ok(&rq, &r);
        assert_in_range(sentences(r.text), 4, 7);
        result_free(&r);
        rq = story(TALE_CONTINUATION, genre, cast, "", i % 2 ? "" : "Robin sings");
        write_ok(&rq, &r);
        assert_in_range(sentences(r.text), 3, 6);
        result_free(&r);
        rq = story(TALE_ENDING, genre, cast, "", NULL);
        write_ok(&rq, &r);
        assert_in_range(sentences(r.text), 4, 6);
        size_t len = strlen(r.text);
        assert_true(len > 9 && strcmp(r.text + len - 9, " The end.") == 0);
        result_free(&r);
    }
}

static void test_offline_titles_are_short(void **state)
{
    (void)state;
    static const char *const casts[] = {"Robin", "a cat", "Captain Ada Reyes", "Lou and Max"};
    bool named = false;
    for (int i = 0; i < 80; i++) {
        char genre[32];
        snprintf(genre, sizeof genre, "%s %d", i % 2 ? "comedy" : "fantasy", i);
        struct tale_request rq = story(TALE_OPENING, genre, casts[i % 4], "", NULL);
        struct tale_result r;
        write_ok(&rq, &r);
        assert_in_range(words(r.title), 2, 7);
        assert_true(r.title[0] >= 'A' && r.title[0] <= 'Z');
        named = named || strstr(r.title, "Robin") != NULL;
        result_free(&r);
    }
    assert_true(named); /* titles sometimes use the cast's name */
}

static void test_offline_ideas_need_no_inputs(void **state)
{
    (void)state;
    struct tale_request rq = {.kind = TALE_IDEAS};
    struct tale_result a, b;

    write_ok(&rq, &a);
    write_ok(&rq, &b);
    assert_true(same_result(&a, &b));
    for (size_t i = 0; i < TALE_SUGGESTION_COUNT; i++) {
        print_message("%s\n", a.suggestions[i]);
        assert_non_null(strchr(a.suggestions[i], ':')); /* "Genre: idea" */
        assert_in_range(sentences(a.suggestions[i]), 1, 2);
    }
    result_free(&a);
    result_free(&b);
}

/* Suggestions are three different short sentences about this story. */
static void test_offline_suggestions_about_the_story(void **state)
{
    (void)state;
    bool named = false;
    for (int i = 0; i < 40; i++) {
        char cast[32];
        snprintf(cast, sizeof cast, "Wren%d", i);
        struct tale_request rq = story(TALE_SUGGESTIONS, "mystery", cast, "", NULL);
        struct tale_result r;
        write_ok(&rq, &r);
        for (size_t k = 0; k < TALE_SUGGESTION_COUNT; k++) {
            assert_true(strlen(r.suggestions[k]) < 200);
            named = named || strstr(r.suggestions[k], cast) != NULL;
            for (size_t j = 0; j < k; j++)
                assert_string_not_equal(r.suggestions[k], r.suggestions[j]);
        }
        result_free(&r);
    }
    assert_true(named);
}

/* Out of memory at every allocation in turn: -1 and nothing held, never a leak. */
static void test_offline_out_of_memory(void **state)
{
    (void)state;
    void *(*volatile alloc)(size_t) = malloc;
    static const enum tale_kind kinds[] = {TALE_OPENING, TALE_CONTINUATION, TALE_ENDING,
                                           TALE_SUGGESTIONS, TALE_IDEAS};

    malloc_fail_in = 0;
    void *probe = alloc(1);
    malloc_fail_in = -1;
    if (probe != NULL) { /* this malloc is not the one in use (a sanitizer replaced it) */
        free(probe);
        skip();
    }
    for (size_t k = 0; k < COUNT(kinds); k++) {
        struct tale_request rq = kinds[k] == TALE_IDEAS
                                     ? (struct tale_request){.kind = TALE_IDEAS}
                                     : story(kinds[k], "horror", "Vi and Em", "Dark.", "Run");
        long fails = 0;
        for (long n = 0; n < 100; n++) {
            struct tale_result r = {0}, zero = {0};
            malloc_fail_in = n;
            int rc = offline_write(&rq, &r);
            malloc_fail_in = -1;
            if (rc == 0) {
                assert_result_sane(&r);
                result_free(&r);
                break;
            }
            assert_int_equal(rc, -1);
            assert_memory_equal(&r, &zero, sizeof r);
            fails++;
        }
        print_message("kind %d: %ld failure points\n", (int)kinds[k], fails);
        assert_true(fails >= 2 && fails < 100);
    }
}

static void test_offline_rejects_bad_requests(void **state)
{
    (void)state;
    struct tale_request rq = story(TALE_OPENING, "fantasy", "Mira", "", NULL);
    struct tale_result r = {0}, zero = {0};

    rq.kind = (enum tale_kind)99;
    assert_int_equal(offline_write(&rq, &r), -1);
    assert_memory_equal(&r, &zero, sizeof r);
    assert_int_equal(offline_write(NULL, &r), -1);
    /* nparts without parts reads as no parts */
    rq = story(TALE_CONTINUATION, "fantasy", "Mira", "", "go");
    rq.parts = NULL;
    write_ok(&rq, &r);
    result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offline_same_request_same_bytes),
        cmocka_unit_test(test_offline_output_is_stable_across_runs),
        cmocka_unit_test(test_offline_inputs_change_text),
        cmocka_unit_test(test_offline_continuations_differ),
        cmocka_unit_test(test_offline_kinds_fill_their_fields),
        cmocka_unit_test(test_offline_bounds_at_max_lengths),
        cmocka_unit_test(test_offline_opening_starts_with_opening_line),
        cmocka_unit_test(test_offline_empty_opening_line),
        cmocka_unit_test(test_offline_continuation_quotes_user_input),
        cmocka_unit_test(test_offline_control_characters_never_raw),
        cmocka_unit_test(test_offline_invalid_utf8_input),
        cmocka_unit_test(test_offline_unknown_genre),
        cmocka_unit_test(test_offline_genre_flavour),
        cmocka_unit_test(test_offline_name_from_cast),
        cmocka_unit_test(test_offline_long_cast_is_excerpted),
        cmocka_unit_test(test_offline_sentence_counts),
        cmocka_unit_test(test_offline_titles_are_short),
        cmocka_unit_test(test_offline_ideas_need_no_inputs),
        cmocka_unit_test(test_offline_suggestions_about_the_story),
        cmocka_unit_test(test_offline_out_of_memory),
        cmocka_unit_test(test_offline_rejects_bad_requests),
    };
    return cmocka_run_group_tests(tests, test_setup, NULL);
}
