//! The system calls on Windows: Winsock 2 through `windows-sys`.
//!
//! Sockets are `SOCKET` handles. The C ABI carries them as `int`
//! (`FCGX_Request.ipcFd`, `listen_sock`, the result of `FCGX_OpenSocket`),
//! as libfcgi's Windows build did: the handle value is stored truncated to
//! 32 bits and sign-extended back. Windows keeps handle values within 32
//! bits (the documented rule that lets 32- and 64-bit processes share
//! handles), and a socket whose value would not survive the round trip is
//! closed and reported as WSAEMFILE instead of being handed out. The `int`
//! 0 stands for the process's standard input handle (libfcgi's "fd 0"
//! convention: a web server passes the listening socket as stdin); no
//! socket handle is ever 0.
//!
//! Error numbers are Windows Sockets codes (`WSAECONNRESET`, ...), as
//! `WSAGetLastError` gives them; `set_errno` stores a code both in the C
//! runtime's `errno` and with `WSASetLastError`.
//!
//! There are no signals: `signal_thread` does nothing, and a thread
//! waiting in [`accept_unless`] looks at the shutdown flag every
//! [`ACCEPT_POLL_MS`] ms instead of being interrupted.
//!
//! Each `unsafe` block is one Winsock or C runtime call on arguments this
//! module checked or built itself.

use super::{Peer, advance};
use std::ffi::c_int;
use std::io::{self, IoSlice};
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::windows::io::{
    AsRawSocket, AsSocket, BorrowedSocket, FromRawSocket, IntoRawSocket, OwnedSocket, RawSocket,
};
use std::path::Path;
use std::sync::Once;
use windows_sys::Win32::Networking::WinSock as ws;
use windows_sys::Win32::System::Console::{GetStdHandle, STD_INPUT_HANDLE};

/// A socket as the C ABI sees it: an `int`.
pub type RawFd = i32;
/// An owned socket, closed (`closesocket`) on drop.
pub type OwnedFd = OwnedSocket;
/// A socket borrowed for the duration of a call.
pub type BorrowedFd<'a> = BorrowedSocket<'a>;

/// `as_fd()` for sockets, so the engine reads the same on every platform.
pub trait AsFd {
    fn as_fd(&self) -> BorrowedFd<'_>;
}

impl<T: AsSocket + ?Sized> AsFd for T {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.as_socket()
    }
}

/// The socket as the C ABI's `int` (see the module notes).
pub trait AsRawFd {
    fn as_raw_fd(&self) -> RawFd;
}

impl<T: AsRawSocket + ?Sized> AsRawFd for T {
    fn as_raw_fd(&self) -> RawFd {
        self.as_raw_socket() as u32 as RawFd
    }
}

/// Gives up ownership, returning the C ABI's `int`.
pub trait IntoRawFd {
    fn into_raw_fd(self) -> RawFd;
}

impl IntoRawFd for OwnedSocket {
    fn into_raw_fd(self) -> RawFd {
        self.into_raw_socket() as u32 as RawFd
    }
}

/// The error numbers the engine reports itself (Winsock codes here).
pub mod code {
    use windows_sys::Win32::Networking::WinSock as ws;
    pub const EINTR: i32 = ws::WSAEINTR;
    pub const EBADF: i32 = ws::WSAENOTSOCK;
    /// No Winsock code means "I/O error"; the C runtime's EIO.
    pub const EIO: i32 = libc::EIO;
    pub const EINVAL: i32 = ws::WSAEINVAL;
    pub const EADDRNOTAVAIL: i32 = ws::WSAEADDRNOTAVAIL;
    pub const ETIMEDOUT: i32 = ws::WSAETIMEDOUT;
    /// What this platform cannot do (waiting without a thread: Linux only).
    pub const UNSUPPORTED: i32 = ws::WSAEOPNOTSUPP;
    /// Errors after which `accept()` is simply tried again.
    pub const TRANSIENT_ACCEPT: &[i32] = &[
        ws::WSAECONNABORTED,
        ws::WSAECONNRESET,
        ws::WSAETIMEDOUT,
        ws::WSAEHOSTUNREACH,
        ws::WSAENETUNREACH,
    ];
}

/// How often a thread waiting for a connection looks at the shutdown flag.
pub const ACCEPT_POLL_MS: i32 = 200;

static WSA_INIT: Once = Once::new();

/// Starts Winsock 2.2 once per process (every function below needs it;
/// a socket inherited as stdin does not start it for us).
fn init() {
    WSA_INIT.call_once(|| {
        // SAFETY: data is a writable WSADATA; WSAStartup fills it.
        unsafe {
            let mut data: ws::WSADATA = zeroed();
            ws::WSAStartup(0x0202, &mut data);
        }
    });
}

fn last_error() -> io::Error {
    // SAFETY: reads this thread's last Winsock error.
    io::Error::from_raw_os_error(unsafe { ws::WSAGetLastError() })
}

fn cvt(ret: i32) -> io::Result<i32> {
    if ret == ws::SOCKET_ERROR {
        Err(last_error())
    } else {
        Ok(ret)
    }
}

/// The `SOCKET` an `int` from the C ABI stands for: 0 is the standard
/// input handle, anything else a handle value sign-extended back. Never
/// `INVALID_SOCKET` (that becomes 0, which no socket is, so calls on it
/// fail with WSAENOTSOCK).
fn socket_of(fd: RawFd) -> ws::SOCKET {
    let s = if fd == 0 {
        // SAFETY: GetStdHandle only reads the process parameters.
        unsafe { GetStdHandle(STD_INPUT_HANDLE) as usize }
    } else {
        fd as isize as usize
    };
    if s == ws::INVALID_SOCKET { 0 } else { s }
}

/// Takes ownership of a new socket, or closes it and fails if its handle
/// value cannot travel through the C ABI's `int` (as a positive number).
fn own(s: ws::SOCKET) -> io::Result<OwnedSocket> {
    if s == ws::INVALID_SOCKET {
        return Err(last_error());
    }
    // SAFETY: s is a new socket that nothing else owns.
    let owned = unsafe { OwnedSocket::from_raw_socket(s as RawSocket) };
    if s == 0 || s > i32::MAX as usize {
        return Err(io::Error::from_raw_os_error(ws::WSAEMFILE));
    }
    Ok(owned)
}

unsafe extern "C" {
    /// The C runtime's `errno` slot for this thread (msvcrt).
    fn _errno() -> *mut c_int;
}

/// Sets the calling thread's `errno` and Winsock last error.
pub fn set_errno(code: i32) {
    // SAFETY: _errno returns this thread's errno slot, always valid.
    unsafe {
        *_errno() = code;
        ws::WSASetLastError(code);
    }
}

/// The calling thread's C runtime `errno`.
pub fn errno() -> i32 {
    // SAFETY: _errno returns this thread's errno slot, always valid.
    unsafe { *_errno() }
}

/// The calling thread's id.
pub fn gettid() -> i32 {
    // SAFETY: cannot fail.
    unsafe { windows_sys::Win32::System::Threading::GetCurrentThreadId() as i32 }
}

/// Windows has no signals to interrupt a thread with: does nothing (a
/// waiting thread notices a shutdown through [`accept_unless`]).
pub fn signal_thread(_tid: i32, _sig: i32) {}

/// Windows has no `fork()`: nothing to register.
pub fn on_fork_child(_handler: extern "C" fn()) {}

/// This process's id.
pub fn getpid() -> i32 {
    std::process::id() as i32
}

/// Borrows a socket given as the C ABI's `int`.
///
/// # Safety
/// The socket stays open, the same socket, for all of `'a` (the C
/// caller's promise for the call that passed it): a `BorrowedSocket`
/// asserts that, and safe code may rely on it.
pub unsafe fn borrow_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: socket_of never returns INVALID_SOCKET, and the caller
    // promises the socket stays open for 'a (BorrowedSocket's contract).
    unsafe { BorrowedSocket::borrow_raw(socket_of(fd) as RawSocket) }
}

fn raw(fd: BorrowedFd<'_>) -> ws::SOCKET {
    fd.as_raw_socket() as ws::SOCKET
}

/// Reads into `buf`. `Ok(0)` is end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    init();
    let len = buf.len().min(i32::MAX as usize) as i32;
    // SAFETY: buf is a valid writable region of at least len bytes.
    let r = unsafe { ws::recv(raw(fd), buf.as_mut_ptr(), len, 0) };
    cvt(r).map(|n| n as usize)
}

/// As [`read`]: Windows has no signals to interrupt a read.
pub fn read_interruptible(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    read(fd, buf)
}

/// Waits up to `timeout_ms` (-1: forever) for `events` on one socket;
/// returns the events that occurred (0 on timeout).
fn poll_one(fd: BorrowedFd<'_>, events: i16, timeout_ms: i32) -> io::Result<i16> {
    let mut p = ws::WSAPOLLFD {
        fd: raw(fd),
        events,
        revents: 0,
    };
    // SAFETY: p is one valid WSAPOLLFD.
    let r = unsafe { ws::WSAPoll(&mut p, 1, timeout_ms) };
    cvt(r)?;
    Ok(p.revents)
}

/// Waits up to `timeout_ms` for one socket to become readable (for a
/// listening socket: a connection is waiting), with `select()`: under
/// wine 8, `WSAPoll` fails with WSAENOTSOCK on a socket inherited as
/// stdin, `select` works (and is what libfcgi's Windows accept used).
fn wait_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut fd_array = [0; 64];
    fd_array[0] = raw(fd);
    let mut set = ws::FD_SET {
        fd_count: 1,
        fd_array,
    };
    let tv = ws::TIMEVAL {
        tv_sec: timeout_ms / 1000,
        tv_usec: timeout_ms % 1000 * 1000,
    };
    // SAFETY: set holds one socket and tv is a valid timeout; select
    // only writes the set.
    let r = unsafe { ws::select(0, &mut set, std::ptr::null_mut(), std::ptr::null_mut(), &tv) };
    Ok(cvt(r)? > 0)
}

/// Reads without blocking: `Ok(None)` when nothing is available now.
pub fn read_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    init();
    if poll_one(fd, ws::POLLRDNORM, 0)? == 0 {
        return Ok(None);
    }
    // Readable (data, end of file or an error): recv does not block.
    read(fd, buf).map(Some)
}

/// Writes every byte of `bufs`, gathered (`WSASend`). Windows raises no
/// signal for a vanished peer: the write fails with WSAECONNRESET.
pub fn write_all_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<()> {
    init();
    super::with_non_empty(bufs, |bufs| write_slices(fd, bufs))
}

fn write_slices(fd: BorrowedFd<'_>, bufs: &mut [&[u8]]) -> io::Result<()> {
    const MAX_BUFS: usize = 1024;
    const STACK_BUFS: usize = 8;
    let wsabuf = |b: &&[u8]| ws::WSABUF {
        len: b.len().min(u32::MAX as usize) as u32,
        buf: b.as_ptr().cast_mut(),
    };
    let mut first = 0;
    while first < bufs.len() {
        let batch = &bufs[first..bufs.len().min(first + MAX_BUFS)];
        let mut stack = [ws::WSABUF {
            len: 0,
            buf: std::ptr::null_mut(),
        }; STACK_BUFS];
        let heap: Vec<ws::WSABUF>;
        let wsabufs: &[ws::WSABUF] = if batch.len() <= STACK_BUFS {
            for (slot, b) in stack.iter_mut().zip(batch) {
                *slot = wsabuf(b);
            }
            &stack[..batch.len()]
        } else {
            heap = batch.iter().map(wsabuf).collect();
            &heap
        };
        let mut sent: u32 = 0;
        // SAFETY: wsabufs describes wsabufs.len() readable slices that
        // outlive the call (WSASend only reads them); no overlapped I/O.
        let r = unsafe {
            ws::WSASend(
                raw(fd),
                wsabufs.as_ptr(),
                wsabufs.len() as u32,
                &mut sent,
                0,
                std::ptr::null_mut(),
                None,
            )
        };
        cvt(r)?;
        let n = sent as usize;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        advance(bufs, &mut first, n);
    }
    Ok(())
}

/// [`write_all_vectored`]; Windows has no EINTR and no limit on a blocked
/// write, so neither hook is called.
pub fn write_all_vectored_checked(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    _on_eintr: impl Fn() -> io::Result<()>,
    _on_progress: impl Fn(),
) -> io::Result<()> {
    write_all_vectored(fd, bufs)
}

/// Whether the socket numbered `fd` has input (or a pending connection)
/// right now. A number known only as a number (the watcher thread's view
/// of a listening socket that other threads use), closed meanwhile or
/// reused, only gives a wrong answer.
pub fn readable_now_number(fd: RawFd) -> bool {
    poll_readable(&[fd], 0).is_ok_and(|r| r[0])
}

/// Windows has no signals to interrupt a wait.
pub fn install_wake_signal() -> Option<i32> {
    None
}

/// Windows has no signal masks.
pub fn unblock_signal(_sig: i32) {}

/// Writes all of `buf`.
pub fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    write_all_vectored(fd, &[IoSlice::new(buf)])
}

/// One `accept()` on a listening socket (blocks until a connection comes).
pub fn accept(listen: BorrowedFd<'_>) -> io::Result<(OwnedFd, Peer)> {
    init();
    // SAFETY: storage is a zeroed SOCKADDR_STORAGE, large enough for any
    // family; len tells Winsock its size.
    let (s, storage) = unsafe {
        let mut storage: ws::SOCKADDR_STORAGE = zeroed();
        let mut len = size_of::<ws::SOCKADDR_STORAGE>() as i32;
        let s = ws::accept(raw(listen), (&raw mut storage).cast(), &mut len);
        (s, storage)
    };
    let owned = own(s)?;
    Ok((owned, peer_of(&storage)))
}

/// Waits for a connection on `listen`, looking at `stop` every
/// [`ACCEPT_POLL_MS`] ms; once `stop()` is true, fails with WSAEINTR
/// (what an interrupted `accept()` gives on Unix).
pub fn accept_unless(listen: BorrowedFd<'_>, stop: fn() -> bool) -> io::Result<(OwnedFd, Peer)> {
    init();
    loop {
        if stop() {
            return Err(io::Error::from_raw_os_error(ws::WSAEINTR));
        }
        if wait_readable(listen, ACCEPT_POLL_MS)? {
            return accept(listen);
        }
    }
}

fn peer_of(storage: &ws::SOCKADDR_STORAGE) -> Peer {
    match storage.ss_family {
        ws::AF_INET => {
            // SAFETY: the family says the storage holds a SOCKADDR_IN.
            let sin: &ws::SOCKADDR_IN =
                unsafe { &*(storage as *const _ as *const ws::SOCKADDR_IN) };
            // SAFETY: every variant of the address union is plain bytes.
            let addr = unsafe { sin.sin_addr.S_un.S_addr };
            Peer::Ip(IpAddr::V4(Ipv4Addr::from(u32::from_be(addr))))
        }
        ws::AF_INET6 => {
            // SAFETY: the family says the storage holds a SOCKADDR_IN6.
            let sin6: &ws::SOCKADDR_IN6 =
                unsafe { &*(storage as *const _ as *const ws::SOCKADDR_IN6) };
            // SAFETY: every variant of the address union is plain bytes.
            Peer::Ip(IpAddr::V6(Ipv6Addr::from(unsafe { sin6.sin6_addr.u.Byte })))
        }
        ws::AF_UNIX => Peer::Local,
        _ => Peer::Other,
    }
}

/// True when the C ABI's socket `fd` (0: standard input) is a bound
/// socket with no peer (`getsockname` succeeds, `getpeername` fails): the
/// sign of a FastCGI application started by a web server that passed its
/// listening socket as stdin; on Unix the test is `getpeername` failing
/// with ENOTCONN. (Under wine 8 a socket inherited as stdin answers
/// `getpeername` and `SO_ACCEPTCONN` with WSAENOTSOCK although `accept`
/// works on it, hence no test of the error code.) A named pipe is not
/// recognised (see README, Windows).
pub fn is_listening_socket(fd: RawFd) -> bool {
    init();
    let s = socket_of(fd);
    let mut storage: ws::SOCKADDR_STORAGE = ws::SOCKADDR_STORAGE::default();
    let mut len = size_of::<ws::SOCKADDR_STORAGE>() as i32;
    // SAFETY: storage is writable and len gives its size; a value that is
    // no socket only makes the call fail.
    let bound = unsafe { ws::getsockname(s, (&raw mut storage).cast(), &mut len) } == 0;
    len = size_of::<ws::SOCKADDR_STORAGE>() as i32;
    // SAFETY: as above.
    let connected = unsafe { ws::getpeername(s, (&raw mut storage).cast(), &mut len) } == 0;
    bound && !connected
}

fn set_int_option(s: ws::SOCKET, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value is a live i32 and the length says so.
    let r = unsafe {
        ws::setsockopt(
            s,
            level,
            name,
            (&raw const value).cast(),
            size_of::<i32>() as i32,
        )
    };
    cvt(r).map(drop)
}

/// Turns Nagle's algorithm off.
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    init();
    set_int_option(raw(fd), ws::IPPROTO_TCP, ws::TCP_NODELAY, 1)
}

/// Whether Nagle's algorithm is off (`TCP_NODELAY` set) on a TCP socket.
pub fn nodelay(fd: BorrowedFd<'_>) -> io::Result<bool> {
    init();
    let mut value: i32 = 0;
    let mut len = size_of::<i32>() as i32;
    // SAFETY: value is a live i32 and len holds its size; Winsock writes
    // at most len bytes there (a BOOL, or a single byte on old versions).
    let r = unsafe {
        ws::getsockopt(
            raw(fd),
            ws::IPPROTO_TCP,
            ws::TCP_NODELAY,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    cvt(r).map(|_| value != 0)
}

/// Runs `f` (which spawns a thread): Windows has no signal masks to set.
pub fn spawn_without_signals<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `shutdown(SD_SEND)`: tells the peer no more bytes come.
pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    init();
    // SAFETY: plain call on a borrowed socket.
    cvt(unsafe { ws::shutdown(raw(fd), ws::SD_SEND) }).map(drop)
}

/// `shutdown(SD_RECEIVE)`: no more input is wanted.
pub fn shutdown_read(fd: BorrowedFd<'_>) -> io::Result<()> {
    init();
    // SAFETY: plain call on a borrowed socket.
    cvt(unsafe { ws::shutdown(raw(fd), ws::SD_RECEIVE) }).map(drop)
}

/// Waits for any of `fds` to become readable. Returns readiness per socket.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    init();
    let mut p: Vec<ws::WSAPOLLFD> = fds
        .iter()
        .map(|&fd| ws::WSAPOLLFD {
            fd: socket_of(fd),
            events: ws::POLLRDNORM,
            revents: 0,
        })
        .collect();
    // SAFETY: p is a valid array of p.len() WSAPOLLFDs.
    let r = unsafe { ws::WSAPoll(p.as_mut_ptr(), p.len() as u32, timeout_ms) };
    cvt(r)?;
    Ok(p.iter().map(|p| p.revents != 0).collect())
}

fn new_socket(family: u16) -> io::Result<OwnedSocket> {
    init();
    // SAFETY: plain call; the result is checked by own().
    own(unsafe { ws::socket(i32::from(family), ws::SOCK_STREAM, ws::IPPROTO_TCP) })
}

/// A socket address in Winsock's layout, and its length.
fn sockaddr(addr: SocketAddr) -> (ws::SOCKADDR_STORAGE, i32) {
    // SAFETY: a zeroed SOCKADDR_STORAGE is a valid "no address".
    let mut storage: ws::SOCKADDR_STORAGE = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: SOCKADDR_STORAGE is larger than and aligned for SOCKADDR_IN.
            let sin = unsafe { &mut *(&raw mut storage).cast::<ws::SOCKADDR_IN>() };
            sin.sin_family = ws::AF_INET;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.S_un.S_addr = u32::from(*a.ip()).to_be();
            size_of::<ws::SOCKADDR_IN>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: SOCKADDR_STORAGE is larger than and aligned for SOCKADDR_IN6.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<ws::SOCKADDR_IN6>() };
            sin6.sin6_family = ws::AF_INET6;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.u.Byte = a.ip().octets();
            sin6.Anonymous.sin6_scope_id = a.scope_id();
            size_of::<ws::SOCKADDR_IN6>()
        }
    };
    (storage, len as i32)
}

fn family(addr: SocketAddr) -> u16 {
    if addr.is_ipv4() {
        ws::AF_INET
    } else {
        ws::AF_INET6
    }
}

/// A listening TCP socket on `addr`, with SO_EXCLUSIVEADDRUSE (on Windows
/// SO_REUSEADDR would let another process take the port over; restarting
/// while old connections linger works without it) and TCP_NODELAY, which
/// accepted sockets inherit. Blocking and inheritable, like libfcgi's.
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let s = new_socket(family(addr))?;
    let _ = set_int_option(
        raw(s.as_socket()),
        ws::SOL_SOCKET,
        ws::SO_EXCLUSIVEADDRUSE,
        1,
    );
    let _ = set_int_option(raw(s.as_socket()), ws::IPPROTO_TCP, ws::TCP_NODELAY, 1);
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a complete address of len bytes.
    cvt(unsafe { ws::bind(raw(s.as_socket()), (&raw const storage).cast(), len) })?;
    // SAFETY: plain call on an owned socket.
    cvt(unsafe { ws::listen(raw(s.as_socket()), backlog) })?;
    Ok(s)
}

/// A connected TCP socket to `addr` (blocking, inheritable).
pub fn tcp_connect(addr: SocketAddr) -> io::Result<OwnedFd> {
    let s = new_socket(family(addr))?;
    let (storage, len) = sockaddr(addr);
    // SAFETY: storage holds a complete address of len bytes.
    cvt(unsafe { ws::connect(raw(s.as_socket()), (&raw const storage).cast(), len) })?;
    Ok(s)
}

/// The mode and owner of a Unix socket file (see the Unix module); no
/// Unix socket files here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketPerms {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A socket file this process created (see the Unix module): never made
/// on Windows.
#[derive(Debug)]
pub enum SocketFile {}

/// Local sockets by path are not supported on Windows (libfcgi used named
/// pipes there; see README, Windows): WSAEAFNOSUPPORT.
pub fn unix_listener_with(
    _path: &Path,
    _backlog: i32,
    _perms: SocketPerms,
) -> io::Result<(OwnedFd, SocketFile)> {
    Err(io::Error::from_raw_os_error(ws::WSAEAFNOSUPPORT))
}

/// See [`unix_listener_with`]: WSAEAFNOSUPPORT.
pub fn unix_connect(_path: &Path) -> io::Result<OwnedFd> {
    Err(io::Error::from_raw_os_error(ws::WSAEAFNOSUPPORT))
}

/// `closesocket()` of a socket given as the C ABI's `int` (`OS_Close`).
///
/// # Safety
/// The caller owns the socket and nothing uses it afterwards.
pub unsafe fn close(fd: RawFd) -> io::Result<()> {
    init();
    // SAFETY: the caller hands the socket over per the contract above; an
    // invalid value only makes the call fail.
    cvt(unsafe { ws::closesocket(socket_of(fd)) }).map(drop)
}

/// Waits up to `timeout_ms` for input (or end of file, or an error) on
/// one socket.
pub fn poll_input(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    init();
    poll_one(fd, ws::POLLRDNORM, timeout_ms).map(|r| r != 0)
}

/// Writes all of `buf` (the socket is blocking) and returns its length:
/// the Unix version's signature (`OS_Write`).
pub fn write_most(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    write_all(fd, buf).map(|()| buf.len())
}
