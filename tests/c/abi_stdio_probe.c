/*
 * abi_stdio_probe.c - prints the layout of FCGI_FILE and of the elements of
 * _fcgi_sF, and what every macro of fcgi_stdio.h expands to (FILE, stdin,
 * printf, ..., FCGI_stdin, FCGI_ToFILE(fp)). tests/abi.rs compiles it
 * against our include/ and against the original headers; the outputs must
 * be identical. It only writes with write(2) and snprintf, which
 * fcgi_stdio.h leaves alone, and needs no library (sizeof and the
 * preprocessor only).
 */
#define HAVE_FPOS 1
#include <fcgi_stdio.h>

#include <stddef.h>
#include <string.h>
#include <unistd.h>

static char line[512];

static void out(void)
{
    size_t len = strlen(line);
    if (write(1, line, len) != (ssize_t)len)
        _exit(1);
}

#define TYPE(T)                                                                  \
    (snprintf(line, sizeof line, "%s size=%zu align=%zu\n", #T, sizeof(T),       \
              (size_t)_Alignof(T)),                                              \
     out())
#define FIELD(T, f)                                                              \
    (snprintf(line, sizeof line, "  %s.%s offset=%zu size=%zu\n", #T, #f,       \
              offsetof(T, f), sizeof(((T *)0)->f)),                              \
     out())
#define SIZE(e) (snprintf(line, sizeof line, "sizeof(%s) = %zu\n", #e, sizeof(e)), out())
#define EXPAND2(m) #m
#define EXPAND(m) EXPAND2(m)
#define MACRO(m) (snprintf(line, sizeof line, "%s -> %s\n", #m, EXPAND(m)), out())

int main(void)
{
    TYPE(FCGI_FILE);
    FIELD(FCGI_FILE, stdio_stream);
    FIELD(FCGI_FILE, fcgx_stream);
    SIZE(_fcgi_sF[0]);
    SIZE(_fcgi_sF[2]);
    SIZE(FCGI_stdin);
    SIZE(*FCGI_stdin);
    SIZE(*FCGI_stdout);
    SIZE(*FCGI_stderr);
    SIZE(FCGI_ToFILE(FCGI_stdin));
    SIZE(FCGI_ToFcgiStream(FCGI_stdin));
    SIZE(FILE);
    SIZE(*stdin);
    /* What the wrappers return, by size. */
    SIZE(FCGI_fread(NULL, 1, 1, FCGI_stdin));
    SIZE(FCGI_ftell(FCGI_stdin));
    SIZE(FCGI_fopen("", ""));

    MACRO(FCGI_stdin);
    MACRO(FCGI_stdout);
    MACRO(FCGI_stderr);
    MACRO(FCGI_ToFILE(fp));
    MACRO(FCGI_ToFcgiStream(fp));
    MACRO(FILE);
    MACRO(stdin);
    MACRO(stdout);
    MACRO(stderr);
    MACRO(perror);
    MACRO(fopen);
    MACRO(fclose);
    MACRO(fflush);
    MACRO(freopen);
    MACRO(setvbuf);
    MACRO(setbuf);
    MACRO(fseek);
    MACRO(ftell);
    MACRO(rewind);
    MACRO(fgetpos);
    MACRO(fsetpos);
    MACRO(fgetc);
    MACRO(getc);
    MACRO(getchar);
    MACRO(ungetc);
    MACRO(fgets);
    MACRO(gets);
    MACRO(fputc);
    MACRO(putc);
    MACRO(putchar);
    MACRO(fputs);
    MACRO(puts);
    MACRO(fprintf);
    MACRO(printf);
    MACRO(vfprintf);
    MACRO(vprintf);
    MACRO(fread);
    MACRO(fwrite);
    MACRO(feof);
    MACRO(ferror);
    MACRO(clearerr);
    MACRO(tmpfile);
    MACRO(fileno);
    MACRO(fdopen);
    MACRO(popen);
    MACRO(pclose);
    /* Left alone by both. */
    MACRO(scanf);
    MACRO(fscanf);
    MACRO(sprintf);
    MACRO(snprintf);
    MACRO(EOF);
    MACRO(_FCGI_STDIO);
    return 0;
}
