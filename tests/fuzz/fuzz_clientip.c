/*
 * fuzz_clientip: the client address (fcgi/clientip.c): the TRUSTED_PROXIES list
 * (clientip_proxies_parse), REMOTE_ADDR (clientip_parse) and the X-Forwarded-For walk
 * (clientip_resolve), with the RFC 5952 text and the /64 bucket of what they find.
 *
 * Input: "PROXIES\nREMOTE_ADDR\nX-FORWARDED-FOR". A list that does not parse is replaced
 * by FUZZ_PROXIES, so the walk always has trusted hops to skip. Checked: a parsed list
 * holds CIDRs without host bits; an error is one printable line; every address found
 * is written in text that parses back to the same address, and its bucket is its own
 * text (IPv4) or its /64; an untrusted REMOTE_ADDR is the client.
 */
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "clientip.h"
#include "fuzz.h"

/* The text of addr parses back to addr, and its bucket is what SPEC 5.2 says. */
static void check_text(const struct clientip_addr *addr)
{
    char text[CLIENTIP_TEXT_MAX], bucket[CLIENTIP_TEXT_MAX];
    struct clientip_addr again;

    FUZZ_CHECK(addr->family == AF_INET || addr->family == AF_INET6);
    clientip_format(addr, text);
    FUZZ_CHECK(strlen(text) <= INET6_ADDRSTRLEN - 1);
    FUZZ_CHECK(clientip_parse(text, strlen(text), &again));
    FUZZ_CHECK(again.family == addr->family &&
               memcmp(again.bytes, addr->bytes, addr->family == AF_INET ? 4 : 16) == 0);
    clientip_bucket(addr, bucket);
    if (addr->family == AF_INET) {
        FUZZ_CHECK(strcmp(bucket, text) == 0);
        return;
    }
    size_t n = strlen(bucket);
    FUZZ_CHECK(n > 3 && strcmp(bucket + n - 3, "/64") == 0);
    bucket[n - 3] = '\0';
    FUZZ_CHECK(clientip_parse(bucket, n - 3, &again) && again.family == AF_INET6);
    FUZZ_CHECK(memcmp(again.bytes, addr->bytes, 8) == 0);
    for (int i = 8; i < 16; i++)
        FUZZ_CHECK(again.bytes[i] == 0);
}

static void check_list(const struct clientip_proxies *list)
{
    FUZZ_CHECK(list->count <= CLIENTIP_PROXIES_MAX);
    for (size_t i = 0; i < list->count; i++) {
        const struct clientip_cidr *c = &list->cidrs[i];
        int bits = c->addr.family == AF_INET ? 32 : 128;
        FUZZ_CHECK(c->prefix >= 0 && c->prefix <= bits);
        for (int b = c->prefix; b < bits; b++) /* host bits cleared */
            FUZZ_CHECK((c->addr.bytes[b / 8] & (0x80 >> (b % 8))) == 0);
        FUZZ_CHECK(clientip_proxies_contain(list, &c->addr));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *field[3];
    size_t len[3];
    char *buf = fuzz_fields(data, size, 3, field, len);
    struct clientip_proxies list;
    struct clientip_addr addr;
    char err[256] = "";
    bool malformed;

    if (buf == NULL)
        return 0;
    if (clientip_proxies_parse(field[0], &list, err, sizeof err) == 0) {
        check_list(&list);
    } else {
        FUZZ_CHECK(err[0] != '\0' && fuzz_printable(err));
        FUZZ_CHECK(clientip_proxies_parse(FUZZ_PROXIES, &list, err, sizeof err) == 0);
    }
    /* REMOTE_ADDR as given (an exact-size copy: the parser takes a length). */
    char *remote = fuzz_copy(field[1], len[1]);
    if (remote != NULL && clientip_parse(remote, len[1], &addr))
        check_text(&addr);
    free(remote);
    if (clientip_resolve(field[1], field[2], &list, &addr, &malformed)) {
        check_text(&addr);
        /* An untrusted peer is the client, whatever its X-Forwarded-For says. */
        struct clientip_addr peer;
        FUZZ_CHECK(clientip_parse(field[1], strlen(field[1]), &peer));
        if (!clientip_proxies_contain(&list, &peer))
            FUZZ_CHECK(!malformed && memcmp(&peer, &addr, sizeof addr) == 0);
    }
    free(buf);
    return 0;
}
