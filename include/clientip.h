/*
 * clientip: who the client is, from REMOTE_ADDR and X-Forwarded-For (SPEC 5.2).
 *
 * Addresses are parsed with inet_pton; IPv4-mapped IPv6 (::ffff:a.b.c.d) counts as
 * IPv4. IPv6 is written in RFC 5952 form and bucketed by its /64. Pure functions,
 * thread-safe.
 */
#ifndef SG_CLIENTIP_H
#define SG_CLIENTIP_H

#include <stdbool.h>
#include <stddef.h>

/* Longest bucket text: "ffff:ffff:ffff:ffff::/64" or an IPv4, plus NUL, with room. */
#define CLIENTIP_TEXT_MAX 64
#define CLIENTIP_PROXIES_MAX 64 /* CIDRs in TRUSTED_PROXIES */
#define CLIENTIP_XFF_MAX 4096   /* bytes of X-Forwarded-For looked at */

struct clientip_addr {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char bytes[16]; /* 4 used for AF_INET */
};

struct clientip_cidr {
    struct clientip_addr addr; /* host bits cleared */
    int prefix;                /* 0..32 or 0..128 */
};

struct clientip_proxies {
    struct clientip_cidr cidrs[CLIENTIP_PROXIES_MAX];
    size_t count;
};

/*
 * Parses one address of len bytes (not NUL-terminated; surrounding spaces and tabs
 * are ignored, as is one pair of [] around IPv6). No ports, no zone ids.
 * Returns true and fills *out, or false for anything malformed.
 */
bool clientip_parse(const char *s, size_t len, struct clientip_addr *out);

/*
 * Parses a comma-separated list of CIDRs ("10.0.0.0/8, ::1, 2001:db8::/32"); a bare
 * address is a /32 or /128. Empty or NULL text gives an empty list.
 * Returns 0, or -1 with a one-line reason in err.
 */
int clientip_proxies_parse(const char *csv, struct clientip_proxies *out, char *err, size_t errlen);

/* True when addr lies in one of the CIDRs. */
bool clientip_proxies_contain(const struct clientip_proxies *proxies,
                              const struct clientip_addr *addr);

/* RFC 5952 text of addr ("2001:db8::1", "192.0.2.1") into out. */
void clientip_format(const struct clientip_addr *addr, char out[CLIENTIP_TEXT_MAX]);

/* Bucket text: IPv4 as is, IPv6 as its /64 ("2001:db8:1:2::/64"). */
void clientip_bucket(const struct clientip_addr *addr, char out[CLIENTIP_TEXT_MAX]);

/*
 * The client address of a request (SPEC 5.2): REMOTE_ADDR, unless it is a trusted
 * proxy; then X-Forwarded-For (may be NULL) is walked right to left, skipping trusted
 * addresses, and the first untrusted one is the client. A malformed entry met first
 * ends the walk: the client is the last address walked, and *malformed is set true.
 * remote_addr: borrowed, may be NULL or malformed: then returns false.
 * Returns true and fills *client.
 */
bool clientip_resolve(const char *remote_addr, const char *xff,
                      const struct clientip_proxies *proxies, struct clientip_addr *client,
                      bool *malformed);

#endif
