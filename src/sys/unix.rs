//! The system calls on Unix (Linux first): libc, descriptors as `int`.
//!
//! Each `unsafe` block is one libc call on arguments this module checked
//! or built itself.

use super::{Peer, advance};
use std::io::{self, IoSlice};
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::FromRawFd;
pub use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The error numbers the engine reports itself (errno values here).
pub mod code {
    pub const EINTR: i32 = libc::EINTR;
    pub const EBADF: i32 = libc::EBADF;
    pub const EIO: i32 = libc::EIO;
    pub const EINVAL: i32 = libc::EINVAL;
    pub const EADDRNOTAVAIL: i32 = libc::EADDRNOTAVAIL;
    pub const ETIMEDOUT: i32 = libc::ETIMEDOUT;
    pub const EALREADY: i32 = libc::EALREADY;
    pub const ENOMEM: i32 = libc::ENOMEM;
    /// What this platform cannot do (waiting without a thread: not Linux).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub const UNSUPPORTED: i32 = libc::ENOSYS;
    /// Errors after which `accept()` is simply tried again.
    pub const TRANSIENT_ACCEPT: &[i32] = &[
        libc::ECONNABORTED,
        libc::EPROTO,
        libc::ECONNRESET,
        libc::ETIMEDOUT,
        libc::EHOSTUNREACH,
        libc::ENETUNREACH,
    ];
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(code: i32) {
    // SAFETY: __errno_location returns this thread's errno slot, always valid.
    unsafe { *libc::__errno_location() = code };
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The calling thread's kernel id (async-signal-safe). The raw system
/// call rather than glibc's `gettid()`, which only glibc 2.30 and later
/// have: the library then loads on older glibcs too (the Python wheel is
/// built for manylinux_2_17).
pub fn gettid() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    tid as i32
}

/// Sends `sig` to thread `tid` of this process (async-signal-safe).
pub fn signal_thread(tid: i32, sig: i32) {
    // SAFETY: plain syscall; a thread that has gone only makes it fail.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
}

/// Reads into `buf`, retrying on EINTR. `Ok(0)` is end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is a valid writable region of buf.len() bytes.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match cvt_size(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// One `read()`; unlike [`read`], a signal's EINTR is returned to the
/// caller (used where a shutdown request must end a wait).
pub fn read_interruptible(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    cvt_size(r)
}

/// Reads without blocking: `Ok(None)` when nothing is available now.
pub fn read_nonblocking(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: buf is a valid writable region of buf.len() bytes.
        let r = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match cvt_size(r) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Writes every byte of `bufs` (gathered, as few system calls as the kernel
/// allows). Uses `sendmsg(MSG_NOSIGNAL)` so a peer that went away gives
/// EPIPE and never SIGPIPE; falls back to `writev` on a non-socket.
pub fn write_all_vectored(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<()> {
    write_all_vectored_checked(fd, bufs, || Ok(()), || {})
}

/// [`write_all_vectored`], asking `on_eintr` after each EINTR whether to go
/// on (`Ok`) or to give up with its error (a write that blocked too long),
/// and calling `on_progress` after each write that sent part of the bytes.
pub fn write_all_vectored_checked(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    on_eintr: impl Fn() -> io::Result<()>,
    on_progress: impl Fn(),
) -> io::Result<()> {
    super::with_non_empty(bufs, |bufs| write_slices(fd, bufs, &on_eintr, &on_progress))
}

fn write_slices(
    fd: BorrowedFd<'_>,
    bufs: &mut [&[u8]],
    on_eintr: &dyn Fn() -> io::Result<()>,
    on_progress: &dyn Fn(),
) -> io::Result<()> {
    let mut first = 0;
    // Miri emulates write() on a socketpair, but not send() or sendmsg().
    let mut use_send = !cfg!(miri);
    while first < bufs.len() {
        let r = match &bufs[first..] {
            [one] => send_one(fd, one, use_send),
            // Nor writev(): under Miri, one write() per slice.
            [one, ..] if cfg!(miri) => send_one(fd, one, false),
            batch => send_gathered(fd, batch, use_send),
        };
        let n = match cvt_size(r) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                on_eintr()?;
                continue;
            }
            Err(e) if use_send && e.raw_os_error() == Some(libc::ENOTSOCK) => {
                use_send = false;
                continue;
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        advance(bufs, &mut first, n);
        if first < bufs.len() {
            on_progress();
        }
    }
    Ok(())
}

/// One contiguous slice: `send(MSG_NOSIGNAL)` (or `write` on a non-socket).
fn send_one(fd: BorrowedFd<'_>, buf: &[u8], use_send: bool) -> isize {
    if use_send {
        // SAFETY: buf is a readable region of buf.len() bytes for the call.
        unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        }
    } else {
        // SAFETY: as above.
        unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) }
    }
}

/// Several slices: one `sendmsg(MSG_NOSIGNAL)` (or `writev`), with the
/// `iovec` array on the stack for a few slices.
fn send_gathered(fd: BorrowedFd<'_>, batch: &[&[u8]], use_send: bool) -> isize {
    const MAX_IOV: usize = 1024;
    const STACK_IOV: usize = 8;
    let batch = &batch[..batch.len().min(MAX_IOV)];
    let iovec = |b: &&[u8]| libc::iovec {
        iov_base: b.as_ptr() as *mut _,
        iov_len: b.len(),
    };
    let mut stack = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; STACK_IOV];
    let heap: Vec<libc::iovec>;
    let iov: &[libc::iovec] = if batch.len() <= STACK_IOV {
        for (slot, b) in stack.iter_mut().zip(batch) {
            *slot = iovec(b);
        }
        &stack[..batch.len()]
    } else {
        heap = batch.iter().map(iovec).collect();
        &heap
    };
    if use_send {
        // SAFETY: msg is zeroed (no name, no control data) and points at
        // iov, which lives across the call and describes readable slices.
        unsafe {
            let mut msg: libc::msghdr = zeroed();
            msg.msg_iov = iov.as_ptr() as *mut _;
            msg.msg_iovlen = iov.len() as _;
            libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
        }
    } else {
        // SAFETY: iov describes iov.len() readable slices that outlive the call.
        unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) }
    }
}

/// Writes all of `buf`.
pub fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    write_all_vectored(fd, &[IoSlice::new(buf)])
}

/// One `accept()` on a listening socket; EINTR is returned to the caller.
pub fn accept(listen: BorrowedFd<'_>) -> io::Result<(OwnedFd, Peer)> {
    // SAFETY: storage is a zeroed sockaddr_storage large enough for any
    // family; len tells the kernel its size.
    let (fd, storage) = unsafe {
        let mut storage: libc::sockaddr_storage = zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let fd = libc::accept(listen.as_raw_fd(), (&raw mut storage).cast(), &mut len);
        (fd, storage)
    };
    let fd = cvt(fd)?;
    // SAFETY: accept returned a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((owned, peer_of(&storage)))
}

fn peer_of(storage: &libc::sockaddr_storage) -> Peer {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Peer::Ip(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Peer::Ip(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        libc::AF_UNIX => Peer::Local,
        _ => Peer::Other,
    }
}

/// The address family of a socket (`AF_INET`, `AF_UNIX`, ...).
pub fn socket_family(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: storage is zeroed and len gives its size.
    let (r, storage) = unsafe {
        let mut storage: libc::sockaddr_storage = zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let r = libc::getsockname(fd.as_raw_fd(), (&raw mut storage).cast(), &mut len);
        (r, storage)
    };
    cvt(r)?;
    Ok(i32::from(storage.ss_family))
}

/// True when `fd` is a socket with no peer (`getpeername` fails with
/// ENOTCONN): the sign of a listening socket handed over by a web server.
pub fn is_listening_socket(fd: RawFd) -> bool {
    // SAFETY: storage is zeroed and len gives its size; an invalid fd only
    // makes the call fail.
    let r = unsafe {
        let mut storage: libc::sockaddr_storage = zeroed();
        let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        libc::getpeername(fd, (&raw mut storage).cast(), &mut len)
    };
    r < 0 && errno() == libc::ENOTCONN
}

/// What descriptor `fd` (known by its number) is, for a log line; `None`
/// when it is not open or is /dev/null: nothing a program reads from.
pub fn open_file_kind(fd: RawFd) -> Option<&'static str> {
    // SAFETY: st is a zeroed stat the call fills in; a number that is not
    // open only makes the call fail.
    let st = unsafe {
        let mut st: libc::stat = zeroed();
        (libc::fstat(fd, &mut st) == 0).then_some(st)
    }?;
    let null = std::fs::metadata("/dev/null").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.rdev()
    });
    Some(match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR if Some(st.st_rdev) == null => return None,
        // SAFETY: isatty only looks at the number.
        libc::S_IFCHR if unsafe { libc::isatty(fd) } == 1 => "a terminal",
        libc::S_IFCHR | libc::S_IFBLK => "a device",
        libc::S_IFIFO => "a pipe",
        libc::S_IFSOCK => "a socket",
        _ => "a file",
    })
}

fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: value is a live c_int and the length says so.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(r).map(drop)
}

/// Turns Nagle's algorithm off (TCP sockets only; an error elsewhere).
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

fn get_int_option(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value is a live c_int and len holds its size; the kernel
    // writes at most len bytes there.
    let r = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    cvt(r).map(|_| value)
}

/// Whether Nagle's algorithm is off (`TCP_NODELAY` set) on a TCP socket.
pub fn nodelay(fd: BorrowedFd<'_>) -> io::Result<bool> {
    get_int_option(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY).map(|v| v != 0)
}

/// `shutdown(fd, SHUT_WR)`: tells the peer no more bytes come.
pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed descriptor.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) }).map(drop)
}

/// Waits for any of `fds` to become readable. Returns readiness per fd.
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: p is a valid array of p.len() pollfds.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    match cvt(r) {
        Ok(_) => Ok(p.iter().map(|p| p.revents != 0).collect()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(vec![false; fds.len()]),
        Err(e) => Err(e),
    }
}

fn new_socket(family: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM, 0) })?;
    // SAFETY: socket returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn listen(fd: &OwnedFd, backlog: i32) -> io::Result<()> {
    // SAFETY: plain syscall on an owned descriptor.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// A listening TCP socket on `addr` with SO_REUSEADDR (and TCP_NODELAY,
/// which accepted connections inherit). Blocking, not close-on-exec, like
/// libfcgi's.
pub fn tcp_listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let fd = new_socket(family)?;
    set_int_option(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    // Best effort: accepted sockets inherit it, saving a call per connection.
    let _ = set_int_option(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    let r = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: zeroed sockaddr_in, then filled field by field.
            let mut sin: libc::sockaddr_in = unsafe { zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            // SAFETY: sin is a complete sockaddr_in of the size given.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sin).cast(),
                    size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            // SAFETY: zeroed sockaddr_in6, then filled field by field.
            let mut sin6: libc::sockaddr_in6 = unsafe { zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: sin6 is a complete sockaddr_in6 of the size given.
            unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const sin6).cast(),
                    size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    cvt(r)?;
    listen(&fd, backlog)?;
    Ok(fd)
}

fn unix_addr(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: zeroed sockaddr_un, then filled below.
    let mut sun: libc::sockaddr_un = unsafe { zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    if bytes.len() >= sun.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = (size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    Ok((sun, len))
}

/// Connects to a Unix socket (used to tell a live socket from a stale one,
/// and by clients).
pub fn unix_connect(path: &Path) -> io::Result<OwnedFd> {
    let (sun, len) = unix_addr(path)?;
    let fd = new_socket(libc::AF_UNIX)?;
    // SAFETY: sun is a complete sockaddr_un of length len.
    cvt(unsafe { libc::connect(fd.as_raw_fd(), (&raw const sun).cast(), len) })?;
    Ok(fd)
}

/// The mode and owner a Unix socket file is given when it is created;
/// `None`: as `bind()` makes it (the umask's mode, the process's ids).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketPerms {
    /// Permission bits (at most 0o777).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A socket file this process created: its device and inode numbers, and
/// a descriptor open on it (`O_PATH`) that keeps the inode in use for as
/// long as this value lives, so that no other file, made after ours was
/// removed, can have the same numbers (file systems reuse inode numbers).
#[derive(Debug)]
pub struct SocketFile {
    dev: u64,
    ino: u64,
    /// Its permission bits when it was opened.
    mode: u32,
    pin: OwnedFd,
}

/// A listening Unix socket at `path`. An existing file there is removed
/// only if it is a socket nobody listens on (a stale one); anything else
/// gives EADDRINUSE and is left alone. The file's mode and owner are set
/// before `listen()`,
/// so that no peer can connect before both are in place: the mode is set
/// on the socket before `bind()` (Linux creates the file with it, less
/// what the umask removes), then the file is opened without following a
/// symbolic link (`O_PATH | O_NOFOLLOW`), checked to be a socket, given
/// its owner and group (`fchownat` on that descriptor) and the bits the
/// umask removed (`chmod` of `/proc/self/fd/N`). On any error the file is
/// removed again. Returns the socket and the file's identity.
pub fn unix_listener_with(
    path: &Path,
    backlog: i32,
    perms: SocketPerms,
) -> io::Result<(OwnedFd, SocketFile)> {
    let (sun, len) = unix_addr(path)?;
    match remove_if_stale(path) {
        Ok(true) => {}
        Ok(false) => return Err(io::Error::from_raw_os_error(libc::EADDRINUSE)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let fd = new_socket(libc::AF_UNIX)?;
    if let Some(mode) = perms.mode {
        // SAFETY: plain syscall on an owned descriptor.
        cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    }
    // SAFETY: sun is a complete sockaddr_un of length len.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sun).cast(), len) })?;
    let file = match open_socket_file(path) {
        Ok(file) => file,
        Err(e) => {
            // It could not be opened: it is removed if it is still a
            // socket nobody listens on (ours does not listen yet).
            let _ = remove_if_stale(path);
            return Err(e);
        }
    };
    match set_perms(&file, perms).and_then(|()| listen(&fd, backlog)) {
        Ok(()) => Ok((fd, file)),
        Err(e) => {
            let _ = remove_socket_file(path, &file);
            Err(e)
        }
    }
}

/// Removes the file at `path` if it is a socket that refuses connections
/// (nobody listens on it). `Ok(false)`: anything else, left alone.
fn remove_if_stale(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(path)?;
    let stale = meta.file_type().is_socket()
        && matches!(unix_connect(path), Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED));
    if stale {
        std::fs::remove_file(path)?;
    }
    Ok(stale)
}

/// Opens the socket file just bound at `path`, without following a link
/// (EADDRINUSE if what is there now is not a socket).
fn open_socket_file(path: &Path) -> io::Result<SocketFile> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c_path is NUL-terminated and outlives the call.
    let raw = cvt(unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    let pin = unsafe { OwnedFd::from_raw_fd(raw) };
    let st = fstat(pin.as_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        // Replaced between bind() and here: not ours to touch.
        return Err(io::Error::from_raw_os_error(libc::EADDRINUSE));
    }
    Ok(SocketFile {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode & 0o7777,
        pin,
    })
}

fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: st is a zeroed stat the call fills in.
    unsafe {
        let mut st: libc::stat = zeroed();
        cvt(libc::fstat(fd.as_raw_fd(), &mut st)).map(|_| st)
    }
}

/// Gives the socket file its owner and group (`fchownat` on its
/// descriptor) and the permission bits the umask removed (`chmod` of the
/// descriptor's `/proc` link: the file itself, never a link put in its
/// place; this needs /proc mounted).
fn set_perms(file: &SocketFile, perms: SocketPerms) -> io::Result<()> {
    let fd = file.pin.as_raw_fd();
    if perms.uid.is_some() || perms.gid.is_some() {
        let uid = perms.uid.map_or(libc::uid_t::MAX, |u| u as libc::uid_t);
        let gid = perms.gid.map_or(libc::gid_t::MAX, |g| g as libc::gid_t);
        // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH: the call
        // acts on the descriptor itself.
        cvt(unsafe { libc::fchownat(fd, c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) })?;
    }
    if let Some(mode) = perms.mode {
        if file.mode != mode {
            let link = std::ffi::CString::new(format!("/proc/self/fd/{fd}"))
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            // SAFETY: link is NUL-terminated and outlives the call.
            cvt(unsafe { libc::chmod(link.as_ptr(), mode as libc::mode_t) })?;
        }
    }
    Ok(())
}

/// Removes the socket file at `path` if it is still `file` (a socket with
/// its device and inode: while `file` lives no other file can have them).
/// `Ok(false)`: something else is there now (or nothing), left alone.
pub fn remove_socket_file(path: &Path, file: &SocketFile) -> io::Result<bool> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && m.dev() == file.dev && m.ino() == file.ino => {
            std::fs::remove_file(path).map(|()| true)
        }
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The id of the user named `name` (`getpwnam_r`), if there is one.
pub fn user_id(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: pw and found are written by the call; buf is writable for
    // its length and outlives the call (pw's strings point into it, and
    // only pw_uid is read).
    unsafe {
        let mut pw: libc::passwd = zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        );
        (r == 0 && !found.is_null()).then_some(pw.pw_uid)
    }
}

/// The id of the group named `name` (`getgrnam_r`), if there is one.
pub fn group_id(name: &str) -> Option<u32> {
    let c_name = std::ffi::CString::new(name).ok()?;
    // Groups with many members need a large buffer.
    let mut buf = vec![0u8; 256 * 1024];
    // SAFETY: as in user_id; only gr_gid is read.
    unsafe {
        let mut gr: libc::group = zeroed();
        let mut found: *mut libc::group = std::ptr::null_mut();
        let r = libc::getgrnam_r(
            c_name.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        );
        (r == 0 && !found.is_null()).then_some(gr.gr_gid)
    }
}

/// Registers `handler` to run at `exit()` (and return from `main`).
pub fn at_exit(handler: extern "C" fn()) {
    // SAFETY: handler is a plain function that lives for the program.
    unsafe { libc::atexit(handler) };
}

/// Registers `handler` to run in the child after every `fork()`.
pub fn on_fork_child(handler: extern "C" fn()) {
    // Miri has no pthread_atfork (and no fork).
    if cfg!(miri) {
        return;
    }
    // SAFETY: registering a function that lives as long as the library;
    // failure (ENOMEM) only loses the notification.
    unsafe { libc::pthread_atfork(None, None, Some(handler)) };
}

/// Runs `f` (which spawns a thread) with every blockable signal blocked in
/// the calling thread, so the new thread starts with them blocked, then puts
/// the caller's mask back. A library thread must not take a process-directed
/// signal (SIGINT, SIGTERM...) that the program expects in one of its own
/// threads, where it interrupts a blocking call: libfcgi had no threads.
pub fn spawn_without_signals<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: all and old are plain sigset_t values owned here; sigfillset
    // and pthread_sigmask only write them or the calling thread's mask.
    let old = unsafe {
        let mut all: libc::sigset_t = zeroed();
        let mut old: libc::sigset_t = zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let r = f();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    r
}

/// `fork()` is not wrapped; this tells a thread spawned by the library
/// whether it belongs to the current process.
pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Borrows a raw descriptor (one the C ABI hands the library as an `int`).
///
/// # Safety
/// `fd` is not -1, and it stays open, the same open file, for all of `'a`
/// (the C caller's promise for the call that passed it): a `BorrowedFd`
/// asserts that, and safe code may rely on it.
pub unsafe fn borrow_fd<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: the caller's contract is BorrowedFd::borrow_raw's.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Sets FD_CLOEXEC on descriptor `fd`, known by its number (one a service
/// manager passed): a number that is not open only makes the call fail.
pub fn set_cloexec_number(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain fcntl calls on a number; no memory is passed.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) }).map(drop)
}

/// Makes descriptor `target` another descriptor of `fd`'s open file
/// (`dup2`), closing what `target` was; `target` is not closed on exec.
///
/// # Safety
/// Nothing in the process owns `target` as a Rust `OwnedFd` or relies on
/// what it was (the caller hands its old file over to be closed).
pub unsafe fn dup_onto(fd: RawFd, target: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: plain syscall on numbers; the caller gives up `target`.
        match cvt(unsafe { libc::dup2(fd, target) }) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r.map(drop),
        }
    }
}

/// Installs the signal conventions of libfcgi (see `capi::init`): an empty
/// SIGPIPE handler, and `on_shutdown` for SIGUSR1 and SIGTERM, each only
/// where the program left the default or ignore disposition. No
/// SA_RESTART, so a blocked `accept()` returns EINTR. Returns the signals
/// that got a handler.
pub fn install_signal_handlers(
    on_pipe: extern "C" fn(libc::c_int),
    on_shutdown: extern "C" fn(libc::c_int),
) -> Vec<i32> {
    // Miri has no sigaction: the library runs without its handlers.
    if cfg!(miri) {
        return Vec::new();
    }
    let mut installed = Vec::new();
    for (sig, handler) in [
        (libc::SIGPIPE, on_pipe),
        (libc::SIGUSR1, on_shutdown),
        (libc::SIGTERM, on_shutdown),
    ] {
        // SAFETY: sigaction with a null new action only reads the current one
        // into `old`; the second call installs a handler that is an
        // async-signal-safe extern "C" fn.
        unsafe {
            let mut old: libc::sigaction = zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                continue;
            }
            let mut sa: libc::sigaction = zeroed();
            sa.sa_sigaction = handler as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) == 0 {
                installed.push(sig);
            }
        }
    }
    installed
}

// ---- additions for the OS layer (capi::os) ---------------------------------

/// Whether `fd` is an open descriptor of this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor flags; an invalid number
    // makes the call fail with EBADF.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// `shutdown(fd, SHUT_RD)`: no more input is wanted.
pub fn shutdown_read(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed descriptor.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RD) }).map(drop)
}

/// Adds `flags` (`O_NONBLOCK`, `O_APPEND`, ...) to the file status flags.
pub fn add_status_flags(fd: BorrowedFd<'_>, flags: i32) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and only reads the flags.
    let old = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: F_SETFL takes an int argument; the kernel ignores the bits it
    // does not allow to change.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, old | flags) }).map(drop)
}

/// One entry of a `poll()` set built by the engine ([`poll_set`]): a
/// descriptor, the readiness wanted, and what `poll()` reported.
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    /// Waits for input on `fd` if `input`, for room to write if `output`.
    pub fn new(fd: RawFd, input: bool, output: bool) -> PollFd {
        let mut p = PollFd(libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        p.add(input, output);
        p
    }

    /// Waits for input and/or room to write as well.
    pub fn add(&mut self, input: bool, output: bool) {
        if input {
            self.0.events |= libc::POLLIN;
        }
        if output {
            self.0.events |= libc::POLLOUT;
        }
    }

    pub fn fd(&self) -> RawFd {
        self.0.fd
    }

    /// What `poll()` reported: (input ready, room to write). An error or a
    /// hang-up counts as both: the read or the write then reports it, as
    /// after `select()`.
    pub fn ready(&self) -> (bool, bool) {
        let r = self.0.revents;
        let broken = r & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
        (
            broken || r & libc::POLLIN != 0,
            broken || r & libc::POLLOUT != 0,
        )
    }
}

/// `poll()` on a set of [`PollFd`]s; EINTR is returned to the caller.
/// Returns how many entries have events.
pub fn poll_set(set: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: PollFd is a transparent wrapper of pollfd, so set is a valid,
    // writable array of set.len() pollfds.
    let r = unsafe {
        libc::poll(
            set.as_mut_ptr().cast::<libc::pollfd>(),
            set.len() as libc::nfds_t,
            timeout_ms,
        )
    };
    cvt(r).map(|n| n as usize)
}

/// Waits up to `timeout_ms` for input (or end of file, or an error) on
/// `fd`; EINTR is returned to the caller.
pub fn poll_input(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = [PollFd::new(fd.as_raw_fd(), true, false)];
    poll_set(&mut p, timeout_ms).map(|n| n > 0)
}

/// One `write()`, retried after EINTR; a partial write returns its count.
/// (`write()` itself, not `send()`: a vanished peer raises SIGPIPE, as the
/// C callers of the OS layer expect.)
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is a readable region of buf.len() bytes.
        let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        match cvt_size(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// [`write`] until all of `buf` is written (at least one call, even for
/// an empty `buf`). An error after some bytes returns their count (the
/// next call reports it); an error before any byte is returned.
pub fn write_most(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    loop {
        match write(fd, &buf[done..]) {
            Ok(n) => {
                done += n;
                if n == 0 || done >= buf.len() {
                    return Ok(done);
                }
            }
            Err(_) if done > 0 => return Ok(done),
            Err(e) => return Err(e),
        }
    }
}

/// Closes the descriptor numbered `fd`. Linux releases the number even
/// when `close()` reports EINTR, so that counts as success.
///
/// # Safety
/// The caller owns `fd` and nothing uses the number afterwards (it may be
/// handed out again at once).
pub unsafe fn close(fd: RawFd) -> io::Result<()> {
    // SAFETY: the caller hands the descriptor over per the contract above.
    match cvt(unsafe { libc::close(fd) }) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        other => other.map(drop),
    }
}

/// Starts the program at `path` as a FastCGI application (`OS_SpawnChild`):
/// forks; the child gets `listen_fd` as its fd 0, fds 1 and 2 closed, the
/// same environment, and `argv = {path, NULL}`. Returns in the parent at
/// once (the child is not waited for). EBADF if `listen_fd` is not open.
pub fn spawn_fastcgi_child(path: &std::ffi::CStr, listen_fd: RawFd) -> io::Result<()> {
    if !is_open(listen_fd) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // Built before fork(): the child must not allocate.
    let argv: [*const libc::c_char; 2] = [path.as_ptr(), std::ptr::null()];
    // SAFETY: fork() has no preconditions; the child runs only exec_child,
    // which makes async-signal-safe calls and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: this is the freshly forked child; argv is {path, NULL}
        // with path a NUL-terminated string that the copied memory holds.
        unsafe { exec_child(&argv, listen_fd) }
    }
    cvt(pid).map(drop)
}

/// The child's side of [`spawn_fastcgi_child`]: puts the listening socket
/// on fd 0, closes fds 1 and 2 (the FastCGI convention), and runs the
/// program; if that fails, exits with errno as its status (as libfcgi).
/// Only async-signal-safe calls: this runs between `fork()` and `exec()`
/// in a copy of a possibly multi-threaded process.
///
/// # Safety
/// Called only in a freshly forked child; `argv` is `[path, NULL]` with
/// `path` a NUL-terminated string.
unsafe fn exec_child(argv: &[*const libc::c_char; 2], listen_fd: RawFd) -> ! {
    // SAFETY: each call is an async-signal-safe system call on plain
    // integers or on argv, which the parent built before fork().
    unsafe {
        if listen_fd != 0 {
            if libc::dup2(listen_fd, 0) < 0 {
                libc::_exit(exec_failure_status(*libc::__errno_location()));
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
        libc::_exit(exec_failure_status(*libc::__errno_location()))
    }
}

/// The child's exit status when exec fails: errno, as libfcgi did.
fn exec_failure_status(errno: i32) -> i32 {
    match errno & 0xff {
        0 => 127,
        e => e,
    }
}

/// A connected TCP socket to `addr`: blocking and, like libfcgi's, not
/// close-on-exec. A signal during the connection wait does not abandon it:
/// the wait goes on until the kernel reports the outcome.
pub fn tcp_connect(addr: SocketAddr) -> io::Result<OwnedFd> {
    // SAFETY: zeroed sockaddr_storage is a valid "no address"; the arms
    // below fill it as a sockaddr_in or sockaddr_in6, which it can hold.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let (family, len) = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            (libc::AF_INET, size_of::<libc::sockaddr_in>())
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&raw mut storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            (libc::AF_INET6, size_of::<libc::sockaddr_in6>())
        }
    };
    let fd = new_socket(family)?;
    // SAFETY: storage holds a complete address of `len` bytes.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const storage).cast(),
            len as libc::socklen_t,
        )
    };
    match cvt(r) {
        Ok(_) => Ok(fd),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            finish_interrupted_connect(std::os::fd::AsFd::as_fd(&fd))?;
            Ok(fd)
        }
        Err(e) => Err(e),
    }
}

/// After `connect()` returned EINTR the connection attempt continues in
/// the kernel: wait until the socket is writable, then read its outcome.
fn finish_interrupted_connect(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut p = [PollFd::new(fd.as_raw_fd(), false, true)];
    loop {
        match poll_set(&mut p, -1) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let err = get_int_option(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ERROR)?;
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(())
}

// ---- waiting without a thread (server::waiting, server::watch) -------------

/// An epoll set (Linux): connections that wait without a thread, and the
/// listening socket. Each entry carries a 64-bit token of the caller's.
#[cfg(target_os = "linux")]
pub struct Epoll(OwnedFd);

#[cfg(target_os = "linux")]
impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd was just returned by epoll_create1 and is owned by no one else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: i32, fd: RawFd, token: u64, mode: i32) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | mode) as u32,
            u64: token,
        };
        // SAFETY: ev is a valid epoll_event for the duration of the call.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Watches `fd` for input, for one event (then it is disarmed until
    /// [`rearm_number`](Self::rearm_number)). For a listening socket known
    /// by its number only (a waiting room's, which the threads that share
    /// the room got from their callers): a number closed meanwhile makes
    /// the call fail, one reused is watched in its new use; neither
    /// touches memory.
    pub fn add_number(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, libc::EPOLLONESHOT)
    }

    /// Arms `fd` again (after its one event), with a new token (see
    /// [`add_number`](Self::add_number)).
    pub fn rearm_number(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, libc::EPOLLONESHOT)
    }

    /// Watches `fd` for as long as it stays in the set: one event each time
    /// input arrives (edge-triggered; one at once if input is there now).
    pub fn add_edge(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), token, libc::EPOLLET)
    }

    /// Watches `fd` for input, level-triggered: an event at every wait
    /// while it has input (the library's shutdown event, known by its
    /// number; see [`add_number`](Self::add_number)).
    pub fn add_level_number(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, 0)
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), 0, 0)
    }

    /// Waits for events; returns their tokens in `tokens` (its length is
    /// the most taken at once). `timeout_ms` -1 waits for ever. EINTR is
    /// returned to the caller.
    pub fn wait(&self, tokens: &mut [u64], timeout_ms: i32) -> io::Result<usize> {
        const MAX: usize = 64;
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX];
        let want = tokens.len().clamp(1, MAX);
        // SAFETY: evs has room for `want` events.
        let n = cvt(unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                evs.as_mut_ptr(),
                want as libc::c_int,
                timeout_ms,
            )
        })? as usize;
        for (t, e) in tokens.iter_mut().zip(&evs[..n]) {
            *t = e.u64;
        }
        Ok(n)
    }
}

/// An eventfd (Linux), non-blocking and closed on exec: readable once
/// [`signal_event_number`] has been called on it.
#[cfg(target_os = "linux")]
pub fn event_fd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: fd was just returned by eventfd and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes the eventfd `fd` readable (adds 1 to its counter).
/// Async-signal-safe. For a descriptor known by its number only, one the
/// library made and never closes.
#[cfg(target_os = "linux")]
pub fn signal_event_number(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: `one` is 8 readable bytes for the duration of the call.
    let _ = unsafe { libc::write(fd, (&raw const one).cast(), size_of::<u64>()) };
}

#[cfg(target_os = "linux")]
impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Whether `fd` has input (or a pending connection, or an event for an
/// epoll set) right now, without waiting.
pub fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & libc::POLLIN != 0
}

/// [`readable_now`] for a descriptor known by its number only (the
/// watcher thread's view of a listening socket that other threads use): a
/// number closed meanwhile, or reused, only gives a wrong answer.
pub fn readable_now_number(fd: RawFd) -> bool {
    let mut p = [PollFd::new(fd, true, false)];
    poll_set(&mut p, 0).is_ok_and(|n| n > 0) && p[0].0.revents & libc::POLLIN != 0
}

extern "C" fn on_wake_signal(_: libc::c_int) {
    // Nothing to do: delivery alone makes the blocked call return EINTR,
    // and this handler does not touch errno.
}

/// Installs an empty handler, without SA_RESTART, on a real-time signal
/// nobody else handles, and returns it: sent to one thread, it makes that
/// thread's blocking system call return EINTR. The signals nearest to
/// SIGRTMIN and SIGRTMAX are left alone (C libraries and tools such as
/// valgrind reserve them). `None` if every candidate is taken.
#[cfg(target_os = "linux")]
pub fn install_wake_signal() -> Option<i32> {
    // Miri has no sigaction: waits are not interrupted, as on other Unixes.
    if cfg!(miri) {
        return None;
    }
    let (low, high) = (libc::SIGRTMIN() + 4, libc::SIGRTMAX() - 4);
    (low..=high).rev().find(|&sig| {
        // SAFETY: the first sigaction only reads the current disposition;
        // the second installs an async-signal-safe extern "C" handler.
        unsafe {
            let mut old: libc::sigaction = zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_DFL
            {
                return false;
            }
            let mut sa: libc::sigaction = zeroed();
            sa.sa_sigaction = on_wake_signal as *const () as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut()) == 0
        }
    })
}

/// Other Unix systems: no wake signal (waits are not interrupted).
#[cfg(not(target_os = "linux"))]
pub fn install_wake_signal() -> Option<i32> {
    None
}

/// Unblocks `sig` in the calling thread (a program may block every
/// signal in its worker threads; the wake signal must still reach them).
pub fn unblock_signal(sig: i32) {
    // SAFETY: set is a sigset_t owned here; the calls only write it and the
    // calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}
