/*
 * big.c - large responses: SIZE bytes of a pattern written with
 * FCGX_PutStr in CHUNK-byte pieces (as an app copying a file would).
 *
 * usage: big ADDR [SIZE [CHUNK [THREADS]]]   (defaults 1048576, 8192, 1)
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_THREADS 256

static int listen_sock;
static char *data;
static long size, chunk;

static void *worker(void *arg)
{
    FCGX_Request req;

    (void)arg;
    if (FCGX_InitRequest(&req, listen_sock, 0) != 0)
        return NULL;
    while (FCGX_Accept_r(&req) == 0) {
        long off;
        FCGX_PutS("Content-Type: text/plain\r\n\r\n", req.out);
        for (off = 0; off < size; off += chunk) {
            long n = size - off < chunk ? size - off : chunk;
            if (FCGX_PutStr(data + off, (int)n, req.out) != n)
                break;
        }
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[MAX_THREADS];
    int n = argc > 4 ? atoi(argv[4]) : 1, i;
    long k;

    size = argc > 2 ? atol(argv[2]) : 1048576;
    chunk = argc > 3 ? atol(argv[3]) : 8192;
    if (argc < 2 || size < 0 || chunk < 1 || n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: big ADDR [SIZE [CHUNK [THREADS]]]\n");
        return 2;
    }
    data = malloc((size_t)size + 1);
    if (data == NULL)
        return 1;
    for (k = 0; k < size; k++)
        data[k] = (char)('a' + k % 26);
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
