/*
 * filter.c - a FastCGI FILTER.
 *
 * Usage: filter ADDRESS
 *
 * Reads FCGI_STDIN to its end, switches to the FCGI_DATA stream with
 * FCGX_StartFilterData and sends the data back upper-cased (ASCII only).
 * Headers report how many STDIN bytes were read and the FCGI_DATA_LENGTH
 * parameter. If the switch fails (not a FILTER request) the answer is
 * Status 500 with the stream error code.
 */
#include <ctype.h>
#include <fcgiapp.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    FCGX_Request req;
    char buf[8192];
    int sock, n, i;

    if (argc < 2) {
        fprintf(stderr, "usage: filter ADDRESS\n");
        return 2;
    }
    if (FCGX_Init() != 0 || (sock = FCGX_OpenSocket(argv[1], 128)) < 0)
        return 1;
    FCGX_InitRequest(&req, sock, 0);
    while (FCGX_Accept_r(&req) == 0) {
        const char *declared = FCGX_GetParam("FCGI_DATA_LENGTH", req.envp);
        long stdin_bytes = 0;

        while ((n = FCGX_GetStr(buf, sizeof buf, req.in)) > 0)
            stdin_bytes += n;
        if (FCGX_StartFilterData(req.in) != 0) {
            FCGX_FPrintF(req.out, "Status: 500 Internal Server Error\r\n\r\n"
                         "FCGX_StartFilterData failed: %d\n", FCGX_GetError(req.in));
        } else {
            FCGX_FPrintF(req.out, "Content-Type: text/plain\r\nX-Stdin-Length: %ld\r\n"
                         "X-Data-Length: %s\r\n\r\n", stdin_bytes,
                         declared != NULL ? declared : "unknown");
            while ((n = FCGX_GetStr(buf, sizeof buf, req.in)) > 0) {
                for (i = 0; i < n; i++)
                    buf[i] = (char)toupper((unsigned char)buf[i]);
                FCGX_PutStr(buf, n, req.out);
            }
        }
        FCGX_Finish_r(&req);
    }
    return 0;
}
