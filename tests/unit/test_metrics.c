/*
 * Unit tests of fcgi/metrics.c: histogram bucketing, label escaping, the page in the
 * Prometheus text format, one segment shared by processes (a forked child counts into
 * the parent's page), a segment of another layout refused, a half-made one rebuilt,
 * and stale default segments removed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics.h"
#include "metricstext.h"
#include "router.h"
#include "tiers.h"

static struct tiers limits;
static char shm_name[64];

static int setup(void **state)
{
    char err[256];

    (void)state;
    assert_int_equal(tiers_load("limits.json", false, &limits, err, sizeof err), 0);
    snprintf(shm_name, sizeof shm_name, "/sg-metrics-unit-%ld", (long)getpid());
    shm_unlink(shm_name);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    metrics_detach(true);
    shm_unlink(shm_name);
    return 0;
}

static const struct router_route *route_of(const char *method, const char *path)
{
    const struct router_route *r = NULL;
    char param[HANDLER_PARAM_MAX + 1], allow[ROUTER_ALLOW_MAX];

    assert_int_equal(router_match(method, path, &r, param, allow), ROUTER_FOUND);
    return r;
}

/* The page, which must hold every line of want (each ends in '\n'). */
static void assert_page_has(const char *page, const char *want)
{
    if (strstr(page, want) == NULL)
        fail_msg("page lacks: %s\n--- page ---\n%s", want, page);
}

/* ---- pure functions ------------------------------------------------------------------- */

static void test_metrics_bucket(void **state)
{
    static const uint64_t bounds[] = {1, 2, 5, 10};
    static const struct {
        int line;
        uint64_t value;
        size_t bucket;
    } cases[] = {
        {__LINE__, 0, 0},    {__LINE__, 1, 0},          {__LINE__, 2, 1},  {__LINE__, 3, 2},
        {__LINE__, 5, 2},    {__LINE__, 6, 3},          {__LINE__, 10, 3}, {__LINE__, 11, 4},
        {__LINE__, 1000, 4}, {__LINE__, UINT64_MAX, 4},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = metrics_bucket(bounds, 4, cases[i].value);
        if (got != cases[i].bucket)
            fail_msg("line %d: value %llu in bucket %zu, want %zu", cases[i].line,
                     (unsigned long long)cases[i].value, got, cases[i].bucket);
    }
    assert_int_equal(metrics_bucket(bounds, 0, 0), 0); /* only +Inf */
}

static void test_metrics_escape_label(void **state)
{
    static const struct {
        int line;
        const char *in, *out;
        size_t outlen;
        bool ok;
    } cases[] = {
        {__LINE__, "GET /stories/{story_id}", "GET /stories/{story_id}", 64, true},
        {__LINE__, "a\"b", "a\\\"b", 64, true},
        {__LINE__, "a\\b", "a\\\\b", 64, true},
        {__LINE__, "a\nb", "a\\nb", 64, true},
        {__LINE__, "", "", 1, true},
        {__LINE__, "abc", "abc", 4, true},
        {__LINE__, "abc", "", 3, false},  /* no room for the NUL */
        {__LINE__, "ab\"", "", 4, false}, /* the escape does not fit */
        {__LINE__, "ab\"", "ab\\\"", 5, true},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        memset(out, 'x', sizeof out);
        bool ok = metricstext_escape_label(cases[i].in, out, cases[i].outlen);
        if (ok != cases[i].ok || strcmp(out, cases[i].out) != 0)
            fail_msg("line %d: got %d \"%s\", want %d \"%s\"", cases[i].line, ok, out, cases[i].ok,
                     cases[i].out);
    }
}

/* ---- attached ------------------------------------------------------------------------- */

static void test_metrics_off_counts_nothing(void **state)
{
    size_t len = 0;

    (void)state;
    assert_false(metrics_enabled());
    assert_string_equal(metrics_segment_name(), "");
    metrics_request(NULL, NULL, METRICS_ALLOWED, false, 200);
    metrics_retry_after(1);
    metrics_redis_error(METRICS_REDIS_IO);
    metrics_redis_latency(10);
    metrics_upstream(METRICS_UPSTREAM_OK, 10);
    assert_null(metrics_render(&len));
}

static void attach(void)
{
    char err[256] = "";

    if (metrics_attach(shm_name, &limits, err, sizeof err) != 0)
        fail_msg("metrics_attach: %s", err);
    assert_true(metrics_enabled());
    assert_string_equal(metrics_segment_name(), shm_name);
}

static char *render(void)
{
    size_t len = 0;
    char *page = metrics_render(&len);

    assert_non_null(page);
    assert_int_equal(strlen(page), len);
    return page;
}

/* Every line is "# HELP name text", "# TYPE name type" or "name[{labels}] value". */
static void assert_exposition_format(const char *page)
{
    const char *line = page;

    assert_true(strlen(page) > 0 && page[strlen(page) - 1] == '\n');
    while (*line != '\0') {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        char buf[512];
        size_t n = (size_t)(nl - line);
        assert_true(n < sizeof buf);
        memcpy(buf, line, n);
        buf[n] = '\0';
        if (strncmp(buf, "# HELP story_gateway_", 21) == 0 ||
            strncmp(buf, "# TYPE story_gateway_", 21) == 0) {
            line = nl + 1;
            continue;
        }
        size_t name = strspn(buf, "abcdefghijklmnopqrstuvwxyz_");
        if (strncmp(buf, "story_gateway_", 14) != 0 || (buf[name] != '{' && buf[name] != ' '))
            fail_msg("not a sample line: %s", buf);
        const char *value = strrchr(buf, ' ');
        char *end = NULL;
        strtod(value + 1, &end);
        if (end == value + 1 || *end != '\0')
            fail_msg("no number at the end: %s", buf);
        line = nl + 1;
    }
}

static void test_metrics_page(void **state)
{
    const struct router_route *me = route_of("GET", "/me"), *health = route_of("GET", "/healthz");
    const struct tier *api_auth = tiers_find(&limits, "api_authenticated");
    const struct tier *api_anon = tiers_find(&limits, "api_anonymous");
    char want[256];

    (void)state;
    attach();
    for (int i = 0; i < 3; i++)
        metrics_request(me, api_auth, METRICS_ALLOWED, true, 200);
    metrics_request(me, api_auth, METRICS_LIMITED, true, 429);
    metrics_request(me, api_auth, METRICS_LIMITED, true, 429);
    metrics_request(NULL, api_anon, METRICS_PASSED_REDIS_DOWN, false, 404);
    metrics_request(health, NULL, METRICS_UNLIMITED, false, 200);
    metrics_retry_after(1);
    metrics_retry_after(7);
    metrics_retry_after(100000); /* above every bound: +Inf only */
    metrics_redis_error(METRICS_REDIS_TIMEOUT);
    metrics_redis_latency(300);
    metrics_redis_latency(2000000);
    metrics_upstream(METRICS_UPSTREAM_OK, 1500000);
    metrics_upstream(METRICS_UPSTREAM_HTTP_5XX, 20000);

    char *page = render();
    assert_exposition_format(page);
    assert_page_has(page, "# TYPE story_gateway_requests_total counter\n");
    assert_page_has(page,
                    "story_gateway_requests_total{route=\"GET /me\",tier=\"api_authenticated\","
                    "outcome=\"allowed\",caller=\"authenticated\"} 3\n");
    assert_page_has(page,
                    "story_gateway_requests_total{route=\"GET /me\",tier=\"api_authenticated\","
                    "outcome=\"limited\",caller=\"authenticated\"} 2\n");
    assert_page_has(page, "story_gateway_requests_total{route=\"unmatched\",tier=\"api_anonymous\","
                          "outcome=\"passed_redis_down\",caller=\"anonymous\"} 1\n");
    assert_page_has(page, "story_gateway_requests_total{route=\"GET /healthz\",tier=\"none\","
                          "outcome=\"unlimited\",caller=\"anonymous\"} 1\n");
    /* zero series of the big table are left out; those of the small sets are not */
    assert_null(strstr(page, "outcome=\"allowed\",caller=\"anonymous\""));
    assert_page_has(page, "story_gateway_rate_limited_total{route=\"GET /me\"} 2\n");
    assert_page_has(page, "story_gateway_rate_limited_total{route=\"POST /login\"} 0\n");
    assert_page_has(page, "story_gateway_rate_limited_total{route=\"unmatched\"} 0\n");

    assert_page_has(page, "# TYPE story_gateway_retry_after_seconds histogram\n");
    assert_page_has(page, "story_gateway_retry_after_seconds_bucket{le=\"1\"} 1\n"
                          "story_gateway_retry_after_seconds_bucket{le=\"2\"} 1\n"
                          "story_gateway_retry_after_seconds_bucket{le=\"5\"} 1\n"
                          "story_gateway_retry_after_seconds_bucket{le=\"10\"} 2\n");
    assert_page_has(page, "story_gateway_retry_after_seconds_bucket{le=\"86400\"} 2\n"
                          "story_gateway_retry_after_seconds_bucket{le=\"+Inf\"} 3\n"
                          "story_gateway_retry_after_seconds_sum 100008\n"
                          "story_gateway_retry_after_seconds_count 3\n");

    assert_page_has(page, "story_gateway_redis_errors_total{kind=\"timeout\"} 1\n");
    assert_page_has(page, "story_gateway_redis_errors_total{kind=\"connect\"} 0\n");
    assert_page_has(page, "story_gateway_redis_command_duration_seconds_bucket{le=\"0.00025\"} 0\n"
                          "story_gateway_redis_command_duration_seconds_bucket{le=\"0.0005\"} 1\n");
    assert_page_has(page, "story_gateway_redis_command_duration_seconds_bucket{le=\"1\"} 1\n"
                          "story_gateway_redis_command_duration_seconds_bucket{le=\"+Inf\"} 2\n"
                          "story_gateway_redis_command_duration_seconds_sum 2.000300\n"
                          "story_gateway_redis_command_duration_seconds_count 2\n");

    assert_page_has(page, "story_gateway_mistral_requests_total{result=\"ok\"} 1\n");
    assert_page_has(page, "story_gateway_mistral_requests_total{result=\"http_5xx\"} 1\n");
    assert_page_has(page, "story_gateway_mistral_requests_total{result=\"timeout\"} 0\n");
    assert_page_has(page, "story_gateway_mistral_request_duration_seconds_bucket{le=\"0.1\"} 1\n");
    assert_page_has(page, "story_gateway_mistral_request_duration_seconds_bucket{le=\"1\"} 1\n"
                          "story_gateway_mistral_request_duration_seconds_bucket{le=\"2.5\"} 2\n");
    assert_page_has(page, "story_gateway_mistral_request_duration_seconds_sum 1.520000\n"
                          "story_gateway_mistral_request_duration_seconds_count 2\n");

    assert_page_has(page, "story_gateway_processes 1\n");
    snprintf(want, sizeof want, "story_gateway_process_requests_total{pid=\"%ld\"} 7\n",
             (long)getpid());
    assert_page_has(page, want);
    free(page);
}

/* A forked process that attaches by the same name counts into the same page. */
static void test_metrics_shared_by_processes(void **state)
{
    const struct router_route *me = route_of("GET", "/me");
    const struct tier *api_auth = tiers_find(&limits, "api_authenticated");
    int to_parent[2], to_child[2], status = 0;
    char c = 0;

    (void)state;
    attach();
    metrics_request(me, api_auth, METRICS_ALLOWED, true, 200);
    assert_int_equal(pipe(to_parent), 0);
    assert_int_equal(pipe(to_child), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char err[256];
        metrics_detach(false); /* what it inherited: it attaches by name, as exec'd ones do */
        if (metrics_attach(shm_name, &limits, err, sizeof err) != 0)
            _exit(2);
        for (int i = 0; i < 4; i++)
            metrics_request(me, api_auth, METRICS_ALLOWED, true, 200);
        metrics_redis_error(METRICS_REDIS_CONNECT);
        if (write(to_parent[1], "x", 1) != 1 || read(to_child[0], &c, 1) != 1)
            _exit(3);
        _exit(0);
    }
    assert_int_equal(read(to_parent[0], &c, 1), 1);

    char *page = render();
    assert_page_has(page,
                    "story_gateway_requests_total{route=\"GET /me\",tier=\"api_authenticated\","
                    "outcome=\"allowed\",caller=\"authenticated\"} 5\n");
    assert_page_has(page, "story_gateway_redis_errors_total{kind=\"connect\"} 1\n");
    assert_page_has(page, "story_gateway_processes 2\n");
    char want[128];
    snprintf(want, sizeof want, "story_gateway_process_requests_total{pid=\"%ld\"} 4\n",
             (long)child);
    assert_page_has(page, want);
    free(page);

    assert_int_equal(write(to_child[1], "x", 1), 1);
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    page = render(); /* the child is gone: its slot is not shown, its counts stay */
    assert_page_has(page, "story_gateway_processes 1\n");
    assert_null(strstr(page, want));
    assert_page_has(page, "outcome=\"allowed\",caller=\"authenticated\"} 5\n");
    free(page);
    for (int i = 0; i < 2; i++) {
        close(to_parent[i]);
        close(to_child[i]);
    }
}

/* Creates shm_name with size bytes, each set to fill. */
static void make_segment(size_t size, int fill)
{
    int fd = shm_open(shm_name, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(p != MAP_FAILED);
    memset(p, fill, size);
    munmap(p, size);
    close(fd);
}

static void test_metrics_other_layout_refused(void **state)
{
    char err[256] = "";
    size_t len;

    (void)state;
    make_segment(4096, 0);
    assert_int_equal(metrics_attach(shm_name, &limits, err, sizeof err), -1);
    assert_non_null(strstr(err, "another build"));
    assert_false(metrics_enabled());
    assert_null(metrics_render(&len));
    metrics_request(NULL, NULL, METRICS_ALLOWED, false, 200); /* does nothing, no crash */
}

/* A segment of the right size whose creator died before it was ready: made anew. */
static void test_metrics_half_made_segment_rebuilt(void **state)
{
    (void)state;
    attach(); /* learn the size */
    struct stat st;
    int fd = shm_open(shm_name, O_RDONLY, 0);
    assert_true(fd >= 0);
    assert_int_equal(fstat(fd, &st), 0);
    close(fd);
    metrics_detach(true);

    make_segment((size_t)st.st_size, 0xff); /* garbage, and the ready word is not 1 */
    attach();
    char *page = render();
    assert_page_has(page, "story_gateway_redis_errors_total{kind=\"io\"} 0\n");
    assert_page_has(page, "story_gateway_retry_after_seconds_count 0\n");
    assert_page_has(page, "story_gateway_processes 1\n");
    free(page);
}

/* Default names of this user whose parent is gone (or is another process now) go. */
static void test_metrics_stale_default_segments_removed(void **state)
{
    char dead[128], reused[128], other[128], path[160];
    struct stat st;

    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child);
    snprintf(dead, sizeof dead, "/" METRICS_SHM_PREFIX "%lu-%ld-12345-v1", (unsigned long)getuid(),
             (long)child);
    /* this process, but a start time it does not have */
    snprintf(reused, sizeof reused, "/" METRICS_SHM_PREFIX "%lu-%ld-1-v1", (unsigned long)getuid(),
             (long)getpid());
    snprintf(other, sizeof other, "/" METRICS_SHM_PREFIX "%lu-%ld-1-v1",
             (unsigned long)getuid() + 1, (long)child); /* not this user's: kept */
    const char *names[] = {dead, reused, other};
    for (size_t i = 0; i < 3; i++) {
        int fd = shm_open(names[i], O_RDWR | O_CREAT, 0600);
        assert_true(fd >= 0);
        close(fd);
    }

    char err[256] = "";
    if (metrics_attach(NULL, &limits, err, sizeof err) != 0)
        fail_msg("metrics_attach: %s", err);
    snprintf(path, sizeof path, METRICS_SHM_DIR "%s", metrics_segment_name());
    assert_int_equal(stat(path, &st), 0); /* its own, named after the live parent */
    assert_non_null(strstr(metrics_segment_name(), METRICS_SHM_PREFIX));
    snprintf(path, sizeof path, METRICS_SHM_DIR "%s", dead);
    assert_int_equal(stat(path, &st), -1);
    snprintf(path, sizeof path, METRICS_SHM_DIR "%s", reused);
    assert_int_equal(stat(path, &st), -1);
    snprintf(path, sizeof path, METRICS_SHM_DIR "%s", other);
    assert_int_equal(stat(path, &st), 0);
    shm_unlink(other);
    metrics_detach(true);
}

static void test_metrics_bad_names(void **state)
{
    static const char *const bad[] = {"/", "/a/b", "/..", "/a b", "/\xc3\xa9"};
    char err[256];

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(metrics_attach(bad[i], &limits, err, sizeof err), -1);
        assert_non_null(strstr(err, "not a segment name"));
        assert_false(metrics_enabled());
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_bucket),
        cmocka_unit_test(test_metrics_escape_label),
        cmocka_unit_test_setup_teardown(test_metrics_off_counts_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_shared_by_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_other_layout_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_half_made_segment_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_stale_default_segments_removed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_metrics_bad_names, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
