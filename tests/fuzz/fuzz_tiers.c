/*
 * fuzz_tiers: limits.json loading (fcgi/tiers.c): tiers_parse on the bytes, in the
 * production and the development environment, and tiers_load on the same bytes as a
 * file (a memfd), which must agree with tiers_parse.
 *
 * Input: the file. Checked on success: the five tiers SPEC 5.1 names exist; every tier
 * has a valid name, a finite rate in (0, 1e6], a capacity in 1..1e9, and
 * ttl = refill_seconds + 1 with refill_seconds >= capacity / rate (rounded up, up to
 * float noise); development makes ai_authenticated 10 tokens/s. On failure, the reason
 * is one printable line.
 */
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "tiers.h"

/* The memfd tiers_load reads, "/proc/self/fd/N": opened once, rewritten by each input. */
static int file_fd = -1;
static char file_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    file_fd = memfd_create("limits.json", MFD_CLOEXEC);
    FUZZ_CHECK(file_fd >= 0);
    snprintf(file_path, sizeof file_path, "/proc/self/fd/%d", file_fd);
    return 0;
}

static void check_tier(const struct tier *t)
{
    size_t n = strlen(t->name);

    FUZZ_CHECK(n >= 1 && n <= TIERS_TIER_NAME_MAX);
    FUZZ_CHECK(
        strspn(t->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n);
    FUZZ_CHECK(isfinite(t->rate) && t->rate > 0 && t->rate <= 1e6);
    FUZZ_CHECK(t->capacity >= 1 && t->capacity <= 1000000000L);
    FUZZ_CHECK(t->refill_seconds >= 0 && t->ttl == t->refill_seconds + 1);
    FUZZ_CHECK((double)t->refill_seconds >= (double)t->capacity / t->rate * (1 - 1e-9));
}

static void check(const struct tiers *l, bool development)
{
    static const char *const required[] = {TIER_AI_AUTH, TIER_AI_ANON, TIER_API_AUTH, TIER_API_ANON,
                                           TIER_AUTH};

    FUZZ_CHECK(l->count >= 5 && l->count <= TIERS_MAX);
    for (size_t i = 0; i < l->count; i++)
        check_tier(&l->tiers[i]);
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        FUZZ_CHECK(tiers_find(l, required[i]) != NULL);
    if (development)
        FUZZ_CHECK(tiers_find(l, TIER_AI_AUTH)->rate == 10.0);
    FUZZ_CHECK(l->login_failures.capacity >= 1 && l->login_failures.refill_seconds >= 1);
}

static bool same_tier(const struct tier *a, const struct tier *b)
{
    return strcmp(a->name, b->name) == 0 && a->rate == b->rate && a->capacity == b->capacity &&
           a->ttl == b->ttl && a->refill_seconds == b->refill_seconds &&
           strcmp(a->rate_text, b->rate_text) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Each struct tiers is ~14 KiB: on the heap. */
    struct tiers *parsed = calloc(2, sizeof *parsed), *loaded = parsed + 1;
    char *doc = fuzz_copy((const char *)data, size);
    char err[512];

    if (parsed == NULL || doc == NULL)
        goto out;
    for (int development = 0; development < 2; development++) {
        err[0] = '\0';
        int rc = tiers_parse(doc, size, development, parsed, err, sizeof err);
        if (rc == 0)
            check(parsed, development);
        else
            FUZZ_CHECK(err[0] != '\0' && fuzz_printable(err));
    }
    FUZZ_CHECK(ftruncate(file_fd, 0) == 0 && pwrite(file_fd, data, size, 0) == (ssize_t)size);
    int parse_rc = tiers_parse(doc, size, false, parsed, err, sizeof err);
    int load_rc = tiers_load(file_path, false, loaded, err, sizeof err);
    FUZZ_CHECK(parse_rc == load_rc);
    if (load_rc == 0) {
        FUZZ_CHECK(parsed->count == loaded->count);
        for (size_t i = 0; i < parsed->count; i++)
            FUZZ_CHECK(same_tier(&parsed->tiers[i], &loaded->tiers[i]));
        FUZZ_CHECK(same_tier(&parsed->login_failures, &loaded->login_failures));
    } else {
        FUZZ_CHECK(fuzz_printable(err));
    }
out:
    free(doc);
    free(parsed);
    return 0;
}
