/*
 * exit_threads.c - exit() from another thread while threads wait for a
 * request. A listening socket is on fd 0.
 *
 *   exit_threads accept    the main thread serves with FCGX_Accept; the
 *                          program's atexit handler calls FCGX_Finish (as
 *                          fcgi_stdio's FCGI_Accept registers FCGI_Finish).
 *                          SIGUSR2 makes a second thread call exit(5).
 *   exit_threads accept_r  three threads serve with FCGX_Accept_r, each
 *                          with its own request; SIGUSR2 makes a fourth
 *                          thread call exit(6).
 *
 * The process must end at once with that status. Says "waiting" on stderr
 * before each accept.
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RESPONSE "Content-Type: text/plain\r\n\r\nserved\n"

static sigset_t usr2;

static void say(const char *s)
{
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

/* Waits for SIGUSR2 (blocked in every thread), then exits. */
static void *exiter(void *status)
{
    int sig;

    if (sigwait(&usr2, &sig) == 0)
        exit((int)(long)status);
    return NULL;
}

static void finish_at_exit(void)
{
    FCGX_Finish();
}

static void *worker(void *arg)
{
    FCGX_Request r;

    (void)arg;
    FCGX_InitRequest(&r, 0, 0);
    say("waiting\n");
    while (FCGX_Accept_r(&r) == 0) {
        FCGX_PutS(RESPONSE, r.out);
        say("waiting\n");
    }
    say("accept failed\n");
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t;
    int i;

    if (argc < 2)
        return 2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    if (pthread_sigmask(SIG_BLOCK, &usr2, NULL) != 0 || FCGX_Init() != 0)
        return 2;
    if (strcmp(argv[1], "accept") == 0) {
        FCGX_Stream *in, *out, *err;
        FCGX_ParamArray envp;

        atexit(finish_at_exit);
        if (pthread_create(&t, NULL, exiter, (void *)5L) != 0)
            return 2;
        say("waiting\n");
        while (FCGX_Accept(&in, &out, &err, &envp) >= 0) {
            FCGX_PutS(RESPONSE, out);
            say("waiting\n");
        }
        say("accept failed\n");
        return 3;
    }
    if (strcmp(argv[1], "accept_r") == 0) {
        pthread_t workers[3];

        for (i = 0; i < 3; i++)
            if (pthread_create(&workers[i], NULL, worker, NULL) != 0)
                return 2;
        if (pthread_create(&t, NULL, exiter, (void *)6L) != 0)
            return 2;
        for (i = 0; i < 3; i++)
            pthread_join(workers[i], NULL);
        return 3;
    }
    return 2;
}
