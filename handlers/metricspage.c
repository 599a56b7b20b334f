/* metricspage: GET /metrics and who may read it. See include/metricspage.h. */
#include "metricspage.h"

#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <sodium.h>

#include "metrics.h"

#define METRICSPAGE_SCHEME "Bearer"

bool metricspage_loopback(const struct clientip_addr *addr)
{
    static const unsigned char v6_loopback[16] = {[15] = 1};

    if (addr == NULL)
        return false;
    if (addr->family == AF_INET)
        return addr->bytes[0] == 127;
    return addr->family == AF_INET6 && memcmp(addr->bytes, v6_loopback, 16) == 0;
}

/* A BLAKE2b digest of n bytes of s: equal digests, equal texts, whatever their lengths. */
static void metricspage_digest(const char *s, size_t n, unsigned char out[crypto_generichash_BYTES])
{
    crypto_generichash(out, crypto_generichash_BYTES, (const unsigned char *)s, n, NULL, 0);
}

bool metricspage_token_ok(const char *authorization, const char *token, size_t token_len)
{
    unsigned char got[crypto_generichash_BYTES], want[crypto_generichash_BYTES];
    size_t scheme = sizeof METRICSPAGE_SCHEME - 1;

    if (authorization == NULL || token == NULL || token_len == 0)
        return false;
    size_t n = strnlen(authorization, METRICSPAGE_AUTH_MAX + 1);
    if (n > METRICSPAGE_AUTH_MAX || n <= scheme ||
        strncasecmp(authorization, METRICSPAGE_SCHEME, scheme) != 0 ||
        (authorization[scheme] != ' ' && authorization[scheme] != '\t'))
        return false;
    const char *v = authorization + scheme;
    n -= scheme;
    while (n > 0 && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    metricspage_digest(v, n, got);
    metricspage_digest(token, token_len, want);
    bool ok = n > 0 && sodium_memcmp(got, want, sizeof got) == 0;
    sodium_memzero(want, sizeof want);
    return ok;
}

bool metricspage_allowed(const struct config *cfg, const struct request *req)
{
    struct clientip_addr client;

    if (cfg == NULL || req == NULL)
        return false;
    if (clientip_resolve(req->remote_addr, req->forwarded_for, &cfg->trusted_proxies, &client,
                         NULL) &&
        metricspage_loopback(&client))
        return true;
    return metricspage_token_ok(req->authorization, cfg->metrics_token, cfg->metrics_token_len);
}

void metricspage_serve(struct handler_ctx *ctx, struct response *resp)
{
    size_t len = 0;

    if (!metricspage_allowed(ctx->cfg, ctx->req)) {
        response_detail(resp, 403, "Forbidden");
        return;
    }
    char *text = metrics_render(&len);
    if (text == NULL) {
        response_detail(resp, 503, "Metrics unavailable");
        return;
    }
    response_text(resp, 200, METRICSPAGE_CONTENT_TYPE, text, len);
}
