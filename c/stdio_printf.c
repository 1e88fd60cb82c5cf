/*
 * The printf family of fcgi_stdio.h: FCGI_printf, FCGI_fprintf,
 * FCGI_vprintf, FCGI_vfprintf. C-variadic, hence C. A C file goes to the
 * C library's vfprintf, a FastCGI stream to FCGX_VFPrintF.
 */
/*
 * Windows: these functions are exports of libfcgi.dll like the Rust ones
 * (the Rust linker's export list names only Rust symbols), and the C
 * runtime's printf family is mingw-w64's C99 one (msvcrt's vsnprintf
 * returns -1 on truncation and lacks C99 conversions).
 */
#if defined(__MINGW32__) && !defined(__USE_MINGW_ANSI_STDIO)
#define __USE_MINGW_ANSI_STDIO 1
#endif
#if defined(_WIN32)
#define FCGI_EXPORT __declspec(dllexport)
#else
#define FCGI_EXPORT
#endif
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
FCGI_EXPORT int FCGI_vfprintf(FCGI_FILE *fp, const char *format, va_list ap);
FCGI_EXPORT int FCGI_vprintf(const char *format, va_list ap);
FCGI_EXPORT int FCGI_fprintf(FCGI_FILE *fp, const char *format, ...);
FCGI_EXPORT int FCGI_printf(const char *format, ...);

FCGI_EXPORT int FCGI_vfprintf(FCGI_FILE *fp, const char *format, va_list ap)
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

FCGI_EXPORT int FCGI_vprintf(const char *format, va_list ap)
{
    return FCGI_vfprintf(&_fcgi_sF[1], format, ap);
}

FCGI_EXPORT int FCGI_fprintf(FCGI_FILE *fp, const char *format, ...)
{
    va_list ap;
    int r;

    va_start(ap, format);
    r = FCGI_vfprintf(fp, format, ap);
    va_end(ap);
    return r;
}

FCGI_EXPORT int FCGI_printf(const char *format, ...)
{
    va_list ap;
    int r;

    va_start(ap, format);
    r = FCGI_vfprintf(&_fcgi_sF[1], format, ap);
    va_end(ap);
    return r;
}
