/*
 * echo.c - POST echo: copies the request body to the response in 8 KiB
 * pieces (FCGX_GetStr / FCGX_PutStr), the way a CGI-style app streams.
 *
 * usage: echo ADDR [THREADS]
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
    char buf[8192];
    int n;

    (void)arg;
    if (FCGX_InitRequest(&req, listen_sock, 0) != 0)
        return NULL;
    while (FCGX_Accept_r(&req) == 0) {
        FCGX_PutS("Content-Type: application/octet-stream\r\n\r\n", req.out);
        while ((n = FCGX_GetStr(buf, sizeof buf, req.in)) > 0)
            FCGX_PutStr(buf, n, req.out);
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[MAX_THREADS];
    int n = argc > 2 ? atoi(argv[2]) : 1, i;

    if (argc < 2 || n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: echo ADDR [THREADS]\n");
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
