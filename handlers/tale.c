/*
 * tale: the one entry point for story generation. Picks the backend (MistralAI when
 * MISTRAL_API_KEY is set, the offline storyteller otherwise) and turns the model's
 * answer into a tale_result. See include/tale.h.
 */
#include "tale.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mistral.h"
#include "offline.h"
#include "prompt.h"

static const char *const tale_kind_names[] = {
    [TALE_OPENING] = "opening", [TALE_CONTINUATION] = "continuation",
    [TALE_ENDING] = "ending",   [TALE_SUGGESTIONS] = "suggestions",
    [TALE_IDEAS] = "ideas",
};

static bool tale_upstream(const struct config *cfg)
{
    return cfg->mistral_api_key[0] != '\0';
}

const char *tale_backend(const struct config *cfg)
{
    return cfg != NULL && tale_upstream(cfg) ? "mistral" : "offline";
}

void tale_result_free(struct tale_result *out)
{
    if (out == NULL)
        return;
    free(out->text);
    free(out->title);
    for (size_t i = 0; i < TALE_SUGGESTION_COUNT; i++)
        free(out->suggestions[i]);
    memset(out, 0, sizeof *out);
}

/* The MistralAI path: messages, one chat call (retries inside), the answer parsed. */
static enum tale_status tale_mistral(const struct config *cfg, struct mistral_client *mc,
                                     const struct tale_request *rq, struct tale_result *out,
                                     long *retry_after)
{
    char model[TALE_MODEL_MAX + 1];
    char *content = NULL;
    json_t *messages = prompt_messages(rq);
    enum tale_status st = TALE_NO_MEMORY;

    if (messages == NULL)
        goto out;
    st = mistral_chat(mc, cfg, messages, prompt_temperature(rq->kind), prompt_max_tokens(rq->kind),
                      &content, model, retry_after);
    if (st != TALE_OK)
        goto out;
    if (prompt_parse(rq, content, out) < 0) {
        log_event(LOG_ERROR, "upstream_error",
                  json_pack("{s:i, s:s, s:s}", "status", 200, "reason", "unusable answer", "kind",
                            tale_kind_names[rq->kind]));
        tale_result_free(out);
        st = TALE_BAD_GATEWAY;
        goto out;
    }
    memcpy(out->model, model, sizeof out->model);
out:
    free(content);
    json_decref(messages);
    return st;
}

enum tale_status tale_write(const struct config *cfg, struct mistral_client *mc,
                            const struct tale_request *rq, struct tale_result *out,
                            long *retry_after)
{
    long ra = 1;
    enum tale_status st;

    if (retry_after != NULL)
        *retry_after = 1;
    if (out == NULL)
        return TALE_NO_MEMORY; /* a caller's mistake: answered as an internal error */
    memset(out, 0, sizeof *out);
    if (cfg == NULL || rq == NULL || rq->kind < TALE_OPENING || rq->kind > TALE_IDEAS)
        return TALE_NO_MEMORY;
    if (!tale_upstream(cfg)) {
        if (offline_write(rq, out) < 0) {
            tale_result_free(out);
            return TALE_NO_MEMORY;
        }
        return TALE_OK;
    }
    if (mc == NULL)
        return TALE_NO_MEMORY;
    st = tale_mistral(cfg, mc, rq, out, &ra);
    if (st == TALE_RATE_LIMITED && retry_after != NULL)
        *retry_after = ra < 1 ? 1 : ra;
    return st;
}
