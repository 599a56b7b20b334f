/*
 * accounts: POST /signup, POST /login, GET /me (SPEC 6).
 *
 * Redis layout (each command touches one key):
 *   user_email:<email>   string, the user id: the unique index of e-mail addresses
 *   {u:<id>}:user        hash: id, email, password_hash (argon2id), created_at
 * The {u:<id>} hash tag keeps a user's keys in one Redis Cluster slot.
 */
#ifndef SG_ACCOUNTS_H
#define SG_ACCOUNTS_H

#include "handler.h"

#define ACCOUNTS_EMAIL_MAX 254    /* characters */
#define ACCOUNTS_PASSWORD_MIN 8   /* characters */
#define ACCOUNTS_PASSWORD_MAX 128 /* characters */
/* argon2id parameters (OWASP: m = 19 MiB, t = 2, p = 1). */
#define ACCOUNTS_PWHASH_OPSLIMIT 2
#define ACCOUNTS_PWHASH_MEMLIMIT (19U * 1024U * 1024U)
/* argon2id runs at once per process: one per CPU, at most this many. */
#define ACCOUNTS_HASH_SLOTS_MAX 8
/* Seconds a request waits for a hashing slot before 503 with Retry-After. */
#define ACCOUNTS_HASH_WAIT_S 2

/*
 * Computes the decoy hash that an unknown e-mail is checked against, so that an
 * unknown address and a wrong password take the same time. Call once before the
 * request threads start. Returns 0 or -1.
 */
int accounts_init(void);

/* POST /signup {"email","password"} -> 201 token and user, 409, 422. */
void accounts_signup(struct handler_ctx *ctx, struct response *resp);

/* POST /login, JSON or OAuth2 form -> 200 token, or 401 in the same time either way. */
void accounts_login(struct handler_ctx *ctx, struct response *resp);

/* GET /me -> {"id","email","created_at"}. */
void accounts_me(struct handler_ctx *ctx, struct response *resp);

/* GET /me's read of the user record (HMGET), for the gateway to send with the rate
 * decision (include/handler.h). 0, or -1 when user does not fit a key. */
int accounts_me_prefetch(const char *user, struct handler_prefetch *pf);

/*
 * Normalises an e-mail address into out (lower case) and checks it: 1..254
 * characters, exactly one '@' with text on both sides, no spaces or control
 * characters. Returns true when valid.
 */
bool accounts_email_normalise(const char *email, char out[ACCOUNTS_EMAIL_MAX * 4 + 1]);

#endif
