/*
 * conn_app.c - a multi-threaded responder that tells which connection
 * carried each request (tests/connections.rs).
 *
 * Usage: conn_app ADDRESS [THREADS]   (THREADS defaults to 4, at most 64)
 *
 * THREADS threads, each with its own FCGX_Request, accept on one listening
 * socket opened with a backlog of 8192 (the kernel caps it at somaxconn).
 * Every request's body is read to its end and answered with one line:
 *
 *   keep=K peer=P thread=T query=Q
 *
 * K is the request's keepConnection flag (FCGI_KEEP_CONN), P the peer's
 * port of the connection's descriptor (getpeername of ipcFd; 0 for a Unix
 * socket), so a client can count the distinct connections its requests
 * arrived on; T the thread that served it, Q the QUERY_STRING.
 */
#include <fcgiapp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_THREADS 64
#define BACKLOG 8192

static int listen_sock;

/* The peer's port of connection `fd`, or 0 when it has none. */
static unsigned peer_port(int fd)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;

    memset(&sa, 0, sizeof sa);
    if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0)
        return 0;
    if (sa.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    if (sa.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return 0;
}

static void *worker(void *arg)
{
    int id = (int)(long)arg;
    FCGX_Request req;
    char buf[8192];

    if (FCGX_InitRequest(&req, listen_sock, 0) != 0)
        return NULL;
    while (FCGX_Accept_r(&req) == 0) {
        const char *query = FCGX_GetParam("QUERY_STRING", req.envp);

        while (FCGX_GetStr(buf, sizeof buf, req.in) > 0)
            ;
        FCGX_FPrintF(req.out,
                     "Content-Type: text/plain\r\n\r\n"
                     "keep=%d peer=%u thread=%d query=%s\n",
                     req.keepConnection, peer_port(req.ipcFd), id,
                     query != NULL ? query : "");
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
        fprintf(stderr, "usage: conn_app ADDRESS [THREADS (1-%d)]\n", MAX_THREADS);
        return 2;
    }
    if (FCGX_Init() != 0)
        return 1;
    listen_sock = FCGX_OpenSocket(argv[1], BACKLOG);
    if (listen_sock < 0) {
        perror("FCGX_OpenSocket");
        return 1;
    }
    for (i = 0; i < count; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)(long)i) != 0)
            return 1;
    for (i = 0; i < count; i++)
        pthread_join(threads[i], NULL);
    return 0;
}
