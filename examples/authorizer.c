/*
 * authorizer.c - a FastCGI AUTHORIZER.
 *
 * Usage: authorizer ADDRESS
 *
 * Grants access (Status 200 plus "Variable-AUTH_USER" and
 * "Variable-AUTH_METHOD" headers, which the web server passes on to the
 * protected application) when the HTTP_AUTHORIZATION parameter is
 * "Bearer letmein"; denies it otherwise (Status 403 and a short body).
 * A request in another role gets Status 500.
 */
#include <fcgiapp.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    FCGX_Request req;
    int sock;

    if (argc < 2) {
        fprintf(stderr, "usage: authorizer ADDRESS\n");
        return 2;
    }
    if (FCGX_Init() != 0 || (sock = FCGX_OpenSocket(argv[1], 128)) < 0)
        return 1;
    FCGX_InitRequest(&req, sock, 0);
    while (FCGX_Accept_r(&req) == 0) {
        const char *role = FCGX_GetParam("FCGI_ROLE", req.envp);
        const char *auth = FCGX_GetParam("HTTP_AUTHORIZATION", req.envp);
        const char *user = FCGX_GetParam("REMOTE_USER", req.envp);

        if (role == NULL || strcmp(role, "AUTHORIZER") != 0) {
            FCGX_FPrintF(req.out, "Status: 500 Internal Server Error\r\n\r\nrole %s\n",
                         role != NULL ? role : "(none)");
        } else if (auth != NULL && strcmp(auth, "Bearer letmein") == 0) {
            FCGX_FPrintF(req.out, "Status: 200 OK\r\nVariable-AUTH_USER: %s\r\n"
                         "Variable-AUTH_METHOD: bearer\r\n\r\n",
                         user != NULL ? user : "anonymous");
        } else {
            FCGX_PutS("Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\naccess denied\n",
                      req.out);
        }
        FCGX_Finish_r(&req);
    }
    return 0;
}
