/*
 * owned_socket.c - a Unix socket created with a given mode and owner, as
 * spawn-fcgi's -M, -U and -G do (fcgi_ext.h: FCGX_OpenSocketMode).
 *
 * Usage: owned_socket PATH MODE [USER [GROUP]]
 *
 *   owned_socket /run/app.sock 0660 app www-data
 *
 * MODE is octal; USER and GROUP are names or numbers ("-" or absent:
 * left as the process's). Typically started as root with a socket that
 * the web server's group may use; the socket is in place, with its mode
 * and owner, before anyone can connect. Each request is answered with
 * "hello from owned_socket". SIGTERM ends the accept loop, the program
 * returns from main, and the library removes the socket file it created.
 */
#include <ctype.h>
#include <fcgiapp.h>
#include <fcgi_ext.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>

/* A user or group id by number or name; -1 for "-" or none. */
static long lookup(const char *text, int is_group)
{
    if (text == NULL || text[0] == '-')
        return -1;
    if (isdigit((unsigned char)text[0]))
        return atol(text);
    if (is_group) {
        struct group *g = getgrnam(text);
        return g != NULL ? (long)g->gr_gid : -2;
    } else {
        struct passwd *p = getpwnam(text);
        return p != NULL ? (long)p->pw_uid : -2;
    }
}

int main(int argc, char **argv)
{
    FCGX_Request req;
    long uid, gid;
    int sock;

    if (argc < 3) {
        fprintf(stderr, "usage: %s PATH MODE [USER [GROUP]]\n", argv[0]);
        return 2;
    }
    uid = lookup(argc > 3 ? argv[3] : NULL, 0);
    gid = lookup(argc > 4 ? argv[4] : NULL, 1);
    if (uid == -2 || gid == -2) {
        fprintf(stderr, "owned_socket: no such user or group\n");
        return 2;
    }
    sock = FCGX_OpenSocketMode(argv[1], 64, (int)strtol(argv[2], NULL, 8), uid, gid);
    if (sock < 0) {
        perror("FCGX_OpenSocketMode");
        return 1;
    }
    if (FCGX_Init() != 0 || FCGX_InitRequest(&req, sock, 0) != 0)
        return 1;
    while (FCGX_Accept_r(&req) == 0)
        FCGX_FPrintF(req.out, "Content-Type: text/plain\r\n\r\nhello from owned_socket\n");
    FCGX_Free(&req, 1);
    return 0;
}
