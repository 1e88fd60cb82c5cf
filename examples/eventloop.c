/*
 * eventloop.c - a FastCGI application with an event loop of its own
 * (fcgi_ext.h, Linux).
 *
 * Usage: eventloop ADDRESS
 *
 * One thread, one poll() over two descriptors: a timer that ticks every
 * 100 ms (the program's own work, which must never wait for a slow web
 * server) and FCGX_GetReadyFd, readable when a request may be ready:
 * a new connection, input on a kept-alive connection that the library
 * holds between two requests, or a shutdown request (SIGTERM).
 *
 * When it is readable, FCGX_AcceptTimeout_r(&req, 0) is called until it
 * returns FCGX_ACCEPT_TIMEOUT: each call takes a request that is ready
 * and never blocks. The response tells the request's number, the timer
 * ticks so far, the longest FCGX_AcceptTimeout_r call so far in
 * microseconds, and how many calls found nothing ready. SIGTERM ends the
 * loop: FCGX_AcceptTimeout_r returns -EINTR, and the program exits 0.
 */
#include <errno.h>
#include <fcgiapp.h>
#include <fcgi_ext.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
    FCGX_Request req;
    struct itimerspec every = {{0, 100000000}, {0, 100000000}};
    struct pollfd fds[2];
    long long ticks = 0, served = 0, empty = 0, longest = 0;
    int sock, ready, timer;

    if (argc < 2) {
        fprintf(stderr, "usage: %s ADDRESS\n", argv[0]);
        return 2;
    }
    if (FCGX_Init() != 0)
        return 1;
    sock = FCGX_OpenSocket(argv[1], 64);
    if (sock < 0 || FCGX_InitRequest(&req, sock, 0) != 0) {
        perror("listen");
        return 1;
    }
    ready = FCGX_GetReadyFd(&req);
    if (ready < 0) {
        perror("FCGX_GetReadyFd");
        return 1;
    }
    timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (timer < 0 || timerfd_settime(timer, 0, &every, NULL) != 0) {
        perror("timerfd");
        return 1;
    }
    fds[0].fd = ready;
    fds[0].events = POLLIN;
    fds[1].fd = timer;
    fds[1].events = POLLIN;

    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue; /* SIGTERM: the ready descriptor says so next */
            perror("poll");
            return 1;
        }
        if (fds[1].revents & POLLIN) {
            uint64_t n;
            if (read(timer, &n, sizeof n) == (ssize_t)sizeof n)
                ticks += (long long)n;
        }
        if (!(fds[0].revents & POLLIN))
            continue;
        /* Take every request that is ready, then wait again. */
        for (;;) {
            long long start = now_us(), took;
            int rc = FCGX_AcceptTimeout_r(&req, 0);

            took = now_us() - start;
            if (took > longest)
                longest = took;
            if (rc == FCGX_ACCEPT_TIMEOUT) {
                empty++;
                break;
            }
            if (rc < 0) {
                fprintf(stderr, "eventloop: shutdown (%s)\n", strerror(-rc));
                FCGX_Free(&req, 1);
                return rc == -EINTR ? 0 : 1;
            }
            served++;
            FCGX_FPrintF(req.out,
                         "Content-Type: text/plain\r\n\r\n"
                         "request %lld\nticks %lld\nlongest-accept-us %lld\n"
                         "nothing-ready %lld\n",
                         served, ticks, longest, empty);
        }
    }
}
