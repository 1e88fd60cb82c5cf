/*
 * stream_app.c - output buffering probe for tests/streaming.rs.
 *
 * Usage: stream_app ADDRESS [PROCESS_BUFFER]
 *
 * PROCESS_BUFFER, when given, is passed to FCGX_SetOutputBufferSize before
 * the first accept. Each request writes PIECES pieces of PIECE_SIZE bytes
 * to `out` (the bytes of a fixed pattern, byte i of the response being
 * (i * 7 + i / 65521) & 0xff), without a flush; with STREAM_BUFFER set it
 * first calls FCGX_SetStreamBufferSize(out, STREAM_BUFFER). Then, if GATE
 * names a file, it waits (up to 30 s) until that file exists before it
 * finishes the request. No CGI header: the response is the pattern only.
 */
#include <fcgiapp.h>
#include <fcgi_ext.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long param(FCGX_Request *req, const char *name, long fallback)
{
    const char *v = FCGX_GetParam(name, req->envp);
    return v != NULL ? atol(v) : fallback;
}

int main(int argc, char **argv)
{
    static unsigned char piece[1 << 20];
    FCGX_Request req;
    int sock;

    if (argc < 2)
        return 2;
    if (FCGX_Init() != 0)
        return 1;
    if (argc > 2 && FCGX_SetOutputBufferSize((size_t)atol(argv[2])) != 0)
        return 3;
    sock = FCGX_OpenSocket(argv[1], 64);
    if (sock < 0)
        return 1;
    FCGX_InitRequest(&req, sock, 0);
    while (FCGX_Accept_r(&req) == 0) {
        long pieces = param(&req, "PIECES", 1);
        long size = param(&req, "PIECE_SIZE", 16);
        long stream_buffer = param(&req, "STREAM_BUFFER", -1);
        const char *gate = FCGX_GetParam("GATE", req.envp);
        unsigned long long at = 0;
        long p, i;
        int waited;

        if (size < 0 || size > (long)sizeof piece)
            size = sizeof piece;
        if (stream_buffer >= 0 && FCGX_SetStreamBufferSize(req.out, (size_t)stream_buffer) != 0)
            FCGX_SetExitStatus(4, req.out);
        for (p = 0; p < pieces; p++) {
            for (i = 0; i < size; i++, at++)
                piece[i] = (unsigned char)((at * 7 + at / 65521) & 0xff);
            if (FCGX_PutStr((const char *)piece, (int)size, req.out) != size)
                break;
        }
        for (waited = 0; gate != NULL && access(gate, F_OK) != 0 && waited < 3000; waited++) {
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        FCGX_Finish_r(&req);
    }
    return 0;
}
