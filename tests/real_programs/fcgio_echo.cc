/*
 * fcgio_echo.cc - a C++ FastCGI application on libfcgi++'s fcgio.h, for
 * tests/real_programs.rs: compiled against the system headers, linked with
 * -lfcgi++ -lfcgi, and run with LD_LIBRARY_PATH pointing at our libfcgi.so.0
 * (Debian's libfcgi++.so.0 then calls into our library).
 *
 * Started with a listening socket on fd 0 (by spawn-fcgi). std::cin, cout
 * and cerr are switched to fcgi_streambufs for each request: stdin
 * unbuffered (peek/get/read go to FCGX_GetChar, FCGX_UnGetChar and
 * FCGX_GetStr), stdout buffered (FCGX_PutStr on overflow/sync), stderr
 * unbuffered (FCGX_PutChar/FCGX_PutStr).
 *
 * Parameter MODE picks what a request does:
 *   (none)  the parameters as NAME=value lines, an empty line, then the
 *           request body echoed byte for byte;
 *   lines   reads a number N with >>, then N lines with std::getline, and
 *           answers "n=N", "[line]" for each, and "eof" if peek() then
 *           reports the end of the body.
 * STDERR_TEXT, if set, is written to stderr with std::endl.
 */
#include <fcgio.h>

#include <cstring>
#include <iostream>
#include <limits>
#include <string>

int main()
{
    static char out_space[4096];
    std::streambuf *const cin_orig = std::cin.rdbuf();
    std::streambuf *const cout_orig = std::cout.rdbuf();
    std::streambuf *const cerr_orig = std::cerr.rdbuf();
    FCGX_Request request;
    long count = 0;

    if (FCGX_Init() != 0)
        return 1;
    FCGX_InitRequest(&request, 0, 0);
    while (FCGX_Accept_r(&request) == 0) {
        fcgi_streambuf in_buf(request.in);
        fcgi_streambuf out_buf(request.out, out_space, sizeof out_space);
        fcgi_streambuf err_buf(request.err);
        const char *mode = FCGX_GetParam("MODE", request.envp);
        const char *err_text = FCGX_GetParam("STDERR_TEXT", request.envp);

        std::cin.rdbuf(&in_buf);
        std::cout.rdbuf(&out_buf);
        std::cerr.rdbuf(&err_buf);
        std::cin.clear();
        std::cout.clear();
        std::cerr.clear();

        ++count;
        std::cout << "Content-Type: text/plain\r\n"
                  << "X-Count: " << count << "\r\n\r\n";
        if (mode != NULL && std::strcmp(mode, "lines") == 0) {
            int n = -1;
            std::string line;
            std::cin >> n;
            std::cin.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
            std::cout << "n=" << n << "\n";
            for (int i = 0; i < n && std::getline(std::cin, line); i++)
                std::cout << "[" << line << "]\n";
            if (std::cin.peek() == std::char_traits<char>::eof())
                std::cout << "eof\n";
        } else {
            char buf[8192];
            for (char **e = request.envp; *e != NULL; e++)
                std::cout << *e << "\n";
            std::cout << "\n";
            while (std::cin.read(buf, sizeof buf) || std::cin.gcount() > 0)
                std::cout.write(buf, std::cin.gcount());
        }
        if (err_text != NULL)
            std::cerr << "fcgio-stderr: " << err_text << std::endl;
        std::cout.flush();

        std::cin.rdbuf(cin_orig);
        std::cout.rdbuf(cout_orig);
        std::cerr.rdbuf(cerr_orig);
    }
    return 0;
}
