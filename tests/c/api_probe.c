/*
 * api_probe.c - exercises one corner of the fcgiapp.h contract per request
 * and prints what each call returned, so tests/api.rs can compare the text
 * with what libfcgi's contract says.
 *
 * Usage: api_probe ADDRESS. The SCENARIO parameter picks the corner.
 */
#include <fcgiapp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void scenario(FCGX_Request *r, const char *name)
{
    FCGX_Stream *in = r->in, *out = r->out;
    char buf[64];
    int c, a, b;

    if (strcmp(name, "getline") == 0) {
        while (FCGX_GetLine(buf, 8, in) != NULL)
            FCGX_FPrintF(out, "[%s]", buf);
        FCGX_FPrintF(out, "NULL n1=%s", FCGX_GetLine(buf, 1, in) == buf ? "str" : "null");
    } else if (strcmp(name, "unget") == 0) {
        int next, then;
        c = FCGX_GetChar(in);
        a = FCGX_UnGetChar(c, in);
        b = FCGX_UnGetChar('z', in);
        next = FCGX_GetChar(in);
        then = FCGX_GetChar(in);
        FCGX_FPrintF(out, "c=%c a=%c b=%d next=%c then=%c eofpush=%d",
                     c, a, b, next, then, FCGX_UnGetChar(EOF, in));
    } else if (strcmp(name, "printf") == 0) {
        int n = FCGX_FPrintF(out, "%5d|%-5d|%05d|%+d|%zu|%lld|%jd|%s|%.2s|%-12s|%%|%x|%c|%.3f",
                             42, 42, 42, 42, (size_t)7, -8LL, (intmax_t)9, (char *)NULL,
                             "abc", "w", 255, 'q', 3.14159);
        FCGX_FPrintF(out, "\nn=%d\n", n);
        n = FCGX_FPrintF(out, "%-120s|", "wide");
        FCGX_FPrintF(out, "\nwide=%d\n", n);
    } else if (strcmp(name, "eof") == 0) {
        int before = FCGX_HasSeenEOF(in);
        int got = FCGX_GetStr(buf, sizeof buf, in);
        int after = FCGX_HasSeenEOF(in);
        int getc = FCGX_GetChar(in);
        int unget = FCGX_UnGetChar('x', in);
        FCGX_FPrintF(out, "got=%d before=%d after=%d getc=%d unget=%d err=%d",
                     got, before, after, getc, unget, FCGX_GetError(in));
    } else if (strcmp(name, "filter_seq") == 0) {
        a = FCGX_StartFilterData(in);
        FCGX_FPrintF(out, "start=%d err=%d eof=%d", a, FCGX_GetError(in), FCGX_HasSeenEOF(in));
    } else if (strcmp(name, "putchar") == 0) {
        a = FCGX_PutChar(300, out);
        b = FCGX_PutStr("", 0, out);
        FCGX_FPrintF(out, "|put=%d zero=%d", a, b);
    } else if (strcmp(name, "fclose_out") == 0) {
        FCGX_PutS("body", out);
        a = FCGX_FClose(out);
        b = FCGX_PutChar('x', out);
        c = FCGX_HasSeenEOF(out);
        FCGX_FPrintF(r->err, "fclose=%d after=%d eof=%d", a, b, c);
        FCGX_FPrintF(r->err, " again=%d", FCGX_FClose(out));
    } else if (strcmp(name, "getparam") == 0) {
        const char *v = FCGX_GetParam("SCENARIO", r->envp);
        FCGX_FPrintF(out, "scenario=%s role=%s missing=%s prefix=%s null=%s",
                     v, FCGX_GetParam("FCGI_ROLE", r->envp),
                     FCGX_GetParam("NO_SUCH", r->envp) ? "found" : "none",
                     FCGX_GetParam("SCEN", r->envp) ? "found" : "none",
                     FCGX_GetParam(NULL, r->envp) ? "found" : "none");
    } else if (strcmp(name, "fields") == 0) {
        FCGX_FPrintF(out, "id=%d role=%d keep=%d fd=%s listen=%s reader=%d/%d closed=%d/%d",
                     r->requestId, r->role, r->keepConnection, r->ipcFd > 0 ? "yes" : "no",
                     r->listen_sock >= 0 ? "yes" : "no", in->isReader, out->isReader,
                     in->isClosed, out->isClosed);
    } else if (strcmp(name, "flush") == 0) {
        FCGX_PutS("first", out);
        a = FCGX_FFlush(out);
        usleep(100000);
        FCGX_FPrintF(out, "second flush=%d", a);
    } else if (strcmp(name, "exit") == 0) {
        FCGX_SetExitStatus(77, r->err);
        FCGX_PutS("status set", out);
    } else if (strcmp(name, "stderr") == 0) {
        FCGX_PutS("to out", out);
        FCGX_PutS("to err", r->err);
    } else {
        FCGX_FPrintF(out, "unknown scenario %s", name);
    }
}

int main(int argc, char **argv)
{
    FCGX_Request r;
    int fd;
    const char *name;

    if (argc < 2 || FCGX_Init() != 0)
        return 2;
    fd = FCGX_OpenSocket(argv[1], 16);
    if (fd < 0) {
        perror("FCGX_OpenSocket");
        return 1;
    }
    FCGX_InitRequest(&r, fd, 0);
    while (FCGX_Accept_r(&r) == 0) {
        name = FCGX_GetParam("SCENARIO", r.envp);
        FCGX_PutS("Content-Type: text/plain\r\n\r\n", r.out);
        scenario(&r, name ? name : "");
    }
    /* After a failed accept, envp must not point at strings of a request
       that was being read when the accept failed. */
    fprintf(stderr, "after the loop: envp %s\n",
            r.envp == NULL ? "NULL" : r.envp[0] == NULL ? "empty" : r.envp[0]);
    return 0;
}
