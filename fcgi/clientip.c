/*
 * clientip: who the client of a request is (SPEC 5.2).
 *
 * Parses REMOTE_ADDR and X-Forwarded-For entries with inet_pton only, matches them
 * against the TRUSTED_PROXIES CIDR list, and writes addresses as RFC 5952 text and
 * rate-limit buckets (IPv4 as is, IPv6 by its /64).
 *
 * glibc's inet_ntop is not used for IPv6: it writes an address whose first 96 bits are
 * zero in the deprecated IPv4-compatible form ("::1:2" comes out as "::0.1.0.2"), which
 * is not RFC 5952 text, so the formatter below does the job itself.
 *
 * Pure functions on caller memory, no shared state: thread-safe.
 */
#include "clientip.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* Longest address text inet_pton accepts, plus NUL ("ffff:...:255.255.255.255"). */
#define CLIENTIP_ADDR_TEXT_MAX 46
/* Bytes of a bad proxy entry quoted in an error message. */
#define CLIENTIP_ERR_QUOTE_MAX 48
/* Digits of a CIDR prefix ("128"). */
#define CLIENTIP_PREFIX_DIGITS_MAX 3
/* Mapped IPv6 (::ffff:0:0/96) prefix bits before the IPv4 part. */
#define CLIENTIP_MAPPED_BITS 96

static const unsigned char clientip_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Trims spaces and tabs on both sides of [*s, *s + *len). */
static void trim_blanks(const char **s, size_t *len)
{
    while (*len > 0 && is_blank(**s)) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && is_blank((*s)[*len - 1]))
        (*len)--;
}

/* Only what an IPv4 or IPv6 text address is made of: no '%', ':' ports pass on to pton. */
static bool is_addr_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
           c == '.';
}

bool clientip_parse(const char *s, size_t len, struct clientip_addr *out)
{
    char buf[CLIENTIP_ADDR_TEXT_MAX];
    unsigned char bytes[16];
    bool bracketed = false;
    struct clientip_addr addr;

    if (s == NULL || out == NULL)
        return false;
    trim_blanks(&s, &len);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        bracketed = true;
        s++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(buf))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_addr_char(s[i]))
            return false; /* '[', ']', '%', spaces, NUL, CR, LF, anything else */
    }
    memcpy(buf, s, len);
    buf[len] = '\0';

    memset(&addr, 0, sizeof(addr));
    if (memchr(buf, ':', len) != NULL) {
        if (inet_pton(AF_INET6, buf, bytes) != 1)
            return false;
        if (memcmp(bytes, clientip_mapped_prefix, sizeof(clientip_mapped_prefix)) == 0) {
            addr.family = AF_INET;
            memcpy(addr.bytes, bytes + 12, 4);
        } else {
            addr.family = AF_INET6;
            memcpy(addr.bytes, bytes, 16);
        }
    } else {
        if (bracketed || inet_pton(AF_INET, buf, bytes) != 1)
            return false; /* brackets are for IPv6 only */
        addr.family = AF_INET;
        memcpy(addr.bytes, bytes, 4);
    }
    *out = addr;
    return true;
}

/* Zeroes every bit of addr after the first prefix bits. */
static void clear_host_bits(struct clientip_addr *addr, int prefix)
{
    int nbytes = addr->family == AF_INET ? 4 : 16;

    for (int i = 0; i < nbytes; i++) {
        int bits = prefix - i * 8; /* network bits in this byte */
        if (bits >= 8)
            continue;
        addr->bytes[i] &= bits <= 0 ? 0 : (unsigned char)(0xff << (8 - bits));
    }
}

/* Quotes a bad entry into err, bounded and with control bytes replaced. */
static void proxies_error(char *err, size_t errlen, size_t index, const char *what,
                          const char *entry, size_t len)
{
    char quoted[CLIENTIP_ERR_QUOTE_MAX + 1];
    size_t n = len < CLIENTIP_ERR_QUOTE_MAX ? len : CLIENTIP_ERR_QUOTE_MAX;

    if (err == NULL || errlen == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)entry[i];
        quoted[i] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    quoted[n] = '\0';
    snprintf(err, errlen, "TRUSTED_PROXIES entry %zu '%s%s': %s", index + 1, quoted,
             len > n ? "..." : "", what);
}

/*
 * Parses a decimal prefix of len bytes: digits only (no sign, no spaces), at most
 * max. Returns the value or -1.
 */
static int parse_prefix(const char *s, size_t len, int max)
{
    int value = 0;

    if (len == 0 || len > CLIENTIP_PREFIX_DIGITS_MAX)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        value = value * 10 + (s[i] - '0');
    }
    return value <= max ? value : -1;
}

/*
 * Parses one trimmed, non-empty entry "addr[/prefix]" into *out.
 * Returns NULL or the reason it is bad.
 */
static const char *parse_cidr(const char *s, size_t len, struct clientip_cidr *out)
{
    const char *slash = memchr(s, '/', len);
    size_t addr_len = slash != NULL ? (size_t)(slash - s) : len;
    bool v6_text = memchr(s, ':', addr_len) != NULL;
    int max, prefix;

    if (addr_len == 0 || is_blank(s[addr_len - 1]))
        return "bad address";
    if (!clientip_parse(s, addr_len, &out->addr))
        return "bad address";
    /* IPv4-mapped IPv6 text comes back as IPv4: its prefix counts from bit 96 on. */
    max = v6_text ? 128 : 32;
    if (slash == NULL) {
        prefix = max;
    } else {
        prefix = parse_prefix(slash + 1, len - addr_len - 1, max);
        if (prefix < 0)
            return "bad prefix length";
    }
    if (v6_text && out->addr.family == AF_INET) {
        if (prefix < CLIENTIP_MAPPED_BITS)
            return "prefix of an IPv4-mapped address must be at least 96";
        prefix -= CLIENTIP_MAPPED_BITS;
    }
    out->prefix = prefix;
    clear_host_bits(&out->addr, prefix);
    return NULL;
}

int clientip_proxies_parse(const char *csv, struct clientip_proxies *out, char *err, size_t errlen)
{
    struct clientip_proxies list;
    const char *p = csv;
    const char *rest;
    size_t rest_len;

    if (out == NULL)
        return -1;
    memset(&list, 0, sizeof(list));
    rest = csv;
    rest_len = csv != NULL ? strlen(csv) : 0;
    trim_blanks(&rest, &rest_len);
    if (rest_len == 0) {
        *out = list; /* NULL, empty or blank: no proxy is trusted */
        return 0;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *entry = p;
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        const char *why;

        trim_blanks(&entry, &len);
        if (list.count == CLIENTIP_PROXIES_MAX) {
            proxies_error(err, errlen, list.count, "too many entries", entry, len);
            return -1;
        }
        if (len == 0) {
            proxies_error(err, errlen, list.count, "empty entry", entry, len);
            return -1;
        }
        why = parse_cidr(entry, len, &list.cidrs[list.count]);
        if (why != NULL) {
            proxies_error(err, errlen, list.count, why, entry, len);
            return -1;
        }
        list.count++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    *out = list;
    return 0;
}

static bool cidr_contains(const struct clientip_cidr *cidr, const struct clientip_addr *addr)
{
    int max = cidr->addr.family == AF_INET ? 32 : 128;
    int full = cidr->prefix / 8;
    int bits = cidr->prefix % 8;

    if (cidr->addr.family != addr->family || cidr->prefix < 0 || cidr->prefix > max)
        return false;
    if (memcmp(cidr->addr.bytes, addr->bytes, (size_t)full) != 0)
        return false;
    if (bits == 0)
        return true;
    return ((cidr->addr.bytes[full] ^ addr->bytes[full]) & (0xff << (8 - bits)) & 0xff) == 0;
}

bool clientip_proxies_contain(const struct clientip_proxies *proxies,
                              const struct clientip_addr *addr)
{
    if (proxies == NULL || addr == NULL)
        return false;
    for (size_t i = 0; i < proxies->count && i < CLIENTIP_PROXIES_MAX; i++) {
        if (cidr_contains(&proxies->cidrs[i], addr))
            return true;
    }
    return false;
}

/* RFC 5952 section 4: lower case hex, no leading zeros, longest zero run (>= 2) as "::". */
static void format_v6(const unsigned char bytes[16], char out[CLIENTIP_TEXT_MAX])
{
    unsigned words[8];
    int best = -1, best_len = 0;
    size_t used = 0;

    for (int i = 0; i < 8; i++)
        words[i] = (unsigned)bytes[2 * i] << 8 | bytes[2 * i + 1];
    for (int i = 0; i < 8;) {
        int run = 0;
        while (i + run < 8 && words[i + run] == 0)
            run++;
        if (run > best_len) { /* strictly longer: the first run wins a tie */
            best = i;
            best_len = run;
        }
        i += run > 0 ? run : 1;
    }
    if (best_len < 2)
        best = -1; /* a single zero group is written as "0" */

    out[0] = '\0';
    /* Section 5: IPv4-mapped addresses are written in mixed notation. */
    if (memcmp(bytes, clientip_mapped_prefix, sizeof(clientip_mapped_prefix)) == 0) {
        snprintf(out, CLIENTIP_TEXT_MAX, "::ffff:%u.%u.%u.%u", bytes[12], bytes[13], bytes[14],
                 bytes[15]);
        return;
    }
    for (int i = 0; i < 8; i++) {
        int n;
        if (i == best) {
            n = snprintf(out + used, CLIENTIP_TEXT_MAX - used, "::");
            i += best_len - 1;
        } else {
            bool sep = i > 0 && i != best + best_len;
            n = snprintf(out + used, CLIENTIP_TEXT_MAX - used, "%s%x", sep ? ":" : "", words[i]);
        }
        if (n < 0 || (size_t)n >= CLIENTIP_TEXT_MAX - used)
            return; /* cannot happen: 39 bytes at most */
        used += (size_t)n;
    }
}

void clientip_format(const struct clientip_addr *addr, char out[CLIENTIP_TEXT_MAX])
{
    out[0] = '\0';
    if (addr == NULL)
        return;
    if (addr->family == AF_INET)
        snprintf(out, CLIENTIP_TEXT_MAX, "%u.%u.%u.%u", addr->bytes[0], addr->bytes[1],
                 addr->bytes[2], addr->bytes[3]);
    else if (addr->family == AF_INET6)
        format_v6(addr->bytes, out);
}

void clientip_bucket(const struct clientip_addr *addr, char out[CLIENTIP_TEXT_MAX])
{
    struct clientip_addr net;
    size_t used;

    out[0] = '\0';
    if (addr == NULL)
        return;
    if (addr->family != AF_INET6) {
        clientip_format(addr, out);
        return;
    }
    net = *addr;
    clear_host_bits(&net, 64);
    format_v6(net.bytes, out); /* 21 bytes at most: "ffff:ffff:ffff:ffff::" */
    used = strlen(out);
    snprintf(out + used, CLIENTIP_TEXT_MAX - used, "/64");
}

/*
 * Walks X-Forwarded-For right to left from cur (the trusted REMOTE_ADDR).
 *
 * Entries are the bytes between commas, blanks around them ignored. Only the last
 * CLIENTIP_XFF_MAX bytes are parsed: an entry whose left comma lies before them (cut
 * by the window) counts as malformed. The end of the value is found with strlen; the
 * web server already holds it in memory, bounded by its header size limit.
 */
static void walk_xff(const char *xff, const struct clientip_proxies *proxies,
                     struct clientip_addr *cur, bool *malformed)
{
    size_t len = strlen(xff);
    size_t window = len > CLIENTIP_XFF_MAX ? len - CLIENTIP_XFF_MAX : 0;
    size_t end = len;
    bool first = true;

    for (;;) {
        size_t start = end;
        bool whole;
        const char *entry;
        size_t entry_len;
        struct clientip_addr next;

        while (start > window && xff[start - 1] != ',')
            start--;
        /* Complete when bounded by a comma (even just before the window) or the start. */
        whole = start == 0 || xff[start - 1] == ',';
        entry = xff + start;
        entry_len = end - start;
        trim_blanks(&entry, &entry_len);
        if (first && start == 0 && entry_len == 0)
            return; /* blank header: as if absent */
        first = false;
        if (!whole || !clientip_parse(entry, entry_len, &next)) {
            *malformed = true;
            return;
        }
        *cur = next;
        if (!clientip_proxies_contain(proxies, cur) || start == 0)
            return;      /* the client, or the leftmost entry and all were trusted */
        end = start - 1; /* the comma */
    }
}

bool clientip_resolve(const char *remote_addr, const char *xff,
                      const struct clientip_proxies *proxies, struct clientip_addr *client,
                      bool *malformed)
{
    struct clientip_addr cur;
    bool bad = false;

    if (malformed != NULL)
        *malformed = false;
    if (remote_addr == NULL || client == NULL)
        return false;
    /* The whole value: a prefix cut at a fixed length could end inside leading blanks and
     * parse as a shorter address. clientip_parse refuses anything long once trimmed. */
    if (!clientip_parse(remote_addr, strlen(remote_addr), &cur))
        return false;
    /* An untrusted peer's X-Forwarded-For is whatever it chose to write: ignored. */
    if (xff != NULL && clientip_proxies_contain(proxies, &cur))
        walk_xff(xff, proxies, &cur, &bad);
    *client = cur;
    if (malformed != NULL)
        *malformed = bad;
    return true;
}
