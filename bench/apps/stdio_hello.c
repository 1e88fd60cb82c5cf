/*
 * stdio_hello.c - the classic fcgi_stdio.h program: FCGI_Accept() loop,
 * printf() and getenv(). FCGI_Accept listens on fd 0, so this program
 * first opens ADDR and moves it to fd 0 (what spawn-fcgi would do).
 *
 * usage: stdio_hello ADDR
 */
#include <fcgi_stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int sock;

    if (argc < 2) {
        FCGI_fprintf(FCGI_stderr, "usage: stdio_hello ADDR\n");
        return 2;
    }
    sock = FCGX_OpenSocket(argv[1], 128);
    if (sock < 0)
        return 1;
    if (sock != 0) {
        if (dup2(sock, 0) < 0)
            return 1;
        close(sock);
    }
    while (FCGI_Accept() >= 0) {
        const char *method = getenv("REQUEST_METHOD");
        const char *uri = getenv("REQUEST_URI");
        printf("Content-Type: text/plain\r\n\r\nHello, world! %s %s\n",
               method ? method : "-", uri ? uri : "-");
    }
    return 0;
}
