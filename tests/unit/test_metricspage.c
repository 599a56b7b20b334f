/*
 * Unit tests of handlers/metricspage.c: who may read GET /metrics (the resolved client
 * address is loopback, or the METRICS_TOKEN bearer token), and the page's answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"
#include "metricspage.h"

#define TOKEN "0123456789abcdef0123456789abcdef"

static void test_metricspage_token(void **state)
{
    static const struct {
        int line;
        const char *header;
        bool ok;
    } cases[] = {
        {__LINE__, "Bearer " TOKEN, true},
        {__LINE__, "bearer " TOKEN, true},
        {__LINE__, "BEARER \t " TOKEN "  ", true},
        {__LINE__, "Bearer " TOKEN "0", false},
        {__LINE__, "Bearer 0123456789abcdef0123456789abcdeF", false},
        {__LINE__, "Bearer 0123456789abcdef", false},
        {__LINE__, "Bearer", false},
        {__LINE__, "Bearer ", false},
        {__LINE__, "Bearer" TOKEN, false},
        {__LINE__, "Basic " TOKEN, false},
        {__LINE__, TOKEN, false},
        {__LINE__, "", false},
        {__LINE__, NULL, false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool ok = metricspage_token_ok(cases[i].header, TOKEN, strlen(TOKEN));
        if (ok != cases[i].ok)
            fail_msg("line %d: \"%s\" gave %d", cases[i].line,
                     cases[i].header ? cases[i].header : "(null)", ok);
    }
    /* no METRICS_TOKEN: nothing matches, not even an empty bearer */
    assert_false(metricspage_token_ok("Bearer ", "", 0));
    assert_false(metricspage_token_ok("Bearer x", NULL, 0));
    /* longer than METRICSPAGE_AUTH_MAX: refused without looking */
    char *big = malloc(METRICSPAGE_AUTH_MAX + 16);
    assert_non_null(big);
    memset(big, 'a', METRICSPAGE_AUTH_MAX + 15);
    memcpy(big, "Bearer ", 7);
    big[METRICSPAGE_AUTH_MAX + 15] = '\0';
    assert_false(metricspage_token_ok(big, big + 7, strlen(big + 7)));
    free(big);
}

static void test_metricspage_loopback(void **state)
{
    static const struct {
        int line;
        const char *addr;
        bool loopback;
    } cases[] = {
        {__LINE__, "127.0.0.1", true},    {__LINE__, "127.255.1.2", true},
        {__LINE__, "::1", true},          {__LINE__, "::ffff:127.0.0.1", true},
        {__LINE__, "128.0.0.1", false},   {__LINE__, "10.0.0.1", false},
        {__LINE__, "::2", false},         {__LINE__, "::", false},
        {__LINE__, "2001:db8::1", false}, {__LINE__, "0.0.0.0", false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct clientip_addr a;
        assert_true(clientip_parse(cases[i].addr, strlen(cases[i].addr), &a));
        if (metricspage_loopback(&a) != cases[i].loopback)
            fail_msg("line %d: %s", cases[i].line, cases[i].addr);
    }
    assert_false(metricspage_loopback(NULL));
}

static void test_metricspage_allowed(void **state)
{
    static struct config cfg;
    char err[256];
    static const struct {
        int line;
        const char *remote, *xff, *auth;
        bool with_token, ok;
    } cases[] = {
        {__LINE__, "127.0.0.1", NULL, NULL, false, true},
        {__LINE__, "::1", NULL, NULL, false, true},
        {__LINE__, "192.0.2.7", NULL, NULL, true, false},
        {__LINE__, "192.0.2.7", NULL, "Bearer " TOKEN, true, true},
        {__LINE__, "192.0.2.7", NULL, "Bearer " TOKEN, false, false}, /* no METRICS_TOKEN */
        {__LINE__, "192.0.2.7", NULL, "Bearer wrong-token-0123456789", true, false},
        /* a trusted proxy on this host: the client it names counts, not the proxy */
        {__LINE__, "10.0.0.1", "203.0.113.9", NULL, true, false},
        {__LINE__, "10.0.0.1", "203.0.113.9", "Bearer " TOKEN, true, true},
        {__LINE__, "10.0.0.1", "127.0.0.1", NULL, true, true},
        {__LINE__, "10.0.0.1", NULL, NULL, true, false},
        /* an untrusted peer cannot claim loopback */
        {__LINE__, "192.0.2.7", "127.0.0.1", NULL, true, false},
        {__LINE__, NULL, NULL, NULL, true, false},
        {__LINE__, "garbage", NULL, NULL, true, false},
    };

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    assert_int_equal(clientip_proxies_parse("10.0.0.0/8", &cfg.trusted_proxies, err, sizeof err),
                     0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct request req;
        memset(&req, 0, sizeof req);
        req.remote_addr = cases[i].remote;
        req.forwarded_for = cases[i].xff;
        req.authorization = cases[i].auth;
        snprintf(cfg.metrics_token, sizeof cfg.metrics_token, "%s",
                 cases[i].with_token ? TOKEN : "");
        cfg.metrics_token_len = strlen(cfg.metrics_token);
        if (metricspage_allowed(&cfg, &req) != cases[i].ok)
            fail_msg("line %d: expected %d", cases[i].line, cases[i].ok);
    }
}

/* The three answers: 403 JSON, 503 JSON without a segment, 200 text with one. */
static void test_metricspage_serve(void **state)
{
    static struct config cfg;
    struct request req;
    struct response resp;
    struct handler_ctx ctx = {&cfg, NULL, NULL, &req, NULL, NULL, NULL};
    char err[256], name[64], *text;
    size_t len;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    memset(&req, 0, sizeof req);
    req.remote_addr = "192.0.2.7";
    response_init(&resp);
    metricspage_serve(&ctx, &resp);
    assert_int_equal(resp.status, 403);
    text = response_serialize(&resp, &len);
    assert_non_null(strstr(text, "Status: 403 Forbidden\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(text, "\r\n\r\n{\"detail\":\"Forbidden\"}"));
    free(text);
    response_free(&resp);

    req.remote_addr = "127.0.0.1";
    response_init(&resp);
    metricspage_serve(&ctx, &resp);
    assert_int_equal(resp.status, 503);
    text = response_serialize(&resp, &len);
    assert_non_null(strstr(text, "{\"detail\":\"Metrics unavailable\"}"));
    free(text);
    response_free(&resp);

    snprintf(name, sizeof name, "/sg-metrics-unit-page-%ld", (long)getpid());
    assert_int_equal(tiers_load("limits.json", false, &cfg.tiers, err, sizeof err), 0);
    assert_int_equal(metrics_attach(name, &cfg.tiers, err, sizeof err), 0);
    response_init(&resp);
    metricspage_serve(&ctx, &resp);
    assert_int_equal(resp.status, 200);
    text = response_serialize(&resp, &len);
    assert_non_null(strstr(text, "Status: 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                                 "charset=utf-8\r\nContent-Length: "));
    assert_non_null(strstr(text, "\r\n\r\n# HELP story_gateway_requests_total "));
    assert_non_null(strstr(text, "\nstory_gateway_processes 1\n"));
    /* Content-Length is the page's length */
    const char *cl = strstr(text, "Content-Length: ");
    const char *body = strstr(text, "\r\n\r\n") + 4;
    assert_int_equal(strtoul(cl + 16, NULL, 10), strlen(body));
    free(text);
    response_free(&resp);
    metrics_detach(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metricspage_token),
        cmocka_unit_test(test_metricspage_loopback),
        cmocka_unit_test(test_metricspage_allowed),
        cmocka_unit_test(test_metricspage_serve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
