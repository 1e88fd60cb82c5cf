/* A FastCGI responder for tests/os_layer.rs.
 *
 * Listens on fd 0 (as started by a web server or `cgi-fcgi -start`), or on
 * the address in argv[1]. If OS_ECHO_PIDFILE is set, writes its pid there
 * first. Per request it reads the whole input and answers with headers
 * that describe the request, then the input itself:
 *
 *   X-Body-Len:     bytes of input read
 *   X-Params:       number of parameters
 *   X-Params-Bytes: sum of strlen("NAME=value") over the parameters
 *   X-Big-Len:      length of the X_BIG parameter (-1 if absent)
 *   X-Method:       REQUEST_METHOD
 *
 * It also writes one line to the error stream, and sets the exit status
 * from the X_EXIT parameter (cgi-fcgi exits with it).
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int sock = 0;
    const char *pidfile = getenv("OS_ECHO_PIDFILE");
    FCGX_Request req;
    size_t cap = 1 << 16;
    char *body = malloc(cap);

    if (body == NULL)
        return 2;
    if (pidfile != NULL) {
        FILE *f = fopen(pidfile, "w");
        if (f != NULL) {
            fprintf(f, "%d\n", (int)getpid());
            fclose(f);
        }
    }
    if (FCGX_Init() != 0)
        return 3;
    if (argc > 1) {
        sock = FCGX_OpenSocket(argv[1], 16);
        if (sock < 0) {
            perror("FCGX_OpenSocket");
            return 4;
        }
    }
    FCGX_InitRequest(&req, sock, 0);
    while (FCGX_Accept_r(&req) >= 0) {
        size_t len = 0;
        long params = 0, params_bytes = 0;
        const char *big = FCGX_GetParam("X_BIG", req.envp);
        const char *method = FCGX_GetParam("REQUEST_METHOD", req.envp);
        const char *status = FCGX_GetParam("X_EXIT", req.envp);
        char **e;
        int n;

        for (;;) {
            if (len == cap) {
                char *bigger = realloc(body, cap * 2);
                if (bigger == NULL)
                    break;
                body = bigger;
                cap *= 2;
            }
            n = FCGX_GetStr(body + len, (int)(cap - len), req.in);
            if (n <= 0)
                break;
            len += (size_t)n;
        }
        for (e = req.envp; *e != NULL; e++) {
            params++;
            params_bytes += (long)strlen(*e);
        }
        FCGX_FPrintF(req.out,
                     "Content-Type: application/octet-stream\r\n"
                     "X-Body-Len: %ld\r\n"
                     "X-Params: %ld\r\n"
                     "X-Params-Bytes: %ld\r\n"
                     "X-Big-Len: %ld\r\n"
                     "X-Method: %s\r\n"
                     "\r\n",
                     (long)len, params, params_bytes,
                     big != NULL ? (long)strlen(big) : -1L,
                     method != NULL ? method : "");
        FCGX_PutStr(body, (int)len, req.out);
        FCGX_PutS("os_echo: a line on the error stream\n", req.err);
        if (status != NULL)
            FCGX_SetExitStatus(atoi(status), req.out);
        FCGX_Finish_r(&req);
    }
    free(body);
    return 0;
}
