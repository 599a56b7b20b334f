/*
 * mkseeds: writes the seeds that cannot be typed by hand, because they carry a signature
 * under FUZZ_SECRET: bearer tokens (identity_issue) and page cursors (cursor_encode),
 * alone and inside requests. Run by make fuzz-seeds; the files are kept in git.
 *
 *   build/fuzz/mkseeds tests/fuzz/corpus
 */
#include <stdarg.h>
#include <string.h>

#include <sodium.h>

#include "cursor.h"
#include "fuzz.h"
#include "identity.h"

#define SEED_MAX 4096

static const unsigned char *key = (const unsigned char *)FUZZ_SECRET;

/* Writes dir/target/name with the printf-style text. Exits on failure. */
__attribute__((format(printf, 4, 5))) static void seed(const char *dir, const char *target,
                                                       const char *name, const char *fmt, ...)
{
    char path[1024], text[SEED_MAX];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    snprintf(path, sizeof path, "%s/%s/%s", dir, target, name);
    FILE *f = fopen(path, "wb");
    if (n < 0 || (size_t)n >= sizeof text || f == NULL ||
        fwrite(text, 1, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
        fprintf(stderr, "mkseeds: cannot write ");
        perror(path);
        exit(1);
    }
    printf("%s (%d bytes)\n", path, n);
}

/* A token for sub, issued at iat, expiring at exp (a new string). */
static char *token(const char *sub, time_t iat, time_t exp)
{
    char *t = identity_issue(key, FUZZ_SECRET_LEN, sub, iat, (long)(exp - iat));
    FUZZ_CHECK(t != NULL);
    return t;
}

int main(int argc, char **argv)
{
    static const char member[] = "0000018b8d2c6e0000112233445566778899aabbccddeeff";
    static const char story[] = "{\"story_id\":\"00112233445566778899aabbccddeeff\"}";
    char cursor[CURSOR_TEXT_MAX], other[CURSOR_TEXT_MAX];

    if (argc != 2) {
        fprintf(stderr, "usage: mkseeds CORPUS_DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    FUZZ_CHECK(sodium_init() >= 0);
    char *valid = token(FUZZ_USER, FUZZ_TOKEN_IAT, FUZZ_TOKEN_EXP);
    char *expired = token(FUZZ_USER, FUZZ_NOW - 7200, FUZZ_NOW - 3600);
    char *long_sub = token("a123456789b123456789c123456789d123456789e123456789f123456789_-XY",
                           FUZZ_TOKEN_IAT, FUZZ_TOKEN_EXP);
    FUZZ_CHECK(cursor_encode(key, FUZZ_SECRET_LEN, FUZZ_USER, member, cursor) == 0);
    FUZZ_CHECK(cursor_encode(key, FUZZ_SECRET_LEN, "someone-else", member, other) == 0);

    seed(dir, "identity", "valid-token", "Bearer %s", valid);
    seed(dir, "identity", "valid-token-blanks", " \tbearer   %s \t", valid);
    seed(dir, "identity", "expired-token", "Bearer %s", expired);
    seed(dir, "identity", "longest-sub", "Bearer %s", long_sub);
    seed(dir, "cursor", "valid", "%s", cursor);
    seed(dir, "cursor", "another-users", "%s", other);
    seed(dir, "stories", "list-with-cursor", "\x04limit=5&cursor=%s", cursor);
    seed(dir, "gateway", "stories-page-with-token",
         "REQUEST_METHOD=GET\nREQUEST_URI=/stories?limit=2&cursor=%s\nQUERY_STRING=limit=2&"
         "cursor=%s\nHTTP_AUTHORIZATION=Bearer %s\nREMOTE_ADDR=192.0.2.7\n\n",
         cursor, cursor, valid);
    seed(dir, "gateway", "me-with-token",
         "REQUEST_METHOD=GET\nREQUEST_URI=/me\nHTTP_AUTHORIZATION=Bearer %s\n"
         "HTTP_ACCEPT=application/problem+json\nREMOTE_ADDR=2001:db8::1\n"
         "HTTP_X_FORWARDED_FOR=198.51.100.1, 10.1.2.3\n\n",
         valid);
    seed(dir, "gateway", "continue-with-token",
         "REQUEST_METHOD=POST\nREQUEST_URI=/continue-story\nCONTENT_TYPE=application/json\n"
         "CONTENT_LENGTH=%zu\nHTTP_AUTHORIZATION=Bearer %s\nREMOTE_ADDR=127.0.0.1\n\n%s",
         strlen(story), valid, story);
    seed(dir, "gateway", "delete-expired-token",
         "REQUEST_METHOD=DELETE\nREQUEST_URI=/stories/00112233445566778899aabbccddeeff\n"
         "HTTP_AUTHORIZATION=Bearer %s\nREMOTE_ADDR=127.0.0.1\n\n",
         expired);
    free(valid);
    free(expired);
    free(long_sub);
    return 0;
}
