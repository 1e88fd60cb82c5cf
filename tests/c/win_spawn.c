/*
 * win_spawn.c - starts a FastCGI program the way a Windows web server or
 * spawner does: with a listening socket as its standard input handle (the
 * Windows form of libfcgi's "listening socket on fd 0" convention), so the
 * program's FCGX_IsCGI() says FastCGI and FCGI_Accept() serves requests.
 *
 * Usage: win_spawn PORT PROGRAM.EXE
 * Listens on 127.0.0.1:PORT, starts PROGRAM.EXE with that socket as its
 * stdin (inherited; stdout and stderr are this program's), prints
 * "spawned" and waits; exits with the program's exit status.
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    WSADATA wsa;
    SOCKET s;
    struct sockaddr_in addr;
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    DWORD status = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: win_spawn PORT PROGRAM.EXE\n");
        return 2;
    }
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        return 3;
    s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET)
        return 4;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(argv[1]));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s, 16) != 0) {
        fprintf(stderr, "win_spawn: bind/listen: %d\n", WSAGetLastError());
        return 5;
    }
    SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);

    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = (HANDLE)s;
    si.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE);
    si.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    if (!CreateProcessA(NULL, argv[2], NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
        fprintf(stderr, "win_spawn: CreateProcess(%s): %lu\n", argv[2], GetLastError());
        return 6;
    }
    printf("spawned\n");
    fflush(stdout);
    WaitForSingleObject(pi.hProcess, INFINITE);
    GetExitCodeProcess(pi.hProcess, &status);
    return (int)status;
}
