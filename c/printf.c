/*
 * Formatted output for the FastCGI streams: FCGX_FPrintF and FCGX_VFPrintF.
 *
 * C-variadic functions cannot be defined in stable Rust, so these two are
 * C: the C library's vsnprintf formats (every C99 conversion, any width or
 * precision, "(null)" for a NULL %s), and the bytes go to the Rust
 * FCGX_PutStr. Short results use a stack buffer; longer ones one heap
 * buffer of the exact size.
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
#include <stdlib.h>

typedef struct FCGX_Stream FCGX_Stream;
int FCGX_PutStr(const char *str, int n, FCGX_Stream *stream);
FCGI_EXPORT int FCGX_VFPrintF(FCGX_Stream *stream, const char *format, va_list arg);
FCGI_EXPORT int FCGX_FPrintF(FCGX_Stream *stream, const char *format, ...);

FCGI_EXPORT int FCGX_VFPrintF(FCGX_Stream *stream, const char *format, va_list arg)
{
    char small[1024];
    va_list again;
    int len, written;

    if (stream == NULL || format == NULL) {
        errno = EINVAL;
        return -1;
    }
    va_copy(again, arg);
    len = vsnprintf(small, sizeof small, format, arg);
    if (len < 0) {
        va_end(again);
        return -1;
    }
    if ((size_t)len < sizeof small) {
        va_end(again);
        written = FCGX_PutStr(small, len, stream);
    } else {
        char *big = malloc((size_t)len + 1);
        if (big == NULL) {
            va_end(again);
            errno = ENOMEM;
            return -1;
        }
        vsnprintf(big, (size_t)len + 1, format, again);
        va_end(again);
        written = FCGX_PutStr(big, len, stream);
        free(big);
    }
    return written == len ? len : -1;
}

FCGI_EXPORT int FCGX_FPrintF(FCGX_Stream *stream, const char *format, ...)
{
    va_list ap;
    int r;

    va_start(ap, format);
    r = FCGX_VFPrintF(stream, format, ap);
    va_end(ap);
    return r;
}
