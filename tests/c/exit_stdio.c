/*
 * exit_stdio.c - exit() from a signal handler while FCGI_Accept waits.
 *
 * Serves requests with FCGI_Accept (a listening socket on fd 0). Its
 * SIGALRM handler calls exit(7), which runs the FCGI_Finish that the first
 * FCGI_Accept registered with atexit: the process must end at once with
 * status 7, not hang in the library. Says "waiting" on the real stderr
 * before each FCGI_Accept.
 */
#include <fcgi_stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static void on_alarm(int sig)
{
    (void)sig;
    exit(7);
}

int main(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        return 2;
    say("waiting\n");
    while (FCGI_Accept() >= 0) {
        printf("Content-Type: text/plain\r\n\r\nserved\n");
        say("waiting\n");
    }
    say("accept failed\n");
    return 3;
}
