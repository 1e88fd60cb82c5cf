/*
 * stdio-hello.c - the classic fcgi_stdio.h program: the same source runs as
 * a FastCGI application (started with a listening socket on fd 0, e.g. by
 * spawn-fcgi or a web server) and as a plain CGI program.
 *
 * fcgi_stdio.h turns stdin/stdout/printf/fread/... into FCGI_ versions that
 * talk to the current request; getenv() sees the request's parameters.
 */
#include <fcgi_stdio.h>
#include <stdlib.h>

int main(void)
{
    int count = 0;
    char buf[4096];
    size_t n;

    while (FCGI_Accept() >= 0) {
        const char *query = getenv("QUERY_STRING");

        printf("Content-type: text/plain\r\n\r\n");
        printf("Hello #%d from %s, query=%s\n", ++count,
               getenv("FCGI_ROLE") ? "FastCGI" : "CGI", query ? query : "");
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
            fwrite(buf, 1, n, stdout);
    }
    return 0;
}
