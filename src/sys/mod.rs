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
