/* storystore: stories in Redis, one hash slot per request. See include/storystore.h. */
#include "storystore.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "log.h"

/* The story scripts, linked in from lua/story_*.lua by the Makefile. */
#define STORYSTORE_SCRIPT(name)                                                                    \
    extern const char _binary_lua_story_##name##_lua_start[];                                      \
    extern const char _binary_lua_story_##name##_lua_end[];
STORYSTORE_SCRIPT(create)
STORYSTORE_SCRIPT(append)
STORYSTORE_SCRIPT(get)
STORYSTORE_SCRIPT(delete)
STORYSTORE_SCRIPT(page)

struct storystore_script {
    const char *name;
    const char *start;
    const char *end;
};

#define STORYSTORE_SCRIPT_ENTRY(name)                                                              \
    {                                                                                              \
#name, _binary_lua_story_##name##_lua_start, _binary_lua_story_##name##_lua_end            \
    }

enum { SCRIPT_CREATE, SCRIPT_APPEND, SCRIPT_GET, SCRIPT_DELETE, SCRIPT_PAGE };

static const struct storystore_script scripts[] = {
    STORYSTORE_SCRIPT_ENTRY(create), STORYSTORE_SCRIPT_ENTRY(append), STORYSTORE_SCRIPT_ENTRY(get),
    STORYSTORE_SCRIPT_ENTRY(delete), STORYSTORE_SCRIPT_ENTRY(page),
};

#define STORYSTORE_KEY_MAX (IDENTITY_SUB_MAX + STORYSTORE_ID_HEX + 32)
#define STORYSTORE_ARGS_MAX (3 + STORYSTORE_LIST_MAX + 32) /* EVAL, script, numkeys, ... */
#define STORYSTORE_NUMBER_MAX 24

/* The story fields kept in the hash, in the order of the story object (SPEC 7). */
static const char *const head_fields[] = {"id",         "title",        "genre",
                                          "characters", "opening_line", "status"};
static const char *const time_fields[] = {"created_at", "updated_at"};

bool storystore_valid_id(const char *id)
{
    size_t n = 0;
    for (; id[n] != '\0'; n++) {
        if (n >= STORYSTORE_ID_HEX ||
            !((id[n] >= '0' && id[n] <= '9') || (id[n] >= 'a' && id[n] <= 'f')))
            return false;
    }
    return n == STORYSTORE_ID_HEX;
}

void storystore_new_id(char out[STORYSTORE_ID_HEX + 1])
{
    unsigned char raw[STORYSTORE_ID_HEX / 2];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(out, STORYSTORE_ID_HEX + 1, raw, sizeof raw);
}

/* The hash and parts keys of the story at ref. */
static void storystore_keys(const struct storystore_ref *ref, char hash[STORYSTORE_KEY_MAX],
                            char parts[STORYSTORE_KEY_MAX])
{
    if (ref->user[0] == '\0') {
        snprintf(hash, STORYSTORE_KEY_MAX, "{a:%s}:story", ref->id);
        snprintf(parts, STORYSTORE_KEY_MAX, "{a:%s}:parts", ref->id);
    } else {
        snprintf(hash, STORYSTORE_KEY_MAX, "{u:%s}:story:%s", ref->user, ref->id);
        snprintf(parts, STORYSTORE_KEY_MAX, "{u:%s}:story:%s:parts", ref->user, ref->id);
    }
}

static void storystore_index_key(const char *user, char out[STORYSTORE_KEY_MAX])
{
    snprintf(out, STORYSTORE_KEY_MAX, "{u:%s}:stories", user);
}

/*
 * Runs a story script with EVAL (story writes are rare next to rate decisions; Redis
 * caches the compiled script by its hash either way). argv holds keys then arguments.
 * Returns the reply, or NULL when Redis is unreachable or answered an error (logged).
 */
static redisReply *storystore_eval(struct rconn *rc, int script, int nkeys, int argc,
                                   const char **argv)
{
    const char *args[STORYSTORE_ARGS_MAX];
    size_t arg_lens[STORYSTORE_ARGS_MAX];
    char numkeys[STORYSTORE_NUMBER_MAX];

    if (argc + 3 > STORYSTORE_ARGS_MAX)
        return NULL;
    snprintf(numkeys, sizeof numkeys, "%d", nkeys);
    args[0] = "EVAL";
    arg_lens[0] = 4;
    args[1] = scripts[script].start;
    arg_lens[1] = (size_t)((uintptr_t)scripts[script].end - (uintptr_t)scripts[script].start);
    args[2] = numkeys;
    arg_lens[2] = strlen(numkeys);
    for (int i = 0; i < argc; i++) {
        args[i + 3] = argv[i];
        arg_lens[i + 3] = strlen(argv[i]);
    }
    redisReply *r = rconn_command(rc, argc + 3, args, arg_lens);
    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        char why[200];
        log_printable(r->str, sizeof why - 4, why, sizeof why);
        log_event(LOG_ERROR, "redis_error",
                  json_pack("{s:s, s:s}", "script", scripts[script].name, "error", why));
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* An integer reply's value, or def for anything else. */
static long long storystore_integer(const redisReply *r, long long def)
{
    return r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : def;
}

/* A string field of story, "" when absent. */
static const char *storystore_field(json_t *story, const char *name)
{
    const char *s = json_string_value(json_object_get(story, name));
    return s ? s : "";
}

enum storystore_status storystore_create(struct rconn *rc, const struct storystore_ref *ref,
                                         json_t *story, long long created_us)
{
    char hash[STORYSTORE_KEY_MAX], parts[STORYSTORE_KEY_MAX], index[STORYSTORE_KEY_MAX];
    char member[CURSOR_MEMBER_LEN + 1] = "", ttl[STORYSTORE_NUMBER_MAX], cap[STORYSTORE_NUMBER_MAX];
    const char *argv[40];
    int argc = 0, nkeys = 2;
    bool anonymous = ref->user[0] == '\0';
    enum storystore_status status = STORYSTORE_UNAVAILABLE;

    char *first = json_dumps(json_array_get(json_object_get(story, "parts"), 0), JSON_COMPACT);
    if (first == NULL)
        return STORYSTORE_UNAVAILABLE;
    storystore_keys(ref, hash, parts);
    argv[argc++] = hash;
    argv[argc++] = parts;
    if (!anonymous) {
        storystore_index_key(ref->user, index);
        argv[argc++] = index;
        nkeys = 3;
        snprintf(member, sizeof member, "%016llx%s", (unsigned long long)created_us, ref->id);
    }
    snprintf(ttl, sizeof ttl, "%d", anonymous ? STORYSTORE_ANON_TTL : 0);
    snprintf(cap, sizeof cap, "%d", STORYSTORE_USER_STORIES);
    argv[argc++] = member;
    argv[argc++] = ttl;
    argv[argc++] = cap;
    argv[argc++] = first;
    for (size_t i = 0; i < sizeof head_fields / sizeof head_fields[0]; i++) {
        argv[argc++] = head_fields[i];
        argv[argc++] = storystore_field(story, head_fields[i]);
    }
    for (size_t i = 0; i < sizeof time_fields / sizeof time_fields[0]; i++) {
        argv[argc++] = time_fields[i];
        argv[argc++] = storystore_field(story, time_fields[i]);
    }
    argv[argc++] = "parts";
    argv[argc++] = "1";
    argv[argc++] = "member";
    argv[argc++] = member;
    redisReply *r = storystore_eval(rc, SCRIPT_CREATE, nkeys, argc, argv);
    if (r != NULL)
        status = storystore_integer(r, 0) == 1 ? STORYSTORE_OK : STORYSTORE_TOO_MANY;
    freeReplyObject(r);
    free(first);
    return status;
}

/* The value of field in an HGETALL reply, or NULL. */
static const char *storystore_hget(const redisReply *h, const char *field)
{
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        if (h->element[i]->type == REDIS_REPLY_STRING &&
            h->element[i + 1]->type == REDIS_REPLY_STRING && strcmp(h->element[i]->str, field) == 0)
            return h->element[i + 1]->str;
    }
    return NULL;
}

/* The story object (without parts) of an HGETALL reply; NULL when a field is missing. */
static json_t *storystore_head(const redisReply *h)
{
    json_t *story = json_object();

    for (size_t i = 0; story != NULL && i < sizeof head_fields / sizeof head_fields[0]; i++) {
        const char *v = storystore_hget(h, head_fields[i]);
        if (v == NULL || json_object_set_new(story, head_fields[i], json_string(v)) != 0)
            goto bad;
    }
    for (size_t i = 0; story != NULL && i < sizeof time_fields / sizeof time_fields[0]; i++) {
        const char *v = storystore_hget(h, time_fields[i]);
        if (v == NULL || json_object_set_new(story, time_fields[i], json_string(v)) != 0)
            goto bad;
    }
    return story;
bad:
    json_decref(story);
    return NULL;
}

/* The parts array of an LRANGE reply; NULL when one is not a JSON object. */
static json_t *storystore_parts(const redisReply *l)
{
    json_t *parts = json_array();

    for (size_t i = 0; parts != NULL && i < l->elements; i++) {
        const redisReply *e = l->element[i];
        json_t *part = e->type == REDIS_REPLY_STRING ? json_loadb(e->str, e->len, 0, NULL) : NULL;
        if (!json_is_object(part) || json_array_append_new(parts, part) != 0) {
            json_decref(part);
            json_decref(parts);
            return NULL;
        }
    }
    return parts;
}

/* Reads the story at ref: OK with *story, NOT_FOUND, or UNAVAILABLE. */
static enum storystore_status storystore_read(struct rconn *rc, const struct storystore_ref *ref,
                                              json_t **story)
{
    char hash[STORYSTORE_KEY_MAX], parts[STORYSTORE_KEY_MAX];
    const char *argv[] = {hash, parts};
    enum storystore_status status = STORYSTORE_UNAVAILABLE;

    storystore_keys(ref, hash, parts);
    redisReply *r = storystore_eval(rc, SCRIPT_GET, 2, 2, argv);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        goto out;
    if (r->elements == 0) {
        status = STORYSTORE_NOT_FOUND;
        goto out;
    }
    json_t *head = NULL, *list = NULL;
    if (r->elements == 2 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[1]->type == REDIS_REPLY_ARRAY) {
        head = storystore_head(r->element[0]);
        list = storystore_parts(r->element[1]);
    }
    if (head == NULL || list == NULL) {
        log_event(LOG_ERROR, "story_corrupt", json_pack("{s:s}", "id", ref->id));
        json_decref(head);
        json_decref(list);
        goto out;
    }
    /* parts goes before the times, as in SPEC 7's story object. */
    json_t *times[2] = {json_incref(json_object_get(head, "created_at")),
                        json_incref(json_object_get(head, "updated_at"))};
    json_object_del(head, "created_at");
    json_object_del(head, "updated_at");
    json_object_set_new(head, "parts", list);
    json_object_set_new(head, "created_at", times[0]);
    json_object_set_new(head, "updated_at", times[1]);
    *story = head;
    status = STORYSTORE_OK;
out:
    freeReplyObject(r);
    return status;
}

enum storystore_status storystore_get(struct rconn *rc, const char *user, const char *id,
                                      bool anon_too, json_t **story, struct storystore_ref *ref)
{
    enum storystore_status status = STORYSTORE_NOT_FOUND;

    *story = NULL;
    if (!storystore_valid_id(id))
        return STORYSTORE_NOT_FOUND;
    snprintf(ref->id, sizeof ref->id, "%s", id);
    if (user != NULL) {
        snprintf(ref->user, sizeof ref->user, "%s", user);
        status = storystore_read(rc, ref, story);
        if (status != STORYSTORE_NOT_FOUND || !anon_too)
            return status;
    }
    ref->user[0] = '\0';
    return storystore_read(rc, ref, story);
}

enum storystore_status storystore_append(struct rconn *rc, const struct storystore_ref *ref,
                                         size_t expected_parts, size_t cap, json_t *part,
                                         const char *updated_at, bool complete)
{
    char hash[STORYSTORE_KEY_MAX], parts[STORYSTORE_KEY_MAX];
    char expected[STORYSTORE_NUMBER_MAX], most[STORYSTORE_NUMBER_MAX];
    enum storystore_status status = STORYSTORE_UNAVAILABLE;

    char *text = json_dumps(part, JSON_COMPACT);
    if (text == NULL)
        return STORYSTORE_UNAVAILABLE;
    storystore_keys(ref, hash, parts);
    snprintf(expected, sizeof expected, "%zu", expected_parts);
    snprintf(most, sizeof most, "%zu", cap);
    const char *argv[] = {
        hash, parts, expected, most, text, updated_at, complete ? "completed" : "in_progress"};
    redisReply *r = storystore_eval(rc, SCRIPT_APPEND, 2, 7, argv);
    if (r != NULL) {
        switch (storystore_integer(r, 0)) {
        case 1: status = STORYSTORE_OK; break;
        case -1: status = STORYSTORE_COMPLETED; break;
        case -2: status = STORYSTORE_FULL; break;
        case -3: status = STORYSTORE_CHANGED; break;
        default: status = STORYSTORE_NOT_FOUND; break;
        }
    }
    freeReplyObject(r);
    free(text);
    return status;
}

enum storystore_status storystore_delete(struct rconn *rc, const char *user, const char *id)
{
    struct storystore_ref ref;
    char hash[STORYSTORE_KEY_MAX], parts[STORYSTORE_KEY_MAX], index[STORYSTORE_KEY_MAX];

    if (!storystore_valid_id(id))
        return STORYSTORE_NOT_FOUND;
    snprintf(ref.user, sizeof ref.user, "%s", user);
    snprintf(ref.id, sizeof ref.id, "%s", id);
    storystore_keys(&ref, hash, parts);
    storystore_index_key(user, index);
    const char *argv[] = {hash, parts, index};
    redisReply *r = storystore_eval(rc, SCRIPT_DELETE, 3, 3, argv);
    if (r == NULL)
        return STORYSTORE_UNAVAILABLE;
    enum storystore_status status =
        storystore_integer(r, 0) == 1 ? STORYSTORE_OK : STORYSTORE_NOT_FOUND;
    freeReplyObject(r);
    return status;
}

/* The index members of one page (up to limit + 1, to tell whether more follow). */
static redisReply *storystore_page_members(struct rconn *rc, const char *user, const char *after,
                                           size_t limit)
{
    char index[STORYSTORE_KEY_MAX], from[CURSOR_MEMBER_LEN + 2], count[STORYSTORE_NUMBER_MAX];

    storystore_index_key(user, index);
    if (after != NULL && after[0] != '\0')
        snprintf(from, sizeof from, "(%s", after);
    else
        snprintf(from, sizeof from, "+");
    snprintf(count, sizeof count, "%zu", limit + 1);
    const char *argv[] = {"ZREVRANGEBYLEX", index, from, "-", "LIMIT", "0", count};
    redisReply *r = rconn_command(rc, 7, argv, NULL);
    if (r != NULL && r->type != REDIS_REPLY_ARRAY) {
        if (r->type == REDIS_REPLY_ERROR)
            log_event(LOG_ERROR, "redis_error",
                      json_pack("{s:s, s:s}", "command", "ZREVRANGEBYLEX", "error", r->str));
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

/* The story hashes of members[0..n) as list items, skipping stories deleted meanwhile. */
static enum storystore_status storystore_page_heads(struct rconn *rc, const char *user,
                                                    const redisReply *members, size_t n,
                                                    json_t *out)
{
    char keys[STORYSTORE_LIST_MAX][STORYSTORE_KEY_MAX];
    const char *argv[STORYSTORE_LIST_MAX];
    struct storystore_ref ref;

    if (n == 0)
        return STORYSTORE_OK;
    snprintf(ref.user, sizeof ref.user, "%s", user);
    for (size_t i = 0; i < n; i++) {
        const redisReply *m = members->element[i];
        if (m->type != REDIS_REPLY_STRING || m->len != CURSOR_MEMBER_LEN)
            return STORYSTORE_UNAVAILABLE;
        snprintf(ref.id, sizeof ref.id, "%s", m->str + (CURSOR_MEMBER_LEN - STORYSTORE_ID_HEX));
        char parts[STORYSTORE_KEY_MAX];
        storystore_keys(&ref, keys[i], parts);
        argv[i] = keys[i];
    }
    redisReply *r = storystore_eval(rc, SCRIPT_PAGE, (int)n, (int)n, argv);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        freeReplyObject(r);
        return STORYSTORE_UNAVAILABLE;
    }
    for (size_t i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_ARRAY || r->element[i]->elements == 0)
            continue;
        json_t *head = storystore_head(r->element[i]);
        if (head != NULL)
            json_array_append_new(out, head);
    }
    freeReplyObject(r);
    return STORYSTORE_OK;
}

enum storystore_status storystore_list(struct rconn *rc, const char *user, const char *after,
                                       size_t limit, json_t **stories,
                                       char next[CURSOR_MEMBER_LEN + 1])
{
    *stories = NULL;
    next[0] = '\0';
    if (limit == 0 || limit > STORYSTORE_LIST_MAX)
        return STORYSTORE_UNAVAILABLE;
    redisReply *members = storystore_page_members(rc, user, after, limit);
    if (members == NULL)
        return STORYSTORE_UNAVAILABLE;
    size_t n = members->elements > limit ? limit : members->elements;
    json_t *out = json_array();
    enum storystore_status status =
        out ? storystore_page_heads(rc, user, members, n, out) : STORYSTORE_UNAVAILABLE;
    if (status == STORYSTORE_OK && members->elements > limit)
        snprintf(next, CURSOR_MEMBER_LEN + 1, "%s", members->element[n - 1]->str);
    freeReplyObject(members);
    if (status != STORYSTORE_OK) {
        json_decref(out);
        return status;
    }
    *stories = out;
    return STORYSTORE_OK;
}
