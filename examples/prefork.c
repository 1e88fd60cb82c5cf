/*
 * prefork.c - several processes serving one listening socket.
 *
 * Usage:
 *   prefork ADDRESS WORKERS   opens ADDRESS (FCGX_OpenSocket syntax), forks
 *                             WORKERS processes that all accept on it, and
 *                             supervises them
 *   prefork                   one worker on the listening socket it was
 *                             started with as fd 0 (spawn-fcgi -F N,
 *                             systemd-style supervisors, a shared socket
 *                             handed to a new version of the program)
 *
 * Every response is text/plain and names the process that served it:
 *   pid=<pid>
 *   served=<requests served by this process so far>
 *   query=<QUERY_STRING>
 *   body=<bytes of the request body>
 * With "ms=N" in QUERY_STRING the request takes N milliseconds (0-60000)
 * before it answers, to keep requests in flight under test.
 *
 * The kernel hands each new connection to exactly one process blocked in
 * accept() on the shared socket, so nothing is balanced here.
 *
 * Signals to the parent (first form):
 *   SIGTERM, SIGINT  every worker stops accepting, finishes the requests it
 *                    is serving and exits; then the parent exits (status 0)
 *   SIGHUP           rolling restart: WORKERS new processes are forked
 *                    first, then the old ones get SIGTERM and drain as
 *                    above; connections waiting in the socket's queue are
 *                    accepted by the new ones, so no request is lost
 *   a worker that dies on its own is replaced.
 * A worker started with fd 0 (second form) needs no handler of its own:
 * the library's SIGTERM handler makes FCGX_Accept_r return -EINTR once
 * the requests in flight are answered.
 */
#include <errno.h>
#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_WORKERS 64

/* Sleeps `ms` milliseconds, through interrupting signals. */
static void sleep_ms(long ms)
{
    struct timespec left;

    left.tv_sec = ms / 1000;
    left.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

/* The value of "ms=N" in a query string, or 0. */
static long delay_of(const char *query)
{
    const char *p = query;
    long ms;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, "ms=", 3) == 0) {
            ms = strtol(p + 3, NULL, 10);
            return ms < 0 ? 0 : ms > 60000 ? 60000 : ms;
        }
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return 0;
}

/* Serves `sock` until a shutdown request (FCGX_Accept_r < 0). */
static int serve(int sock)
{
    FCGX_Request req;
    long served = 0;
    char buf[8192];

    if (FCGX_InitRequest(&req, sock, 0) != 0)
        return 1;
    while (FCGX_Accept_r(&req) >= 0) {
        const char *query = FCGX_GetParam("QUERY_STRING", req.envp);
        long ms = delay_of(query);
        long body = 0;
        int n;

        while ((n = FCGX_GetStr(buf, sizeof buf, req.in)) > 0)
            body += n;
        if (ms > 0)
            sleep_ms(ms);
        served++;
        FCGX_FPrintF(req.out,
                     "Content-Type: text/plain\r\n\r\npid=%ld\nserved=%ld\nquery=%s\nbody=%ld\n",
                     (long)getpid(), served, query != NULL ? query : "", body);
        FCGX_Finish_r(&req);
    }
    FCGX_Free(&req, 1);
    return 0;
}

/* ---- the parent: forks and supervises the workers ---------------------- */

static volatile sig_atomic_t stop_requested, restart_requested;

static void on_parent_signal(int sig)
{
    if (sig == SIGHUP)
        restart_requested = 1;
    else if (sig == SIGTERM || sig == SIGINT)
        stop_requested = 1;
    /* SIGCHLD: only wakes sigsuspend. */
}

/* A forked worker's SIGTERM: ask the library to stop accepting
 * (FCGX_ShutdownPending is async-signal-safe). The parent's own handlers
 * were inherited by fork, so the library's default one is not there. */
static void on_worker_term(int sig)
{
    (void)sig;
    FCGX_ShutdownPending();
}

static void handle(int sig, void (*fn)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fn;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

/* Two generations of slots: [0, count) and [count, 2 * count). */
static pid_t workers[2 * MAX_WORKERS];
static int draining[2 * MAX_WORKERS];

/* Forks one worker into slot `i`; the child never returns. */
static void spawn_worker(int i, int sock, const sigset_t *old_mask)
{
    pid_t pid = fork();

    if (pid == 0) {
        handle(SIGTERM, on_worker_term);
        handle(SIGINT, SIG_DFL);
        handle(SIGHUP, SIG_DFL);
        handle(SIGCHLD, SIG_DFL);
        sigprocmask(SIG_SETMASK, old_mask, NULL);
        exit(serve(sock));
    }
    workers[i] = pid > 0 ? pid : 0;
    draining[i] = 0;
    if (pid < 0)
        perror("prefork: fork");
}

static int supervise(int sock, int count)
{
    sigset_t block, old_mask;
    int i, running, draining_now, base = 0;

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old_mask);
    handle(SIGTERM, on_parent_signal);
    handle(SIGINT, on_parent_signal);
    handle(SIGHUP, on_parent_signal);
    handle(SIGCHLD, on_parent_signal);

    for (i = 0; i < count; i++)
        spawn_worker(base + i, sock, &old_mask);
    for (;;) {
        int status;
        pid_t pid;

        /* Reap every worker that ended; replace it unless it was asked to go. */
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            for (i = 0; i < 2 * count; i++) {
                if (workers[i] != pid)
                    continue;
                workers[i] = 0;
                if (draining[i] || stop_requested)
                    draining[i] = 0;
                else
                    spawn_worker(i, sock, &old_mask);
            }
        }
        running = draining_now = 0;
        for (i = 0; i < 2 * count; i++) {
            running += workers[i] > 0;
            draining_now += workers[i] > 0 && draining[i];
        }
        if (stop_requested) {
            if (running == 0)
                return 0;
            for (i = 0; i < 2 * count; i++)
                if (workers[i] > 0 && !draining[i]) {
                    draining[i] = 1;
                    kill(workers[i], SIGTERM);
                }
        } else if (restart_requested && draining_now == 0) {
            /* The new generation accepts before the old one is told to
             * stop. (A SIGHUP during a restart waits for its end.) */
            int old = base;

            restart_requested = 0;
            base = count - base;
            for (i = 0; i < count; i++)
                spawn_worker(base + i, sock, &old_mask);
            for (i = 0; i < count; i++)
                if (workers[old + i] > 0) {
                    draining[old + i] = 1;
                    kill(workers[old + i], SIGTERM);
                }
        }
        sigsuspend(&old_mask);
    }
}

int main(int argc, char **argv)
{
    int count, sock;

    if (argc == 1) {
        /* Started with the listening socket as fd 0. */
        if (FCGX_Init() != 0 || FCGX_IsCGI()) {
            fprintf(stderr, "prefork: fd 0 is not a listening socket\n");
            return 2;
        }
        return serve(0);
    }
    count = argc > 2 ? atoi(argv[2]) : 0;
    if (argc != 3 || count < 1 || count > MAX_WORKERS) {
        fprintf(stderr, "usage: prefork [ADDRESS WORKERS (1-%d)]\n", MAX_WORKERS);
        return 2;
    }
    if (FCGX_Init() != 0)
        return 1;
    sock = FCGX_OpenSocket(argv[1], 1024);
    if (sock < 0) {
        perror("prefork: FCGX_OpenSocket");
        return 1;
    }
    return supervise(sock, count);
}
