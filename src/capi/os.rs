//! The OS layer of libfcgi (`fcgios.h`): the 18 `OS_*` functions. Few
//! programs call them directly; Debian's `cgi-fcgi` bridge is the main one
//! (connect, spawn, and an event loop of asynchronous reads and writes).
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
use crate::server::config::{self, Config};
use crate::server::listen::{self, BindAddr};
use crate::sys::{self, IntoRawFd, OwnedFd, Peer, RawFd};
#[cfg(unix)]
use std::collections::BTreeMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::net::{SocketAddr, ToSocketAddrs};
#[cfg(unix)]
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// `ClientData` of `fcgios.h`: the caller's pointer, handed back untouched.
pub type ClientData = *mut c_void;

/// `OS_AsyncProc`: called by `OS_DoIo` with the caller's data and the
/// result of the read or write (a byte count, 0 at end of file, or -1 with
/// `errno` set).
#[allow(non_camel_case_types)]
pub type OS_AsyncProc = Option<unsafe extern "C" fn(ClientData, c_int)>;

// ---- helpers ---------------------------------------------------------------

/// Sets `errno` and returns -1.
fn fail(code: i32) -> c_int {
    sys::set_errno(code);
    -1
}

fn fail_with(e: &std::io::Error) -> c_int {
    fail(e.raw_os_error().unwrap_or(libc::EIO))
}

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

/// libfcgi's address syntax (see `BindAddr::parse`); bytes that are not
/// UTF-8 can only be a Unix socket path.
fn bind_addr_of(bytes: &[u8]) -> BindAddr {
    match std::str::from_utf8(bytes) {
        Ok(text) => BindAddr::parse(text),
        Err(_) => BindAddr::Unix(super::init::non_utf8_path(bytes)),
    }
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
        table().clear();
    })
}

/// Sets the process-wide shutdown flag: accept loops (`OS_Accept`,
/// `FCGX_Accept_r`) stop waiting. Async-signal-safe.
///
/// # Safety
/// Always safe to call, also from a signal handler.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_ShutdownPending() {
    listen::request_shutdown();
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
                config::log(format_args!(
                    "OS_CreateLocalIpcFd({}): {e}",
                    String::from_utf8_lossy(bytes)
                ));
                fail_with(&e)
            }
        }
    })
}

/// Connects every address `host` resolves to in turn; the first that
/// answers wins.
fn connect_tcp(host: &str, port: u16) -> std::io::Result<OwnedFd> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL))?
        .collect();
    let mut last = std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
    for addr in addrs {
        match sys::tcp_connect(addr) {
            Ok(fd) => return Ok(fd),
            Err(e) => last = e,
        }
    }
    Err(last)
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
        let result = match bind_addr_of(bytes) {
            BindAddr::Tcp { host, port } => {
                connect_tcp(host.as_deref().unwrap_or("localhost"), port)
            }
            BindAddr::Unix(path) => sys::unix_connect(&path),
        };
        match result {
            Ok(fd) => fd.into_raw_fd(),
            Err(e) => fail_with(&e),
        }
    })
}

/// The allowlist given to `OS_Accept`: NULL or blank allows everyone; a
/// list with no valid address lets nobody in.
fn allowlist(list: Option<&[u8]>) -> Option<Vec<std::net::IpAddr>> {
    let text = String::from_utf8_lossy(list.unwrap_or(b""));
    (!text.trim().is_empty()).then(|| config::parse_addr_list(&text))
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
        if listen_sock < 0 {
            return fail(libc::EBADF);
        }
        // SAFETY: NULL or NUL-terminated per the contract above.
        let cfg = Config {
            web_server_addrs: allowlist(unsafe { c_bytes(web_server_addrs) }),
            ..config::config().clone()
        };
        match listen::accept_connection(sys::borrow_fd(listen_sock), fail_on_intr != 0, &cfg) {
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
        if fd < 0 {
            sys::set_errno(libc::EBADF);
            return;
        }
        if let Err(e) = sys::add_status_flags(sys::borrow_fd(fd), flags) {
            config::log(format_args!("OS_SetFlags({fd}, {flags:#x}): {e}"));
            sys::set_errno(e.raw_os_error().unwrap_or(libc::EIO));
        }
    })
}

// ---- plain I/O ---------------------------------------------------------------

/// The largest count one call reports (the result is an `int`).
#[cfg(unix)]
const MAX_IO: usize = c_int::MAX as usize;

/// One `read()`, retried after EINTR.
///
/// # Safety
/// `buf` is valid for writes of `len` bytes (or `len` is 0).
#[cfg(unix)]
unsafe fn read_raw(fd: RawFd, buf: *mut c_void, len: usize) -> c_int {
    loop {
        // SAFETY: buf is writable for len bytes per this function's contract.
        let r = unsafe { libc::read(fd, buf, len.min(MAX_IO)) };
        if r < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        return r as c_int;
    }
}

/// `write()` until all of `buf` is written, retrying after EINTR. An error
/// after some bytes returns their count (the error is reported by the next
/// call); an error before any byte returns -1 with `errno` set.
///
/// # Safety
/// `buf` is valid for reads of `len` bytes (or `len` is 0).
#[cfg(unix)]
unsafe fn write_raw(fd: RawFd, buf: *const c_void, len: usize) -> c_int {
    let len = len.min(MAX_IO);
    let mut done = 0usize;
    loop {
        // SAFETY: done <= len, so the range [buf+done, buf+len) lies inside
        // the readable buffer given by this function's contract.
        let r = unsafe { libc::write(fd, buf.byte_add(done), len - done) };
        if r < 0 {
            if sys::errno() == libc::EINTR {
                continue;
            }
            return if done > 0 { done as c_int } else { -1 };
        }
        done += r as usize;
        if r == 0 || done >= len {
            return done as c_int;
        }
    }
}

/// Reads up to `len` bytes (a single `read()`, retried after EINTR).
/// Returns the count, 0 at end of file, or -1 with `errno` set.
///
/// # Safety
/// `buf` is valid for writes of `len` bytes.
#[unsafe(no_mangle)]
#[cfg(unix)]
pub unsafe extern "C" fn OS_Read(fd: c_int, buf: *mut c_char, len: usize) -> c_int {
    ffi_guard!(-1, {
        if buf.is_null() && len > 0 {
            return fail(libc::EFAULT);
        }
        // SAFETY: writable for len bytes per the contract above.
        unsafe { read_raw(fd, buf.cast(), len) }
    })
}

/// Writes the `len` bytes at `buf` (all of them on a blocking descriptor;
/// retried after EINTR). Returns the count written, or -1 with `errno` set
/// if nothing could be written.
///
/// # Safety
/// `buf` is valid for reads of `len` bytes.
#[unsafe(no_mangle)]
#[cfg(unix)]
pub unsafe extern "C" fn OS_Write(fd: c_int, buf: *mut c_char, len: usize) -> c_int {
    ffi_guard!(-1, {
        if buf.is_null() && len > 0 {
            return fail(libc::EFAULT);
        }
        // SAFETY: readable for len bytes per the contract above.
        unsafe { write_raw(fd, buf.cast_const().cast(), len) }
    })
}

/// Reads up to `len` bytes from the socket `fd` (one `recv()`). Returns
/// the count, 0 at end of file, or -1 with `errno` set.
///
/// # Safety
/// `buf` is valid for writes of `len` bytes.
#[cfg(windows)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Read(fd: c_int, buf: *mut c_char, len: usize) -> c_int {
    ffi_guard!(-1, {
        if len == 0 {
            return 0;
        }
        if buf.is_null() {
            return fail(libc::EFAULT);
        }
        // SAFETY: writable for len bytes per the contract above.
        let buf = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), len) };
        let len = len.min(c_int::MAX as usize);
        match sys::read(sys::borrow_fd(fd), &mut buf[..len]) {
            Ok(n) => n as c_int,
            Err(e) => fail_with(&e),
        }
    })
}

/// Writes the `len` bytes at `buf` to the socket `fd` (all of them: the
/// socket is blocking). Returns the count, or -1 with `errno` set.
///
/// # Safety
/// `buf` is valid for reads of `len` bytes.
#[cfg(windows)]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_Write(fd: c_int, buf: *mut c_char, len: usize) -> c_int {
    ffi_guard!(-1, {
        if len == 0 {
            return 0;
        }
        if buf.is_null() {
            return fail(libc::EFAULT);
        }
        let len = len.min(c_int::MAX as usize);
        // SAFETY: readable for len bytes per the contract above.
        let buf = unsafe { std::slice::from_raw_parts(buf.cast_const().cast::<u8>(), len) };
        match sys::write_all(sys::borrow_fd(fd), buf) {
            Ok(()) => len as c_int,
            Err(e) => fail_with(&e),
        }
    })
}

// ---- spawning ----------------------------------------------------------------

/// The child's side of `OS_SpawnChild`: puts the listening socket on fd 0,
/// closes fds 1 and 2 (the FastCGI convention), and runs the program. Only
/// async-signal-safe calls: this runs between `fork()` and `exec()` in a
/// copy of a possibly multi-threaded process.
///
/// # Safety
/// Called only in a freshly forked child; `argv` is `[path, NULL]` with
/// `path` a NUL-terminated string.
#[cfg(unix)]
unsafe fn exec_child(argv: &[*const c_char; 2], listen_fd: RawFd) -> ! {
    // SAFETY: each call is an async-signal-safe system call on plain
    // integers or on argv, which the parent built before fork().
    unsafe {
        if listen_fd != 0 {
            if libc::dup2(listen_fd, 0) < 0 {
                libc::_exit(exit_code(*libc::__errno_location()));
            }
            libc::close(listen_fd);
        } else {
            // Make sure the socket survives exec.
            libc::fcntl(0, libc::F_SETFD, 0);
        }
        if listen_fd != 1 {
            libc::close(1);
        }
        if listen_fd != 2 {
            libc::close(2);
        }
        libc::execv(argv[0], argv.as_ptr());
        libc::_exit(exit_code(*libc::__errno_location()))
    }
}

/// The child's exit status when exec fails: errno, as libfcgi did.
#[cfg(unix)]
fn exit_code(errno: c_int) -> c_int {
    match errno & 0xff {
        0 => 127,
        e => e,
    }
}

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
        if !sys::is_open(listen_fd) {
            return fail(libc::EBADF);
        }
        let argv: [*const c_char; 2] = [exec_path.cast_const(), std::ptr::null()];
        // SAFETY: fork() itself is safe to call; the child runs only
        // exec_child, which makes async-signal-safe calls and never returns.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: we are the freshly forked child; argv is {path, NULL}
            // with path NUL-terminated per the contract above.
            unsafe { exec_child(&argv, listen_fd) }
        }
        if pid < 0 { -1 } else { 0 }
    })
}

// ---- asynchronous I/O ----------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg(unix)]
enum Dir {
    Read,
    Write,
}

/// One pending read or write.
#[cfg(unix)]
struct Op {
    buf: *mut c_void,
    len: usize,
    done: unsafe extern "C" fn(ClientData, c_int),
    client_data: ClientData,
    /// Its descriptor was reported ready; `OS_DoIo` performs it now.
    posted: bool,
}

// SAFETY: the pointers are the caller's; this module only hands them back
// to the caller's callback or uses `buf` for the I/O the caller asked for,
// from whichever thread calls OS_DoIo (libfcgi had no thread affinity).
#[cfg(unix)]
unsafe impl Send for Op {}

/// Most operations pending at once. Registration also requires an open
/// descriptor and allows one read and one write per descriptor, so the
/// real bound is twice the number of open descriptors.
#[cfg(unix)]
const MAX_PENDING: usize = 1 << 20;

#[cfg(unix)]
type Table = BTreeMap<(RawFd, Dir), Op>;

#[cfg(unix)]
static TABLE: Mutex<Table> = Mutex::new(BTreeMap::new());

#[cfg(unix)]
fn table() -> MutexGuard<'static, Table> {
    // The table stays consistent even if a holder panicked: every change is
    // a single insert or remove.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(unix)]
fn register(
    fd: RawFd,
    dir: Dir,
    buf: *mut c_void,
    len: c_int,
    done: OS_AsyncProc,
    client_data: ClientData,
) -> c_int {
    if !sys::is_open(fd) {
        return fail(libc::EBADF);
    }
    let (Some(done), Ok(len)) = (done, usize::try_from(len)) else {
        return fail(libc::EINVAL);
    };
    if buf.is_null() && len > 0 {
        return fail(libc::EFAULT);
    }
    let mut t = table();
    if t.contains_key(&(fd, dir)) {
        return fail(libc::EALREADY);
    }
    if t.len() >= MAX_PENDING {
        return fail(libc::ENOMEM);
    }
    t.insert(
        (fd, dir),
        Op {
            buf,
            len,
            done,
            client_data,
            posted: false,
        },
    );
    0
}

/// Forgets the pending operations on `fd` (one direction, or both).
#[cfg(unix)]
fn cancel(fd: RawFd, only: Option<Dir>) {
    let mut t = table();
    for dir in [Dir::Read, Dir::Write] {
        if only.is_none_or(|d| d == dir) {
            t.remove(&(fd, dir));
        }
    }
}

/// Registers a read of up to `len` bytes from standard input (fd 0) into
/// `buf`; `OS_DoIo` performs it when fd 0 is readable and then calls
/// `procPtr(clientData, result)`. Returns 0, or -1 with `errno` set
/// (EALREADY if a read on fd 0 is already pending, EBADF, EINVAL).
///
/// # Safety
/// `buf` stays valid for writes of `len` bytes until the callback runs or
/// the operation is cancelled (`OS_Close`, `OS_CloseRead`,
/// `OS_LibShutdown`); `proc_ptr` is NULL or a function of that type.
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
/// `buf` stays valid for reads of `len` bytes until the callback runs or
/// the operation is cancelled; `proc_ptr` is NULL or a function of that type.
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

/// The poll timeout for a `struct timeval *` (NULL: wait forever).
///
/// # Safety
/// `tmo` is NULL or points to a readable `struct timeval`.
#[cfg(unix)]
unsafe fn timeout_ms(tmo: *const libc::timeval) -> Result<c_int, i32> {
    // SAFETY: NULL or a readable timeval per this function's contract.
    let Some(tv) = (unsafe { tmo.as_ref() }) else {
        return Ok(-1);
    };
    if tv.tv_sec < 0 || !(0..1_000_000).contains(&tv.tv_usec) {
        return Err(libc::EINVAL);
    }
    // tv_usec < 10^6 here, so adding 999 cannot overflow.
    let ms = tv
        .tv_sec
        .saturating_mul(1000)
        .saturating_add((tv.tv_usec + 999) / 1000);
    Ok(ms.min(c_int::MAX as libc::time_t) as c_int)
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
        let timeout = match unsafe { timeout_ms(tmo) } {
            Ok(t) => t,
            Err(code) => return fail(code),
        };
        // Operations left posted by a callback that never returned (a
        // longjmp) are performed first, without waiting.
        let leftover = table().values().any(|op| op.posted);
        if !leftover {
            let mut pfds: Vec<libc::pollfd> = Vec::new();
            for (&(fd, dir), _) in table().iter() {
                let events = match dir {
                    Dir::Read => libc::POLLIN,
                    Dir::Write => libc::POLLOUT,
                };
                match pfds.last_mut() {
                    Some(p) if p.fd == fd => p.events |= events,
                    _ => pfds.push(libc::pollfd {
                        fd,
                        events,
                        revents: 0,
                    }),
                }
            }
            match sys::poll_fds(&mut pfds, timeout) {
                Ok(0) => return 0,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => return 0,
                Err(e) => return fail_with(&e),
            }
            let mut t = table();
            for p in pfds.iter().filter(|p| p.revents != 0) {
                // Errors and hang-ups complete both directions: the read or
                // write reports them (as select() would have).
                let broken = p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
                for (dir, ready) in [
                    (Dir::Read, broken || p.revents & libc::POLLIN != 0),
                    (Dir::Write, broken || p.revents & libc::POLLOUT != 0),
                ] {
                    if let (true, Some(op)) = (ready, t.get_mut(&(p.fd, dir))) {
                        op.posted = true;
                    }
                }
            }
        }
        let posted: Vec<(RawFd, Dir)> = table()
            .iter()
            .filter(|(_, op)| op.posted)
            .map(|(k, _)| *k)
            .collect();
        for key in posted {
            // Taken out before the callback runs: the callback may register
            // the next operation on the same descriptor, or cancel others.
            let op = {
                let mut t = table();
                match t.get(&key) {
                    Some(op) if op.posted => t.remove(&key),
                    _ => None,
                }
            };
            let Some(mut op) = op else { continue };
            let (fd, dir) = key;
            let result = match dir {
                // SAFETY: the registration contract keeps buf writable for len bytes.
                Dir::Read => unsafe { read_raw(fd, op.buf, op.len) },
                // SAFETY: the registration contract keeps buf readable for len bytes.
                Dir::Write => unsafe { write_raw_once(fd, op.buf, op.len) },
            };
            let code = if result < 0 { sys::errno() } else { 0 };
            if result < 0 && (code == libc::EAGAIN || code == libc::EWOULDBLOCK) {
                op.posted = false;
                table().entry(key).or_insert(op);
                continue;
            }
            if result < 0 {
                sys::set_errno(code);
            }
            // SAFETY: `done` is the caller's callback of type OS_AsyncProc,
            // called with the data it registered, as libfcgi did.
            unsafe { (op.done)(op.client_data, result) };
        }
        0
    })
}

/// One `write()` for `OS_DoIo` (retried after EINTR): a partial write is
/// reported to the callback, which schedules the rest.
///
/// # Safety
/// `buf` is valid for reads of `len` bytes (or `len` is 0).
#[cfg(unix)]
unsafe fn write_raw_once(fd: RawFd, buf: *const c_void, len: usize) -> c_int {
    loop {
        // SAFETY: buf is readable for len bytes per this function's contract.
        let r = unsafe { libc::write(fd, buf, len.min(MAX_IO)) };
        if r < 0 && sys::errno() == libc::EINTR {
            continue;
        }
        return r as c_int;
    }
}

// ---- closing -----------------------------------------------------------------

/// Half-closes `fd` and reads and discards what the peer still sends, until
/// it closes or the close timeout (`LIBFCGI_OS_CLOSE_POLL_TIMEOUT` ms in
/// total) passes. Nothing happens if `fd` is not a connected socket.
fn drain(fd: RawFd) {
    let b = sys::borrow_fd(fd);
    if sys::shutdown_write(b).is_err() {
        return;
    }
    let timeout = Duration::from_millis(config::config().close_timeout_ms.max(0) as u64);
    let deadline = Instant::now() + timeout;
    let mut scratch = [0u8; 4096];
    loop {
        match sys::read_nonblocking(b, &mut scratch) {
            Ok(Some(0)) | Err(_) => return,
            Ok(Some(_)) => {
                if Instant::now() >= deadline {
                    return;
                }
                continue;
            }
            Ok(None) => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let ms = left.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int;
        #[cfg(windows)]
        match sys::poll_readable(&[fd], ms.max(1)) {
            Ok(r) if r[0] => {}
            _ => return,
        }
        #[cfg(unix)]
        let mut p = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        #[cfg(unix)]
        match sys::poll_fds(&mut p, ms.max(1)) {
            Ok(n) if n > 0 => {}
            Ok(_) => return,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(_) => return,
        }
    }
}

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
        if fd < 0 {
            return fail(libc::EBADF);
        }
        #[cfg(unix)]
        cancel(fd, None);
        if shutdown != 0 {
            drain(fd);
        }
        #[cfg(windows)]
        let r = match sys::close(fd) {
            Ok(()) => 0,
            Err(e) => fail_with(&e),
        };
        #[cfg(unix)]
        let r = {
            // SAFETY: the caller hands the descriptor over per the contract;
            // nothing in this library holds it.
            let r = unsafe { libc::close(fd) };
            // Linux releases the descriptor even when close() reports EINTR.
            if r < 0 && sys::errno() == libc::EINTR {
                0
            } else {
                r
            }
        };
        r
    })
}

/// The same as `OS_Close`.
///
/// # Safety
/// As for `OS_Close`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_IpcClose(ipc_fd: c_int, shutdown: c_int) -> c_int {
    // SAFETY: same contract as OS_Close.
    unsafe { OS_Close(ipc_fd, shutdown) }
}

/// Cancels a pending asynchronous read on `fd` and shuts down its reading
/// side (`shutdown(SHUT_RD)`). Returns 0 or -1 with `errno` set.
///
/// # Safety
/// Always safe to call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OS_CloseRead(fd: c_int) -> c_int {
    ffi_guard!(-1, {
        if fd < 0 {
            return fail(libc::EBADF);
        }
        #[cfg(unix)]
        cancel(fd, Some(Dir::Read));
        match sys::shutdown_read(sys::borrow_fd(fd)) {
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
    fn timeval_conversion() {
        let tv = |s, u| libc::timeval {
            tv_sec: s,
            tv_usec: u,
        };
        // SAFETY: pointers to live timevals, or NULL.
        unsafe {
            assert_eq!(timeout_ms(std::ptr::null()), Ok(-1));
            assert_eq!(timeout_ms(&tv(1, 1)), Ok(1001));
            assert_eq!(timeout_ms(&tv(0, 0)), Ok(0));
            assert_eq!(timeout_ms(&tv(-1, 0)), Err(libc::EINVAL));
            assert_eq!(timeout_ms(&tv(0, 1_000_000)), Err(libc::EINVAL));
            assert_eq!(timeout_ms(&tv(i64::MAX, 0)), Ok(c_int::MAX));
        }
    }
}
