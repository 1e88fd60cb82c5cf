/*
 * The printf family of fcgi_stdio.h: FCGI_printf, FCGI_fprintf,
 * FCGI_vprintf, FCGI_vfprintf. C-variadic, hence C. A C file goes to the
 * C library's vfprintf, a FastCGI stream to FCGX_VFPrintF.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct FCGX_Stream FCGX_Stream;
typedef struct {
    FILE *stdio_stream;
    FCGX_Stream *fcgx_stream;
} FCGI_FILE;

extern FCGI_FILE _fcgi_sF[];
int FCGX_VFPrintF(FCGX_Stream *stream, const char *format, va_list arg);
int FCGI_vfprintf(FCGI_FILE *fp, const char *format, va_list ap);
int FCGI_vprintf(const char *format, va_list ap);
int FCGI_fprintf(FCGI_FILE *fp, const char *format, ...);
int FCGI_printf(const char *format, ...);

int FCGI_vfprintf(FCGI_FILE *fp, const char *format, va_list ap)
{
    if (fp == NULL || format == NULL) {
        errno = EINVAL;
        return EOF;
    }
    if (fp->stdio_stream != NULL)
        return vfprintf(fp->stdio_stream, format, ap);
    if (fp->fcgx_stream != NULL)
        return FCGX_VFPrintF(fp->fcgx_stream, format, ap);
    return EOF;
}

int FCGI_vprintf(const char *format, va_list ap)
{
    return FCGI_vfprintf(&_fcgi_sF[1], format, ap);
}

int FCGI_fprintf(FCGI_FILE *fp, const char *format, ...)
{
    va_list ap;
    int r;

    va_start(ap, format);
    r = FCGI_vfprintf(fp, format, ap);
    va_end(ap);
    return r;
}

int FCGI_printf(const char *format, ...)
{
    va_list ap;
    int r;

    va_start(ap, format);
    r = FCGI_vfprintf(&_fcgi_sF[1], format, ap);
    va_end(ap);
    return r;
}
