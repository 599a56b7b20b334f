/*
 * fuzz: what the libFuzzer targets in tests/fuzz/ share (tests/fuzz/common.c).
 *
 * Each target fuzz_<name>.c feeds libFuzzer's bytes to the project's own parser and
 * checks what the module's header promises; a broken promise aborts (a crash to
 * libFuzzer), as does any AddressSanitizer or UndefinedBehaviorSanitizer report.
 * Inputs of several fields are split at '\n' (see fuzz_fields), the last field taking
 * the rest, so the seed files under tests/fuzz/corpus/ read as text.
 */
#ifndef SG_FUZZ_H
#define SG_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <fcgiapp.h>

#include "config.h"
#include "mistral.h"
#include "rconn.h"

/* The fixed JWT_SECRET of every target; the seeds' tokens and cursors are signed with it
 * (make fuzz-seeds). 38 bytes: at least the 32 that SPEC 3 asks. */
#define FUZZ_SECRET "story-gateway-fuzz-secret-0123456789ab"
#define FUZZ_SECRET_LEN (sizeof FUZZ_SECRET - 1)
/* The clock of the targets that take one (identity_check, mistral_retry_after). */
#define FUZZ_NOW ((time_t)1700000000)
/* The seeds' tokens: issued at FUZZ_NOW - 1000, expiring 2100-01-01 (valid for the
 * gateway target too, which checks against the real clock). */
#define FUZZ_TOKEN_IAT (FUZZ_NOW - 1000)
#define FUZZ_TOKEN_EXP ((time_t)4102444800)
/* The user of the seeds' tokens and cursors. */
#define FUZZ_USER "fuzzuser"
/* The trusted proxies of the gateway target (TRUSTED_PROXIES). */
#define FUZZ_PROXIES "10.0.0.0/8, 127.0.0.1, 2001:db8::/32"
/* Parameters and bytes a fake FastCGI request holds (fuzz_envp, fuzz_writer). */
#define FUZZ_PARAMS_MAX 64
#define FUZZ_OUT_MAX (512 * 1024)

/* A broken promise: says which and where on stderr, then aborts (libFuzzer's crash). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* libFuzzer's entry points, declared for -Wmissing-prototypes. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Splits data into n fields at its first n - 1 '\n' bytes (missing fields are ""):
 * field[i] points into one new buffer (free() it, returned) of exactly size + 1 bytes,
 * each field NUL-terminated, so a read past the last field is an ASan report.
 * len[i] is the field's length in bytes (the last one may hold NULs). NULL when out of
 * memory.
 */
char *fuzz_fields(const uint8_t *data, size_t size, size_t n, const char **field, size_t *len);

/* A new copy of len bytes with no terminator (free() it); NULL when out of memory. */
char *fuzz_copy(const char *p, size_t len);

/* True when s (len bytes) is UTF-8 as jansson accepts it: shortest forms, no surrogates,
 * at most U+10FFFF. NUL bytes are not refused here. */
bool fuzz_utf8_valid(const char *s, size_t len);

/* True when every byte of s is printable ASCII (one-line messages). */
bool fuzz_printable(const char *s);

/*
 * A gateway configuration as config_load makes it from an environment: JWT_SECRET =
 * FUZZ_SECRET, TRUSTED_PROXIES = FUZZ_PROXIES, fail mode open, the offline storyteller,
 * the repository's default tiers (written to a memfd), and a REDIS_URL naming a unix
 * socket that does not exist. Aborts when it cannot be loaded.
 */
void fuzz_config(struct config *cfg);

/*
 * Prepares rc for cfg's Redis and makes the first command fail, so the process-wide
 * outage is on from then on and every handler that needs Redis answers 503 at once,
 * after the client's bytes have been parsed (no target ever waits for a network).
 */
void fuzz_redis_down(struct rconn *rc, const struct config *cfg);

/*
 * Parses CGI parameters "NAME=value" one a line, up to an empty line or the end, into
 * envp (NULL-terminated, at most FUZZ_PARAMS_MAX). text (len bytes and a NUL) is changed
 * in place ('\n' -> NUL). Returns the offset where the body starts (len when none).
 */
size_t fuzz_envp(char *text, size_t len, char *envp[FUZZ_PARAMS_MAX + 1]);

/* A FastCGI reader stream over len bytes of buf; closed once they are read. */
void fuzz_reader(FCGX_Stream *s, unsigned char *buf, size_t len);

/* A FastCGI writer stream into buf (cap bytes); closed when full. */
void fuzz_writer(FCGX_Stream *s, unsigned char *buf, size_t cap);

#endif
