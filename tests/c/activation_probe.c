/*
 * activation_probe.c - an unchanged libfcgi program (fcgiapp.h only) for
 * tests/socket_activation.rs: asks FCGX_IsCGI, then serves with the
 * single-threaded FCGX_Accept on fd 0, as programs started by spawn-fcgi
 * do. Each response tells what the process sees after the library's
 * start: "is_cgi=N listen_fds=V listen_pid=V listen_fdnames=V
 * fd0_listening=N cloexec=FD:N,...", the cloexec list naming each open
 * descriptor from 3 to 9 and whether it is closed on exec.
 */
#include <fcgiapp.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

static const char *env_or_unset(const char *name)
{
    const char *v = getenv(name);
    return v != NULL ? v : "(unset)";
}

int main(void)
{
    FCGX_Stream *in, *out, *err;
    FCGX_ParamArray envp;
    int is_cgi = FCGX_IsCGI();
    int listening = 0, fd;
    socklen_t len = sizeof listening;

    if (getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
        listening = 0;
    if (is_cgi) {
        printf("Content-Type: text/plain\r\n\r\nis_cgi=1\n");
        return 0;
    }
    while (FCGX_Accept(&in, &out, &err, &envp) >= 0) {
        FCGX_FPrintF(out,
                     "Content-Type: text/plain\r\n\r\n"
                     "is_cgi=%d listen_fds=%s listen_pid=%s listen_fdnames=%s "
                     "fd0_listening=%d cloexec=",
                     is_cgi, env_or_unset("LISTEN_FDS"), env_or_unset("LISTEN_PID"),
                     env_or_unset("LISTEN_FDNAMES"), listening);
        for (fd = 3; fd < 10; fd++) {
            int flags = fcntl(fd, F_GETFD);
            if (flags >= 0)
                FCGX_FPrintF(out, "%d:%d,", fd, (flags & FD_CLOEXEC) != 0);
        }
        FCGX_FPrintF(out, "\n");
    }
    return 0;
}
