/*
 * prompt: turns a tale_request into MistralAI chat messages, and the model's answer
 * (choices[0].message.content) back into a tale_result.
 *
 * Pure functions over jansson values and strings: thread-safe, unit-testable.
 */
#ifndef SG_PROMPT_H
#define SG_PROMPT_H

#include <jansson.h>

#include "tale.h"

/*
 * The "messages" array for rq (new reference; NULL when memory ran out): a system
 * message that makes a good storyteller and states the format wanted (for an opening
 * a first line "Title: ..."; for suggestions three lines), then the story so far and
 * the request as user/assistant messages. Client text is sent as message content only,
 * never spliced into the instructions' structure.
 */
json_t *prompt_messages(const struct tale_request *rq);

/* max_tokens to ask for rq->kind. */
int prompt_max_tokens(enum tale_kind kind);

/* temperature to ask for rq->kind. */
double prompt_temperature(enum tale_kind kind);

/*
 * Splits content (the model's text, borrowed) into out (zeroed by the caller; model
 * is left alone) for rq->kind:
 *   OPENING: a leading "Title: ..." line (markdown '#', '*', quotes tolerated) becomes
 *            the title, the rest the text; without one, the title is taken from the
 *            first words of the text.
 *   CONTINUATION, ENDING: the trimmed text.
 *   SUGGESTIONS, IDEAS: the first three non-empty lines, list markers ("1.", "-", "*")
 *            removed.
 * Titles and suggestions are cut to their TALE_*_MAX at a character boundary.
 * Returns 0, or -1 when the content is unusable (empty text, over TALE_TEXT_MAX
 * bytes, fewer than three suggestions, invalid UTF-8) or memory ran out.
 */
int prompt_parse(const struct tale_request *rq, const char *content, struct tale_result *out);

#endif
