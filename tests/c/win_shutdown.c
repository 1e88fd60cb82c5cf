/*
 * win_shutdown.c - FCGX_ShutdownPending on Windows, where no signal can
 * interrupt a thread waiting for a connection.
 *
 * Usage: win_shutdown ADDRESS
 * Serves one request ("bye" and some printf formats), then starts a thread that calls
 * FCGX_ShutdownPending() 300 ms later and goes back to FCGX_Accept_r,
 * which must return (negative) instead of waiting for ever. Prints
 * "accept after shutdown: RC" and exits 0 if RC < 0.
 */
#include <fcgiapp.h>
#include <windows.h>
#include <stdio.h>

static DWORD WINAPI shut_down_later(LPVOID unused)
{
    (void)unused;
    Sleep(300);
    FCGX_ShutdownPending();
    return 0;
}

int main(int argc, char **argv)
{
    FCGX_Request req;
    int sock, rc;
    HANDLE t;

    if (argc != 2 || FCGX_Init() != 0)
        return 2;
    sock = FCGX_OpenSocket(argv[1], 16);
    if (sock < 0)
        return 3;
    FCGX_InitRequest(&req, sock, 0);
    if (FCGX_Accept_r(&req) != 0)
        return 4;
    /* stdin is no socket here: FCGX_IsCGI() says 1 (CGI). C99 formats
     * through the DLL's FCGX_FPrintF (mingw-w64's vsnprintf). */
    FCGX_FPrintF(req.out, "Content-Type: text/plain\r\n\r\nbye, is_cgi=%d %zu %lld %.2Lf %s\n",
                 FCGX_IsCGI(), (size_t)123456789012ULL, -9000000000LL, (long double)2.5,
                 (const char *)NULL);
    FCGX_Finish_r(&req);
    t = CreateThread(NULL, 0, shut_down_later, NULL, 0, NULL);
    if (t == NULL)
        return 5;
    rc = FCGX_Accept_r(&req);
    printf("accept after shutdown: %d\n", rc);
    fflush(stdout);
    WaitForSingleObject(t, INFINITE);
    return rc < 0 ? 0 : 1;
}
