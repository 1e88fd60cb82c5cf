/*
 * abi_stdio_types.cc - prints the exact C++ type (typeid, i.e. the mangled
 * type) of every function of fcgi_stdio.h, of FCGI_FILE's fields, of
 * _fcgi_sF and of the FCGI_stdin/stdout/stderr and FCGI_To* macros.
 * Compiled against our include/ and the original headers by tests/abi.rs
 * (with HAVE_FPOS, so fgetpos/fsetpos are declared); the outputs must be
 * identical. NO_FCGI_DEFINES keeps printf for the report itself.
 */
#define HAVE_FPOS 1
#define NO_FCGI_DEFINES 1
#include <fcgi_stdio.h>

#include <cstdio>
#include <typeinfo>

#define FN(f) std::printf("fn %s: %s\n", #f, typeid(f).name())
#define FIELD(T, f) std::printf("field %s.%s: %s\n", #T, #f, typeid(((T *)0)->f).name())
#define EXPR(e) std::printf("expr %s: %s\n", #e, typeid(e).name())

int main()
{
    FN(FCGI_Accept);
    FN(FCGI_Finish);
    FN(FCGI_StartFilterData);
    FN(FCGI_SetExitStatus);
    FN(FCGI_perror);
    FN(FCGI_fopen);
    FN(FCGI_fclose);
    FN(FCGI_fflush);
    FN(FCGI_freopen);
    FN(FCGI_setvbuf);
    FN(FCGI_setbuf);
    FN(FCGI_fseek);
    FN(FCGI_ftell);
    FN(FCGI_rewind);
    FN(FCGI_fgetpos);
    FN(FCGI_fsetpos);
    FN(FCGI_fgetc);
    FN(FCGI_getchar);
    FN(FCGI_ungetc);
    FN(FCGI_fgets);
    FN(FCGI_gets);
    FN(FCGI_fputc);
    FN(FCGI_putchar);
    FN(FCGI_fputs);
    FN(FCGI_puts);
    FN(FCGI_fprintf);
    FN(FCGI_printf);
    FN(FCGI_vfprintf);
    FN(FCGI_vprintf);
    FN(FCGI_fread);
    FN(FCGI_fwrite);
    FN(FCGI_feof);
    FN(FCGI_ferror);
    FN(FCGI_clearerr);
    FN(FCGI_tmpfile);
    FN(FCGI_fileno);
    FN(FCGI_fdopen);
    FN(FCGI_popen);
    FN(FCGI_pclose);

    FIELD(FCGI_FILE, stdio_stream);
    FIELD(FCGI_FILE, fcgx_stream);
    std::printf("type FCGI_FILE: %s\n", typeid(FCGI_FILE).name());
    EXPR(_fcgi_sF);
    EXPR(_fcgi_sF[0]);
    EXPR(FCGI_stdin);
    EXPR(FCGI_stdout);
    EXPR(FCGI_stderr);
    EXPR(FCGI_ToFILE(FCGI_stdin));
    EXPR(FCGI_ToFcgiStream(FCGI_stdout));
    return 0;
}
