/*
 * win_prng.c - a stand-in bcryptprimitives.dll for running libfcgi.dll
 * under wine 8.
 *
 * The standard library of current Rust gets its random numbers (HashMap
 * seeds) from ProcessPrng in bcryptprimitives.dll, which Windows 10 and
 * later have and wine 8 does not; without it the DLL does not load. This
 * DLL exports ProcessPrng and fills the buffer from BCryptGenRandom (the
 * system's generator, which wine has). Only the wine test uses it
 * (tests/windows.rs); it is never part of the library.
 *
 * Build: x86_64-w64-mingw32-gcc -shared -o bcryptprimitives.dll win_prng.c -lbcrypt
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
