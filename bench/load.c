/*
 * load: the benchmark's own HTTP client (libcurl multi), for the two measurements wrk
 * cannot make: a fixed number of requests (Redis round trips per request) and the
 * admission accuracy, which needs a precise clock at each send and answer.
 *
 *   load count URL CONCURRENCY N TOKENS_FILE one|random
 *       N GET requests, CONCURRENCY at a time (one connection each, kept alive), each
 *       with "Authorization: Bearer <token>": the first token of TOKENS_FILE ("one") or
 *       one chosen at random per request ("random"). TOKENS_FILE: lines "<sub> <token>".
 *       Prints "status <code> <count>" lines (code 0: no HTTP answer) and "seconds <s>".
 *
 *   load accuracy URL CONCURRENCY SECONDS TOKENS_FILE REDIS_HOST REDIS_PORT KEY
 *       With the first token of TOKENS_FILE: DEL KEY (the bucket), one request alone,
 *       HMGET KEY tokens last_update (so the Redis time of the first admitted request and
 *       the bucket after it are known exactly), then SECONDS of requests CONCURRENCY at a
 *       time, the clock (CLOCK_REALTIME, the clock of Redis TIME on this host) read
 *       before each request is handed to libcurl and when its answer is complete; when
 *       the last answer is in, HMGET again. Every connection is opened first, with a GET
 *       /healthz each, so the run starts at once after the first request. Prints "name
 *       value" lines: first_status, first_tokens, first_last, requests, ok, refused, other,
 *       ok_send_max, ok_recv_max, end_tokens, end_last, seconds, recv_min (the run's
 *       first answer). bench/bench.sh turns them into the figures.
 *
 * Every transfer has a 10 s timeout, every Redis command 2 s.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>

#define LOAD_CONCURRENCY_MAX 1024
#define LOAD_TOKENS_MAX 100000
#define LOAD_LINE_MAX 8192
#define LOAD_STATUS_MAX 600
#define LOAD_TIMEOUT_S 10L
#define LOAD_REDIS_TIMEOUT_S 2

struct load_slot {
    CURL *easy;
    double sent; /* CLOCK_REALTIME when handed to libcurl */
};

struct load_run {
    CURLM *multi;
    struct load_slot *slots;
    int concurrency;
    struct curl_slist **tokens; /* one header list per token */
    long ntokens;
    bool random;
    unsigned int seed;
    long limit;      /* requests to send, or -1 */
    double deadline; /* CLOCK_REALTIME after which none is sent, or 0 */
    long issued, done;
    long status[LOAD_STATUS_MAX];
    double ok_send_max, ok_recv_max;
    double recv_min; /* the first answer of any status, 0 before it */
};

static double load_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t load_discard(char *data, size_t size, size_t n, void *user)
{
    (void)data;
    (void)user;
    return size * n;
}

/* Reads "<sub> <token>" lines into one "Authorization" header list each. */
static int load_tokens(struct load_run *run, const char *path)
{
    char line[LOAD_LINE_MAX], header[LOAD_LINE_MAX + 32];
    FILE *f = fopen(path, "r");

    if (f == NULL)
        return -1;
    run->tokens = calloc(LOAD_TOKENS_MAX, sizeof *run->tokens);
    while (run->tokens != NULL && run->ntokens < LOAD_TOKENS_MAX &&
           fgets(line, sizeof line, f) != NULL) {
        char *token = strchr(line, ' ');
        if (token == NULL)
            continue;
        token[strcspn(token, "\r\n")] = '\0';
        snprintf(header, sizeof header, "Authorization: Bearer %s", token + 1);
        run->tokens[run->ntokens] = curl_slist_append(NULL, header);
        if (run->tokens[run->ntokens] == NULL)
            break;
        run->ntokens++;
    }
    fclose(f);
    return run->ntokens > 0 ? 0 : -1;
}

static bool load_may_send(const struct load_run *run)
{
    if (run->limit >= 0)
        return run->issued < run->limit;
    return load_now() < run->deadline;
}

static void load_send(struct load_run *run, struct load_slot *slot)
{
    long i = run->random ? (long)(rand_r(&run->seed) % (unsigned int)run->ntokens) : 0;

    curl_easy_setopt(slot->easy, CURLOPT_HTTPHEADER, run->tokens[i]);
    curl_easy_setopt(slot->easy, CURLOPT_PRIVATE, slot);
    slot->sent = load_now();
    curl_multi_add_handle(run->multi, slot->easy);
    run->issued++;
}

static void load_finished(struct load_run *run, CURLMsg *msg)
{
    struct load_slot *slot = NULL;
    long code = 0;
    double recv = load_now();

    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&slot);
    if (msg->data.result == CURLE_OK)
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
    if (code < 0 || code >= LOAD_STATUS_MAX)
        code = 0;
    run->status[code]++;
    run->done++;
    if (run->recv_min == 0)
        run->recv_min = recv;
    if (code == 200) {
        if (slot->sent > run->ok_send_max)
            run->ok_send_max = slot->sent;
        if (recv > run->ok_recv_max)
            run->ok_recv_max = recv;
    }
    curl_multi_remove_handle(run->multi, msg->easy_handle);
    if (load_may_send(run))
        load_send(run, slot);
}

/* Runs the transfers until nothing may be sent and every answer is in. */
static int load_drive(struct load_run *run)
{
    int running = 0, left = 0;
    CURLMsg *msg;

    for (int i = 0; i < run->concurrency && load_may_send(run); i++)
        load_send(run, &run->slots[i]);
    do {
        if (curl_multi_perform(run->multi, &running) != CURLM_OK)
            return -1;
        while ((msg = curl_multi_info_read(run->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE)
                load_finished(run, msg);
        }
        if (curl_multi_perform(run->multi, &running) != CURLM_OK)
            return -1;
        if (running > 0 && curl_multi_poll(run->multi, NULL, 0, 100, NULL) != CURLM_OK)
            return -1;
    } while (running > 0 || run->done < run->issued);
    return 0;
}

static int load_setup(struct load_run *run, const char *url, int concurrency)
{
    run->multi = curl_multi_init();
    run->slots = calloc((size_t)concurrency, sizeof *run->slots);
    run->concurrency = concurrency;
    run->seed = (unsigned int)time(NULL);
    if (run->multi == NULL || run->slots == NULL)
        return -1;
    curl_multi_setopt(run->multi, CURLMOPT_MAXCONNECTS, (long)concurrency);
    for (int i = 0; i < concurrency; i++) {
        CURL *e = curl_easy_init();
        if (e == NULL)
            return -1;
        curl_easy_setopt(e, CURLOPT_URL, url);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(e, CURLOPT_TIMEOUT, LOAD_TIMEOUT_S);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, load_discard);
        run->slots[i].easy = e;
    }
    return 0;
}

static void load_teardown(struct load_run *run)
{
    for (int i = 0; run->slots != NULL && i < run->concurrency; i++)
        curl_easy_cleanup(run->slots[i].easy);
    free(run->slots);
    if (run->multi != NULL)
        curl_multi_cleanup(run->multi);
    for (long i = 0; i < run->ntokens; i++)
        curl_slist_free_all(run->tokens[i]);
    free(run->tokens);
}

static long load_number(const char *s, long min, long max)
{
    char *end = NULL;

    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || n < min || n > max)
        return -1;
    return n;
}

/* ------------------------------------------------------------------------- count */

static int load_count(char **argv)
{
    struct load_run run = {0};
    long concurrency = load_number(argv[3], 1, LOAD_CONCURRENCY_MAX);
    int rc = 1;

    run.limit = load_number(argv[4], 1, 100000000L);
    run.random = strcmp(argv[6], "random") == 0;
    if (concurrency < 0 || run.limit < 0 || (!run.random && strcmp(argv[6], "one") != 0)) {
        fprintf(stderr, "load count: bad arguments\n");
        return 2;
    }
    if (load_tokens(&run, argv[5]) != 0 || load_setup(&run, argv[2], (int)concurrency) != 0) {
        fprintf(stderr, "load count: cannot read %s or set up libcurl\n", argv[5]);
        goto out;
    }
    double t0 = load_now();
    if (load_drive(&run) != 0)
        goto out;
    for (int s = 0; s < LOAD_STATUS_MAX; s++) {
        if (run.status[s] > 0)
            printf("status %d %ld\n", s, run.status[s]);
    }
    printf("seconds %.3f\n", load_now() - t0);
    rc = 0;
out:
    load_teardown(&run);
    return rc;
}

/* ---------------------------------------------------------------------- accuracy */

/* HMGET key tokens last_update into the two doubles. */
static int load_bucket(redisContext *c, const char *key, double *tokens, double *last)
{
    const char *argv[] = {"HMGET", key, "tokens", "last_update"};
    redisReply *r = redisCommandArgv(c, 4, argv, NULL);
    int rc = -1;

    if (r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING) {
        *tokens = strtod(r->element[0]->str, NULL);
        *last = strtod(r->element[1]->str, NULL);
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

/*
 * Opens the run's connections before it starts, with one GET of warm_url (not rate
 * limited) each, so that the run's first requests go out at once on open connections.
 * The counts start again from zero.
 */
static int load_warm(struct load_run *run, const char *url, const char *warm_url)
{
    for (int i = 0; i < run->concurrency; i++)
        curl_easy_setopt(run->slots[i].easy, CURLOPT_URL, warm_url);
    long limit = run->limit;
    run->limit = run->concurrency;
    int rc = load_drive(run);
    for (int i = 0; i < run->concurrency; i++)
        curl_easy_setopt(run->slots[i].easy, CURLOPT_URL, url);
    run->limit = limit;
    run->issued = run->done = 0;
    memset(run->status, 0, sizeof run->status);
    run->ok_send_max = run->ok_recv_max = run->recv_min = 0;
    return rc;
}

static int load_del(redisContext *c, const char *key)
{
    const char *argv[] = {"DEL", key};
    redisReply *r = redisCommandArgv(c, 2, argv, NULL);
    int rc = r != NULL && r->type == REDIS_REPLY_INTEGER ? 0 : -1;

    freeReplyObject(r);
    return rc;
}

static int load_accuracy(char **argv)
{
    struct load_run first = {0}, storm = {0};
    const struct timeval tv = {LOAD_REDIS_TIMEOUT_S, 0};
    long concurrency = load_number(argv[3], 1, LOAD_CONCURRENCY_MAX);
    long seconds = load_number(argv[4], 1, 600);
    long port = load_number(argv[7], 1, 65535);
    const char *key = argv[8];
    double first_tokens = 0, first_last = 0, end_tokens = 0, end_last = 0;
    redisContext *c = NULL;
    int rc = 1;

    if (concurrency < 0 || seconds < 0 || port < 0) {
        fprintf(stderr, "load accuracy: bad arguments\n");
        return 2;
    }
    c = redisConnectWithTimeout(argv[6], (int)port, tv);
    if (c == NULL || c->err || redisSetTimeout(c, tv) != REDIS_OK) {
        fprintf(stderr, "load accuracy: cannot reach Redis\n");
        goto out;
    }
    first.limit = 1;
    storm.limit = -1;
    if (load_tokens(&first, argv[5]) != 0 || load_tokens(&storm, argv[5]) != 0 ||
        load_setup(&first, argv[2], 1) != 0 || load_setup(&storm, argv[2], (int)concurrency) != 0)
        goto out;
    /* URL ends in the path of GET /me: /healthz on the same host warms the connections */
    char warm[LOAD_LINE_MAX];
    const char *path = strstr(argv[2], "://") ? strchr(strstr(argv[2], "://") + 3, '/') : NULL;
    if (path == NULL || (size_t)(path - argv[2]) + sizeof "/healthz" > sizeof warm) {
        fprintf(stderr, "load accuracy: bad URL\n");
        goto out;
    }
    snprintf(warm, sizeof warm, "%.*s/healthz", (int)(path - argv[2]), argv[2]);
    if (load_warm(&storm, argv[2], warm) != 0 || load_warm(&first, argv[2], warm) != 0) {
        fprintf(stderr, "load accuracy: the connections could not be opened\n");
        goto out;
    }
    if (load_del(c, key) != 0 || load_drive(&first) != 0 ||
        load_bucket(c, key, &first_tokens, &first_last) != 0) {
        fprintf(stderr, "load accuracy: the first request or its bucket failed\n");
        goto out;
    }
    double t0 = load_now();
    storm.deadline = t0 + (double)seconds;
    if (load_drive(&storm) != 0 || load_bucket(c, key, &end_tokens, &end_last) != 0) {
        fprintf(stderr, "load accuracy: the run or the bucket after it failed\n");
        goto out;
    }
    printf("first_status %ld\nfirst_tokens %.17g\nfirst_last %.6f\n", first.status[200] ? 200L : 0L,
           first_tokens, first_last);
    printf("requests %ld\nok %ld\nrefused %ld\nother %ld\n", storm.done, storm.status[200],
           storm.status[429], storm.done - storm.status[200] - storm.status[429]);
    printf("ok_send_max %.6f\nok_recv_max %.6f\nend_tokens %.17g\nend_last %.6f\nseconds %.3f\n",
           storm.ok_send_max, storm.ok_recv_max, end_tokens, end_last, load_now() - t0);
    printf("recv_min %.6f\n", storm.recv_min);
    rc = 0;
out:
    if (c != NULL)
        redisFree(c);
    load_teardown(&first);
    load_teardown(&storm);
    return rc;
}

int main(int argc, char **argv)
{
    int rc;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    if (argc == 7 && strcmp(argv[1], "count") == 0) {
        rc = load_count(argv);
    } else if (argc == 9 && strcmp(argv[1], "accuracy") == 0) {
        rc = load_accuracy(argv);
    } else {
        fprintf(stderr, "usage: load count URL CONCURRENCY N TOKENS_FILE one|random\n"
                        "       load accuracy URL CONCURRENCY SECONDS TOKENS_FILE REDIS_HOST "
                        "REDIS_PORT KEY\n");
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
