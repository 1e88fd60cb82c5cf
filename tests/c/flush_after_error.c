/*
 * flush_after_error.c - what FCGX_FFlush returns once an output stream has
 * failed. For each request the web server has already given up on (it
 * sends the request and closes the connection), the program writes and
 * flushes until a flush fails, then flushes again and reports every return
 * code on the process's own standard error, one line per request.
 *
 * Usage: flush_after_error ADDRESS
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    FCGX_Request r;
    int fd;

    if (argc < 2 || FCGX_Init() != 0)
        return 2;
    fd = FCGX_OpenSocket(argv[1], 16);
    if (fd < 0) {
        perror("FCGX_OpenSocket");
        return 1;
    }
    FCGX_InitRequest(&r, fd, 0);
    while (FCGX_Accept_r(&r) == 0) {
        int i, put = 0, failed = 0, again, third, err, in, unused;

        /* Wait for the peer's close by writing: the first write after it
         * fails (EPIPE on a Unix socket). */
        for (i = 0; i < 2000; i++) {
            put = FCGX_PutS("0123456789\n", r.out);
            failed = FCGX_FFlush(r.out);
            if (failed != 0)
                break;
            usleep(2000);
        }
        again = FCGX_FFlush(r.out);
        third = FCGX_FFlush(r.out);
        err = FCGX_GetError(r.out);
        in = FCGX_FFlush(r.in);
        unused = FCGX_FFlush(r.err);
        fprintf(stderr,
                "put=%d failed=%d again=%d third=%d error=%d eof=%d closed=%d in=%d err=%d\n",
                put, failed, again, third, err, FCGX_HasSeenEOF(r.out), r.out->isClosed,
                in, unused);
        fflush(stderr);
    }
    return 0;
}
