/*
 * canned.c - the machine's limit: a FastCGI responder that uses no library.
 *
 * usage: canned [-t THREADS | -E THREADS] [-s BYTES] [-e] ADDR
 *   ADDR   :port or host:port (TCP), or a Unix socket path
 *   -t N   N threads, each accepting and serving one connection at a time,
 *          like a threaded libfcgi app (default 1)
 *   -E N   N threads with an epoll loop each (many connections per thread;
 *          small responses only)
 *   -s N   the response body is N bytes of a pattern (default: the
 *          same number of bytes as bench/apps/hello.c prints)
 *   -e     echo: the response body is the request's STDIN
 *
 * Per request it does what any FastCGI app must do and nothing more:
 * read() until the empty STDIN record is in the buffer (a small request
 * arrives in one read), then one write() of a prebuilt response (STDOUT
 * records, the empty STDOUT record, END_REQUEST) with the request id
 * patched in. In echo mode the received STDIN records are relabelled as
 * STDOUT in place and sent back with one writev(). A keep-alive
 * connection (FCGI_KEEP_CONN) is read again; any other is closed at once.
 * No params are decoded, no management records are answered: this is a
 * yardstick for the load generator and the kernel, not a server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define HDR 8
#define CHUNK 65528 /* content bytes per STDOUT record (multiple of 8) */
#define MAX_THREADS 256

static int listen_fd;
static int echo_mode;
static int nodelay;
static unsigned char *response;   /* STDOUT records + empty STDOUT + END_REQUEST */
static size_t response_len;
static size_t *id_offsets;        /* record headers in `response` */
static size_t n_ids;

static const char hello_head[] = "Content-Type: text/plain\r\n\r\n";
/* as many bytes as hello.c prints for the default request */
static const char hello_body[] = "Hello, world! GET /hello?name=bench\n";
static const char echo_head[] = "Content-Type: application/octet-stream\r\n\r\n";

static void put_header(unsigned char *p, int type, size_t len, int pad)
{
    p[0] = 1;
    p[1] = (unsigned char)type;
    p[2] = 0;
    p[3] = 1;
    p[4] = (unsigned char)(len >> 8);
    p[5] = (unsigned char)len;
    p[6] = (unsigned char)pad;
    p[7] = 0;
}

/* Frames `body` as STDOUT records plus the end-of-stream and END_REQUEST
 * records; remembers where the request ids go. */
static void build_response(const unsigned char *body, size_t len)
{
    size_t records = len / CHUNK + 3, off = 0, i;
    response = malloc(len + records * HDR + 16);
    id_offsets = malloc(records * sizeof *id_offsets);
    if (response == NULL || id_offsets == NULL)
        exit(1);
    for (i = 0; i < len; i += CHUNK) {
        size_t n = len - i < CHUNK ? len - i : CHUNK;
        id_offsets[n_ids++] = off;
        put_header(response + off, 6, n, 0);
        memcpy(response + off + HDR, body + i, n);
        off += HDR + n;
    }
    id_offsets[n_ids++] = off;
    put_header(response + off, 6, 0, 0);
    off += HDR;
    id_offsets[n_ids++] = off;
    put_header(response + off, 3, 8, 0);
    memset(response + off + HDR, 0, 8); /* appStatus 0, REQUEST_COMPLETE */
    off += 16;
    response_len = off;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int writev_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t w = writev(fd, iov, cnt);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (cnt > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

struct worker {
    unsigned char *resp; /* this thread's copy of `response` (ids patched) */
    unsigned char echo_prefix[HDR + 48];
    size_t echo_prefix_len;
};

struct conn {
    int fd;
    unsigned char *buf;
    size_t have, cap;
};

static int conn_init(struct conn *c, int fd)
{
    c->fd = fd;
    c->have = 0;
    c->cap = 64 * 1024;
    c->buf = malloc(c->cap);
    return c->buf == NULL ? -1 : 0;
}

/* Answers every complete request in c->buf. Returns 1 if the connection
 * stays open (keep-alive, or a request still incomplete), 0 to close it. */
static int answer(struct worker *w, struct conn *c)
{
    for (;;) {
        size_t off = 0, end = 0, stdin_start = 0;
        int id = -1, keep = 0, complete = 0;

        while (off + HDR <= c->have) {
            const unsigned char *h = c->buf + off;
            size_t clen = ((size_t)h[4] << 8) | h[5], rec = HDR + clen + h[6];
            if (off + rec > c->have)
                break;
            if (h[1] == 1 && clen >= 3) { /* BEGIN_REQUEST */
                id = (h[2] << 8) | h[3];
                keep = h[HDR + 2] & 1;
            } else if (h[1] == 5) { /* STDIN */
                if (stdin_start == 0)
                    stdin_start = off;
                if (clen == 0) {
                    complete = 1;
                    end = off + rec;
                    break;
                }
            }
            off += rec;
        }
        if (!complete) {
            if (c->have == c->cap) {
                c->cap *= 2;
                c->buf = realloc(c->buf, c->cap);
                if (c->buf == NULL)
                    exit(1);
            }
            return 1;
        }
        if (id < 0)
            return 0;
        if (echo_mode) {
            unsigned char endrec[16];
            struct iovec iov[3];
            size_t p = stdin_start;
            while (p < end) { /* relabel STDIN records as STDOUT */
                unsigned char *h = c->buf + p;
                h[1] = 6;
                p += HDR + (((size_t)h[4] << 8) | h[5]) + h[6];
            }
            w->echo_prefix[2] = (unsigned char)(id >> 8);
            w->echo_prefix[3] = (unsigned char)id;
            put_header(endrec, 3, 8, 0);
            endrec[2] = (unsigned char)(id >> 8);
            endrec[3] = (unsigned char)id;
            memset(endrec + HDR, 0, 8);
            iov[0].iov_base = w->echo_prefix;
            iov[0].iov_len = w->echo_prefix_len;
            iov[1].iov_base = c->buf + stdin_start;
            iov[1].iov_len = end - stdin_start;
            iov[2].iov_base = endrec;
            iov[2].iov_len = sizeof endrec;
            if (writev_all(c->fd, iov, 3) < 0)
                return 0;
        } else {
            size_t i;
            for (i = 0; i < n_ids; i++) {
                w->resp[id_offsets[i] + 2] = (unsigned char)(id >> 8);
                w->resp[id_offsets[i] + 3] = (unsigned char)id;
            }
            if (write_all(c->fd, w->resp, response_len) < 0)
                return 0;
        }
        if (!keep)
            return 0;
        memmove(c->buf, c->buf + end, c->have - end);
        c->have -= end;
        if (c->have == 0)
            return 1;
    }
}

/* One read into the connection's buffer: >0 bytes, 0 EOF/error, -1 EAGAIN. */
static ssize_t fill(struct conn *c)
{
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->have, c->cap - c->have);
        if (n > 0) {
            c->have += (size_t)n;
            return n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return -1;
        return 0;
    }
}

static void set_nodelay(int fd)
{
    if (nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

static void worker_init(struct worker *w)
{
    size_t plen = sizeof echo_head - 1, pad = (8 - plen % 8) % 8;

    w->resp = malloc(response_len);
    if (w->resp == NULL)
        exit(1);
    memcpy(w->resp, response, response_len);
    memset(w->echo_prefix, 0, sizeof w->echo_prefix);
    put_header(w->echo_prefix, 6, plen, (int)pad);
    memcpy(w->echo_prefix + HDR, echo_head, plen);
    w->echo_prefix_len = HDR + plen + pad;
}

/* Thread mode: accept, serve the connection to its end, accept again. */
static void *thread_main(void *arg)
{
    struct worker w;
    struct conn c;

    (void)arg;
    worker_init(&w);
    for (;;) {
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            perror("accept");
            exit(1);
        }
        set_nodelay(fd);
        if (conn_init(&c, fd) < 0)
            exit(1);
        while (fill(&c) > 0 && answer(&w, &c))
            ;
        close(fd);
        free(c.buf);
    }
    return NULL;
}

/* Epoll mode: each thread has its own epoll set; the listening socket is
 * in all of them (EPOLLEXCLUSIVE), connections stay with the thread that
 * accepted them. Responses must fit the socket buffer (small ones). */
static void *epoll_main(void *arg)
{
    struct worker w;
    struct epoll_event ev, evs[256];
    int ep = epoll_create1(EPOLL_CLOEXEC), i, n;

    (void)arg;
    worker_init(&w);
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.ptr = NULL;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        perror("epoll");
        exit(1);
    }
    for (;;) {
        n = epoll_wait(ep, evs, 256, -1);
        for (i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    set_nodelay(fd);
                    c = malloc(sizeof *c);
                    if (c == NULL || conn_init(c, fd) < 0)
                        exit(1);
                    ev.events = EPOLLIN;
                    ev.data.ptr = c;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            {
                ssize_t r = fill(c);
                if (r == -1 || (r > 0 && answer(&w, c)))
                    continue;
                close(c->fd); /* also leaves the epoll set */
                free(c->buf);
                free(c);
            }
        }
    }
    return NULL;
}

static int open_listener(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    int fd, one = 1;

    if (addr[0] != '/' && addr[0] != '.' && colon != NULL) {
        struct sockaddr_in sin;
        char host[64];
        size_t hl = (size_t)(colon - addr);
        memset(&sin, 0, sizeof sin);
        sin.sin_family = AF_INET;
        sin.sin_port = htons((unsigned short)atoi(colon + 1));
        if (hl >= sizeof host)
            return -1;
        memcpy(host, addr, hl);
        host[hl] = 0;
        if (hl == 0 || strcmp(host, "*") == 0)
            sin.sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
            return -1;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
            return -1;
    } else {
        struct sockaddr_un sun;
        memset(&sun, 0, sizeof sun);
        sun.sun_family = AF_UNIX;
        if (strlen(addr) >= sizeof sun.sun_path)
            return -1;
        strcpy(sun.sun_path, addr);
        unlink(addr);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0)
            return -1;
    }
    if (listen(fd, 128) < 0)
        return -1;
    return fd;
}

int main(int argc, char **argv)
{
    pthread_t th[MAX_THREADS];
    int threads = 1, use_epoll = 0, opt, i;
    long size = -1;
    unsigned char *body;
    size_t body_len;

    while ((opt = getopt(argc, argv, "t:E:s:e")) != -1) {
        switch (opt) {
        case 't': threads = atoi(optarg); break;
        case 'E': threads = atoi(optarg); use_epoll = 1; break;
        case 's': size = atol(optarg); break;
        case 'e': echo_mode = 1; break;
        default:
            fprintf(stderr, "usage: canned [-t THREADS | -E THREADS] [-s BYTES] [-e] ADDR\n");
            return 2;
        }
    }
    if (optind != argc - 1 || threads < 1 || threads > MAX_THREADS) {
        fprintf(stderr, "usage: canned [-t THREADS | -E THREADS] [-s BYTES] [-e] ADDR\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (size < 0) { /* the same bytes hello.c prints for the default request */
        body_len = sizeof hello_head - 1 + sizeof hello_body - 1;
        body = malloc(body_len);
        memcpy(body, hello_head, sizeof hello_head - 1);
        memcpy(body + sizeof hello_head - 1, hello_body, sizeof hello_body - 1);
    } else {
        size_t hl = sizeof hello_head - 1;
        body_len = hl + (size_t)size;
        body = malloc(body_len + 1);
        memcpy(body, hello_head, hl);
        for (i = 0; (size_t)i < (size_t)size; i++)
            body[hl + (size_t)i] = (unsigned char)('a' + i % 26);
    }
    build_response(body, body_len);
    nodelay = echo_mode || response_len > 16 * 1024;
    listen_fd = open_listener(argv[optind]);
    if (listen_fd < 0) {
        perror("canned: listen");
        return 1;
    }
    if (use_epoll)
        fcntl(listen_fd, F_SETFL, O_NONBLOCK);
    for (i = 1; i < threads; i++)
        if (pthread_create(&th[i], NULL, use_epoll ? epoll_main : thread_main, NULL) != 0)
            return 1;
    if (use_epoll)
        epoll_main(NULL);
    else
        thread_main(NULL);
    return 0;
}
