/*
 * original_api.c - a program written for libfcgi 2.4's fcgiapp.h and
 * fastcgi.h, using the API broadly. tests/headers.rs compiles it unchanged
 * against the original headers and against ours (-Wall -Wextra -Werror
 * -pedantic), links it with each library, and compares the output of
 *
 *   original_api check     self-check without a web server (stdout),
 *                          and the library's file name on stderr
 *   original_api serve ADDR   a responder on ADDR (compiled, not run by the
 *                          test: it makes the program use every function)
 */
#include <fcgiapp.h>
#include <fastcgi.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Every function, through a pointer of the type libfcgi 2.4 declares: a
 * different prototype is an incompatible-pointer error under -Werror. */
struct api {
    int (*is_cgi)(void);
    int (*init)(void);
    int (*open_socket)(const char *, int);
    int (*init_request)(FCGX_Request *, int, int);
    int (*accept_r)(FCGX_Request *);
    void (*finish_r)(FCGX_Request *);
    void (*free_request)(FCGX_Request *, int);
    int (*accept)(FCGX_Stream **, FCGX_Stream **, FCGX_Stream **, FCGX_ParamArray *);
    void (*finish)(void);
    int (*start_filter_data)(FCGX_Stream *);
    void (*set_exit_status)(int, FCGX_Stream *);
    char *(*get_param)(const char *, FCGX_ParamArray);
    int (*get_char)(FCGX_Stream *);
    int (*unget_char)(int, FCGX_Stream *);
    int (*get_str)(char *, int, FCGX_Stream *);
    char *(*get_line)(char *, int, FCGX_Stream *);
    int (*has_seen_eof)(FCGX_Stream *);
    int (*put_char)(int, FCGX_Stream *);
    int (*put_str)(const char *, int, FCGX_Stream *);
    int (*put_s)(const char *, FCGX_Stream *);
    int (*fprintf)(FCGX_Stream *, const char *, ...);
    int (*vfprintf)(FCGX_Stream *, const char *, va_list);
    int (*fflush)(FCGX_Stream *);
    int (*fclose)(FCGX_Stream *);
    int (*get_error)(FCGX_Stream *);
    void (*clear_error)(FCGX_Stream *);
    FCGX_Stream *(*create_writer)(int, int, int, int);
    void (*free_stream)(FCGX_Stream **);
    void (*shutdown_pending)(void);
    int (*attach)(FCGX_Request *);
    int (*detach)(FCGX_Request *);
};

static const struct api api = {
    FCGX_IsCGI, FCGX_Init, FCGX_OpenSocket, FCGX_InitRequest, FCGX_Accept_r,
    FCGX_Finish_r, FCGX_Free, FCGX_Accept, FCGX_Finish, FCGX_StartFilterData,
    FCGX_SetExitStatus, FCGX_GetParam, FCGX_GetChar, FCGX_UnGetChar, FCGX_GetStr,
    FCGX_GetLine, FCGX_HasSeenEOF, FCGX_PutChar, FCGX_PutStr, FCGX_PutS,
    FCGX_FPrintF, FCGX_VFPrintF, FCGX_FFlush, FCGX_FClose, FCGX_GetError,
    FCGX_ClearError, FCGX_CreateWriter, FCGX_FreeStream, FCGX_ShutdownPending,
    FCGX_Attach, FCGX_Detach,
};

/* A printf-like helper of the application's own, over FCGX_VFPrintF. */
static int log_to(FCGX_Stream *stream, const char *format, ...)
{
    va_list ap;
    int n;

    va_start(ap, format);
    n = FCGX_VFPrintF(stream, format, ap);
    va_end(ap);
    return n;
}

/* The responder: echoes the query string, some parameters, the body. */
static void respond(FCGX_Request *r, long count)
{
    char line[256];
    char buf[4096];
    const char *query = FCGX_GetParam("QUERY_STRING", r->envp);
    char **e;
    int c, n;

    FCGX_FPrintF(r->out, "Content-Type: text/plain\r\n\r\n");
    FCGX_FPrintF(r->out, "request %ld id=%d role=%d fd=%d listen=%d\n", count,
                 r->requestId, r->role, r->ipcFd, r->listen_sock);
    FCGX_PutS(query != NULL ? query : "(no query)", r->out);
    FCGX_PutChar('\n', r->out);
    for (e = r->envp; e != NULL && *e != NULL; e++)
        log_to(r->out, "env %s\n", *e);

    if (r->role == FCGI_FILTER) {
        while (FCGX_GetStr(buf, sizeof buf, r->in) > 0)
            ;
        if (FCGX_StartFilterData(r->in) < 0)
            log_to(r->err, "no filter data: %d\n", FCGX_GetError(r->in));
    }
    c = FCGX_GetChar(r->in);
    if (c != EOF && FCGX_UnGetChar(c, r->in) != c)
        FCGX_PutS("unget failed\n", r->err);
    if (FCGX_GetLine(line, (int)sizeof line, r->in) != NULL)
        FCGX_PutStr(line, (int)strlen(line), r->out);
    while ((n = FCGX_GetStr(buf, (int)sizeof buf, r->in)) > 0)
        FCGX_PutStr(buf, n, r->out);
    if (FCGX_HasSeenEOF(r->in) != EOF || r->in->isClosed < 0)
        FCGX_PutS("input not at EOF\n", r->err);
    if (FCGX_GetError(r->out) != 0) {
        FCGX_ClearError(r->out);
        FCGX_SetExitStatus(1, r->out);
    }
    FCGX_FFlush(r->out);
}

/* Serves with FCGX_Accept_r on ADDR; the old FCGX_Accept on fd 0 if the
 * address is "-". */
static int serve(const char *addr)
{
    FCGX_Request request;
    FCGX_Stream *in, *out, *err;
    FCGX_ParamArray envp;
    long count = 0;
    int sock;

    if (api.init() != 0)
        return 1;
    if (strcmp(addr, "-") == 0) {
        if (FCGX_IsCGI())
            return 2;
        while (FCGX_Accept(&in, &out, &err, &envp) >= 0) {
            FCGX_FPrintF(out, "Content-Type: text/plain\r\n\r\nold API %s\n",
                         FCGX_GetParam("REQUEST_METHOD", envp));
            FCGX_FClose(err);
        }
        FCGX_Finish();
        return 0;
    }
    sock = FCGX_OpenSocket(addr, 16);
    if (sock < 0)
        return 3;
    FCGX_InitRequest(&request, sock, FCGI_FAIL_ACCEPT_ON_INTR);
    while (FCGX_Accept_r(&request) == 0) {
        respond(&request, ++count);
        if (count == 1000)
            FCGX_ShutdownPending();
        if (count == 2000 && FCGX_Detach(&request) == 0)
            FCGX_Attach(&request);
        FCGX_Finish_r(&request);
    }
    FCGX_Free(&request, 1);
    close(sock);
    return 0;
}

/* Reads exactly n bytes. */
static int read_all(int fd, void *buf, size_t n)
{
    size_t got = 0;

    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* Prints the path of the shared object that defines FCGX_Init (stderr). */
static void print_library(void)
{
    int (*fp)(void) = FCGX_Init;
    void *addr;
    Dl_info info;
    char path[PATH_MAX];

    memcpy(&addr, &fp, sizeof addr);
    if (dladdr(addr, &info) != 0 && info.dli_fname != NULL &&
        realpath(info.dli_fname, path) != NULL)
        fprintf(stderr, "library: %s\n", path);
    else
        fprintf(stderr, "library: unknown\n");
}

static int check(void)
{
    static char *env[] = {"FOO=bar", "QUERY_STRING=a=1&b=2", "EMPTY=", "FOO=second", NULL};
    FCGX_Request r;
    FCGX_Stream *w;
    FCGI_Header h;
    FCGI_BeginRequestRecord begin;
    FCGI_EndRequestRecord end;
    FCGI_UnknownTypeRecord unknown;
    char content[FCGI_MAX_LENGTH + 1];
    char all[1024];
    size_t all_len = 0;
    const char *v;
    int sv[2], records = 0, last_type = -1;

    print_library();

    /* the FCGX_Request a program allocates itself */
    memset(&r, 0x5a, sizeof r);
    printf("InitRequest: %d\n", FCGX_InitRequest(&r, 7, FCGI_FAIL_ACCEPT_ON_INTR));
    printf("requestId=%d role=%d in=%d out=%d err=%d envp=%d\n", r.requestId, r.role,
           r.in == NULL, r.out == NULL, r.err == NULL, r.envp == NULL);
    printf("ipcFd=%d listen_sock=%d flags=%d\n", r.ipcFd, r.listen_sock, r.flags);

    /* parameters */
    v = FCGX_GetParam("QUERY_STRING", env);
    printf("QUERY_STRING=%s\n", v != NULL ? v : "(null)");
    v = FCGX_GetParam("FOO", env);
    printf("FOO=%s\n", v != NULL ? v : "(null)");
    v = FCGX_GetParam("EMPTY", env);
    printf("EMPTY=[%s]\n", v != NULL ? v : "(null)");
    printf("FO: %s, MISSING: %s\n", FCGX_GetParam("FO", env) == NULL ? "absent" : "present",
           FCGX_GetParam("MISSING", env) == NULL ? "absent" : "present");

    /* the record structs of fastcgi.h */
    memset(&begin, 0, sizeof begin);
    begin.header.version = FCGI_VERSION_1;
    begin.header.type = FCGI_BEGIN_REQUEST;
    begin.header.requestIdB0 = 1;
    begin.header.contentLengthB0 = sizeof begin.body;
    begin.body.roleB0 = FCGI_RESPONDER;
    begin.body.flags = FCGI_KEEP_CONN;
    memset(&end, 0, sizeof end);
    end.body.protocolStatus = FCGI_REQUEST_COMPLETE;
    memset(&unknown, 0, sizeof unknown);
    unknown.body.type = FCGI_MAXTYPE + 1;
    printf("records: %d %d %d, header %d bytes, %s %s %s\n", (int)sizeof begin, (int)sizeof end,
           (int)sizeof unknown, FCGI_HEADER_LEN, FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS);

    /* a stand-alone writer, as cgi-fcgi uses it */
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return 1;
    w = FCGX_CreateWriter(sv[0], 3, 8192, FCGI_STDOUT);
    if (w == NULL)
        return 1;
    printf("writer: isReader=%d isClosed=%d error=%d\n", w->isReader, w->isClosed,
           FCGX_GetError(w));
    FCGX_FPrintF(w, "x=%d;%s;%5.2f;%c;%lu|", 42, "ok", 3.14159, 'q', 123456789UL);
    FCGX_PutS("puts|", w);
    FCGX_PutStr("abc", 2, w);
    FCGX_PutChar('Z', w);
    log_to(w, "|%05d", 7);
    printf("flush=%d\n", FCGX_FFlush(w));
    printf("close=%d error=%d\n", FCGX_FClose(w), FCGX_GetError(w));
    close(sv[0]);
    for (;;) {
        unsigned len;

        if (read_all(sv[1], &h, sizeof h) != 0)
            break;
        len = ((unsigned)h.contentLengthB1 << 8) | h.contentLengthB0;
        if (read_all(sv[1], content, len + h.paddingLength) != 0)
            break;
        records++;
        last_type = h.type;
        if (h.version != FCGI_VERSION_1 || h.type != FCGI_STDOUT ||
            (((unsigned)h.requestIdB1 << 8) | h.requestIdB0) != 3)
            printf("unexpected header %d %d\n", h.version, h.type);
        if (len == 0)
            break;
        if (all_len + len < sizeof all) {
            memcpy(all + all_len, content, len);
            all_len += len;
        }
    }
    printf("stdout records ended by an empty one: %s (type %d)\n",
           records >= 2 && last_type == FCGI_STDOUT ? "yes" : "no", last_type);
    printf("content: %.*s\n", (int)all_len, all);
    FCGX_FreeStream(&w);
    printf("freed: %d\n", w == NULL);
    close(sv[1]);

    /* stdin is the null device: a CGI process */
    printf("IsCGI=%d\n", api.is_cgi());
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "check") == 0)
        return check();
    if (argc > 2 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    fprintf(stderr, "usage: %s check | serve ADDRESS\n", argv[0]);
    return 2;
}
