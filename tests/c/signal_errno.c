/*
 * signal_errno.c - the library's signal handlers leave errno as they found
 * it. errno is set to a marker value, a signal the library handles is
 * raised, and errno is read back:
 *
 *   SIGPIPE  in this process;
 *   SIGUSR1  in a fork()ed child, whose copy of the library still lists the
 *            parent's thread waiting in accept: the handler's attempt to
 *            wake that thread fails (ESRCH), which must not show in errno;
 *   SIGUSR1  in this process, which ends the waiting thread's accept.
 *
 * Prints one line on stderr and exits 0 (accept=1: the thread still waits).
 *
 * Usage: signal_errno SOCKET_PATH
 */
#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define MARKER 4321

static int listen_sock;
static volatile int accept_rc = 1;

static void *waiter(void *arg)
{
    FCGX_Request r;

    (void)arg;
    FCGX_InitRequest(&r, listen_sock, 0);
    accept_rc = FCGX_Accept_r(&r);
    return NULL;
}

static int errno_after(int sig)
{
    errno = MARKER;
    raise(sig);
    return errno;
}

int main(int argc, char **argv)
{
    pthread_t t;
    int pipe_errno, child_errno = -1, usr1_errno, status, i;
    pid_t pid;

    if (argc < 2 || FCGX_Init() != 0)
        return 2;
    listen_sock = FCGX_OpenSocket(argv[1], 5);
    if (listen_sock < 0 || pthread_create(&t, NULL, waiter, NULL) != 0)
        return 2;
    usleep(300000); /* the thread is now blocked in accept */

    pipe_errno = errno_after(SIGPIPE);

    pid = fork();
    if (pid == 0) {
        int e = errno_after(SIGUSR1);
        /* errno through the exit status: 0 for the marker. */
        _exit(e == MARKER ? 0 : e > 0 && e < 126 ? e : 126);
    }
    if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status))
        child_errno = WEXITSTATUS(status) == 0 ? MARKER : WEXITSTATUS(status);

    usr1_errno = errno_after(SIGUSR1);
    /* The shutdown ends the other thread's accept (libfcgi 2.4 only set a
     * flag: its accept went on waiting). */
    for (i = 0; i < 200 && accept_rc == 1; i++)
        usleep(10000);
    if (accept_rc != 1)
        pthread_join(t, NULL);
    fprintf(stderr, "sigpipe=%d forked_sigusr1=%d sigusr1=%d accept=%d\n", pipe_errno,
            child_errno, usr1_errno, accept_rc);
    _exit(0);
}
