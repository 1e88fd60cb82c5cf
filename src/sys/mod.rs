//! The operating-system calls the engine needs, as safe functions.
//!
//! Together with `capi/`, this is the only place with `unsafe`. One module
//! per platform, both with the same safe signatures, so the engine
//! (`server/`) compiles unchanged on either:
//!
//! * [`unix`](unix.rs): libc; descriptors are `int`s (`std::os::fd`).
//! * [`windows`](windows.rs): Winsock through `windows-sys`; a socket is a
//!   `SOCKET` handle, carried through the C ABI as an `int` like libfcgi
//!   did (see that module for the limits).
//!
//! Both export the same names: `OwnedFd`, `BorrowedFd`, `RawFd` (always
//! `i32`, the C ABI's `int`), the traits `AsFd`, `AsRawFd`, `IntoRawFd`,
//! the module `code` of error numbers the engine reports itself, and the
//! functions below.

use std::net::IpAddr;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// The peer address of an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Ip(IpAddr),
    Local,
    Other,
}

/// After a gathered write sent `n` bytes of `bufs[first..]`: skips the
/// slices sent whole and trims the one sent in part.
fn advance(bufs: &mut [&[u8]], first: &mut usize, mut n: usize) {
    while n > 0 && *first < bufs.len() {
        let len = bufs[*first].len();
        if n >= len {
            n -= len;
            *first += 1;
        } else {
            bufs[*first] = &bufs[*first][n..];
            n = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn advance_skips_and_trims() {
        let (a, b, c) = (&b"abc"[..], &b"de"[..], &b"fgh"[..]);
        let mut bufs = [a, b, c];
        let mut first = 0;
        super::advance(&mut bufs, &mut first, 4);
        assert_eq!((first, bufs[first]), (1, &b"e"[..]));
        super::advance(&mut bufs, &mut first, 2);
        assert_eq!((first, bufs[first]), (2, &b"gh"[..]));
        super::advance(&mut bufs, &mut first, 2);
        assert_eq!(first, 3);
    }
}
