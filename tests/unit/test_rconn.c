/*
 * Unit tests of rconn_pipeline's failure rules (fcgi/rconn.c), against a scripted fake
 * Redis on a loopback port (a real Redis cannot be made to drop a connection between
 * two replies): a pipeline is sent again on a connection the server closed while it
 * was idle, and only then; when the connection fails after some replies, those are
 * kept and nothing is sent again. The fake reads each command as hiredis formats it
 * (redisFormatCommandArgv) and answers with simple-string replies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rconn.h"

static const char *echo_a[] = {"ECHO", "a"};
static const char *echo_b[] = {"ECHO", "b"};
static const char *ping[] = {"PING"};

struct fake {
    int listener;
    int port;
    atomic_int accepted;  /* connections taken */
    atomic_int commands;  /* commands read, all connections */
    atomic_bool idle_cut; /* step 1 done: the first connection is closed */
};

/* Reads exactly the bytes of argv as hiredis sends them. 0, or -1 when the peer left. */
static int fake_expect(int fd, int argc, const char **argv)
{
    char *want = NULL;
    int len = redisFormatCommandArgv(&want, argc, argv, NULL);
    char got[256];
    int rc = -1;

    if (len <= 0 || (size_t)len > sizeof got)
        goto out;
    for (int have = 0; have < len;) {
        ssize_t n = read(fd, got + have, (size_t)(len - have));
        if (n <= 0)
            goto out;
        have += (int)n;
    }
    rc = memcmp(got, want, (size_t)len) == 0 ? 0 : -1;
out:
    free(want);
    return rc;
}

static void fake_reply(int fd, const char *text)
{
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        fprintf(stderr, "fake redis: short write\n");
}

static int fake_accept(struct fake *f)
{
    int fd = accept(f->listener, NULL, NULL);
    if (fd >= 0)
        atomic_fetch_add(&f->accepted, 1);
    return fd;
}

/* The script: connection 1 answers PING, then is closed while the client is idle;
 * connection 2 answers a pipeline of two, then only the first of the next two. */
static void *fake_run(void *arg)
{
    struct fake *f = arg;
    int fd = fake_accept(f);

    if (fd >= 0 && fake_expect(fd, 1, ping) == 0) {
        atomic_fetch_add(&f->commands, 1);
        fake_reply(fd, "+PONG\r\n");
    }
    if (fd >= 0)
        close(fd);
    atomic_store(&f->idle_cut, true);
    fd = fake_accept(f);
    if (fd < 0)
        return NULL;
    if (fake_expect(fd, 2, echo_a) == 0 && fake_expect(fd, 2, echo_b) == 0) {
        atomic_fetch_add(&f->commands, 2);
        fake_reply(fd, "+a\r\n+b\r\n");
    }
    if (fake_expect(fd, 2, echo_a) == 0 && fake_expect(fd, 2, echo_b) == 0) {
        atomic_fetch_add(&f->commands, 2);
        fake_reply(fd, "+a\r\n"); /* and no more */
    }
    close(fd);
    return NULL;
}

static int fake_listen(struct fake *f)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof a;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->listener = socket(AF_INET, SOCK_STREAM, 0);
    if (f->listener < 0 || bind(f->listener, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(f->listener, 4) != 0 || getsockname(f->listener, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    f->port = ntohs(a.sin_port);
    return 0;
}

static void test_rconn_pipeline_resend_rules(void **state)
{
    static struct fake f; /* the server thread reads it: static, joined before return */
    struct config_redis target;
    struct rconn rc;
    pthread_t server;
    const struct rconn_cmd two[] = {{2, echo_a, NULL}, {2, echo_b, NULL}};
    redisReply *replies[2] = {NULL, NULL};

    (void)state;
    assert_int_equal(fake_listen(&f), 0);
    assert_int_equal(pthread_create(&server, NULL, fake_run, &f), 0);
    memset(&target, 0, sizeof target);
    snprintf(target.host, sizeof target.host, "127.0.0.1");
    target.port = f.port;
    rconn_init(&rc, &target);

    redisReply *r = rconn_command(&rc, 1, ping, NULL);
    assert_non_null(r);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);

    /* The server closed the idle connection: both commands go again, once, on a new one. */
    while (!atomic_load(&f.idle_cut))
        usleep(1000);
    usleep(20000);
    assert_int_equal(rconn_pipeline(&rc, 2, two, replies), 2);
    assert_string_equal(replies[0]->str, "a");
    assert_string_equal(replies[1]->str, "b");
    freeReplyObject(replies[0]);
    freeReplyObject(replies[1]);
    assert_int_equal(atomic_load(&f.accepted), 2);

    /* The connection fails after the first reply: it is kept, nothing is sent again. */
    replies[0] = replies[1] = NULL;
    assert_int_equal(rconn_pipeline(&rc, 2, two, replies), 1);
    assert_string_equal(replies[0]->str, "a");
    assert_null(replies[1]);
    freeReplyObject(replies[0]);
    assert_null(rc.ctx); /* dropped */
    pthread_join(server, NULL);
    assert_int_equal(atomic_load(&f.accepted), 2);
    assert_int_equal(atomic_load(&f.commands), 5);
    close(f.listener);
    rconn_close(&rc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rconn_pipeline_resend_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
