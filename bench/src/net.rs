//! The few system calls the load generator needs, over libc: sockets
//! (TCP or Unix), non-blocking I/O, epoll and the process's CPU time.

use std::io;
use std::mem;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

/// Where the FastCGI server listens.
#[derive(Clone, Debug)]
pub enum Target {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Target {
    /// `host:port`, `:port` (127.0.0.1), `[v6]:port`, `unix:/path` or `/path`.
    pub fn parse(text: &str) -> Result<Target, String> {
        if let Some(p) = text.strip_prefix("unix:") {
            return Ok(Target::Unix(p.into()));
        }
        if text.starts_with('/') || text.starts_with('.') {
            return Ok(Target::Unix(text.into()));
        }
        let text = if text.starts_with(':') {
            format!("127.0.0.1{text}")
        } else {
            text.to_string()
        };
        text.to_socket_addrs()
            .map_err(|e| format!("bad address {text}: {e}"))?
            .next()
            .map(Target::Tcp)
            .ok_or_else(|| format!("address {text} resolves to nothing"))
    }

    pub fn is_tcp(&self) -> bool {
        matches!(self, Target::Tcp(_))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "{a}"),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A socket address ready for `connect(2)`, built once.
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
    family: libc::c_int,
}

impl RawAddr {
    pub fn new(t: &Target) -> io::Result<RawAddr> {
        // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
        let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let (len, family) = match t {
            Target::Tcp(SocketAddr::V4(a)) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                // SAFETY: sockaddr_storage is larger than sockaddr_in and suitably aligned.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in, sin) };
                (mem::size_of::<libc::sockaddr_in>(), libc::AF_INET)
            }
            Target::Tcp(SocketAddr::V6(a)) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                // SAFETY: as above, for sockaddr_in6.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_in6, sin6) };
                (mem::size_of::<libc::sockaddr_in6>(), libc::AF_INET6)
            }
            Target::Unix(p) => {
                use std::os::unix::ffi::OsStrExt;
                let bytes = p.as_os_str().as_bytes();
                // SAFETY: all-zero sockaddr_un is valid.
                let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
                if bytes.len() >= sun.sun_path.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "unix socket path too long",
                    ));
                }
                sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
                for (d, s) in sun.sun_path.iter_mut().zip(bytes) {
                    *d = *s as libc::c_char;
                }
                // SAFETY: as above, for sockaddr_un.
                unsafe { std::ptr::write(&mut storage as *mut _ as *mut libc::sockaddr_un, sun) };
                (
                    mem::size_of::<libc::sa_family_t>() + bytes.len() + 1,
                    libc::AF_UNIX,
                )
            }
        };
        Ok(RawAddr {
            storage,
            len: len as libc::socklen_t,
            family,
        })
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Outcome of starting a connection.
pub enum Connect {
    Done(OwnedFd),
    /// Non-blocking connect under way: wait for the socket to be writable.
    InProgress(OwnedFd),
}

/// Opens a socket and connects it. `nonblocking` sockets may return
/// [`Connect::InProgress`].
pub fn connect(addr: &RawAddr, nonblocking: bool) -> io::Result<Connect> {
    let mut ty = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    if nonblocking {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: plain system call; the fd is owned at once.
    let fd = unsafe { OwnedFd::from_raw_fd(cvt(libc::socket(addr.family, ty, 0))?) };
    loop {
        // SAFETY: storage/len describe a valid socket address.
        let r = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                &addr.storage as *const _ as *const libc::sockaddr,
                addr.len,
            )
        };
        if r == 0 {
            return Ok(Connect::Done(fd));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EINPROGRESS) => return Ok(Connect::InProgress(fd)),
            _ => return Err(e),
        }
    }
}

pub fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: valid option pointer and length.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const _ as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// `read(2)`, retried on EINTR. `Ok(None)` means EAGAIN.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// `write(2)`, retried on EINTR. `Ok(None)` means EAGAIN.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<Option<usize>> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(e),
        }
    }
}

/// Wakes a thread blocked on `fd` (used by the watchdog at the end of a run).
pub fn shutdown(fd: RawFd) {
    // SAFETY: plain system call on a number; a stale number only fails.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

pub struct Epoll(OwnedFd);

pub const IN: u32 = libc::EPOLLIN as u32;
pub const OUT: u32 = libc::EPOLLOUT as u32;
pub const ERR: u32 = (libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain system call; the fd is owned at once.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fresh descriptor.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_ADD,
            fd,
            events | libc::EPOLLRDHUP as u32,
            token,
        )
    }

    pub fn modify(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        self.ctl(
            libc::EPOLL_CTL_MOD,
            fd,
            events | libc::EPOLLRDHUP as u32,
            token,
        )
    }

    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: events is valid for events.len() entries.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 { 0 } else { n as usize }
    }
}

pub fn empty_event() -> libc::epoll_event {
    libc::epoll_event { events: 0, u64: 0 }
}

/// CPU time used by this process so far (all threads): (user, system).
pub fn cpu_time() -> (Duration, Duration) {
    // SAFETY: rusage is plain old data.
    let mut ru: libc::rusage = unsafe { mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain old data; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: valid pointer and size.
    let r = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    let cpus: Vec<usize> = if r == 0 {
        // SAFETY: CPU_ISSET reads the set.
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() { vec![0] } else { cpus }
}

/// Pins the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: as above; sched_setaffinity(0) applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
