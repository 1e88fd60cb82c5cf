/*
 * echo.c - a single-threaded FastCGI responder written against fcgiapp.h.
 *
 * Usage: echo [ADDRESS]
 *   ADDRESS is ":port", "host:port" or a Unix socket path; without it the
 *   listening socket is fd 0 (the classic way a web server spawns apps).
 *
 * Answers every request with a CGI header block, the request's environment
 * (one NAME=value per line, FCGI_ROLE first; the header X-Env-Bytes says how
 * many bytes these lines take), an empty line, and then the request body
 * byte for byte. Parameters that change the behaviour:
 *   EXIT_STATUS=N (or "exit=N" in QUERY_STRING)  FCGX_SetExitStatus(N)
 *   STDERR_TEXT=text                              writes text to FCGI_STDERR
 *   RESPONSE_SIZE=N                               appends N more bytes of output
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of "key=value" in an '&'-separated query string, or NULL. */
static const char *query_value(const char *query, const char *key)
{
    size_t klen = strlen(key);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, klen) == 0 && p[klen] == '=')
            return p + klen + 1;
        p = strchr(p, '&');
        if (p != NULL)
            p++;
    }
    return NULL;
}

static void serve(FCGX_Request *req)
{
    char buf[16384];
    char **env;
    const char *query = FCGX_GetParam("QUERY_STRING", req->envp);
    const char *exit_text = FCGX_GetParam("EXIT_STATUS", req->envp);
    const char *err_text = FCGX_GetParam("STDERR_TEXT", req->envp);
    const char *extra = FCGX_GetParam("RESPONSE_SIZE", req->envp);
    size_t env_bytes = 0;
    int n;

    for (env = req->envp; *env != NULL; env++)
        env_bytes += strlen(*env) + 1;
    FCGX_FPrintF(req->out, "Content-Type: text/plain\r\nX-Env-Bytes: %lu\r\n\r\n",
                 (unsigned long)env_bytes);
    for (env = req->envp; *env != NULL; env++)
        FCGX_FPrintF(req->out, "%s\n", *env);
    FCGX_PutChar('\n', req->out);

    while ((n = FCGX_GetStr(buf, sizeof buf, req->in)) > 0)
        FCGX_PutStr(buf, n, req->out);

    if (extra != NULL) {
        long left = atol(extra);
        for (n = 0; n < (int)sizeof buf; n++)
            buf[n] = (char)('a' + n % 26);
        while (left > 0) {
            int chunk = left < (long)sizeof buf ? (int)left : (int)sizeof buf;
            if (FCGX_PutStr(buf, chunk, req->out) < 0)
                break;
            left -= chunk;
        }
    }
    if (err_text != NULL)
        FCGX_PutS(err_text, req->err);
    if (exit_text == NULL && query != NULL)
        exit_text = query_value(query, "exit");
    if (exit_text != NULL)
        FCGX_SetExitStatus(atoi(exit_text), req->out);
}

int main(int argc, char **argv)
{
    FCGX_Request req;
    int sock = 0;

    if (FCGX_Init() != 0) {
        fprintf(stderr, "echo: FCGX_Init failed\n");
        return 1;
    }
    if (argc > 1) {
        sock = FCGX_OpenSocket(argv[1], 128);
        if (sock < 0) {
            fprintf(stderr, "echo: cannot listen on %s\n", argv[1]);
            return 1;
        }
    }
    FCGX_InitRequest(&req, sock, 0);
    while (FCGX_Accept_r(&req) == 0) {
        serve(&req);
        FCGX_Finish_r(&req);
    }
    return 0;
}
