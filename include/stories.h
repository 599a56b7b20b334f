/*
 * stories: the story endpoints of SPEC 7.
 *
 *   POST /start-story      {"genre","characters","opening_line"}  -> the new story
 *   POST /continue-story   {"story_id","user_input"}              -> one more part
 *   POST /end-story        {"story_id"}                            -> the ending
 *   GET  /suggestions      ?story_id=                              -> three suggestions
 *   GET  /stories          ?limit=&cursor=                         -> the caller's stories
 *   GET  /stories/{id}, DELETE /stories/{id}
 *
 * A story started with a user's token is that user's alone; one started anonymously
 * is reachable by its id on the AI routes and expires after 24 hours. Text comes from
 * tale_write (MistralAI or the offline storyteller), storage from storystore.
 */
#ifndef SG_STORIES_H
#define SG_STORIES_H

#include "handler.h"

#define STORIES_LIMIT_DEFAULT 20 /* stories per page when ?limit is absent */

/*
 * How many MistralAI generations one process runs at once with threads request
 * threads: all but a quarter (at least one), so that however slow the upstream is,
 * some threads always remain for /me, log-ins and 429 answers. A generation that finds
 * no free slot is answered 503 with Retry-After at once.
 */
int stories_generation_slots(int threads);

void stories_start(struct handler_ctx *ctx, struct response *resp);
void stories_continue(struct handler_ctx *ctx, struct response *resp);
void stories_end(struct handler_ctx *ctx, struct response *resp);
void stories_suggestions(struct handler_ctx *ctx, struct response *resp);
void stories_list(struct handler_ctx *ctx, struct response *resp);
void stories_get(struct handler_ctx *ctx, struct response *resp);
void stories_delete(struct handler_ctx *ctx, struct response *resp);

#endif
