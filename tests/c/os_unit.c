/* Direct tests of the OS_* layer (fcgios.h), driven by tests/os_layer.rs.
 *
 *   os_unit <group>     runs one group of checks; prints "ok ..." or
 *                       "FAIL ..." per check; exits 0 iff all passed.
 *
 * Groups: init isfcgi connect listen accept shutdown io async bigfd close
 * spawn. With OS_UNIT_CHILD set it is the program OS_SpawnChild starts
 * (see group "spawn").
 *
 * Built with the system headers (/usr/include/fcgios.h) and linked with
 * -lfcgi; tests/os_layer.rs runs it on our library. Several checks would
 * end the process under libfcgi 2.4 (exit() or assert() in the library);
 * here each must come back with -1 and errno.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fcgios.h>

static int failures;
static char dir[512]; /* scratch folder: $OS_UNIT_DIR */

#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (cond) {                                        \
            printf("ok   %s\n", #cond);                    \
        } else {                                           \
            failures++;                                    \
            printf("FAIL %s (line %d, errno %d %s): ",     \
                   #cond, __LINE__, errno, strerror(errno)); \
            printf(__VA_ARGS__);                           \
            printf("\n");                                  \
        }                                                  \
        fflush(stdout);                                    \
    } while (0)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void path_in_dir(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

/* A TCP listener on 127.0.0.1, any port; the port goes to *port. */
static int tcp_listener(int *port)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0)
        return -1;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A blocking TCP connection to 127.0.0.1:port from source address `from`. */
static int tcp_connect_from(const char *from, int port)
{
    struct sockaddr_in src, dst;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    inet_pton(AF_INET, from, &src.sin_addr);
    memset(&dst, 0, sizeof(dst));
    dst.sin_family = AF_INET;
    dst.sin_port = htons((unsigned short)port);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0
        || connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0)
        return -1;
    return fd;
}

static const char *peer_of(int fd, char *buf, size_t n)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    if (getpeername(fd, (struct sockaddr *)&sa, &len) != 0)
        return "?";
    return inet_ntop(AF_INET, &sa.sin_addr, buf, (socklen_t)n);
}

/* Whether the peer of `fd` has closed (EOF or reset), waiting up to 1 s. */
static int peer_closed(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    char c;
    if (poll(&p, 1, 1000) <= 0)
        return 0;
    return read(fd, &c, 1) <= 0;
}

/* ---- groups --------------------------------------------------------------- */

static void group_init(void)
{
    int fds[3] = {0, 1, 2};
    CHECK(OS_LibInit(NULL) == 0, "first init");
    CHECK(OS_LibInit(fds) == 0, "second init is a no-op");
    OS_LibShutdown();
    CHECK(OS_LibInit(NULL) == 0, "init after shutdown");
    {
        struct sigaction sa;
        sigaction(SIGPIPE, NULL, &sa);
        CHECK(sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN,
              "OS_LibInit installs a SIGPIPE handler");
    }
}

static void group_isfcgi(void)
{
    int port, p[2], sv[2];
    int l = tcp_listener(&port);
    int c = tcp_connect_from("127.0.0.1", port);
    int u = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(l >= 0 && c >= 0 && u >= 0, "set-up");
    CHECK(pipe(p) == 0, "pipe");
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    CHECK(OS_IsFcgi(l) == 1, "listening TCP socket");
    CHECK(OS_IsFcgi(u) == 1, "unconnected Unix socket (as libfcgi)");
    CHECK(OS_IsFcgi(c) == 0, "connected TCP socket");
    CHECK(OS_IsFcgi(sv[0]) == 0, "connected Unix socket");
    CHECK(OS_IsFcgi(p[0]) == 0, "pipe");
    CHECK(OS_IsFcgi(-1) == 0, "fd -1");
    CHECK(OS_IsFcgi(987) == 0, "closed fd");
}

static void group_connect(void)
{
    char path[1100], name[64];
    int port, l, fd;
    memset(path, 'x', sizeof(path));

    errno = 0;
    CHECK(OS_FcgiConnect(NULL) == -1 && errno == EINVAL, "NULL");
    path_in_dir(path, sizeof(path), "nothing-here.sock");
    errno = 0;
    CHECK(OS_FcgiConnect(path) == -1 && errno == ENOENT, "missing Unix socket: ENOENT");
    {
        char longp[300];
        memset(longp, 'a', sizeof(longp));
        longp[0] = '/';
        longp[sizeof(longp) - 1] = '\0';
        errno = 0;
        CHECK(OS_FcgiConnect(longp) == -1 && errno == ENAMETOOLONG,
              "path longer than sun_path (libfcgi: exit(1000))");
    }
    {
        char huge[2000];
        memset(huge, 'b', sizeof(huge));
        huge[0] = '/';
        huge[sizeof(huge) - 1] = '\0';
        CHECK(OS_FcgiConnect(huge) == -1, "path >= MAXPATHLEN (libfcgi: exit(1))");
    }
    {
        char host[] = "no-such-host.invalid:9000";
        CHECK(OS_FcgiConnect(host) == -1, "unknown host (libfcgi: exit(1000))");
    }
    l = tcp_listener(&port);
    CHECK(l >= 0, "listener");
    close(l); /* now nobody listens on that port */
    snprintf(name, sizeof(name), "127.0.0.1:%d", port);
    errno = 0;
    CHECK(OS_FcgiConnect(name) == -1 && errno == ECONNREFUSED, "refused: ECONNREFUSED");

    l = tcp_listener(&port);
    snprintf(name, sizeof(name), "127.0.0.1:%d", port);
    fd = OS_FcgiConnect(name);
    CHECK(fd >= 0, "host:port connects");
    CHECK(fd < 0 || (fcntl(fd, F_GETFL) & O_NONBLOCK) == 0, "blocking socket");
    close(fd);
    snprintf(name, sizeof(name), ":%d", port);
    fd = OS_FcgiConnect(name);
    CHECK(fd >= 0, "empty host means localhost");
    close(fd);
    snprintf(name, sizeof(name), "localhost:%d", port);
    fd = OS_FcgiConnect(name);
    CHECK(fd >= 0, "localhost:port (every address is tried)");
    close(fd);
    close(l);

    path_in_dir(path, sizeof(path), "c.sock");
    l = OS_CreateLocalIpcFd(path, 5);
    CHECK(l >= 0, "Unix listener");
    fd = OS_FcgiConnect(path);
    CHECK(fd >= 0, "Unix path connects");
    close(fd);
    close(l);
}

static void group_listen(void)
{
    char path[600], name[64];
    int port, l, l2;
    struct stat st;

    path_in_dir(path, sizeof(path), "no/such/dir/x.sock");
    errno = 0;
    CHECK(OS_CreateLocalIpcFd(path, 5) == -1 && errno != 0,
          "bind in a missing folder (libfcgi: exit(errno))");
    CHECK(OS_CreateLocalIpcFd("no-such-host.invalid:9000", 5) == -1,
          "unknown host (libfcgi: exit(1))");
    {
        char longp[300];
        memset(longp, 'a', sizeof(longp));
        longp[0] = '/';
        longp[sizeof(longp) - 1] = '\0';
        CHECK(OS_CreateLocalIpcFd(longp, 5) == -1, "path too long (libfcgi: exit(1000))");
    }
    l = tcp_listener(&port);
    snprintf(name, sizeof(name), "127.0.0.1:%d", port);
    errno = 0;
    l2 = OS_CreateLocalIpcFd(name, 5);
    CHECK(l2 == -1 && errno == EADDRINUSE, "port in use: EADDRINUSE (libfcgi: exit)");
    close(l);
    l2 = OS_CreateLocalIpcFd(name, 5);
    CHECK(l2 >= 0 && OS_IsFcgi(l2) == 1, "host:port listens");
    close(l2);

    path_in_dir(path, sizeof(path), "l.sock");
    l = OS_CreateLocalIpcFd(path, 5);
    CHECK(l >= 0 && stat(path, &st) == 0 && S_ISSOCK(st.st_mode), "Unix socket created");
    CHECK(OS_IsFcgi(l) == 1, "and it listens");
    close(l);
}

static void group_accept(void)
{
    int port, l, a, b, c, s, one = 0;
    socklen_t len = sizeof(one);
    char peer[64], path[600];
    double t0;

    CHECK(OS_LibInit(NULL) == 0, "init");
    l = tcp_listener(&port);
    CHECK(l >= 0, "listener");
    /* Non-blocking listener: an empty queue gives EAGAIN instead of a wait. */
    errno = 0;
    OS_SetFlags(l, O_NONBLOCK);
    CHECK((fcntl(l, F_GETFL) & O_NONBLOCK) != 0, "OS_SetFlags(O_NONBLOCK)");

    a = tcp_connect_from("127.0.0.1", port);
    b = tcp_connect_from("127.0.0.2", port);
    CHECK(a >= 0 && b >= 0, "two clients (127.0.0.1 and 127.0.0.2)");
    s = OS_Accept(l, 0, "127.0.0.2");
    CHECK(s >= 0 && strcmp(peer_of(s, peer, sizeof(peer)), "127.0.0.2") == 0,
          "allowlist 127.0.0.2 skips 127.0.0.1 and accepts 127.0.0.2 (got %s)", peer);
    CHECK(peer_closed(a), "the refused client was closed");
    CHECK(getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, &len) == 0 && one != 0,
          "accepted TCP socket has TCP_NODELAY");
    close(s);
    errno = 0;
    CHECK(OS_Accept(l, 0, "127.0.0.2") == -1 && errno == EAGAIN, "empty queue: -1/EAGAIN");

    c = tcp_connect_from("127.0.0.1", port);
    s = OS_Accept(l, 0, " 10.1.2.3 , 127.0.0.1");
    CHECK(s >= 0, "a list with spaces, second entry matches");
    close(s);
    close(c);

    c = tcp_connect_from("127.0.0.1", port);
    s = OS_Accept(l, 0, NULL);
    CHECK(s >= 0, "NULL list allows everyone");
    close(s);
    close(c);
    c = tcp_connect_from("127.0.0.1", port);
    s = OS_Accept(l, 0, "");
    CHECK(s >= 0, "empty list allows everyone");
    close(s);
    close(c);

    c = tcp_connect_from("127.0.0.1", port);
    errno = 0;
    CHECK(OS_Accept(l, 0, "bogus") == -1 && errno == EAGAIN,
          "a list without a valid address lets nobody in");
    CHECK(peer_closed(c), "that client was closed");
    close(c);
    close(b);
    close(l);

    errno = 0;
    CHECK(OS_Accept(-1, 0, NULL) == -1 && errno == EBADF, "listen_sock -1");

    /* Unix-socket peers are never checked against the list, and are not
     * held back waiting for a first byte (libfcgi: up to 2 s). */
    path_in_dir(path, sizeof(path), "a.sock");
    l = OS_CreateLocalIpcFd(path, 5);
    c = OS_FcgiConnect(path);
    CHECK(l >= 0 && c >= 0, "Unix listener and client");
    t0 = now_ms();
    s = OS_Accept(l, 0, "10.9.8.7");
    CHECK(s >= 0, "Unix peer accepted despite the list");
    CHECK(now_ms() - t0 < 1000, "without waiting for data (%.0f ms)", now_ms() - t0);
    close(s);
    close(c);
    close(l);
}

static void group_shutdown(void)
{
    int port, l = tcp_listener(&port);
    double t0 = now_ms();
    OS_ShutdownPending();
    errno = 0;
    CHECK(OS_Accept(l, 0, NULL) == -1, "OS_Accept returns at once after OS_ShutdownPending");
    CHECK(now_ms() - t0 < 1000, "quickly");
    close(l);
}

static void on_alarm(int sig)
{
    (void)sig;
}

static void group_io(void)
{
    int p[2];
    char buf[64];
    char msg[] = "hello";
    struct sigaction sa;
    struct itimerval it;
    pid_t child;
    int n;

    CHECK(pipe(p) == 0, "pipe");
    CHECK(OS_Write(p[1], msg, 5) == 5, "OS_Write");
    CHECK(OS_Read(p[0], buf, sizeof(buf)) == 5 && memcmp(buf, "hello", 5) == 0, "OS_Read");
    errno = 0;
    CHECK(OS_Read(-1, buf, 1) == -1 && errno == EBADF, "OS_Read(-1): EBADF");
    errno = 0;
    CHECK(OS_Write(-1, msg, 1) == -1 && errno == EBADF, "OS_Write(-1): EBADF");

    /* A signal without SA_RESTART during a blocking OS_Read: retried. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGALRM, &sa, NULL);
    child = fork();
    if (child == 0) {
        usleep(150 * 1000);
        if (write(p[1], "late", 4) != 4)
            _exit(1);
        _exit(0);
    }
    memset(&it, 0, sizeof(it));
    it.it_value.tv_usec = 40 * 1000;
    setitimer(ITIMER_REAL, &it, NULL);
    n = OS_Read(p[0], buf, sizeof(buf));
    CHECK(n == 4 && memcmp(buf, "late", 4) == 0, "OS_Read retried after EINTR (got %d)", n);
    waitpid(child, NULL, 0);

    /* A signal during a blocking OS_Write on a full pipe: the write goes on. */
    {
        static char big[256 * 1024];
        long got = 0;
        child = fork();
        if (child == 0) {
            char sink[4096];
            ssize_t r;
            long total = 0;
            close(p[1]);
            usleep(150 * 1000);
            while ((r = read(p[0], sink, sizeof(sink))) > 0)
                total += r;
            _exit(total == (long)sizeof(big) ? 0 : 1);
        }
        setitimer(ITIMER_REAL, &it, NULL);
        got = OS_Write(p[1], big, sizeof(big));
        CHECK(got == (long)sizeof(big), "OS_Write wrote all despite EINTR (got %ld)", got);
        close(p[1]);
        {
            int status = 0;
            waitpid(child, &status, 0);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader got every byte");
        }
    }
    close(p[0]);
}

/* ---- async ------------------------------------------------------------------- */

struct ctx {
    int calls;
    int last_len;
    void *last_data;
    int fd;
    char buf[64];
    int rearm; /* register another read from inside the callback */
};

static void on_done(ClientData data, int len)
{
    struct ctx *c = data;
    c->calls++;
    c->last_len = len;
    c->last_data = data;
    if (c->rearm > 0) {
        c->rearm--;
        if (OS_AsyncRead(c->fd, 0, c->buf, sizeof(c->buf), on_done, c) != 0)
            c->calls += 1000;
    }
}

static void group_async(void)
{
    int p[2], sv[2];
    struct ctx r, w, r2;
    struct timeval zero = {0, 0}, bad = {0, 2000000};
    char out[] = "ping";

    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    memset(&r2, 0, sizeof(r2));
    CHECK(OS_LibInit(NULL) == 0, "init");
    CHECK(pipe(p) == 0 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "pipe, socketpair");

    r.fd = p[0];
    CHECK(OS_AsyncRead(p[0], 0, r.buf, sizeof(r.buf), on_done, &r) == 0, "register read");
    errno = 0;
    CHECK(OS_AsyncRead(p[0], 0, r.buf, sizeof(r.buf), on_done, &r) == -1 && errno == EALREADY,
          "a second read on the same fd: EALREADY (libfcgi: assert)");
    CHECK(OS_DoIo(&zero) == 0 && r.calls == 0, "nothing readable yet: no callback");
    CHECK(write(p[1], "hi", 2) == 2, "write to the pipe");
    CHECK(OS_DoIo(NULL) == 0, "OS_DoIo");
    CHECK(r.calls == 1 && r.last_len == 2 && r.last_data == &r && memcmp(r.buf, "hi", 2) == 0,
          "callback(clientData, 2) with the data (calls %d len %d)", r.calls, r.last_len);

    /* Rearming from inside the callback (cgi-fcgi does this). */
    r.rearm = 1;
    CHECK(OS_AsyncRead(p[0], 0, r.buf, sizeof(r.buf), on_done, &r) == 0, "register again");
    CHECK(write(p[1], "abc", 3) == 3, "write");
    OS_DoIo(NULL);
    CHECK(r.calls == 2 && r.last_len == 3, "callback ran and rearmed");
    CHECK(write(p[1], "de", 2) == 2, "write");
    OS_DoIo(NULL);
    CHECK(r.calls == 3 && r.last_len == 2, "the rearmed read completed");

    /* A write, and a read on the same socket in one call. */
    CHECK(OS_AsyncWrite(sv[0], 0, out, 4, on_done, &w) == 0, "register write");
    OS_DoIo(NULL);
    CHECK(w.calls == 1 && w.last_len == 4, "write callback with 4 (got %d)", w.last_len);
    {
        char got[8];
        CHECK(read(sv[1], got, sizeof(got)) == 4 && memcmp(got, "ping", 4) == 0, "peer got it");
    }

    /* Cancelled by OS_CloseRead and by OS_Close. */
    r2.fd = sv[0];
    CHECK(OS_AsyncRead(sv[0], 0, r2.buf, sizeof(r2.buf), on_done, &r2) == 0, "register");
    CHECK(OS_CloseRead(sv[0]) == 0, "OS_CloseRead");
    OS_DoIo(&zero);
    CHECK(r2.calls == 0, "no callback after OS_CloseRead");
    CHECK(OS_AsyncRead(p[0], 0, r.buf, sizeof(r.buf), on_done, &r) == 0, "register");
    CHECK(write(p[1], "x", 1) == 1, "data is there");
    CHECK(OS_Close(p[0], 0) == 0, "OS_Close");
    r.calls = 0;
    OS_DoIo(&zero);
    CHECK(r.calls == 0, "no callback after OS_Close");

    /* End of file. */
    CHECK(pipe(p) == 0, "pipe");
    memset(&r, 0, sizeof(r));
    CHECK(OS_AsyncRead(p[0], 0, r.buf, sizeof(r.buf), on_done, &r) == 0, "register");
    close(p[1]);
    OS_DoIo(NULL);
    CHECK(r.calls == 1 && r.last_len == 0, "EOF gives 0");

    /* A posted read that finds a non-blocking descriptor empty (another
     * descriptor of the same socket took the byte) stays pending. */
    {
        struct ctx nb, nb2;
        int y = dup(sv[1]);
        memset(&nb, 0, sizeof(nb));
        memset(&nb2, 0, sizeof(nb2));
        CHECK(y > sv[1], "dup");
        OS_SetFlags(sv[1], O_NONBLOCK);
        CHECK(OS_AsyncRead(sv[1], 0, nb.buf, sizeof(nb.buf), on_done, &nb) == 0, "register");
        CHECK(OS_AsyncRead(y, 0, nb2.buf, sizeof(nb2.buf), on_done, &nb2) == 0, "register dup");
        OS_DoIo(&zero);
        CHECK(nb.calls == 0 && nb2.calls == 0, "nothing yet");
        CHECK(write(sv[0], "q", 1) == 1, "write one byte");
        OS_DoIo(NULL);
        CHECK(nb.calls == 1 && nb.last_len == 1, "the first reader got it");
        CHECK(nb2.calls == 0, "the second found nothing (EAGAIN) and had no callback");
        CHECK(write(sv[0], "r", 1) == 1, "write another");
        OS_DoIo(NULL);
        CHECK(nb2.calls == 1 && nb2.last_len == 1 && nb2.buf[0] == 'r',
              "the second read stayed pending and completes now");
        close(y);
    }

    /* Bad arguments: -1 and errno, never a crash or an exit. */
    errno = 0;
    CHECK(OS_AsyncRead(-5, 0, r.buf, 1, on_done, &r) == -1 && errno == EBADF, "fd -5");
    errno = 0;
    CHECK(OS_AsyncRead(900, 0, r.buf, 1, on_done, &r) == -1 && errno == EBADF, "closed fd");
    errno = 0;
    CHECK(OS_AsyncWrite(sv[0], 0, out, 1, NULL, NULL) == -1 && errno == EINVAL,
          "NULL callback");
    errno = 0;
    CHECK(OS_AsyncWrite(sv[0], 0, out, -1, on_done, &w) == -1 && errno == EINVAL,
          "negative length");
    errno = 0;
    CHECK(OS_DoIo(&bad) == -1 && errno == EINVAL, "invalid timeval: -1 (libfcgi: exit)");
    {
        double t0 = now_ms();
        struct timeval tv = {0, 100 * 1000};
        CHECK(OS_DoIo(&tv) == 0, "timeout");
        CHECK(now_ms() - t0 >= 90 && now_ms() - t0 < 1000, "waited ~100 ms (%.0f)",
              now_ms() - t0);
    }

    /* OS_LibShutdown forgets pending operations. */
    CHECK(pipe(p) == 0, "pipe");
    memset(&r, 0, sizeof(r));
    CHECK(OS_AsyncReadStdin(r.buf, sizeof(r.buf), on_done, &r) == 0, "read on stdin");
    OS_LibShutdown();
    CHECK(OS_AsyncReadStdin(r.buf, sizeof(r.buf), on_done, &r) == 0,
          "the table is empty after OS_LibShutdown");
    OS_LibShutdown();
}

/* CVE-2012-6687: descriptors >= FD_SETSIZE (1024) must work. */
static void group_bigfd(void)
{
    struct rlimit rl;
    int p[2], q[2], hi = 1500, hi2 = 1501;
    struct ctx r, w;
    char data[] = "over-1024";

    memset(&r, 0, sizeof(r));
    memset(&w, 0, sizeof(w));
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 1600 && rl.rlim_max >= 1600) {
        rl.rlim_cur = 1600;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 1600) {
        printf("skip bigfd: RLIMIT_NOFILE %ld\n", (long)rl.rlim_cur);
        return;
    }
    CHECK(pipe(p) == 0 && pipe(q) == 0, "pipes");
    CHECK(dup2(p[0], hi) == hi && dup2(q[1], hi2) == hi2, "dup to fds 1500, 1501");
    close(p[0]);
    close(q[1]);
    CHECK(OS_LibInit(NULL) == 0, "init");
    r.fd = hi;
    CHECK(OS_AsyncRead(hi, 0, r.buf, sizeof(r.buf), on_done, &r) == 0, "read on fd 1500");
    CHECK(OS_AsyncWrite(hi2, 0, data, 9, on_done, &w) == 0, "write on fd 1501");
    CHECK(write(p[1], "x", 1) == 1, "make 1500 readable");
    OS_DoIo(NULL);
    if (r.calls == 0 || w.calls == 0)
        OS_DoIo(NULL);
    CHECK(r.calls == 1 && r.last_len == 1, "read on fd 1500 completed");
    CHECK(w.calls == 1 && w.last_len == 9, "write on fd 1501 completed");
    {
        char got[16];
        CHECK(read(q[0], got, sizeof(got)) == 9 && memcmp(got, data, 9) == 0, "data arrived");
    }
    CHECK(OS_Close(hi, 1) == 0 && OS_Close(hi2, 1) == 0, "OS_Close on high fds");
}

static void group_close(void)
{
    int sv[2], n;
    char c;
    double t0, dt;
    pid_t child;

    /* LIBFCGI_OS_CLOSE_POLL_TIMEOUT is set to 300 by the driver. */
    CHECK(OS_LibInit(NULL) == 0, "init");
    CHECK(OS_Close(-1, 0) == 0 && OS_Close(-1, 1) == 0, "fd -1 gives 0");
    errno = 0;
    CHECK(OS_Close(-7, 0) == -1 && errno == EBADF, "fd -7: EBADF");
    errno = 0;
    CHECK(OS_Close(977, 0) == -1 && errno == EBADF, "closed fd: EBADF");

    /* Peer already closed: no wait. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    close(sv[1]);
    t0 = now_ms();
    CHECK(OS_Close(sv[0], 1) == 0, "close");
    CHECK(now_ms() - t0 < 200, "closed peer: immediate (%.0f ms)", now_ms() - t0);

    /* Silent peer that keeps its side open: bounded by the timeout, and the
     * peer sees our end of file. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    CHECK(write(sv[1], "unread", 6) == 6, "input we never read");
    t0 = now_ms();
    CHECK(OS_IpcClose(sv[0], 1) == 0, "OS_IpcClose with shutdown");
    dt = now_ms() - t0;
    CHECK(dt >= 250 && dt < 1500, "waited about the timeout (%.0f ms)", dt);
    n = (int)read(sv[1], &c, 1);
    CHECK(n == 0, "peer reads EOF (got %d)", n);
    close(sv[1]);

    /* A peer trickling a byte every 50 ms cannot keep the close going. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    child = fork();
    if (child == 0) {
        int i;
        close(sv[0]);
        for (i = 0; i < 60; i++) {
            if (write(sv[1], "t", 1) != 1)
                _exit(0);
            usleep(50 * 1000);
        }
        _exit(0);
    }
    close(sv[1]);
    t0 = now_ms();
    CHECK(OS_Close(sv[0], 1) == 0, "close against a trickling peer");
    dt = now_ms() - t0;
    CHECK(dt < 1000, "bounded (%.0f ms; libfcgi: until the peer stops)", dt);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);

    /* shutdown on something that is not a socket: just closed. */
    {
        int p[2];
        CHECK(pipe(p) == 0, "pipe");
        t0 = now_ms();
        CHECK(OS_Close(p[0], 1) == 0 && OS_Close(p[1], 1) == 0, "pipe ends");
        CHECK(now_ms() - t0 < 200, "immediately");
    }
}

/* Child mode: what OS_SpawnChild started. Reports over the connection it
 * accepts on fd 0. */
static int spawned_child(void)
{
    char report[256];
    int s;
    int fd1 = fcntl(1, F_GETFD) == -1 && errno == EBADF;
    int fd2 = fcntl(2, F_GETFD) == -1 && errno == EBADF;
    int listening = OS_IsFcgi(0);

    s = OS_Accept(0, 0, NULL);
    if (s < 0)
        return 3;
    snprintf(report, sizeof(report), "listening=%d fd1closed=%d fd2closed=%d\n", listening,
             fd1, fd2);
    OS_Write(s, report, strlen(report));
    OS_Close(s, 1);
    return 0;
}

static void group_spawn(const char *self)
{
    char path[600], report[256] = "", missing[600];
    int l, c, n, status = 0;
    pid_t pid;

    path_in_dir(path, sizeof(path), "spawn.sock");
    l = OS_CreateLocalIpcFd(path, 5);
    CHECK(l >= 0, "listener");
    setenv("OS_UNIT_CHILD", "1", 1);
    CHECK(OS_SpawnChild((char *)self, l) == 0, "OS_SpawnChild returns 0 in the parent");
    unsetenv("OS_UNIT_CHILD");
    OS_Close(l, 1);
    c = OS_FcgiConnect(path);
    CHECK(c >= 0, "connect to the child");
    n = c >= 0 ? OS_Read(c, report, sizeof(report) - 1) : -1;
    if (n > 0)
        report[n] = '\0';
    CHECK(strcmp(report, "listening=1 fd1closed=1 fd2closed=1\n") == 0,
          "child: fd 0 listens, fds 1 and 2 closed (got %s)", report);
    OS_Close(c, 0);
    pid = waitpid(-1, &status, 0);
    CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exited 0 (status %#x)", status);

    /* An executable that does not exist: the child reports errno. */
    path_in_dir(missing, sizeof(missing), "no-such-program");
    l = OS_CreateLocalIpcFd("spawn2.sock", 5);
    CHECK(OS_SpawnChild(missing, l) == 0, "fork succeeded");
    pid = waitpid(-1, &status, 0);
    CHECK(pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == ENOENT,
          "exec failure: exit status ENOENT (%d)", WEXITSTATUS(status));
    close(l);
    unlink("spawn2.sock");

    errno = 0;
    CHECK(OS_SpawnChild(NULL, 0) == -1 && errno == EINVAL, "NULL path");
    errno = 0;
    CHECK(OS_SpawnChild((char *)self, 933) == -1 && errno == EBADF, "closed listen fd");
}

int main(int argc, char **argv)
{
    const char *group = argc > 1 ? argv[1] : "";
    const char *d = getenv("OS_UNIT_DIR");
    static char self[4096];

    if (getenv("OS_UNIT_CHILD") != NULL)
        return spawned_child();
    if (realpath(argv[0], self) == NULL)
        return 2;
    snprintf(dir, sizeof(dir), "%s", d != NULL ? d : "/tmp");
    if (chdir(dir) != 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (!strcmp(group, "init"))
        group_init();
    else if (!strcmp(group, "isfcgi"))
        group_isfcgi();
    else if (!strcmp(group, "connect"))
        group_connect();
    else if (!strcmp(group, "listen"))
        group_listen();
    else if (!strcmp(group, "accept"))
        group_accept();
    else if (!strcmp(group, "shutdown"))
        group_shutdown();
    else if (!strcmp(group, "io"))
        group_io();
    else if (!strcmp(group, "async"))
        group_async();
    else if (!strcmp(group, "bigfd"))
        group_bigfd();
    else if (!strcmp(group, "close"))
        group_close();
    else if (!strcmp(group, "spawn"))
        group_spawn(self);
    else {
        fprintf(stderr, "unknown group %s\n", group);
        return 2;
    }
    printf("%d failure(s)\n", failures);
    return failures == 0 ? 0 : 1;
}
