/*
 * stdio_probe.c - fcgi_stdio.h corners for tests/stdio.rs. Started with a
 * listening socket on fd 0. Parameter SCENARIO picks what a request does;
 * after the accept loop ends (SIGTERM), it reports on the environment and
 * the streams into the file named by argv[1].
 */
#include <fcgi_stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    static char big[1 << 20];
    FCGI_FILE *report;
    int rc;

    if (argc < 2)
        return 2;

    while ((rc = FCGI_Accept()) >= 0) {
        const char *s = getenv("SCENARIO");
        if (s == NULL)
            s = "";
        printf("Content-type: text/plain\r\n\r\n");
        if (strcmp(s, "exit_in_request") == 0) {
            /* FCGI_Finish runs at exit: the response and END_REQUEST still go out. */
            printf("leaving from inside a request");
            FCGI_SetExitStatus(5);
            exit(0);
        } else if (strcmp(s, "fwrite_gone") == 0) {
            /* the client has gone away by now */
            size_t a, b;
            sleep(1);
            memset(big, 'x', sizeof big);
            a = fwrite(big, 1, sizeof big, stdout);
            fflush(stdout);
            b = fwrite(big, 4, sizeof big / 4, stdout);
            fprintf(stderr, "a=%zu b=%zu\n", a, b);
            report = fopen(argv[1], "a");
            fprintf(report, "fwrite_gone a<=%d b<=%d\n", a <= sizeof big, b <= sizeof big / 4);
            fclose(report);
        } else if (strcmp(s, "env") == 0) {
            printf("QUERY_STRING=%s FCGI_ROLE=%s PATH=%s\n", getenv("QUERY_STRING"),
                   getenv("FCGI_ROLE"), getenv("PATH") ? "set" : "unset");
        } else if (strcmp(s, "stdio") == 0) {
            char line[64];
            int c = getchar();
            ungetc(c, stdin);
            fgets(line, sizeof line, stdin);
            printf("c=%c line=%s|", c, line);
            printf("feof=%d ftell=%d fileno=%d seek=%d\n", feof(stdin) != 0, ftell(stdout),
                   fileno(stdout), fseek(stdout, 0, SEEK_SET));
            puts("puts-line");
            fputs("fputs-text\n", stdout);
            putchar('!');
            fputc('\n', stderr);
            fprintf(stderr, "to-stderr %d", 5);
            FCGI_SetExitStatus(9);
        }
    }
    /* The loop is over: getenv and output must be safe (libfcgi left environ
     * and the streams pointing at freed memory). */
    report = fopen(argv[1], "a");
    if (report == NULL)
        return 3;
    fprintf(report, "after rc=%d PATH=%s QUERY_STRING=%s printf=%d\n", rc,
            getenv("PATH") ? "set" : "unset",
            getenv("QUERY_STRING") ? getenv("QUERY_STRING") : "(none)",
            printf("late output\n"));
    fclose(report);
    return 0;
}
