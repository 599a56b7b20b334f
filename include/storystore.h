/*
 * storystore: stories in Redis (SPEC 7), laid out for Redis Cluster: every command of
 * one request touches keys of one hash slot.
 *
 *   {u:<user>}:stories          sorted set, every score 0, member "<created µs, 16 hex>
 *                               <story id, 32 hex>": the user's index, newest last in
 *                               lexicographic order (listed with ZREVRANGEBYLEX)
 *   {u:<user>}:story:<id>       hash: id, title, genre, characters, opening_line, status,
 *                               created_at, updated_at, parts (count), member
 *   {u:<user>}:story:<id>:parts list of parts, each a JSON object text
 *   {a:<id>}:story              an anonymous story's hash (same fields), TTL 24 h
 *   {a:<id>}:parts              its parts, TTL 24 h
 *
 * Writes go through Lua scripts (lua/story_*.lua), each one EVALSHA and atomic: a
 * story is created whole, a part is appended only if the story is still in progress
 * with the part count the generator saw, and a delete removes hash, parts and index
 * entry together. Each thread passes its own connection.
 */
#ifndef SG_STORYSTORE_H
#define SG_STORYSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cursor.h"
#include "identity.h"
#include "rconn.h"

#define STORYSTORE_ID_HEX 32         /* characters of a story id */
#define STORYSTORE_PARTS_MAX 30      /* parts before the ending (SPEC 7) */
#define STORYSTORE_USER_STORIES 1000 /* stories one user may keep */
#define STORYSTORE_ANON_TTL 86400    /* seconds an anonymous story lives */
#define STORYSTORE_LIST_MAX 100      /* stories per page, at most */

enum storystore_status {
    STORYSTORE_OK,
    STORYSTORE_NOT_FOUND,   /* no such story for this caller: 404 */
    STORYSTORE_COMPLETED,   /* the story is completed: 409 */
    STORYSTORE_FULL,        /* 30 parts already: 409 */
    STORYSTORE_CHANGED,     /* someone added a part meanwhile: 409 */
    STORYSTORE_TOO_MANY,    /* the user keeps STORYSTORE_USER_STORIES stories: 409 */
    STORYSTORE_UNAVAILABLE, /* Redis unreachable or failing: 503 */
};

/* Where a story lives: a user's space, or the anonymous space. */
struct storystore_ref {
    char user[IDENTITY_SUB_MAX + 1]; /* "" for an anonymous story */
    char id[STORYSTORE_ID_HEX + 1];
};

/* True when id is STORYSTORE_ID_HEX lowercase hex characters. */
bool storystore_valid_id(const char *id);

/* A new random story id (128 bits from libsodium). */
void storystore_new_id(char out[STORYSTORE_ID_HEX + 1]);

/*
 * Stores story (borrowed: the full story object of SPEC 7 with its parts) under
 * ref (user "" for anonymous), created at created_us (µs since the epoch).
 * STORYSTORE_OK, STORYSTORE_TOO_MANY or STORYSTORE_UNAVAILABLE.
 */
enum storystore_status storystore_create(struct rconn *rc, const struct storystore_ref *ref,
                                         json_t *story, long long created_us);

/*
 * Loads a story for a caller (user NULL: anonymous). A user finds their own stories,
 * and with anon_too also anonymous ones; an anonymous caller finds only anonymous ones.
 * On STORYSTORE_OK *story is a new story object with its parts and *ref says where it
 * lives. A malformed id is STORYSTORE_NOT_FOUND.
 */
enum storystore_status storystore_get(struct rconn *rc, const char *user, const char *id,
                                      bool anon_too, json_t **story, struct storystore_ref *ref);

/*
 * Appends part (borrowed JSON object) to the story at ref if it is in progress and
 * still has expected_parts parts; completes it when complete is true. updated_at is
 * the new updated_at text. cap: the parts the story may have before this one (30 for
 * a continuation, 31 for an ending... see stories.c).
 * STORYSTORE_OK, _NOT_FOUND (deleted or expired), _COMPLETED, _FULL, _CHANGED or
 * _UNAVAILABLE.
 */
enum storystore_status storystore_append(struct rconn *rc, const struct storystore_ref *ref,
                                         size_t expected_parts, size_t cap, json_t *part,
                                         const char *updated_at, bool complete);

/* Deletes the user's story id. STORYSTORE_OK, _NOT_FOUND or _UNAVAILABLE. */
enum storystore_status storystore_delete(struct rconn *rc, const char *user, const char *id);

/*
 * One page of the user's stories, newest first, without parts: at most limit
 * (1..STORYSTORE_LIST_MAX) stories after member after ("" or NULL: from the newest).
 * On STORYSTORE_OK *stories is a new array and next holds the member of the last
 * story when more follow, else "".
 */
enum storystore_status storystore_list(struct rconn *rc, const char *user, const char *after,
                                       size_t limit, json_t **stories,
                                       char next[CURSOR_MEMBER_LEN + 1]);

#endif
