/*
 * offline: the built-in storyteller used when no MISTRAL_API_KEY is set (SPEC 7).
 *
 * Deterministic: the same request (genre, characters, opening line, title, parts so
 * far, user input) always gives the same text, byte for byte, in every process.
 * It writes short readable prose from phrase banks flavoured by the genre, weaving in
 * the characters, the opening line and the user's input. Pure functions, no I/O, no
 * global mutable state: thread-safe.
 */
#ifndef SG_OFFLINE_H
#define SG_OFFLINE_H

#include "tale.h"

#define OFFLINE_MODEL "offline"

/*
 * Fills *out (zeroed by the caller) for rq: text (and title for TALE_OPENING), or
 * three suggestions for TALE_SUGGESTIONS and TALE_IDEAS; model is "offline".
 * Every string is valid UTF-8 within the TALE_*_MAX bounds, whatever the input
 * (input may be up to the SPEC 7 lengths and hold any Unicode).
 * Returns 0, or -1 when memory ran out (out then holds nothing).
 */
int offline_write(const struct tale_request *rq, struct tale_result *out);

#endif
