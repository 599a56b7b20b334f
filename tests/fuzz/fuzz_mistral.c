/*
 * fuzz_mistral: what MistralAI sends back, as the gateway reads it: the answer body
 * (handlers/mistral.c: mistral_parse_response), the text in it split for each kind of
 * request (handlers/prompt.c: prompt_parse: title, part, three suggestions) and the
 * Retry-After header (mistral_retry_after, clock at FUZZ_NOW).
 *
 * Input: "RETRY-AFTER\nBODY". Checked: content is 1..TALE_TEXT_MAX bytes and a model name
 * 1..TALE_MODEL_MAX printable bytes without spaces; every string prompt_parse returns is
 * valid UTF-8 within its TALE_*_MAX, and non-empty; a delay is -1 or 0..3600 (the cap in
 * mistral.c).
 */
#include <string.h>

#include "fuzz.h"
#include "prompt.h"
#include "validate.h"

#define RETRY_AFTER_CAP 3600 /* MISTRAL_RETRY_AFTER_MAX in handlers/mistral.c */

/* s: valid UTF-8, 1..max_chars characters and at most max_bytes bytes. */
static void check_string(const char *s, size_t max_chars, size_t max_bytes)
{
    FUZZ_CHECK(s != NULL && s[0] != '\0' && strlen(s) <= max_bytes);
    FUZZ_CHECK(fuzz_utf8_valid(s, strlen(s)) && validate_utf8_length(s) <= max_chars);
}

static void check_split(const char *content)
{
    for (int kind = TALE_OPENING; kind <= TALE_IDEAS; kind++) {
        struct tale_request rq = {.kind = (enum tale_kind)kind};
        struct tale_result out = {0};
        if (prompt_parse(&rq, content, &out) != 0) {
            FUZZ_CHECK(out.text == NULL && out.title == NULL && out.suggestions[0] == NULL);
            continue;
        }
        if (kind <= TALE_ENDING) {
            check_string(out.text, TALE_TEXT_MAX, TALE_TEXT_MAX);
            if (kind == TALE_OPENING)
                check_string(out.title, TALE_TITLE_MAX, 4 * TALE_TITLE_MAX);
        } else {
            for (int i = 0; i < TALE_SUGGESTION_COUNT; i++)
                check_string(out.suggestions[i], TALE_SUGGESTION_MAX, 4 * TALE_SUGGESTION_MAX);
        }
        tale_result_free(&out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *field[2];
    size_t len[2];
    char *buf = fuzz_fields(data, size, 2, field, len);
    char model[TALE_MODEL_MAX + 1] = "", *content = NULL;

    if (buf == NULL)
        return 0;
    long delay = mistral_retry_after(field[0], FUZZ_NOW);
    FUZZ_CHECK(delay >= -1 && delay <= RETRY_AFTER_CAP);
    char *body = fuzz_copy(field[1], len[1]);
    if (body != NULL && mistral_parse_response(body, len[1], &content, model) == 0) {
        FUZZ_CHECK(content != NULL && content[0] != '\0' && strlen(content) <= TALE_TEXT_MAX);
        size_t m = strlen(model);
        FUZZ_CHECK(m <= TALE_MODEL_MAX);
        for (size_t i = 0; i < m; i++)
            FUZZ_CHECK(model[i] > ' ' && model[i] < 0x7f);
        check_split(content);
        free(content);
    }
    free(body);
    free(buf);
    return 0;
}
