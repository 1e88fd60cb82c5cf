//! The operating-system calls the engine needs, as safe functions.
//!
//! The boundary: together with `capi/`, this is the only place with
//! `unsafe` (the engine, the codec and the client forbid it). Here it is
//! for system calls only: each `unsafe` block is one call, or a few on the
//! same arguments, with a `// SAFETY:` comment saying why its pointers are
//! valid (slices and structs owned by the wrapper, built or checked just
//! before). Little logic: retrying after EINTR, finishing partial
//! writes, converting results to `io::Result`; state, event loops and
//! policy are in `server/`. A function is
//! safe when no argument can make it unsound; one that is not (it takes a
//! descriptor over, like `close`, or borrows one by number) is an `unsafe
//! fn` with a `# Safety` section, for `capi/` to call with the C caller's
//! promise. Raw descriptor numbers that another thread may close (a
//! waiting room's listening socket) are only polled or watched, never
//! read or written (`*_number` functions): a stale number gives a wrong
//! answer, not undefined behaviour.
//!
//! One module per platform, both with the same safe signatures, so the
//! engine (`server/`) compiles unchanged on either:
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

/// Slices a gathered write handles without a heap allocation (a response's
/// final write has at most three: STDERR's rest, STDOUT's rest, END_REQUEST).
const SMALL_GATHER: usize = 8;

/// Calls `f` with the non-empty slices of `bufs`, collected on the stack
/// when there are at most [`SMALL_GATHER`] of them (the request path), else
/// in a `Vec` (a large write split into many records).
fn with_non_empty<R>(bufs: &[std::io::IoSlice<'_>], f: impl FnOnce(&mut [&[u8]]) -> R) -> R {
    let count = bufs.iter().filter(|b| !b.is_empty()).count();
    if count <= SMALL_GATHER {
        let mut small: [&[u8]; SMALL_GATHER] = [&[]; SMALL_GATHER];
        for (slot, b) in small.iter_mut().zip(bufs.iter().filter(|b| !b.is_empty())) {
            *slot = b;
        }
        f(&mut small[..count])
    } else {
        let mut all: Vec<&[u8]> = bufs
            .iter()
            .map(|b| &**b)
            .filter(|b| !b.is_empty())
            .collect();
        f(&mut all)
    }
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

    #[test]
    fn with_non_empty_drops_empty_slices_on_either_path() {
        use std::io::IoSlice;
        let few = [
            IoSlice::new(b""),
            IoSlice::new(b"ab"),
            IoSlice::new(b""),
            IoSlice::new(b"c"),
        ];
        let got = super::with_non_empty(&few, |b| b.iter().map(|s| s.to_vec()).collect::<Vec<_>>());
        assert_eq!(got, vec![b"ab".to_vec(), b"c".to_vec()]);
        let data: Vec<[u8; 1]> = (0..20u8).map(|i| [i]).collect();
        let mut many: Vec<IoSlice<'_>> = data.iter().map(|d| IoSlice::new(d)).collect();
        many.push(IoSlice::new(b""));
        let got = super::with_non_empty(&many, |b| b.concat());
        assert_eq!(got, (0..20u8).collect::<Vec<_>>());
    }
}
