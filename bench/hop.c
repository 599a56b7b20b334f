/*
 * hop: the benchmark's first reference (make bench). A FastCGI program that answers every
 * request with the same small JSON, about the size of GET /me's, and the gateway's fixed
 * headers: what lighttpd, mod_fastcgi, libfcgi and the thread pool cost by themselves,
 * the hop the gateway sits on. It reads nothing but the request's parameters (libfcgi
 * parses them anyway) and touches no Redis.
 */
#include <stdio.h>
#include <string.h>

#include "pool.h"

#define HOP_BODY                                                                                   \
    "{\"id\":\"aaaa0000000000000000000000000000\",\"email\":\"bench-user@example.com\","           \
    "\"created_at\":\"2026-11-28T12:00:00Z\"}"

/* The whole answer, built once: the status and headers the gateway sends with a 200,
 * without the RateLimit lines (hop decides nothing). */
static char hop_answer[512];
static size_t hop_answer_len;

static void hop_handle(FCGX_Request *req, void *state)
{
    (void)state;
    FCGX_PutStr(hop_answer, (int)hop_answer_len, req->out);
}

int main(void)
{
    int n = snprintf(hop_answer, sizeof hop_answer,
                     "Status: 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n\r\n%s",
                     strlen(HOP_BODY), HOP_BODY);
    if (n < 0 || (size_t)n >= sizeof hop_answer)
        return 1;
    hop_answer_len = (size_t)n;
    return pool_run("hop", hop_handle, NULL);
}
