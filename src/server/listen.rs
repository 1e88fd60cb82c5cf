//! Listening sockets: the `FCGX_OpenSocket` address syntax, accepting with
//! the web-server allowlist, and the process-wide shutdown flag.

use super::config::{self, Config};
use super::watch;
use crate::sys::{self, Peer};
use crate::sys::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where `FCGX_OpenSocket` listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// `":port"`, `"*:port"`, `"host:port"`, `"[v6]:port"`.
    Tcp { host: Option<String>, port: u16 },
    /// Anything else: a Unix socket path.
    Unix(PathBuf),
}

impl BindAddr {
    /// Parses libfcgi's address syntax: text with a colon followed by a
    /// non-zero port number is TCP (an empty host or `*` means every
    /// interface, as in libfcgi); `[addr]:port` is IPv6; anything else,
    /// and every path starting with `/` or `.`, is a Unix socket path.
    pub fn parse(text: &str) -> BindAddr {
        if text.starts_with('/') || text.starts_with('.') {
            return BindAddr::Unix(text.into());
        }
        if let Some(rest) = text.strip_prefix('[') {
            if let Some((host, port)) = rest.split_once("]:") {
                if let Ok(port @ 1..) = port.parse::<u16>() {
                    return BindAddr::Tcp {
                        host: Some(host.to_string()),
                        port,
                    };
                }
            }
            return BindAddr::Unix(text.into());
        }
        if let Some((host, port)) = text.rsplit_once(':') {
            if !host.contains(':') {
                if let Ok(port @ 1..) = port.parse::<u16>() {
                    let host = (!host.is_empty() && host != "*").then(|| host.to_string());
                    return BindAddr::Tcp { host, port };
                }
            }
        }
        BindAddr::Unix(text.into())
    }

    /// Resolves the TCP host (the first address it resolves to).
    fn socket_addr(host: &Option<String>, port: u16) -> io::Result<SocketAddr> {
        match host {
            None => Ok(SocketAddr::from(([0, 0, 0, 0], port))),
            Some(h) => (h.as_str(), port)
                .to_socket_addrs()
                .map_err(|_| io::Error::from_raw_os_error(sys::code::EADDRNOTAVAIL))?
                .next()
                .ok_or_else(|| io::Error::from_raw_os_error(sys::code::EADDRNOTAVAIL)),
        }
    }

    /// Creates the listening socket. Errors are returned, never turned into
    /// an exit of the process.
    pub fn listen(&self, backlog: i32) -> io::Result<OwnedFd> {
        self.listen_with(backlog, sys::SocketPerms::default())
    }

    /// [`BindAddr::listen`], a Unix socket's file created with `perms`
    /// (before `listen()`: see `sys::unix_listener_with`) and removed when
    /// this process exits after a shutdown request (see
    /// [`super::socket_file`]). `perms` must be the default for TCP
    /// (EINVAL otherwise).
    pub fn listen_with(&self, backlog: i32, perms: sys::SocketPerms) -> io::Result<OwnedFd> {
        match self {
            BindAddr::Tcp { host, port } => {
                if perms != sys::SocketPerms::default() {
                    return Err(io::Error::from_raw_os_error(sys::code::EINVAL));
                }
                let fd = sys::tcp_listener(Self::socket_addr(host, *port)?, backlog)?;
                // Accepted connections inherit it: no Nagle delay, no
                // system call per connection.
                let _ = sys::set_nodelay(fd.as_fd());
                Ok(fd)
            }
            BindAddr::Unix(path) => {
                let (fd, file) = sys::unix_listener_with(path, backlog, perms)?;
                super::socket_file::remember(absolute(path), file);
                Ok(fd)
            }
        }
    }

    /// Connects to an application listening here (`OS_FcgiConnect`): a
    /// blocking socket. A TCP host (none: `localhost`) is resolved and
    /// each of its addresses tried in turn; the first that answers wins.
    /// A host that does not resolve gives EADDRNOTAVAIL.
    pub fn connect(&self) -> io::Result<OwnedFd> {
        let (host, port) = match self {
            BindAddr::Tcp { host, port } => (host.as_deref().unwrap_or("localhost"), *port),
            BindAddr::Unix(path) => return sys::unix_connect(path),
        };
        let not_found = || io::Error::from_raw_os_error(sys::code::EADDRNOTAVAIL);
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|_| not_found())?
            .collect();
        let mut last = not_found();
        for addr in addrs {
            match sys::tcp_connect(addr) {
                Ok(fd) => return Ok(fd),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// `path` made absolute (a relative socket path is removed at exit from
/// where it was created, whatever the working directory is by then).
fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

static SHUTDOWN_PENDING: AtomicBool = AtomicBool::new(false);

/// Records that the library's shutdown handler is installed for `sig`
/// (used to wake threads where the library has no wake signal).
pub fn set_wake_signal(sig: i32) {
    watch::set_shutdown_signal(sig);
}

/// Asks accept loops to stop (`FCGX_ShutdownPending`): every thread
/// waiting for a request (in accept, on a kept-alive connection, or for
/// parked connections) is interrupted, and every later accept returns
/// EINTR. Requests being served are finished. Async-signal-safe.
pub fn request_shutdown() {
    if !SHUTDOWN_PENDING.swap(true, Ordering::SeqCst) {
        watch::wake_all_waiting(0);
        super::waiting::announce_shutdown();
    }
}

/// The shutdown handler's body for signal `sig`: like
/// [`request_shutdown`] (`sig` wakes the other threads if the library has
/// no wake signal of its own). Async-signal-safe.
pub fn shutdown_signal(sig: i32) {
    if !SHUTDOWN_PENDING.swap(true, Ordering::SeqCst) {
        watch::wake_all_waiting(sig);
        super::waiting::announce_shutdown();
    }
}

pub fn shutdown_pending() -> bool {
    SHUTDOWN_PENDING.load(Ordering::SeqCst)
}

/// errno values after which `accept()` is simply tried again
/// (ECONNABORTED, EPROTO, ECONNRESET, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH).
fn is_transient(err: &io::Error) -> bool {
    err.raw_os_error()
        .is_some_and(|e| sys::code::TRANSIENT_ACCEPT.contains(&e))
}

/// An accepted connection.
pub struct Accepted {
    pub fd: OwnedFd,
    pub peer: Peer,
}

/// Accepts the next connection the allowlist lets through. EINTR ends the
/// wait when `fail_on_intr` is set or a shutdown was requested; otherwise
/// it is retried. Returns EINTR at once if a shutdown is pending.
pub fn accept_connection(
    listen: BorrowedFd<'_>,
    fail_on_intr: bool,
    cfg: &Config,
) -> io::Result<Accepted> {
    loop {
        if let Some(a) = accept_one(listen, fail_on_intr, cfg)? {
            return Ok(a);
        }
    }
}

/// Like [`accept_connection`], but `Ok(None)` when the watcher interrupted
/// the wait because parked connections need this thread.
pub fn accept_one(
    listen: BorrowedFd<'_>,
    fail_on_intr: bool,
    cfg: &Config,
) -> io::Result<Option<Accepted>> {
    accept_one_by(listen, fail_on_intr, cfg, 0)
}

/// [`accept_one`] with a deadline ([`watch::now_ms`] value; 0: none): a
/// wait still blocked then is ended by the watcher (`Ok(None)`).
pub fn accept_one_by(
    listen: BorrowedFd<'_>,
    fail_on_intr: bool,
    cfg: &Config,
    deadline: u64,
) -> io::Result<Option<Accepted>> {
    let waiting = watch::Waiting::enter(watch::State::Accept, listen.as_raw_fd(), deadline);
    loop {
        if shutdown_pending() {
            return Err(io::Error::from_raw_os_error(sys::code::EINTR));
        }
        // Windows has no signal to interrupt accept(): the wait looks at
        // the shutdown flag every few hundred milliseconds instead.
        #[cfg(unix)]
        let accepted = sys::accept(listen);
        #[cfg(windows)]
        let accepted = sys::accept_unless(listen, shutdown_pending);
        match accepted {
            Ok((fd, peer)) => {
                if let Peer::Ip(ip) = peer {
                    if !cfg.allows(ip) {
                        config::log(format_args!(
                            "connection from {ip} refused: not in FCGI_WEB_SERVER_ADDRS"
                        ));
                        continue;
                    }
                }
                return Ok(Some(Accepted { fd, peer }));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                let ours = waiting.nudged() != watch::Nudge::None;
                if shutdown_pending() || (fail_on_intr && !ours) {
                    return Err(e);
                }
                if ours {
                    return Ok(None);
                }
            }
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: Option<&str>, port: u16) -> BindAddr {
        BindAddr::Tcp {
            host: host.map(str::to_string),
            port,
        }
    }

    #[test]
    fn address_syntax() {
        assert_eq!(BindAddr::parse(":9000"), tcp(None, 9000));
        assert_eq!(BindAddr::parse("*:9000"), tcp(None, 9000));
        assert_eq!(BindAddr::parse("127.0.0.1:80"), tcp(Some("127.0.0.1"), 80));
        assert_eq!(
            BindAddr::parse("localhost:8080"),
            tcp(Some("localhost"), 8080)
        );
        assert_eq!(BindAddr::parse("[::1]:9000"), tcp(Some("::1"), 9000));
        assert_eq!(BindAddr::parse("host:0"), BindAddr::Unix("host:0".into()));
        assert_eq!(
            BindAddr::parse("/tmp/x:9000"),
            BindAddr::Unix("/tmp/x:9000".into())
        );
        assert_eq!(BindAddr::parse("sock"), BindAddr::Unix("sock".into()));
        assert_eq!(
            BindAddr::parse("::1:9000"),
            BindAddr::Unix("::1:9000".into())
        );
        assert_eq!(BindAddr::parse("a:70000"), BindAddr::Unix("a:70000".into()));
    }

    #[test]
    fn ipv6_loopback_listens_and_accepts() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        };
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let addr = BindAddr::parse(&format!("[::1]:{port}"));
        assert_eq!(addr, tcp(Some("::1"), port));
        let listener = addr.listen(4).unwrap();
        let mut client = std::net::TcpStream::connect(("::1", port)).unwrap();
        client.write_all(b"x").unwrap();
        let cfg = Config::from_env();
        let a = accept_connection(listener.as_fd(), false, &cfg).unwrap();
        assert!(matches!(a.peer, Peer::Ip(std::net::IpAddr::V6(ip)) if ip.is_loopback()));
    }

    #[test]
    fn bad_host_is_an_error_not_an_exit() {
        let e = BindAddr::parse("no-such-host.invalid:9000")
            .listen(5)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL));
    }

    #[test]
    fn unix_listener_keeps_foreign_files() {
        let dir = std::env::temp_dir().join(format!("fcgi-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("regular");
        std::fs::write(&file, b"keep me").unwrap();
        let e = BindAddr::Unix(file.clone()).listen(5).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRINUSE));
        assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

        let sock = dir.join("sock");
        let live = BindAddr::Unix(sock.clone()).listen(5).unwrap();
        assert_eq!(
            BindAddr::Unix(sock.clone())
                .listen(5)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EADDRINUSE)
        );
        drop(live); // now stale: the file stays but nobody listens
        let again = BindAddr::Unix(sock.clone()).listen(5);
        assert!(again.is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
