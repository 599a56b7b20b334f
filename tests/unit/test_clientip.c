/*
 * Unit tests for clientip: address parsing, RFC 5952 text, /64 buckets, the
 * TRUSTED_PROXIES list and the X-Forwarded-For walk (SPEC 5.2), spoofing included.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "clientip.h"

#define XFF_HUGE_ENTRIES 10000

/* Fails the test naming the table row. */
#define ROW_CHECK(line, cond)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg("row at line %d: %s", (line), #cond);                                         \
    } while (0)

static struct clientip_addr addr_of(const char *text)
{
    struct clientip_addr a;

    memset(&a, 0, sizeof(a));
    if (strchr(text, ':') != NULL) {
        a.family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, text, a.bytes), 1);
    } else {
        a.family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, text, a.bytes), 1);
    }
    return a;
}

static struct clientip_proxies proxies_of(const char *csv)
{
    struct clientip_proxies p;
    char err[128] = "";

    if (clientip_proxies_parse(csv, &p, err, sizeof(err)) != 0)
        fail_msg("proxies '%s': %s", csv, err);
    return p;
}

/* ---- parsing ---- */

struct parse_row {
    int line;
    const char *in;
    int family;       /* 0: must be rejected */
    const char *text; /* clientip_format of the result */
};

static const struct parse_row parse_rows[] = {
    {__LINE__, "192.0.2.1", AF_INET, "192.0.2.1"},
    {__LINE__, "0.0.0.0", AF_INET, "0.0.0.0"},
    {__LINE__, "255.255.255.255", AF_INET, "255.255.255.255"},
    {__LINE__, " \t192.0.2.1 \t", AF_INET, "192.0.2.1"},
    {__LINE__, "::1", AF_INET6, "::1"},
    {__LINE__, "[::1]", AF_INET6, "::1"},
    {__LINE__, "  [2001:DB8::1]  ", AF_INET6, "2001:db8::1"},
    {__LINE__, "2001:0db8:0000:0000:0000:0000:0000:0001", AF_INET6, "2001:db8::1"},
    {__LINE__, "::ffff:192.0.2.1", AF_INET, "192.0.2.1"},
    {__LINE__, "::FFFF:C000:0201", AF_INET, "192.0.2.1"},
    {__LINE__, "[::ffff:192.0.2.1]", AF_INET, "192.0.2.1"},
    {__LINE__, "0000:0000:0000:0000:0000:ffff:192.168.100.200", AF_INET, "192.168.100.200"},
    {__LINE__, "::fffe:192.0.2.1", AF_INET6, "::fffe:c000:201"},
    {__LINE__, "::192.0.2.1", AF_INET6, "::c000:201"}, /* IPv4-compatible: plain IPv6 */
    {__LINE__, "", 0, NULL},
    {__LINE__, "   ", 0, NULL},
    {__LINE__, "[]", 0, NULL},
    {__LINE__, "[ ::1 ]", 0, NULL},
    {__LINE__, "[::1", 0, NULL},
    {__LINE__, "::1]", 0, NULL},
    {__LINE__, "[192.0.2.1]", 0, NULL},
    {__LINE__, "192.0.2.1:80", 0, NULL},
    {__LINE__, "[::1]:80", 0, NULL},
    {__LINE__, "[2001:db8::1]:443", 0, NULL},
    {__LINE__, "fe80::1%eth0", 0, NULL},
    {__LINE__, "fe80::1%25eth0", 0, NULL},
    {__LINE__, "[fe80::1%eth0]", 0, NULL},
    {__LINE__, "192.0.2", 0, NULL},
    {__LINE__, "192.0.2.1.5", 0, NULL},
    {__LINE__, "192.0.2.256", 0, NULL},
    {__LINE__, "01.2.3.4", 0, NULL},
    {__LINE__, "0x7f.0.0.1", 0, NULL},
    {__LINE__, "2130706433", 0, NULL},
    {__LINE__, "-1.2.3.4", 0, NULL},
    {__LINE__, "192.0.2.1\r", 0, NULL},
    {__LINE__, "192.0.2.1\n", 0, NULL},
    {__LINE__, "192.0.2.1\r\nX-Evil: 1", 0, NULL},
    {__LINE__, "192.0.2.1 192.0.2.2", 0, NULL},
    {__LINE__, "192.0.2.1,192.0.2.2", 0, NULL},
    {__LINE__, "::1::", 0, NULL},
    {__LINE__, "1:2:3:4:5:6:7:8:9", 0, NULL},
    {__LINE__, "12345::1", 0, NULL},
    {__LINE__, "g::1", 0, NULL},
    {__LINE__, "unknown", 0, NULL},
    {__LINE__, "localhost", 0, NULL},
    {__LINE__, "0000:0000:0000:0000:0000:ffff:192.168.100.2000", 0, NULL},
    {__LINE__, "00000:0000:0000:0000:0000:ffff:192.168.100.200", 0, NULL}, /* 46 bytes */
    {__LINE__, "1.2.3.4\xc2\xa0", 0, NULL},
};

static void test_clientip_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(parse_rows) / sizeof(parse_rows[0]); i++) {
        const struct parse_row *r = &parse_rows[i];
        struct clientip_addr a;
        char text[CLIENTIP_TEXT_MAX];
        bool ok;

        memset(&a, 0xa5, sizeof(a));
        ok = clientip_parse(r->in, strlen(r->in), &a);
        ROW_CHECK(r->line, ok == (r->family != 0));
        if (!ok)
            continue;
        ROW_CHECK(r->line, a.family == r->family);
        clientip_format(&a, text);
        if (strcmp(text, r->text) != 0)
            fail_msg("row at line %d: '%s' formatted '%s', want '%s'", r->line, r->in, text,
                     r->text);
        if (a.family == AF_INET) {
            for (size_t b = 4; b < sizeof(a.bytes); b++)
                ROW_CHECK(r->line, a.bytes[b] == 0);
        }
    }
}

static void test_clientip_parse_not_nul_terminated(void **state)
{
    static const char buf[] = "192.0.2.1XYZ";
    static const char v6[] = "[2001:db8::1]:8080";
    struct clientip_addr a;
    char text[CLIENTIP_TEXT_MAX];

    (void)state;
    assert_true(clientip_parse(buf, 9, &a));
    clientip_format(&a, text);
    assert_string_equal(text, "192.0.2.1");
    assert_false(clientip_parse(buf, 10, &a));
    assert_true(clientip_parse(v6, 13, &a));
    clientip_format(&a, text);
    assert_string_equal(text, "2001:db8::1");
}

static void test_clientip_parse_rejects_embedded_nul(void **state)
{
    static const char buf[] = "192.0\0.2.1";
    static const char trailing[] = "192.0.2.1\0";
    struct clientip_addr a;

    (void)state;
    assert_false(clientip_parse(buf, sizeof(buf) - 1, &a));
    assert_false(clientip_parse(trailing, sizeof(trailing) - 1, &a));
    assert_false(clientip_parse(NULL, 4, &a));
    assert_false(clientip_parse("::1", 0, &a));
}

static void test_clientip_parse_rejects_overlong(void **state)
{
    char big[1024];
    struct clientip_addr a;

    (void)state;
    memset(big, '1', sizeof(big));
    assert_false(clientip_parse(big, sizeof(big), &a));
    /* Long padding of blanks is fine: only the address itself is bounded. */
    memset(big, ' ', sizeof(big));
    memcpy(big + 500, "192.0.2.1", 9);
    assert_true(clientip_parse(big, sizeof(big), &a));
}

/* ---- RFC 5952 text and buckets ---- */

struct format_row {
    int line;
    const char *in; /* inet_pton input */
    const char *text;
    const char *bucket;
};

static const struct format_row format_rows[] = {
    /* 4.1 no leading zeros; 4.3 lower case */
    {__LINE__, "2001:0DB8:0:0:1:0:0:1", "2001:db8::1:0:0:1", "2001:db8::/64"},
    {__LINE__, "2001:0db8:00aa:0bbb:0ccc:0d0d:00e0:000f", "2001:db8:aa:bbb:ccc:d0d:e0:f",
     "2001:db8:aa:bbb::/64"},
    {__LINE__, "ABCD:EF01:2345:6789:ABCD:EF01:2345:6789", "abcd:ef01:2345:6789:abcd:ef01:2345:6789",
     "abcd:ef01:2345:6789::/64"},
    /* 4.2.2 a single zero group is not compressed */
    {__LINE__, "2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", "2001:db8:0:1::/64"},
    {__LINE__, "1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0", "1:2:3:4::/64"},
    {__LINE__, "0:1:2:3:4:5:6:7", "0:1:2:3:4:5:6:7", "0:1:2:3::/64"},
    /* 4.2.1 shorten as much as possible */
    {__LINE__, "2001:db8:0:0:0:0:2:1", "2001:db8::2:1", "2001:db8::/64"},
    {__LINE__, "2001:db8::", "2001:db8::", "2001:db8::/64"},
    {__LINE__, "::", "::", "::/64"},
    {__LINE__, "::1", "::1", "::/64"},
    {__LINE__, "1::", "1::", "1::/64"},
    /* 4.2.3 the longest run wins; the first one on a tie */
    {__LINE__, "1:0:0:2:0:0:0:4", "1:0:0:2::4", "1:0:0:2::/64"},
    {__LINE__, "1:0:0:0:2:0:0:4", "1::2:0:0:4", "1::/64"},
    {__LINE__, "1:0:0:2:0:0:3:4", "1::2:0:0:3:4", "1:0:0:2::/64"},
    {__LINE__, "2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1", "2001:db8::/64"},
    {__LINE__, "0:0:1:0:0:0:0:0", "0:0:1::", "0:0:1::/64"},
    {__LINE__, "0:0:0:1:0:0:0:0", "0:0:0:1::", "0:0:0:1::/64"},
    {__LINE__, "2001:0:0:1:0:0:0:0", "2001:0:0:1::", "2001:0:0:1::/64"},
    /* glibc's inet_ntop writes these in dotted form ("::0.1.0.2"): RFC 5952 says hex */
    {__LINE__, "::1:2", "::1:2", "::/64"},
    {__LINE__, "::102:304", "::102:304", "::/64"},
    {__LINE__, "::ffff:0:102:304", "::ffff:0:102:304", "::/64"},
    /* section 5: mapped addresses in mixed notation (parse turns them into IPv4) */
    {__LINE__, "::ffff:192.0.2.1", "::ffff:192.0.2.1", "::/64"},
    /* buckets */
    {__LINE__, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
    {__LINE__, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
     "ffff:ffff:ffff:ffff::/64"},
    {__LINE__, "fe80::1", "fe80::1", "fe80::/64"},
    {__LINE__, "192.0.2.1", "192.0.2.1", "192.0.2.1"},
    {__LINE__, "10.0.0.255", "10.0.0.255", "10.0.0.255"},
};

static void test_clientip_format_rfc5952(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(format_rows) / sizeof(format_rows[0]); i++) {
        const struct format_row *r = &format_rows[i];
        struct clientip_addr a = addr_of(r->in);
        char text[CLIENTIP_TEXT_MAX];

        memset(text, 'x', sizeof(text));
        clientip_format(&a, text);
        if (strcmp(text, r->text) != 0)
            fail_msg("row at line %d: '%s' formatted '%s', want '%s'", r->line, r->in, text,
                     r->text);
    }
}

static void test_clientip_format_round_trips(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(format_rows) / sizeof(format_rows[0]); i++) {
        const struct format_row *r = &format_rows[i];
        struct clientip_addr a = addr_of(r->in), b;
        char text[CLIENTIP_TEXT_MAX];

        clientip_format(&a, text);
        ROW_CHECK(r->line, clientip_parse(text, strlen(text), &b));
        if (b.family == a.family)
            ROW_CHECK(r->line, memcmp(a.bytes, b.bytes, sizeof(a.bytes)) == 0);
    }
}

static void test_clientip_bucket_v6_by_64(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(format_rows) / sizeof(format_rows[0]); i++) {
        const struct format_row *r = &format_rows[i];
        struct clientip_addr a = addr_of(r->in);
        char text[CLIENTIP_TEXT_MAX];

        clientip_bucket(&a, text);
        if (strcmp(text, r->bucket) != 0)
            fail_msg("row at line %d: '%s' bucketed '%s', want '%s'", r->line, r->in, text,
                     r->bucket);
    }
}

static void test_clientip_format_unknown_family(void **state)
{
    struct clientip_addr a;
    char text[CLIENTIP_TEXT_MAX] = "junk";

    (void)state;
    memset(&a, 0, sizeof(a));
    a.family = 12345;
    clientip_format(&a, text);
    assert_string_equal(text, "");
    memcpy(text, "junk", sizeof("junk"));
    clientip_bucket(&a, text);
    assert_string_equal(text, "");
}

/* ---- TRUSTED_PROXIES ---- */

struct proxies_row {
    int line;
    const char *csv;
    int rc;
    size_t count;
    const char *first; /* "addr/prefix" of the first CIDR, host bits cleared */
};

static const struct proxies_row proxies_rows[] = {
    {__LINE__, NULL, 0, 0, NULL},
    {__LINE__, "", 0, 0, NULL},
    {__LINE__, "  \t ", 0, 0, NULL},
    {__LINE__, "10.0.0.0/8", 0, 1, "10.0.0.0/8"},
    {__LINE__, "10.1.2.3/8", 0, 1, "10.0.0.0/8"},
    {__LINE__, "10.255.255.255/9", 0, 1, "10.128.0.0/9"},
    {__LINE__, "192.0.2.77/31", 0, 1, "192.0.2.76/31"},
    {__LINE__, "10.0.0.0/8, 192.168.0.0/16,::1", 0, 3, "10.0.0.0/8"},
    {__LINE__, " 172.16.0.0/12 ,\t2001:db8::/32 ", 0, 2, "172.16.0.0/12"},
    {__LINE__, "192.0.2.1", 0, 1, "192.0.2.1/32"},
    {__LINE__, "::1", 0, 1, "::1/128"},
    {__LINE__, "[::1]", 0, 1, "::1/128"},
    {__LINE__, "[2001:db8::]/32", 0, 1, "2001:db8::/32"},
    {__LINE__, "2001:db8:ffff:1::/33", 0, 1, "2001:db8:8000::/33"},
    {__LINE__, "0.0.0.0/0", 0, 1, "0.0.0.0/0"},
    {__LINE__, "1.2.3.4/0", 0, 1, "0.0.0.0/0"},
    {__LINE__, "::/0", 0, 1, "::/0"},
    {__LINE__, "ffff::1/0", 0, 1, "::/0"},
    {__LINE__, "2001:db8::1/128", 0, 1, "2001:db8::1/128"},
    {__LINE__, "1.2.3.4/32", 0, 1, "1.2.3.4/32"},
    {__LINE__, "10.0.0.0/008", 0, 1, "10.0.0.0/8"},
    {__LINE__, "::ffff:10.1.0.0/104", 0, 1, "10.0.0.0/8"},
    {__LINE__, "::ffff:10.1.2.3", 0, 1, "10.1.2.3/32"},
    {__LINE__, ",,", -1, 0, NULL},
    {__LINE__, ",", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8,", -1, 0, NULL},
    {__LINE__, ",10.0.0.0/8", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8,,::1", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8, ,::1", -1, 0, NULL},
    {__LINE__, "10.0.0.0/33", -1, 0, NULL},
    {__LINE__, "::/129", -1, 0, NULL},
    {__LINE__, "10.0.0.0/-1", -1, 0, NULL},
    {__LINE__, "10.0.0.0/+8", -1, 0, NULL},
    {__LINE__, "10.0.0.0/", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8x", -1, 0, NULL},
    {__LINE__, "10.0.0.0/x8", -1, 0, NULL},
    {__LINE__, "10.0.0.0/ 8", -1, 0, NULL},
    {__LINE__, "10.0.0.0 /8", -1, 0, NULL},
    {__LINE__, "10.0.0.0/0x8", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8.0", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8/8", -1, 0, NULL},
    {__LINE__, "10.0.0.0/0008", -1, 0, NULL},
    {__LINE__, "10.0.0.0/99999999999999999999", -1, 0, NULL},
    {__LINE__, "/8", -1, 0, NULL},
    {__LINE__, "garbage", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8 garbage", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8;192.168.0.0/16", -1, 0, NULL},
    {__LINE__, "fe80::1%eth0/64", -1, 0, NULL},
    {__LINE__, "10.0.0.0:80/8", -1, 0, NULL},
    {__LINE__, "::ffff:10.0.0.0/95", -1, 0, NULL},
    {__LINE__, "10.0.0.0/8\n", -1, 0, NULL},
};

static void cidr_text(const struct clientip_cidr *c, char *out, size_t outlen)
{
    char text[CLIENTIP_TEXT_MAX];

    clientip_format(&c->addr, text);
    snprintf(out, outlen, "%s/%d", text, c->prefix);
}

static void test_clientip_proxies_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(proxies_rows) / sizeof(proxies_rows[0]); i++) {
        const struct proxies_row *r = &proxies_rows[i];
        struct clientip_proxies p;
        char err[128] = "";
        char text[CLIENTIP_TEXT_MAX + 8];
        int rc;

        memset(&p, 0xa5, sizeof(p));
        rc = clientip_proxies_parse(r->csv, &p, err, sizeof(err));
        if (rc != r->rc)
            fail_msg("row at line %d: '%s' rc %d, want %d (%s)", r->line,
                     r->csv ? r->csv : "(null)", rc, r->rc, err);
        if (rc != 0) {
            ROW_CHECK(r->line, err[0] != '\0');
            ROW_CHECK(r->line, strchr(err, '\n') == NULL);
            continue;
        }
        ROW_CHECK(r->line, p.count == r->count);
        if (r->first == NULL)
            continue;
        cidr_text(&p.cidrs[0], text, sizeof(text));
        if (strcmp(text, r->first) != 0)
            fail_msg("row at line %d: first CIDR '%s', want '%s'", r->line, text, r->first);
    }
}

static void test_clientip_proxies_parse_error_names_entry(void **state)
{
    struct clientip_proxies p;
    char err[128] = "";
    char tiny[8];
    char big[600];

    (void)state;
    assert_int_equal(clientip_proxies_parse("10.0.0.0/8, 10.0.0.0/40", &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "10.0.0.0/40"));
    assert_non_null(strstr(err, "entry 2"));
    /* a bounded quote of a huge entry, and control bytes never reach the log */
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    big[3] = '\n';
    assert_int_equal(clientip_proxies_parse(big, &p, err, sizeof(err)), -1);
    assert_true(strlen(err) < sizeof(err));
    assert_null(strchr(err, '\n'));
    /* a tiny or absent err buffer is fine */
    assert_int_equal(clientip_proxies_parse("x", &p, tiny, sizeof(tiny)), -1);
    assert_true(strlen(tiny) < sizeof(tiny));
    assert_int_equal(clientip_proxies_parse("x", &p, NULL, 0), -1);
    assert_int_equal(clientip_proxies_parse("x", &p, tiny, 0), -1);
}

static void test_clientip_proxies_parse_max_entries(void **state)
{
    char csv[CLIENTIP_PROXIES_MAX * 16 + 32];
    size_t used = 0;
    struct clientip_proxies p;
    char err[128];

    (void)state;
    for (int i = 0; i < CLIENTIP_PROXIES_MAX; i++)
        used += (size_t)snprintf(csv + used, sizeof(csv) - used, "%s10.0.%d.0/24", i ? "," : "", i);
    assert_int_equal(clientip_proxies_parse(csv, &p, err, sizeof(err)), 0);
    assert_int_equal(p.count, CLIENTIP_PROXIES_MAX);
    snprintf(csv + used, sizeof(csv) - used, ",10.1.0.0/16");
    memset(&p, 0, sizeof(p));
    assert_int_equal(clientip_proxies_parse(csv, &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "too many"));
    assert_int_equal(p.count, 0); /* untouched on error */
}

struct contain_row {
    int line;
    const char *csv;
    const char *addr;
    bool in;
};

static const struct contain_row contain_rows[] = {
    {__LINE__, "10.0.0.0/8", "10.0.0.0", true},
    {__LINE__, "10.0.0.0/8", "10.255.255.255", true},
    {__LINE__, "10.0.0.0/8", "11.0.0.0", false},
    {__LINE__, "10.0.0.0/8", "9.255.255.255", false},
    {__LINE__, "10.0.0.0/9", "10.127.255.255", true},
    {__LINE__, "10.0.0.0/9", "10.128.0.0", false},
    {__LINE__, "192.0.2.1", "192.0.2.1", true},
    {__LINE__, "192.0.2.1", "192.0.2.2", false},
    {__LINE__, "192.0.2.1/32", "192.0.2.0", false},
    {__LINE__, "0.0.0.0/0", "203.0.113.9", true},
    {__LINE__, "0.0.0.0/0", "::1", false},
    {__LINE__, "::/0", "2001:db8::1", true},
    {__LINE__, "::/0", "192.0.2.1", false},
    {__LINE__, "::1", "::1", true},
    {__LINE__, "::1/128", "::2", false},
    {__LINE__, "::1", "127.0.0.1", false},
    {__LINE__, "2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true},
    {__LINE__, "2001:db8::/32", "2001:db9::", false},
    {__LINE__, "2001:db8::/33", "2001:db8:7fff::1", true},
    {__LINE__, "2001:db8::/33", "2001:db8:8000::", false},
    {__LINE__, "2001:db8:0:0:1::/127", "2001:db8::1:0:0:1", true},
    {__LINE__, "2001:db8:0:0:1::/127", "2001:db8::1:0:0:2", false},
    {__LINE__, "::ffff:10.0.0.0/104", "10.9.9.9", true},
    {__LINE__, "10.0.0.0/8, 2001:db8::/32", "2001:db8::5", true},
    {__LINE__, "10.0.0.0/8, 2001:db8::/32", "172.16.0.1", false},
    {__LINE__, "", "10.0.0.1", false},
};

static void test_clientip_proxies_contain_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(contain_rows) / sizeof(contain_rows[0]); i++) {
        const struct contain_row *r = &contain_rows[i];
        struct clientip_proxies p = proxies_of(r->csv);
        struct clientip_addr a = addr_of(r->addr);

        ROW_CHECK(r->line, clientip_proxies_contain(&p, &a) == r->in);
    }
    assert_false(clientip_proxies_contain(NULL, NULL));
}

/* ---- X-Forwarded-For ---- */

#define TRUSTED "10.0.0.0/8, 2001:db8:ff::/48, 127.0.0.1"

struct resolve_row {
    int line;
    const char *remote;
    const char *xff;
    const char *proxies;
    bool ok;
    const char *client; /* formatted */
    bool malformed;
};

static const struct resolve_row resolve_rows[] = {
    /* no proxy trusted: REMOTE_ADDR, whatever XFF says */
    {__LINE__, "203.0.113.7", NULL, "", true, "203.0.113.7", false},
    {__LINE__, "203.0.113.7", "198.51.100.1", "", true, "203.0.113.7", false},
    {__LINE__, "2001:db8::5", "198.51.100.1", "", true, "2001:db8::5", false},
    {__LINE__, "::ffff:203.0.113.7", NULL, "", true, "203.0.113.7", false},
    /* spoof: an untrusted peer's forged XFF, even naming a trusted address */
    {__LINE__, "203.0.113.7", "198.51.100.1", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "203.0.113.7", "10.0.0.1", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "203.0.113.7", "garbage", TRUSTED, true, "203.0.113.7", false},
    /* trusted peer, XFF absent or blank: the peer itself */
    {__LINE__, "10.0.0.2", NULL, TRUSTED, true, "10.0.0.2", false},
    {__LINE__, "10.0.0.2", "", TRUSTED, true, "10.0.0.2", false},
    {__LINE__, "10.0.0.2", "  \t ", TRUSTED, true, "10.0.0.2", false},
    /* trusted peer: the first untrusted address from the right */
    {__LINE__, "10.0.0.2", "203.0.113.7", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "10.0.0.2", " 203.0.113.7 ", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "10.0.0.2", "203.0.113.7, 10.0.0.3", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "10.0.0.2", "203.0.113.7,10.0.0.3,10.0.0.4", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "127.0.0.1", "203.0.113.7, 127.0.0.1", TRUSTED, true, "203.0.113.7", false},
    /* spoof: client-supplied leftmost entries never win over the proxy's own */
    {__LINE__, "10.0.0.2", "1.1.1.1, 203.0.113.7", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "10.0.0.2", "10.0.0.9, 203.0.113.7", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "10.0.0.2", "garbage, 203.0.113.7", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "10.0.0.2", ",,, 203.0.113.7", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "10.0.0.2", "1.1.1.1\r\nX-Evil: 1, 203.0.113.7", TRUSTED, true, "203.0.113.7",
     false},
    /* every entry trusted: the leftmost */
    {__LINE__, "10.0.0.2", "10.0.0.5, 10.0.0.3", TRUSTED, true, "10.0.0.5", false},
    /* a malformed entry met first: the last address walked, flagged */
    {__LINE__, "10.0.0.2", "garbage", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "unknown", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "203.0.113.7, garbage, 10.0.0.3", TRUSTED, true, "10.0.0.3", true},
    {__LINE__, "10.0.0.2", "203.0.113.7:5678", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "[2001:db8::1]:443", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "fe80::1%eth0", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "203.0.113.7\r\n", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "203.0.113.7 198.51.100.1", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "203.0.113.7;10.0.0.3", TRUSTED, true, "10.0.0.2", true},
    /* empty entries */
    {__LINE__, "10.0.0.2", "203.0.113.7,", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "203.0.113.7, ", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", ",", TRUSTED, true, "10.0.0.2", true},
    {__LINE__, "10.0.0.2", "203.0.113.7,,10.0.0.3", TRUSTED, true, "10.0.0.3", true},
    {__LINE__, "10.0.0.2", ", 10.0.0.3", TRUSTED, true, "10.0.0.3", true},
    /* IPv6 and mapped */
    {__LINE__, "2001:db8:ff::2", "2001:DB8:1:2::9", TRUSTED, true, "2001:db8:1:2::9", false},
    {__LINE__, "2001:db8:ff::2", "[2001:db8:1:2::9]", TRUSTED, true, "2001:db8:1:2::9", false},
    {__LINE__, "10.0.0.2", "::ffff:203.0.113.7", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "::ffff:10.0.0.2", "203.0.113.7", TRUSTED, true, "203.0.113.7", false},
    {__LINE__, "10.0.0.2", "203.0.113.7, ::ffff:10.0.0.3", TRUSTED, true, "203.0.113.7", false},
    /* REMOTE_ADDR absent or malformed */
    {__LINE__, NULL, "203.0.113.7", TRUSTED, false, NULL, false},
    {__LINE__, "", NULL, TRUSTED, false, NULL, false},
    {__LINE__, "garbage", "203.0.113.7", TRUSTED, false, NULL, false},
    {__LINE__, "10.0.0.2:1234", NULL, TRUSTED, false, NULL, false},
};

static void test_clientip_resolve_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(resolve_rows) / sizeof(resolve_rows[0]); i++) {
        const struct resolve_row *r = &resolve_rows[i];
        struct clientip_proxies p = proxies_of(r->proxies);
        struct clientip_addr client;
        char text[CLIENTIP_TEXT_MAX];
        bool malformed = !r->malformed;
        bool ok = clientip_resolve(r->remote, r->xff, &p, &client, &malformed);

        ROW_CHECK(r->line, ok == r->ok);
        if (!ok)
            continue;
        clientip_format(&client, text);
        if (strcmp(text, r->client) != 0)
            fail_msg("row at line %d: client '%s', want '%s'", r->line, text, r->client);
        ROW_CHECK(r->line, malformed == r->malformed);
    }
}

static void test_clientip_resolve_null_args(void **state)
{
    struct clientip_proxies p = proxies_of(TRUSTED);
    struct clientip_addr client;
    char text[CLIENTIP_TEXT_MAX];

    (void)state;
    /* malformed may be NULL; NULL proxies trust nobody */
    assert_true(clientip_resolve("10.0.0.2", "garbage", &p, &client, NULL));
    assert_true(clientip_resolve("10.0.0.2", "203.0.113.7", NULL, &client, NULL));
    clientip_format(&client, text);
    assert_string_equal(text, "10.0.0.2");
    assert_false(clientip_resolve("10.0.0.2", NULL, &p, NULL, NULL));
}

/*
 * Found by tests/fuzz/fuzz_clientip: REMOTE_ADDR was read up to 47 bytes, so 44 tabs and
 * "::ffff:10.0.0.1" were cut to "::f" after the tabs, a valid address. A malformed
 * REMOTE_ADDR, however long, is refused.
 */
static void test_clientip_resolve_remote_addr_not_cut(void **state)
{
    struct clientip_proxies p = proxies_of(TRUSTED);
    struct clientip_addr client;
    char remote[128], text[CLIENTIP_TEXT_MAX];

    (void)state;
    memset(remote, '\t', 44);
    snprintf(remote + 44, sizeof remote - 44, "::ffff:10.0.0.1, x");
    assert_false(clientip_resolve(remote, NULL, &p, &client, NULL));
    memset(remote, ' ', 60);
    snprintf(remote + 60, sizeof remote - 60, "192.0.2.45 ");
    assert_true(clientip_resolve(remote, NULL, &p, &client, NULL));
    clientip_format(&client, text);
    assert_string_equal(text, "192.0.2.45");
}

/* Appends entry n times, separated by ", ", into a new string. */
static char *repeat(const char *prefix, const char *entry, size_t n, const char *suffix)
{
    size_t elen = strlen(entry), plen = strlen(prefix), slen = strlen(suffix);
    size_t cap = plen + n * (elen + 2) + slen + 1;
    char *s = malloc(cap);
    size_t used = 0;

    assert_non_null(s);
    memcpy(s, prefix, plen);
    used = plen;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            memcpy(s + used, ", ", 2);
            used += 2;
        }
        memcpy(s + used, entry, elen);
        used += elen;
    }
    memcpy(s + used, suffix, slen + 1);
    return s;
}

static void test_clientip_resolve_huge_xff_padding_ignored(void **state)
{
    struct clientip_proxies p = proxies_of(TRUSTED);
    struct clientip_addr client;
    char text[CLIENTIP_TEXT_MAX];
    bool malformed = true;
    /* a client pads XFF with 10,000 forged entries; the proxy appends the real one */
    char *xff = repeat("", "198.51.100.1", XFF_HUGE_ENTRIES, ", 203.0.113.7, 10.0.0.3");

    (void)state;
    assert_true(strlen(xff) > CLIENTIP_XFF_MAX);
    assert_true(clientip_resolve("10.0.0.2", xff, &p, &client, &malformed));
    clientip_format(&client, text);
    assert_string_equal(text, "203.0.113.7");
    assert_false(malformed);
    free(xff);

    /* 10,000 forged trusted entries: the walk stops at the window, flagged */
    xff = repeat("203.0.113.9, ", "10.0.0.1", XFF_HUGE_ENTRIES, "");
    assert_true(clientip_resolve("10.0.0.2", xff, &p, &client, &malformed));
    clientip_format(&client, text);
    assert_string_equal(text, "10.0.0.1");
    assert_true(malformed);
    free(xff);

    /* 10,000 garbage entries */
    xff = repeat("", "x", XFF_HUGE_ENTRIES, "");
    assert_true(clientip_resolve("10.0.0.2", xff, &p, &client, &malformed));
    clientip_format(&client, text);
    assert_string_equal(text, "10.0.0.2");
    assert_true(malformed);
    free(xff);

    /* 10,000 empty entries */
    xff = repeat("", "", XFF_HUGE_ENTRIES, "");
    assert_true(clientip_resolve("10.0.0.2", xff, &p, &client, &malformed));
    assert_true(malformed);
    free(xff);
}

static void test_clientip_resolve_xff_window_edge(void **state)
{
    struct clientip_proxies p = proxies_of(TRUSTED);
    struct clientip_addr client;
    char text[CLIENTIP_TEXT_MAX];
    bool malformed = true;
    static char xff[CLIENTIP_XFF_MAX + 64];
    size_t used;

    (void)state;
    /* exactly CLIENTIP_XFF_MAX bytes of trusted entries: all walked, leftmost wins */
    memset(xff, ' ', CLIENTIP_XFF_MAX);
    memcpy(xff, "10.0.0.7", 8);
    for (used = 8; used + 10 <= CLIENTIP_XFF_MAX; used += 10)
        memcpy(xff + used, ",10.0.0.1 ", 10);
    xff[CLIENTIP_XFF_MAX] = '\0';
    assert_int_equal(strlen(xff), CLIENTIP_XFF_MAX);
    assert_true(clientip_resolve("10.0.0.2", xff, &p, &client, &malformed));
    clientip_format(&client, text);
    assert_string_equal(text, "10.0.0.7");
    assert_false(malformed);

    /* one byte more on the left: the leftmost entry is cut by the window */
    memmove(xff + 1, xff, CLIENTIP_XFF_MAX + 1);
    xff[0] = '1';
    assert_true(clientip_resolve("10.0.0.2", xff, &p, &client, &malformed));
    clientip_format(&client, text);
    assert_string_equal(text, "10.0.0.1");
    assert_true(malformed);

    /* a comma just before the window still bounds a whole entry; the one left of it
       lies outside */
    xff[0] = ',';
    memmove(xff + 8, xff, CLIENTIP_XFF_MAX + 2);
    memcpy(xff, "10.0.0.9", 8);
    assert_true(clientip_resolve("10.0.0.2", xff, &p, &client, &malformed));
    clientip_format(&client, text);
    assert_string_equal(text, "10.0.0.7");
    assert_true(malformed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clientip_parse_table),
        cmocka_unit_test(test_clientip_parse_not_nul_terminated),
        cmocka_unit_test(test_clientip_parse_rejects_embedded_nul),
        cmocka_unit_test(test_clientip_parse_rejects_overlong),
        cmocka_unit_test(test_clientip_format_rfc5952),
        cmocka_unit_test(test_clientip_format_round_trips),
        cmocka_unit_test(test_clientip_bucket_v6_by_64),
        cmocka_unit_test(test_clientip_format_unknown_family),
        cmocka_unit_test(test_clientip_proxies_parse_table),
        cmocka_unit_test(test_clientip_proxies_parse_error_names_entry),
        cmocka_unit_test(test_clientip_proxies_parse_max_entries),
        cmocka_unit_test(test_clientip_proxies_contain_table),
        cmocka_unit_test(test_clientip_resolve_table),
        cmocka_unit_test(test_clientip_resolve_null_args),
        cmocka_unit_test(test_clientip_resolve_remote_addr_not_cut),
        cmocka_unit_test(test_clientip_resolve_huge_xff_padding_ignored),
        cmocka_unit_test(test_clientip_resolve_xff_window_edge),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
