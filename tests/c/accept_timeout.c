/*
 * accept_timeout.c - probe of FCGX_AcceptTimeout_r and FCGX_GetReadyFd
 * for tests/event_loop.rs.
 *
 * Usage:
 *   accept_timeout ADDRESS wait MS
 *       one FCGX_AcceptTimeout_r(&req, MS) (nobody connects); prints
 *       "rc=RC ms=ELAPSED ipcfd=FD"
 *   accept_timeout ADDRESS shutdown-thread MS
 *       waits in poll() on FCGX_GetReadyFd (at most 5 s) while another
 *       thread calls FCGX_ShutdownPending() after MS; then prints
 *       "rc=RC ms=ELAPSED" for FCGX_AcceptTimeout_r(&req, 0)
 *   accept_timeout ADDRESS bad
 *       prints "null=RC neg=RC nofd=RC errno=E" for the refused calls
 *   accept_timeout ADDRESS fork
 *       FCGX_GetReadyFd in the parent, then two children that call it
 *       again and serve from their own event loops for 1 s; the first is
 *       sent SIGTERM after 200 ms. Prints "stopped=RC spins=N": the
 *       first child's last return code, and how often the second was
 *       woken for nothing (the other child's shutdown must not wake it)
 *   accept_timeout ADDRESS emfile
 *       with no descriptor left (RLIMIT_NOFILE), prints "ready=RC
 *       errno=E accept=RC", then with the limit back "again=RC" (the
 *       descriptor, or -1)
 */
#include <errno.h>
#include <fcgiapp.h>
#include <fcgi_ext.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int delay_ms;

static void *shut_down_later(void *arg)
{
    (void)arg;
    usleep((useconds_t)delay_ms * 1000);
    FCGX_ShutdownPending();
    return NULL;
}

int main(int argc, char **argv)
{
    FCGX_Request req;
    long long start;
    int sock, rc;

    if (argc < 3)
        return 2;
    if (FCGX_Init() != 0)
        return 1;
    sock = FCGX_OpenSocket(argv[1], 16);
    if (sock < 0 || FCGX_InitRequest(&req, sock, 0) != 0)
        return 1;
    if (strcmp(argv[2], "wait") == 0 && argc > 3) {
        start = now_ms();
        rc = FCGX_AcceptTimeout_r(&req, atoi(argv[3]));
        printf("rc=%d ms=%lld ipcfd=%d\n", rc, now_ms() - start, req.ipcFd);
        return 0;
    }
    if (strcmp(argv[2], "shutdown-thread") == 0 && argc > 3) {
        struct pollfd p;
        pthread_t t;
        p.fd = FCGX_GetReadyFd(&req);
        p.events = POLLIN;
        if (p.fd < 0)
            return 1;
        delay_ms = atoi(argv[3]);
        start = now_ms();
        if (pthread_create(&t, NULL, shut_down_later, NULL) != 0)
            return 1;
        /* At most 5 s: a descriptor that never wakes fails the test. */
        while (poll(&p, 1, 5000 - (int)(now_ms() - start)) < 0 && errno == EINTR
               && now_ms() - start < 5000)
            ;
        rc = FCGX_AcceptTimeout_r(&req, 0);
        printf("rc=%d ms=%lld\n", rc, now_ms() - start);
        pthread_join(t, NULL);
        return 0;
    }
    if (strcmp(argv[2], "fork") == 0) {
        pid_t kids[2];
        int i, pipes[2][2];
        long r0 = 0, r1 = 0;
        if (FCGX_GetReadyFd(&req) < 0)
            return 1;
        for (i = 0; i < 2; i++) {
            if (pipe(pipes[i]) != 0 || (kids[i] = fork()) < 0)
                return 1;
            if (kids[i] == 0) {
                struct pollfd p;
                long spins = 0;
                p.fd = FCGX_GetReadyFd(&req);
                p.events = POLLIN;
                rc = FCGX_ACCEPT_TIMEOUT;
                start = now_ms();
                while (now_ms() - start < 1000) {
                    if (poll(&p, 1, 100) != 1)
                        continue;
                    while ((rc = FCGX_AcceptTimeout_r(&req, 0)) == 0)
                        FCGX_Finish_r(&req);
                    if (rc != FCGX_ACCEPT_TIMEOUT)
                        break;
                    spins++;
                }
                dprintf(pipes[i][1], "%ld\n", i == 0 ? (long)rc : spins);
                _exit(0);
            }
            close(pipes[i][1]);
        }
        usleep(200000);
        kill(kids[0], SIGTERM);
        for (i = 0; i < 2; i++) {
            char buf[32] = {0};
            if (read(pipes[i][0], buf, sizeof buf - 1) <= 0)
                return 1;
            *(i == 0 ? &r0 : &r1) = atol(buf);
            waitpid(kids[i], NULL, 0);
        }
        printf("stopped=%ld spins=%ld\n", r0, r1);
        return 0;
    }
    if (strcmp(argv[2], "emfile") == 0) {
        struct rlimit old, none;
        int next = dup(sock), ready, err, acc;
        if (next < 0 || close(next) != 0 || getrlimit(RLIMIT_NOFILE, &old) != 0)
            return 1;
        none = old;
        none.rlim_cur = (rlim_t)next;
        if (setrlimit(RLIMIT_NOFILE, &none) != 0)
            return 1;
        ready = FCGX_GetReadyFd(&req);
        err = errno;
        acc = FCGX_AcceptTimeout_r(&req, 0);
        if (setrlimit(RLIMIT_NOFILE, &old) != 0)
            return 1;
        printf("ready=%d errno=%d accept=%d again=%d\n", ready, err, acc,
               FCGX_GetReadyFd(&req));
        return 0;
    }
    if (strcmp(argv[2], "bad") == 0) {
        FCGX_Request none;
        int a, b, c;
        a = FCGX_AcceptTimeout_r(NULL, 0);
        b = FCGX_AcceptTimeout_r(&req, -2);
        FCGX_InitRequest(&none, -1, 0);
        c = FCGX_GetReadyFd(&none);
        printf("null=%d neg=%d nofd=%d errno=%d\n", a, b, c, errno);
        return 0;
    }
    return 2;
}
