/* pool: request threads for the benchmark's references. See bench/pool.h. */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Serialises FCGX_Accept_r, as the gateway's accept_lock does. */
static pthread_mutex_t pool_accept_lock = PTHREAD_MUTEX_INITIALIZER;

struct pool_thread {
    pthread_t id;
    pool_handler handle;
    pool_state_new new_state;
};

static void *pool_worker(void *arg)
{
    struct pool_thread *t = arg;
    void *state = t->new_state != NULL ? t->new_state() : NULL;
    FCGX_Request req;

    if (FCGX_InitRequest(&req, 0, 0) != 0)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&pool_accept_lock);
        int rc = FCGX_Accept_r(&req);
        pthread_mutex_unlock(&pool_accept_lock);
        if (rc < 0)
            break;
        t->handle(&req, state);
        FCGX_Finish_r(&req);
    }
    return NULL;
}

/*
 * libfcgi's own SIGTERM handler only marks a shutdown that the next accept would see, so
 * threads blocked in accept would keep the process alive after lighttpd stops it. As the
 * gateway does (fcgi/main.c), the stop signals are blocked in every thread and one thread
 * waits for them and ends the process.
 */
static void *pool_wait_for_stop(void *arg)
{
    const sigset_t *set = arg;
    int sig = 0;

    while (sigwait(set, &sig) != 0)
        ;
    _exit(0);
}

static int pool_stop_on_signal(void)
{
    static sigset_t set;
    pthread_t id;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0 ||
        pthread_create(&id, NULL, pool_wait_for_stop, &set) != 0)
        return -1;
    pthread_detach(id);
    return 0;
}

/* GATEWAY_THREADS as the gateway reads it: a whole number 1..POOL_THREADS_MAX. */
static int pool_threads(const char *name)
{
    const char *v = getenv("GATEWAY_THREADS");
    char *end = NULL;

    if (v == NULL || v[0] == '\0')
        return POOL_THREADS_DEFAULT;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 1 || n > POOL_THREADS_MAX) {
        fprintf(stderr, "%s: GATEWAY_THREADS must be a whole number from 1 to %d\n", name,
                POOL_THREADS_MAX);
        return -1;
    }
    return (int)n;
}

int pool_run(const char *name, pool_handler handle, pool_state_new new_state)
{
    int n = pool_threads(name), started = 0;
    struct pool_thread *threads = NULL;

    signal(SIGPIPE, SIG_IGN);
    if (n < 0 || pool_stop_on_signal() != 0)
        return 1;
    if (FCGX_Init() != 0) {
        fprintf(stderr, "%s: libfcgi failed to initialise\n", name);
        return 1;
    }
    threads = calloc((size_t)n, sizeof *threads);
    if (threads == NULL)
        return 1;
    for (int i = 0; i < n; i++) {
        threads[i].handle = handle;
        threads[i].new_state = new_state;
        if (pthread_create(&threads[i].id, NULL, pool_worker, &threads[i]) != 0) {
            fprintf(stderr, "%s: could not start a request thread\n", name);
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i].id, NULL);
    free(threads);
    return started == n ? 0 : 1;
}
