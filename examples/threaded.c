/*
 * threaded.c - a multi-threaded FastCGI responder: N threads, each with its
 * own FCGX_Request, all accepting on one listening socket.
 *
 * Usage: threaded ADDRESS [THREADS]   (THREADS defaults to 4)
 *
 * Each response carries an "X-Thread: k" header naming the thread that
 * served it, then QUERY_STRING on one line, an empty line, and the request
 * body echoed byte for byte.
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_THREADS 64

static int listen_sock;

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    FCGX_Request req;
    char buf[8192];
    int n;

    FCGX_InitRequest(&req, listen_sock, 0);
    /* Concurrent FCGX_Accept_r calls on one socket: the kernel hands each
     * connection to exactly one accept(). */
    while (FCGX_Accept_r(&req) == 0) {
        const char *query = FCGX_GetParam("QUERY_STRING", req.envp);

        FCGX_FPrintF(req.out, "Content-Type: text/plain\r\nX-Thread: %d\r\n\r\n", id);
        FCGX_FPrintF(req.out, "QUERY_STRING=%s\n\n", query != NULL ? query : "");
        while ((n = FCGX_GetStr(buf, sizeof buf, req.in)) > 0)
            FCGX_PutStr(buf, n, req.out);
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t threads[MAX_THREADS];
    int count = argc > 2 ? atoi(argv[2]) : 4;
    int i;

    if (argc < 2 || count < 1 || count > MAX_THREADS) {
        fprintf(stderr, "usage: threaded ADDRESS [THREADS (1-%d)]\n", MAX_THREADS);
        return 2;
    }
    if (FCGX_Init() != 0)
        return 1;
    listen_sock = FCGX_OpenSocket(argv[1], 128);
    if (listen_sock < 0)
        return 1;
    for (i = 0; i < count; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)(long)i) != 0)
            return 1;
    for (i = 0; i < count; i++)
        pthread_join(threads[i], NULL);
    return 0;
}
