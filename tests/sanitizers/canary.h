/*
 * canary.h - a known bug for scripts/sanitizers.sh to catch, so that a
 * sanitizer pass which reports nothing cannot be a pass that sees nothing.
 *
 * The script adds `-include tests/sanitizers/canary.h -DFCGI_SAN_CANARY_<KIND>`
 * to FCGI_TEST_CFLAGS for one test and expects that test to FAIL with the
 * sanitizer's report in its output, the faulty access or allocation inside
 * our library (FCGX_PutStr, FCGX_CreateWriter): the library is instrumented,
 * the program has the runtime, and the harness (tests/common) turns the
 * report into a failure. Each kind runs in a constructor, before main:
 *
 *   OVERFLOW  FCGX_PutStr reads 64 bytes from a 16-byte heap block
 *             (AddressSanitizer: heap-buffer-overflow, the program stops).
 *   LEAK      a stream from FCGX_CreateWriter is never freed
 *             (LeakSanitizer at exit, after the harness's SIGTERM).
 *   RACE      two threads write into one such stream with no lock
 *             (ThreadSanitizer: data race, reported at once; exit status 66).
 *
 * Never included in a normal build.
 */
#ifndef FCGI_SAN_CANARY_H
#define FCGI_SAN_CANARY_H

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fastcgi.h"
#include "fcgiapp.h"

/* A writer stream on /dev/null: it buffers what it is given (a writer on
   a bad descriptor would refuse every write before reading it). */
static FCGX_Stream *fcgi_san_canary_stream(void)
{
    int fd = open("/dev/null", O_WRONLY);
    FCGX_Stream *w = fd < 0 ? NULL : FCGX_CreateWriter(fd, 1, 65528, FCGI_STDOUT);
    if (w == NULL)
        abort();
    return w;
}

#if defined(FCGI_SAN_CANARY_OVERFLOW)
__attribute__((constructor)) static void fcgi_san_canary(void)
{
    char *small = malloc(16);
    FCGX_Stream *w = fcgi_san_canary_stream();
    if (small == NULL)
        abort();
    memset(small, 'x', 16);
    FCGX_PutStr(small, 64, w); /* 48 bytes past the end of small */
    FCGX_FreeStream(&w);
    free(small);
}
#elif defined(FCGI_SAN_CANARY_LEAK)
__attribute__((constructor)) static void fcgi_san_canary(void)
{
    FCGX_Stream *w = fcgi_san_canary_stream();
    FCGX_PutS("lost", w);
    w = NULL; /* never FCGX_FreeStream'd */
    (void)w;
}
#elif defined(FCGI_SAN_CANARY_RACE)
static void *fcgi_san_canary_writer(void *stream)
{
    int i;
    for (i = 0; i < 200; i++)
        FCGX_PutStr("racing", 6, stream);
    return NULL;
}

__attribute__((constructor)) static void fcgi_san_canary(void)
{
    pthread_t t[2];
    int i;
    FCGX_Stream *w = fcgi_san_canary_stream();
    for (i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, fcgi_san_canary_writer, w) != 0)
            abort();
    for (i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    FCGX_FreeStream(&w);
}
#endif

#endif /* FCGI_SAN_CANARY_H */
