/*
 * sse.c - server-sent events: every line appended to a file reaches each
 * connected browser as an event, the moment it is written (like tail -f).
 *
 * Usage: sse ADDRESS FILE
 *
 * Each request gets a `text/event-stream` response that stays open: the
 * lines FILE already holds, then each new line, one event each
 * ("id: N" and "data: LINE"). A line "end" ends the response; a client
 * that went away ends it at the next write (a comment line is sent after
 * 10 s of silence, so that happens even when FILE stays quiet).
 *
 * The response's `out` stream is made unbuffered with
 * FCGX_SetStreamBufferSize (fcgi_ext.h): each FCGX_FPrintF leaves at once,
 * no FCGX_FFlush needed. The other responses of a program keep the
 * process's buffer (256 KiB, or LIBFCGI_STDOUT_BUFFER). Behind nginx, turn
 * its own buffering off for the location:
 *
 *     location /events {
 *         fastcgi_pass 127.0.0.1:9000;
 *         fastcgi_buffering off;
 *         fastcgi_read_timeout 1h;
 *         include fastcgi_params;
 *     }
 *
 * (or send the header "X-Accel-Buffering: no", which this example does too).
 */
#include <fcgiapp.h>
#include <fcgi_ext.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define POLL_MS 20
#define QUIET_MS 10000

static void sleep_ms(long ms)
{
    struct timespec ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* Sends FILE's lines as events until a line "end" or a failed write. */
static void stream_events(FCGX_Request *req, const char *path)
{
    char line[4096];
    long quiet = 0;
    int id = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        FCGX_FPrintF(req->out, "Status: 404\r\nContent-Type: text/plain\r\n\r\nno %s\n", path);
        return;
    }
    /* Unbuffered for this response: every write below is sent as it is made. */
    FCGX_SetStreamBufferSize(req->out, 0);
    FCGX_FPrintF(req->out,
                 "Content-Type: text/event-stream\r\n"
                 "Cache-Control: no-cache\r\n"
                 "X-Accel-Buffering: no\r\n\r\n");
    for (;;) {
        size_t n;

        if (fgets(line, sizeof line, f) == NULL) {
            /* At the end of the file for now: wait for more. */
            clearerr(f);
            sleep_ms(POLL_MS);
            quiet += POLL_MS;
            if (quiet >= QUIET_MS) {
                quiet = 0;
                if (FCGX_PutS(": still here\n\n", req->out) < 0)
                    break;
            }
            continue;
        }
        n = strlen(line);
        if (n > 0 && line[n - 1] == '\n')
            line[--n] = '\0';
        if (strcmp(line, "end") == 0)
            break;
        quiet = 0;
        if (FCGX_FPrintF(req->out, "id: %d\ndata: %s\n\n", ++id, line) < 0)
            break; /* the client went away */
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    FCGX_Request req;
    int sock;

    if (argc != 3) {
        fprintf(stderr, "usage: sse ADDRESS FILE\n");
        return 2;
    }
    if (FCGX_Init() != 0)
        return 1;
    sock = FCGX_OpenSocket(argv[1], 128);
    if (sock < 0)
        return 1;
    FCGX_InitRequest(&req, sock, 0);
    while (FCGX_Accept_r(&req) == 0) {
        stream_events(&req, argv[2]);
        FCGX_Finish_r(&req);
    }
    return 0;
}
