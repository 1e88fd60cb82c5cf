/*
 * hello.c - the smallest realistic responder: look up two params, print a
 * short page. Built against the original fcgiapp.h.
 *
 * usage: hello ADDR [THREADS]
 *   THREADS 1 (default): one thread, FCGX_Accept_r in a loop.
 *   THREADS N: N threads, each with its own FCGX_Request, all accepting on
 *   the one listening socket (the kernel hands each connection to one).
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_THREADS 256

static int listen_sock;

static void *worker(void *arg)
{
    FCGX_Request req;

    (void)arg;
    if (FCGX_InitRequest(&req, listen_sock, 0) != 0)
        return NULL;
    while (FCGX_Accept_r(&req) == 0) {
        const char *method = FCGX_GetParam("REQUEST_METHOD", req.envp);
        const char *uri = FCGX_GetParam("REQUEST_URI", req.envp);
        FCGX_FPrintF(req.out, "Content-Type: text/plain\r\n\r\nHello, world! %s %s\n",
                     method ? method : "-", uri ? uri : "-");
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[MAX_THREADS];
    int n = argc > 2 ? atoi(argv[2]) : 1, i;

    if (argc < 2 || n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: hello ADDR [THREADS]\n");
        return 2;
    }
    if (FCGX_Init() != 0)
        return 1;
    listen_sock = FCGX_OpenSocket(argv[1], 128);
    if (listen_sock < 0)
        return 1;
    for (i = 1; i < n; i++)
        if (pthread_create(&th[i], NULL, worker, NULL) != 0)
            return 1;
    worker(NULL);
    return 0;
}
