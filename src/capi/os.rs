//! The OS layer of libfcgi (`fcgios.h`): the 18 `OS_*` functions. Few
//! programs call them directly; Debian's `cgi-fcgi` bridge is the main one
//! (connect, spawn, and an event loop of asynchronous reads and writes).
//!
//! Each function converts its arguments (C strings, buffers, the timeout),
//! calls the safe core and converts the result: the socket addresses and
//! accept loop of [`crate::server::listen`], the drain of
//! [`crate::server::linger`], the pending-operation table and poll loop of
//! [`crate::server::asyncio`], and the system calls of `crate::sys`.
//!
//! Differences from libfcgi 2.4, all on the side of not harming the host
//! process:
//! * no function calls `exit()` or `assert()`: failures return -1 with
//!   `errno` set (`OS_SetFlags`, which returns nothing, only sets `errno`);
//! * `OS_DoIo` waits with `poll()`, so descriptors above `FD_SETSIZE` work
//!   (the `select()` overflow of CVE-2012-6687 cannot happen);
//! * the pending-operation table is a map keyed by descriptor, guarded by a
//!   mutex, bounded, and only accepts open descriptors; registering a second
//!   operation of the same kind on a descriptor fails with EALREADY;
//! * `OS_Read` and `OS_Write` retry after EINTR, and `OS_Write` writes the
//!   whole buffer unless an error (or EAGAIN on a non-blocking descriptor)
//!   stops it after some bytes, in which case it returns that count;
//! * `OS_Close` with `shutdown` drains the peer's input for at most
//!   `LIBFCGI_OS_CLOSE_POLL_TIMEOUT` ms (default 2000) in total, however
//!   slowly the peer trickles bytes;
//! * `OS_Accept` does not hold new Unix-socket connections for up to 2 s
//!   waiting for a first byte (a workaround for Linux 2.0 that made slow
//!   clients fail), like `FCGX_Accept_r` here; an allowlist with entries
//!   but no valid address lets nobody in (libfcgi: nobody either).

use super::init::ensure_init;
#[cfg(unix)]
use crate::server::asyncio::{self, AsyncTable, Dir};
use crate::server::config::{self, Config};
use crate::server::linger;
use crate::server::listen::{self, BindAddr};
#[cfg(unix)]
use crate::sys::RawFd;
use crate::sys::{self, IntoRawFd, Peer};
use std::ffi::{CStr, c_char, c_int, c_void};

/// `ClientData` of `fcgios.h`: the caller's pointer, handed back untouched.
pub type ClientData = *mut c_void;

/// `OS_AsyncProc`: called by `OS_DoIo` with the caller's data and the
/// result of the read or write (a byte count, 0 at end of file, or -1 with
/// `errno` set).
#[allow(non_camel_case_types)]
pub type OS_AsyncProc = Option<unsafe extern "C" fn(ClientData, c_int)>;

// ---- conversions -------------------------------------------------------------

/// Sets `errno` and returns -1.
fn fail(code: i32) -> c_int {
    sys::set_errno(code);
    -1
}

fn fail_with(e: &std::io::Error) -> c_int {
    fail(e.raw_os_error().unwrap_or(libc::EIO))
}

/// A count, or -1 with `errno` set.
fn count_or_fail(r: std::io::Result<usize>) -> c_int {
    match r {
        Ok(n) => n as c_int,
        Err(e) => fail_with(&e),
    }
}

/// The caller's descriptor, for the duration of one call; None for a
/// negative number (the caller fails with EBADF, as the system call
/// would: a `BorrowedFd` cannot hold -1).
///
/// # Safety
/// `fd`, when not negative, stays open for `'a`: callers pass the
/// descriptor their own C caller handed them and keep the borrow no
/// longer than the call.
unsafe fn borrow<'a>(fd: c_int) -> Option<sys::BorrowedFd<'a>> {
    // SAFETY: the caller keeps `fd` open for 'a (this function's contract).
    (fd >= 0).then(|| unsafe { sys::borrow_fd(fd) })
}

/// The largest count one call reports (the result is an `int`).
const MAX_IO: usize = c_int::MAX as usize;

/// The bytes of a C string, or None for NULL.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string that outlives `'a`.
unsafe fn c_bytes<'a>(s: *const c_char) -> Option<&'a [u8]> {
    if s.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated per this function's contract.
    Some(unsafe { CStr::from_ptr(s) }.to_bytes())
}

/// The caller's buffer of `len` bytes (at most [`MAX_IO`]) as a slice;
/// None if it is NULL with a length.
///
/// # Safety
/// `buf` is NULL or readable for `len` bytes during `'a`, and nothing
/// writes it meanwhile.
unsafe fn in_buf<'a>(buf: *const c_void, len: usize) -> Option<&'a [u8]> {
    match (buf.is_null(), len.min(MAX_IO)) {
        (_, 0) => Some(&[]),
        (true, _) => None,
        // SAFETY: non-NULL and readable for len bytes per the contract.
        (false, len) => Some(unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }),
    }
}

/// As [`in_buf`], for a buffer to fill.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes during `'a`, and nothing else
/// reads or writes it meanwhile.
unsafe fn out_buf<'a>(buf: *mut c_void, len: usize) -> Option<&'a mut [u8]> {
    match (buf.is_null(), len.min(MAX_IO)) {
        (_, 0) => Some(&mut []),
        (true, _) => None,
        // SAFETY: non-NULL and writable for len bytes per the contract.
        (false, len) => Some(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) }),
    }
}

/// libfcgi's address syntax (see `BindAddr::parse`); bytes that are not
/// UTF-8 can only be a Unix socket path.
fn bind_addr_of(bytes: &[u8]) -> BindAddr {
    match std::str::from_utf8(bytes) {
        Ok(text) => BindAddr::parse(text),
        Err(_) => BindAddr::Unix(super::init::non_utf8_path(bytes)),
    }
}

/// The allowlist given to `OS_Accept`: NULL or blank allows everyone; a
/// list with no valid address lets nobody in.
fn allowlist(list: Option<&[u8]>) -> Option<Vec<std::net::IpAddr>> {
    let text = String::from_utf8_lossy(list.unwrap_or(b""));
    (!text.trim().is_empty()).then(|| config::parse_addr_list(&text))
}

// ---- library set-up ----------------------------------------------------------

/// Initialises the library like `FCGX_Init`: reads the `LIBFCGI_*`
/// settings and installs libfcgi's signal conventions (an empty SIGPIPE
/// handler, so writes to a vanished peer fail with EPIPE; SIGUSR1 and
/// SIGTERM request a shutdown unless the program handles them itself).
/// `stdioFds` is ignored, as in libfcgi on Unix. Idempotent; returns 0.
///
/// # Safety
/// Always safe to call; `stdio_fds` is never read.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_LibInit(stdio_fds: *mut c_int) -> c_int {
    let _ = stdio_fds;
    ffi_guard!(-1, {
        ensure_init();
        0
    })
}

/// Forgets every pending asynchronous operation. Signal handlers stay.
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_LibShutdown() {
    ffi_guard!((), {
        #[cfg(unix)]
        TABLE.clear();
    })
}

/// Sets the process-wide shutdown flag: accept loops (`OS_Accept`,
/// `FCGX_Accept_r`) stop waiting. Async-signal-safe.
///
/// # Safety
/// Always safe to call, also from a signal handler.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_ShutdownPending() {
    // catch_unwind costs nothing (and calls nothing) unless a panic comes.
    ffi_guard!((), { listen::request_shutdown() })
}

// ---- sockets -----------------------------------------------------------------

/// Creates a listening socket, exactly like `FCGX_OpenSocket`: `":port"`,
/// `"*:port"`, `"host:port"`, `"[v6]:port"`, or else a Unix socket path.
/// Returns the descriptor, or -1 with `errno` set (libfcgi called `exit()`
/// on most failures).
///
/// # Safety
/// `bind_path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_CreateLocalIpcFd(bind_path: *const c_char, backlog: c_int) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: NULL or NUL-terminated per the contract above.
        let Some(bytes) = (unsafe { c_bytes(bind_path) }) else {
            return fail(libc::EINVAL);
        };
        match bind_addr_of(bytes).listen(backlog) {
            Ok(fd) => fd.into_raw_fd(),
            Err(e) => {
                let path = String::from_utf8_lossy(bytes);
                config::log(format_args!("OS_CreateLocalIpcFd({path}): {e}"));
                fail_with(&e)
            }
        }
    })
}

/// Connects to a FastCGI application: `"host:port"` (an empty host, or
/// `*`, means `localhost`; every address of the host is tried) or a Unix
/// socket path. Returns a blocking socket, or -1 with `errno` set (an
/// unknown host gives EADDRNOTAVAIL, a too long path ENAMETOOLONG).
/// Never exits.
///
/// # Safety
/// `bind_path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_FcgiConnect(bind_path: *mut c_char) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: NULL or NUL-terminated per the contract above.
        let Some(bytes) = (unsafe { c_bytes(bind_path) }) else {
            return fail(libc::EINVAL);
        };
        match bind_addr_of(bytes).connect() {
            Ok(fd) => fd.into_raw_fd(),
            Err(e) => fail_with(&e),
        }
    })
}

/// Accepts the next connection on `listen_sock` whose peer is in
/// `webServerAddrs` (comma-separated IPv4/IPv6 addresses; NULL or empty
/// allows every peer; Unix-socket peers are always allowed). Refused
/// peers are closed and the wait goes on. A signal ends the wait only if
/// `fail_on_intr` is non-zero or a shutdown was requested; a few transient
/// errors (ECONNABORTED, ...) are retried. TCP connections get
/// TCP_NODELAY. Returns the new descriptor or -1 with `errno` set.
///
/// # Safety
/// `web_server_addrs` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Accept(
    listen_sock: c_int,
    fail_on_intr: c_int,
    web_server_addrs: *const c_char,
) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: the descriptor the C caller passed for this call; the
        // borrow ends with the call.
        let Some(listen_sock) = (unsafe { borrow(listen_sock) }) else {
            return fail(libc::EBADF);
        };
        // SAFETY: NULL or NUL-terminated per the contract above.
        let list = unsafe { c_bytes(web_server_addrs) };
        let cfg = Config {
            web_server_addrs: allowlist(list),
            ..config::config().clone()
        };
        match listen::accept_connection(listen_sock, fail_on_intr != 0, &cfg) {
            Ok(a) => {
                if let Peer::Ip(_) = a.peer {
                    let _ = sys::set_nodelay(sys::AsFd::as_fd(&a.fd));
                }
                a.fd.into_raw_fd()
            }
            Err(e) => fail_with(&e),
        }
    })
}

/// 1 if `sock` is a socket without a peer (a listening socket handed over
/// by a web server: `getpeername` fails with ENOTCONN), else 0.
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_IsFcgi(sock: c_int) -> c_int {
    ffi_guard!(0, { sys::is_listening_socket(sock) as c_int })
}

/// Adds `flags` (e.g. `O_NONBLOCK`) to the descriptor's status flags. On
/// failure only `errno` is set (libfcgi called `exit()`).
///
/// # Safety
/// Always safe to call; changing the flags of a descriptor some other part
/// of the program uses is the caller's business.
#[unsafe(no_mangle)]
#[cfg(unix)]
pub unsafe extern "C" fn OS_SetFlags(fd: c_int, flags: c_int) {
    ffi_guard!((), {
        // SAFETY: the descriptor the C caller passed for this call; the
        // borrow ends with the call.
        let Some(fd_b) = (unsafe { borrow(fd) }) else {
            sys::set_errno(libc::EBADF);
            return;
        };
        if let Err(e) = sys::add_status_flags(fd_b, flags) {
            config::log(format_args!("OS_SetFlags({fd}, {flags:#x}): {e}"));
            sys::set_errno(e.raw_os_error().unwrap_or(libc::EIO));
        }
    })
}

// ---- plain I/O ---------------------------------------------------------------

/// Reads up to `len` bytes: one `read()`, retried after EINTR (Windows: one
/// `recv()` on the socket). Returns the count, 0 at end of file, or -1 with
/// `errno` set.
///
/// # Safety
/// `buf` is valid for writes of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Read(fd: c_int, buf: *mut c_char, len: usize) -> c_int {
    ffi_guard!(-1, {
        #[cfg(windows)]
        if len == 0 {
            return 0;
        }
        // SAFETY: writable for len bytes per the contract above.
        let Some(buf) = (unsafe { out_buf(buf.cast(), len) }) else {
            return fail(libc::EFAULT);
        };
        // SAFETY: the descriptor the C caller passed for this call; the
        // borrow ends with the call.
        let Some(fd) = (unsafe { borrow(fd) }) else {
            return fail(libc::EBADF);
        };
        count_or_fail(sys::read(fd, buf))
    })
}

/// Writes the `len` bytes at `buf` (all of them on a blocking descriptor;
/// retried after EINTR). Returns the count written, or -1 with `errno` set
/// if nothing could be written (an error after some bytes returns their
/// count; the next call reports it).
///
/// # Safety
/// `buf` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Write(fd: c_int, buf: *mut c_char, len: usize) -> c_int {
    ffi_guard!(-1, {
        #[cfg(windows)]
        if len == 0 {
            return 0;
        }
        // SAFETY: readable for len bytes per the contract above.
        let Some(buf) = (unsafe { in_buf(buf.cast_const().cast(), len) }) else {
            return fail(libc::EFAULT);
        };
        // SAFETY: the descriptor the C caller passed for this call; the
        // borrow ends with the call.
        let Some(fd) = (unsafe { borrow(fd) }) else {
            return fail(libc::EBADF);
        };
        count_or_fail(sys::write_most(fd, buf))
    })
}

// ---- spawning ----------------------------------------------------------------

/// Starts `execPath` as a FastCGI application: forks; the child gets
/// `listenFd` as its fd 0, fds 1 and 2 closed, the same environment, and
/// `argv = {execPath, NULL}`. Returns 0 in the parent (the child is not
/// waited for), or -1 with `errno` set if the path is NULL (EINVAL),
/// `listenFd` is not open (EBADF) or `fork()` fails (libfcgi exited).
///
/// # Safety
/// `exec_path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
#[cfg(unix)]
pub unsafe extern "C" fn OS_SpawnChild(exec_path: *mut c_char, listen_fd: c_int) -> c_int {
    ffi_guard!(-1, {
        if exec_path.is_null() {
            return fail(libc::EINVAL);
        }
        // SAFETY: non-NULL and NUL-terminated per the contract above.
        let path = unsafe { CStr::from_ptr(exec_path) };
        match sys::spawn_fastcgi_child(path, listen_fd) {
            Ok(()) => 0,
            Err(e) => fail_with(&e),
        }
    })
}

// ---- asynchronous I/O ----------------------------------------------------------

/// One pending read or write: the caller's buffer and callback.
///
/// Invariant (the registration contract of `OS_AsyncRead` and
/// `OS_AsyncWrite`): `buf` is valid for writes (a read) or reads (a write)
/// of `len` bytes, and `done` may be called with `client_data`, until the
/// operation is performed or cancelled.
#[cfg(unix)]
struct Op {
    buf: *mut c_void,
    len: usize,
    done: unsafe extern "C" fn(ClientData, c_int),
    client_data: ClientData,
}

// SAFETY: the pointers are the caller's; this module only hands them back
// to the caller's callback or uses `buf` for the I/O the caller asked for,
// from whichever thread calls OS_DoIo (libfcgi had no thread affinity).
#[cfg(unix)]
unsafe impl Send for Op {}

/// The process's pending operations (`OS_AsyncRead` ... `OS_DoIo`).
#[cfg(unix)]
static TABLE: AsyncTable<Op> = AsyncTable::new();

/// Checks a registration's arguments (EINVAL: no callback or a negative
/// length; EFAULT: NULL buffer with a length) and registers it.
#[cfg(unix)]
fn register(
    fd: RawFd,
    dir: Dir,
    buf: *mut c_void,
    len: c_int,
    done: OS_AsyncProc,
    client_data: ClientData,
) -> c_int {
    let make = || {
        let (Some(done), Ok(len)) = (done, usize::try_from(len)) else {
            return Err(libc::EINVAL);
        };
        if buf.is_null() && len > 0 {
            return Err(libc::EFAULT);
        }
        Ok(Op {
            buf,
            len,
            done,
            client_data,
        })
    };
    match TABLE.register(fd, dir, make) {
        Ok(()) => 0,
        Err(code) => fail(code),
    }
}

/// `OS_DoIo`'s part for one ready operation: the read or write (one
/// system call, retried after EINTR; a partial write is reported to the
/// callback, which schedules the rest), then the callback with the result.
/// The operation is given back if the descriptor was not ready after all
/// (EAGAIN on a non-blocking descriptor): it stays pending.
#[cfg(unix)]
fn perform(fd: RawFd, dir: Dir, op: Op) -> Result<(), Op> {
    // Registered descriptors were open, so not negative.
    // SAFETY: the descriptor of an operation still pending: the C caller
    // of OS_AsyncRead/OS_AsyncWrite keeps it open until its callback runs
    // (their # Safety), and the borrow ends before the callback is called.
    let Some(fd_b) = (unsafe { borrow(fd) }) else {
        return Ok(());
    };
    let result = match dir {
        // SAFETY: Op's invariant keeps buf writable for len bytes.
        Dir::Read => sys::read(fd_b, unsafe { out_buf(op.buf, op.len) }.unwrap_or_default()),
        // SAFETY: Op's invariant keeps buf readable for len bytes.
        Dir::Write => sys::write(fd_b, unsafe { in_buf(op.buf, op.len) }.unwrap_or_default()),
    };
    if let Err(e) = &result {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Err(op);
        }
    }
    let result = count_or_fail(result);
    // SAFETY: `done` is the caller's callback of type OS_AsyncProc, called
    // with the data it registered, as libfcgi did (Op's invariant).
    unsafe { (op.done)(op.client_data, result) };
    Ok(())
}

/// Registers a read of up to `len` bytes from standard input (fd 0) into
/// `buf`; `OS_DoIo` performs it when fd 0 is readable and then calls
/// `procPtr(clientData, result)`. Returns 0, or -1 with `errno` set
/// (EALREADY if a read on fd 0 is already pending, EBADF, EINVAL).
///
/// # Safety
/// `buf` stays valid for writes of `len` bytes, and the descriptor stays
/// open, until the callback runs or the operation is cancelled
/// (`OS_Close`, `OS_CloseRead`, `OS_LibShutdown`); `proc_ptr` is NULL or a
/// function of that type.
#[unsafe(no_mangle)]
#[cfg(unix)]
pub unsafe extern "C" fn OS_AsyncReadStdin(
    buf: *mut c_void,
    len: c_int,
    proc_ptr: OS_AsyncProc,
    client_data: ClientData,
) -> c_int {
    ffi_guard!(-1, {
        register(0, Dir::Read, buf, len, proc_ptr, client_data)
    })
}

/// Registers a read of up to `len` bytes from `fd` into `buf` (`offset`
/// is ignored, as in libfcgi); see `OS_AsyncReadStdin`.
///
/// # Safety
/// As for `OS_AsyncReadStdin`.
#[unsafe(no_mangle)]
#[cfg(unix)]
pub unsafe extern "C" fn OS_AsyncRead(
    fd: c_int,
    offset: c_int,
    buf: *mut c_void,
    len: c_int,
    proc_ptr: OS_AsyncProc,
    client_data: ClientData,
) -> c_int {
    let _ = offset;
    ffi_guard!(-1, {
        register(fd, Dir::Read, buf, len, proc_ptr, client_data)
    })
}

/// Registers a write of the `len` bytes at `buf` to `fd` (`offset` is
/// ignored); `OS_DoIo` performs it (one `write()`, which may be partial on
/// a non-blocking descriptor) when `fd` is writable and then calls
/// `procPtr(clientData, result)`. Returns 0 or -1 with `errno` set.
///
/// # Safety
/// `buf` stays valid for reads of `len` bytes, and `fd` stays open, until
/// the callback runs or the operation is cancelled; `proc_ptr` is NULL or a
/// function of that type.
#[unsafe(no_mangle)]
#[cfg(unix)]
pub unsafe extern "C" fn OS_AsyncWrite(
    fd: c_int,
    offset: c_int,
    buf: *mut c_void,
    len: c_int,
    proc_ptr: OS_AsyncProc,
    client_data: ClientData,
) -> c_int {
    let _ = offset;
    ffi_guard!(-1, {
        register(fd, Dir::Write, buf, len, proc_ptr, client_data)
    })
}

/// A `struct timeval`'s fields (whose types vary between targets).
#[cfg(unix)]
#[allow(clippy::useless_conversion)] // they are i64 on 64-bit Linux
fn seconds_and_micros(tv: &libc::timeval) -> (i64, i64) {
    (i64::from(tv.tv_sec), i64::from(tv.tv_usec))
}

/// Waits (with `poll()`) until a descriptor with a pending operation is
/// ready, or `tmo` passes (NULL: no limit), then performs every ready
/// operation and calls its callback with `(clientData, result)`. Callbacks
/// may register and cancel operations. An operation that finds a
/// non-blocking descriptor not ready after all (EAGAIN) stays pending
/// without a callback. With nothing pending and no timeout it waits for a
/// signal, as libfcgi's `select()` did. Returns 0 (also when a signal
/// interrupted the wait), or -1 with `errno` set if `poll()` fails or `tmo`
/// is invalid (libfcgi called `exit()`).
///
/// # Safety
/// `tmo` is NULL or points to a readable `struct timeval`; the buffers and
/// callbacks of the pending operations are valid (see `OS_AsyncRead`).
#[unsafe(no_mangle)]
#[cfg(unix)]
pub unsafe extern "C" fn OS_DoIo(tmo: *mut libc::timeval) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: NULL or a readable timeval per the contract above.
        let tv = unsafe { tmo.as_ref() }.map(seconds_and_micros);
        let timeout = match asyncio::timeout_ms(tv) {
            Ok(t) => t,
            Err(code) => return fail(code),
        };
        match TABLE.run(timeout, perform) {
            Ok(()) => 0,
            Err(e) => fail_with(&e),
        }
    })
}

// ---- closing -----------------------------------------------------------------

/// Closes `fd` (-1 is accepted and ignored: returns 0). Pending
/// asynchronous operations on it are cancelled. With `shutdown` non-zero,
/// a connected socket is first half-closed and drained (see the module
/// notes) so the peer does not get a reset while it reads our last bytes.
/// Returns 0 or -1 with `errno` set.
///
/// # Safety
/// `fd` is -1 or a descriptor the caller owns and no longer uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Close(fd: c_int, shutdown: c_int) -> c_int {
    ffi_guard!(-1, {
        if fd == -1 {
            return 0;
        }
        // SAFETY: the descriptor the C caller passed for this call; the
        // borrow ends with the call.
        let Some(fd_b) = (unsafe { borrow(fd) }) else {
            return fail(libc::EBADF);
        };
        #[cfg(unix)]
        TABLE.cancel(fd, None);
        if shutdown != 0 {
            linger::drain_now(fd_b);
        }
        // SAFETY: the caller hands the descriptor over per the contract
        // above; nothing in this library holds it.
        match unsafe { sys::close(fd) } {
            Ok(()) => 0,
            Err(e) => fail_with(&e),
        }
    })
}

/// The same as `OS_Close`.
///
/// # Safety
/// As for `OS_Close`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_IpcClose(ipc_fd: c_int, shutdown: c_int) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: same contract as OS_Close.
        unsafe { OS_Close(ipc_fd, shutdown) }
    })
}

/// Cancels a pending asynchronous read on `fd` and shuts down its reading
/// side (`shutdown(SHUT_RD)`). Returns 0 or -1 with `errno` set.
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_CloseRead(fd: c_int) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: the descriptor the C caller passed for this call; the
        // borrow ends with the call.
        let Some(fd_b) = (unsafe { borrow(fd) }) else {
            return fail(libc::EBADF);
        };
        #[cfg(unix)]
        TABLE.cancel(fd, Some(Dir::Read));
        match sys::shutdown_read(fd_b) {
            Ok(()) => 0,
            Err(e) => fail_with(&e),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_parsing() {
        let allows = |list: Option<&[u8]>, ip: &str| {
            let cfg = Config {
                web_server_addrs: allowlist(list),
                ..config::config().clone()
            };
            cfg.allows(ip.parse().unwrap())
        };
        assert!(allows(None, "10.1.1.1"));
        assert!(allows(Some(b" "), "10.1.1.1"));
        assert!(allows(Some(b"127.0.0.1,10.0.0.2"), "127.0.0.1"));
        assert!(allows(Some(b"127.0.0.1,10.0.0.2"), "10.0.0.2"));
        assert!(!allows(Some(b"127.0.0.1,10.0.0.2"), "10.0.0.3"));
        assert!(!allows(Some(b"bogus"), "127.0.0.1"));
    }

    #[test]
    fn buffers() {
        let mut data = [1u8, 2, 3];
        // SAFETY: NULL, or a live array of 3 bytes.
        unsafe {
            assert_eq!(in_buf(std::ptr::null(), 0), Some(&[][..]));
            assert_eq!(in_buf(std::ptr::null(), 5), None);
            assert_eq!(in_buf(data.as_ptr().cast(), 2), Some(&[1u8, 2][..]));
            assert_eq!(out_buf(std::ptr::null_mut(), 1), None);
            assert_eq!(
                out_buf(data.as_mut_ptr().cast(), 3).map(|b| b.len()),
                Some(3)
            );
        }
    }
}
