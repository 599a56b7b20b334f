/*
 * pool: the request threads of the benchmark's reference FastCGI programs (hop, ideal).
 *
 * The same shape as the gateway's fcgi/main.c, so that the references differ from it only
 * in the work done per request: GATEWAY_THREADS threads (default 32, as the gateway) on
 * the FastCGI socket given on fd 0 (lighttpd's bin-path), FCGX_Accept_r serialised by
 * one mutex (libfcgi allows one accepting thread at a time), each thread owning its
 * FCGX_Request and whatever state new_state gave it.
 */
#ifndef SG_BENCH_POOL_H
#define SG_BENCH_POOL_H

#include <fcgiapp.h>

#define POOL_THREADS_DEFAULT 32 /* the gateway's GATEWAY_THREADS default */
#define POOL_THREADS_MAX 256    /* the gateway's CONFIG_THREADS_MAX */

/* Answers one request on req->out. state: the thread's own, from new_state. */
typedef void (*pool_handler)(FCGX_Request *req, void *state);

/* A thread's state, made once in the thread before its first accept; NULL is allowed. */
typedef void *(*pool_state_new)(void);

/*
 * Reads GATEWAY_THREADS, starts the threads and serves until the listener fails (or a
 * signal ends the process: lighttpd stops its children with SIGTERM). Returns 1 on a
 * bad GATEWAY_THREADS or a failed start, with one line on stderr; else 0 when every
 * thread has stopped.
 */
int pool_run(const char *name, pool_handler handle, pool_state_new new_state);

#endif
