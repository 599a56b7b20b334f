/*
 * main: the story-gateway FastCGI process.
 *
 * Loads and checks the configuration, then runs GATEWAY_THREADS request threads on
 * the FastCGI socket it was given on fd 0 (lighttpd's bin-path, Apache mod_fcgid,
 * spawn-fcgi). libfcgi cannot multiplex, so FCGX_Accept_r is serialised by one
 * mutex; each thread then owns its request, its Redis connection and its state.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#ifdef __SANITIZE_ADDRESS__
#include <sanitizer/lsan_interface.h>
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <fcgiapp.h>
#include <jansson.h>
#include <sodium.h>

#include "accounts.h"
#include "config.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "tale.h"

_Static_assert(CONFIG_METRICS_SHM_MAX == METRICS_SHM_NAME_MAX, "METRICS_SHM fits a segment name");

/* Serialises FCGX_Accept_r: libfcgi allows one accepting thread at a time. */
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;
/* Set by the first thread whose accept fails, so the reason is logged once. */
static atomic_bool accept_failed;

static const char *main_getenv(const char *name)
{
    return getenv(name);
}

/*
 * The limits.json to use when RATE_LIMITS_FILE is unset, found from the binary's own
 * place: <repo>/build/story-gateway reads <repo>/limits.json, and
 * <prefix>/bin/story-gateway reads <prefix>/share/story-gateway/limits.json whatever
 * the prefix; else the one of the PREFIX it was built for.
 */
static void main_default_limits(char *out, size_t len)
{
    static const char *const beside[] = {"%s/../limits.json",
                                         "%s/../share/story-gateway/limits.json"};
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);

    if (n > 0) {
        exe[n] = '\0';
        const char *dir = dirname(exe);
        for (size_t i = 0; i < sizeof beside / sizeof beside[0]; i++) {
            snprintf(out, len, beside[i], dir);
            if (access(out, R_OK) == 0)
                return;
        }
    }
    snprintf(out, len, "%s/limits.json", SG_DATADIR);
}

static void *main_worker(void *arg)
{
    struct gateway_worker *w = arg;

    for (;;) {
        pthread_mutex_lock(&accept_lock);
        int rc = FCGX_Accept_r(&w->fcgx);
        pthread_mutex_unlock(&accept_lock);
        if (rc < 0) {
            /* Not a FastCGI socket on fd 0, or the listener is gone: this thread ends. */
            if (!atomic_exchange(&accept_failed, true))
                log_event(LOG_ERROR, "accept_failed",
                          json_pack("{s:i, s:s}", "errno", -rc, rc == -ENOTSOCK ? "hint" : "note",
                                    rc == -ENOTSOCK ? "fd 0 is not a FastCGI listening socket"
                                                    : "request thread stopped"));
            break;
        }
        gateway_handle(w);
        FCGX_Finish_r(&w->fcgx);
    }
    return NULL;
}

/*
 * Blocks the stop signals in every thread (the request threads inherit the mask) and
 * waits for one here. lighttpd stops its FastCGI children with SIGTERM; libfcgi would
 * only note it at the next accept, so the process ends itself. Requests in flight
 * fail, as they would with any process manager's stop.
 */
static void main_block_stop_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

static void *main_wait_for_stop(void *arg)
{
    const sigset_t *set = arg;
    int sig = 0;

    while (sigwait(set, &sig) != 0)
        ;
    log_event(LOG_INFO, "shutdown", json_pack("{s:i}", "signal", sig));
#ifdef __SANITIZE_ADDRESS__
    /* The sanitizer build (make asan) looks for leaks here, as exit() would have: a
     * block a request thread still uses is reachable from its stack. */
    __lsan_do_leak_check();
#endif
    _exit(0);
}

/*
 * Maps the host's metrics segment. A failure is logged once and the process serves
 * without metrics (GET /metrics answers 503): counting must never stop requests.
 */
static void main_metrics(const struct config *cfg)
{
    char err[512];

    if (metrics_attach(cfg->metrics_shm, &cfg->tiers, err, sizeof err) != 0) {
        log_event(LOG_WARN, "metrics_unavailable",
                  json_pack("{s:s, s:s}", "error", err, "hint",
                            "this process serves without metrics; GET /metrics answers 503"));
        return;
    }
    log_event(LOG_INFO, "metrics",
              json_pack("{s:s, s:i}", "segment", metrics_segment_name(), "pid", (int)getpid()));
}

static int main_init(struct config *cfg)
{
    char err[512], limits[PATH_MAX + 32];

    if (sodium_init() < 0) {
        fprintf(stderr, "story-gateway: libsodium failed to initialise\n");
        return -1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "story-gateway: libcurl failed to initialise\n");
        return -1;
    }
    json_object_seed(0);
    main_default_limits(limits, sizeof limits);
    if (config_load(cfg, main_getenv, limits, err, sizeof err) != 0) {
        fprintf(stderr, "story-gateway: %s\n", err);
        return -1;
    }
    log_set_level(cfg->log_level);
    if (accounts_init() != 0) {
        fprintf(stderr, "story-gateway: password hashing failed to initialise\n");
        return -1;
    }
    if (FCGX_Init() != 0) {
        fprintf(stderr, "story-gateway: libfcgi failed to initialise\n");
        return -1;
    }
    config_log_summary(cfg);
    main_metrics(cfg);
    log_event(LOG_INFO, "storyteller",
              tale_backend(cfg)[0] == 'o'
                  ? json_pack("{s:s}", "backend", "offline")
                  : json_pack("{s:s, s:s, s:s, s:i}", "backend", "mistral", "url",
                              cfg->mistral_api_url, "model", cfg->mistral_model, "timeout",
                              (int)cfg->mistral_timeout));
    return 0;
}

int main(void)
{
    static struct config cfg;
    struct gateway_worker *workers = NULL;
    pthread_t *threads = NULL;
    struct refusecache *refused = NULL;
    int started = 0, status = 1;
    static sigset_t stop;
    pthread_t stopper;

    signal(SIGPIPE, SIG_IGN);
    main_block_stop_signals(&stop);
    if (main_init(&cfg) != 0)
        goto out;
    if (pthread_create(&stopper, NULL, main_wait_for_stop, &stop) != 0 ||
        rconn_monitor_start(&cfg.redis) != 0)
        goto out;
    pthread_detach(stopper);
    workers = calloc((size_t)cfg.threads, sizeof *workers);
    threads = calloc((size_t)cfg.threads, sizeof *threads);
    /* One refusal cache per process, shared by its request threads (gateway.h). */
    refused = refusecache_new(REFUSECACHE_ENTRIES);
    if (workers == NULL || threads == NULL || refused == NULL)
        goto out;
    for (int i = 0; i < cfg.threads; i++) {
        workers[i].cfg = &cfg;
        workers[i].refused = refused;
        identity_cache_init(&workers[i].tokens);
        refusal_init(&workers[i].refusal);
        rconn_init(&workers[i].redis, &cfg.redis);
        mistral_init(&workers[i].ai);
        FCGX_InitRequest(&workers[i].fcgx, 0, 0);
        if (pthread_create(&threads[i], NULL, main_worker, &workers[i]) != 0) {
            log_message(LOG_ERROR, "startup", "could not start a request thread");
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    status = started == cfg.threads ? 0 : 1;
out:
    for (int i = 0; workers != NULL && i < started; i++) {
        rconn_close(&workers[i].redis);
        mistral_free(&workers[i].ai);
        identity_cache_clear(&workers[i].tokens);
        refusal_free(&workers[i].refusal);
    }
    free(workers);
    free(threads);
    refusecache_free(refused); /* every thread that used it has been joined */
    config_free(&cfg);
    curl_global_cleanup();
    return status;
}
