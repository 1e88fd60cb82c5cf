//! Process-wide settings, read once from the environment (like libfcgi's
//! `FCGX_Init`): the web-server allowlist, the bound on request parameters,
//! and the close timeout.

use crate::protocol::Capabilities;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Default bound on the total size of one request's `FCGI_PARAMS` stream.
pub const DEFAULT_MAX_PARAMS_SIZE: usize = 1 << 20;
/// Default time a closed connection is drained for (ms), as libfcgi.
pub const DEFAULT_CLOSE_TIMEOUT_MS: i32 = 2000;

#[derive(Debug, Clone)]
pub struct Config {
    /// Peers allowed to connect over TCP (`FCGI_WEB_SERVER_ADDRS`); `None`
    /// (unset or empty variable) = all. A list in which no entry is an
    /// address lets nobody in.
    pub web_server_addrs: Option<Vec<IpAddr>>,
    /// Bound on a request's PARAMS bytes (`LIBFCGI_MAX_PARAMS_SIZE`).
    pub max_params_size: usize,
    /// How long a closed connection with unread input is drained
    /// (`LIBFCGI_OS_CLOSE_POLL_TIMEOUT`, ms), in a background thread.
    pub close_timeout_ms: i32,
    /// Answers to FCGI_GET_VALUES.
    pub capabilities: Capabilities,
    /// Where library diagnostics go (`LIBFCGI_LOG`).
    pub log: LogTarget,
    /// The mode, user and group of Unix sockets `FCGX_OpenSocket` creates
    /// (`LIBFCGI_SOCKET_MODE`, `LIBFCGI_SOCKET_USER`,
    /// `LIBFCGI_SOCKET_GROUP`), as given: parsed at each open.
    pub socket_mode: Option<String>,
    pub socket_user: Option<String>,
    pub socket_group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Off,
    Stderr,
    File(std::path::PathBuf),
}

/// Parses `FCGI_WEB_SERVER_ADDRS`: addresses separated by commas (spaces
/// around an entry are ignored); entries that are not addresses are skipped.
pub fn parse_addr_list(text: &str) -> Vec<IpAddr> {
    text.split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

impl Config {
    pub fn from_env() -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let log = match var("LIBFCGI_LOG").as_deref() {
            None | Some("stderr") => LogTarget::Stderr,
            Some("off") | Some("0") => LogTarget::Off,
            Some(path) => LogTarget::File(path.into()),
        };
        Config {
            web_server_addrs: var("FCGI_WEB_SERVER_ADDRS").map(|v| parse_addr_list(&v)),
            max_params_size: var("LIBFCGI_MAX_PARAMS_SIZE")
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .unwrap_or(DEFAULT_MAX_PARAMS_SIZE),
            close_timeout_ms: var("LIBFCGI_OS_CLOSE_POLL_TIMEOUT")
                .and_then(|v| v.parse().ok())
                .filter(|&n: &i32| n >= 0)
                .unwrap_or(DEFAULT_CLOSE_TIMEOUT_MS),
            capabilities: Capabilities::default(),
            log,
            socket_mode: var("LIBFCGI_SOCKET_MODE"),
            socket_user: var("LIBFCGI_SOCKET_USER"),
            socket_group: var("LIBFCGI_SOCKET_GROUP"),
        }
    }

    /// Whether a TCP peer may talk to us. IPv4-mapped IPv6 peers are
    /// compared as IPv4.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let Some(list) = &self.web_server_addrs else {
            return true;
        };
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(peer),
            v4 => v4,
        };
        list.contains(&peer)
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Default time a connection has to deliver a complete request head
/// (BEGIN_REQUEST through the end of FCGI_PARAMS), from its accept or from
/// the first byte of a kept-alive connection's next request.
pub const DEFAULT_HEAD_TIMEOUT_MS: u64 = 30_000;
/// Default time one read of a request's stdin may wait for the next bytes.
pub const DEFAULT_STDIN_TIMEOUT_MS: u64 = 60_000;
/// Default time one write of a response may stay blocked on a peer that
/// does not read.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 60_000;
/// Default number of connections that wait without a thread (idle
/// kept-alive connections and incomplete request heads).
pub const DEFAULT_MAX_WAITING: u64 = 1024;
/// Default number of FCGI_PARAMS pairs in one request.
pub const DEFAULT_MAX_PARAMS: u64 = 1000;

/// The limits that protect the process from slow or hostile peers. Read
/// from the environment with the rest of the configuration, and changeable
/// at run time (`fcgi_ext.h`). A timeout of 0 means none.
#[derive(Debug)]
pub struct Limits {
    head_timeout_ms: AtomicU64,
    stdin_timeout_ms: AtomicU64,
    write_timeout_ms: AtomicU64,
    max_waiting: AtomicU64,
    max_params: AtomicU64,
}

/// Which limit, for [`Limits::set`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `LIBFCGI_HEAD_TIMEOUT` (ms).
    HeadTimeout,
    /// `LIBFCGI_STDIN_TIMEOUT` (ms).
    StdinTimeout,
    /// `LIBFCGI_WRITE_TIMEOUT` (ms).
    WriteTimeout,
    /// `LIBFCGI_MAX_WAITING_CONNS` (at least 1).
    MaxWaiting,
    /// `LIBFCGI_MAX_PARAMS` (at least 1).
    MaxParams,
}

impl Limit {
    /// The environment variable and the default.
    pub fn variable(self) -> (&'static str, u64) {
        match self {
            Limit::HeadTimeout => ("LIBFCGI_HEAD_TIMEOUT", DEFAULT_HEAD_TIMEOUT_MS),
            Limit::StdinTimeout => ("LIBFCGI_STDIN_TIMEOUT", DEFAULT_STDIN_TIMEOUT_MS),
            Limit::WriteTimeout => ("LIBFCGI_WRITE_TIMEOUT", DEFAULT_WRITE_TIMEOUT_MS),
            Limit::MaxWaiting => ("LIBFCGI_MAX_WAITING_CONNS", DEFAULT_MAX_WAITING),
            Limit::MaxParams => ("LIBFCGI_MAX_PARAMS", DEFAULT_MAX_PARAMS),
        }
    }

    /// Counts (not timeouts) must be at least 1.
    fn least(self) -> u64 {
        match self {
            Limit::MaxWaiting | Limit::MaxParams => 1,
            _ => 0,
        }
    }
}

impl Limits {
    fn from_env() -> Limits {
        let read = |l: Limit| {
            let (name, default) = l.variable();
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&v| v >= l.least())
                .unwrap_or(default)
        };
        Limits {
            head_timeout_ms: AtomicU64::new(read(Limit::HeadTimeout)),
            stdin_timeout_ms: AtomicU64::new(read(Limit::StdinTimeout)),
            write_timeout_ms: AtomicU64::new(read(Limit::WriteTimeout)),
            max_waiting: AtomicU64::new(read(Limit::MaxWaiting)),
            max_params: AtomicU64::new(read(Limit::MaxParams)),
        }
    }

    fn cell(&self, l: Limit) -> &AtomicU64 {
        match l {
            Limit::HeadTimeout => &self.head_timeout_ms,
            Limit::StdinTimeout => &self.stdin_timeout_ms,
            Limit::WriteTimeout => &self.write_timeout_ms,
            Limit::MaxWaiting => &self.max_waiting,
            Limit::MaxParams => &self.max_params,
        }
    }

    pub fn get(&self, l: Limit) -> u64 {
        self.cell(l).load(Ordering::Relaxed)
    }

    /// Sets a limit for the whole process. A count below 1 is refused
    /// (`false`, nothing changes).
    pub fn set(&self, l: Limit, value: u64) -> bool {
        if value < l.least() {
            return false;
        }
        self.cell(l).store(value, Ordering::Relaxed);
        true
    }

    pub fn head_timeout_ms(&self) -> u64 {
        self.get(Limit::HeadTimeout)
    }
    pub fn stdin_timeout_ms(&self) -> u64 {
        self.get(Limit::StdinTimeout)
    }
    pub fn write_timeout_ms(&self) -> u64 {
        self.get(Limit::WriteTimeout)
    }
    pub fn max_waiting(&self) -> usize {
        self.get(Limit::MaxWaiting) as usize
    }
    pub fn max_params(&self) -> usize {
        self.get(Limit::MaxParams) as usize
    }
}

/// The process's limits, read from the environment on first use.
pub fn limits() -> &'static Limits {
    static LIMITS: OnceLock<Limits> = OnceLock::new();
    LIMITS.get_or_init(Limits::from_env)
}

/// Default bytes of a response's STDOUT buffered before they are sent:
/// four records of 64 KiB.
pub const DEFAULT_STDOUT_BUFFER: usize =
    super::output::MAX_BUFFERED_RECORDS * super::output::RECORD_CHUNK;

/// The STDOUT buffer of requests accepted from now on, in bytes
/// (`LIBFCGI_STDOUT_BUFFER`, at most [`super::output::MAX_CAPACITY`]; 0:
/// unbuffered). Read from the environment on first use.
fn stdout_buffer_cell() -> &'static std::sync::atomic::AtomicUsize {
    static CELL: OnceLock<std::sync::atomic::AtomicUsize> = OnceLock::new();
    CELL.get_or_init(|| {
        let size = std::env::var("LIBFCGI_STDOUT_BUFFER")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n <= super::output::MAX_CAPACITY)
            .unwrap_or(DEFAULT_STDOUT_BUFFER);
        std::sync::atomic::AtomicUsize::new(size)
    })
}

/// Bytes of STDOUT a request buffers (see [`set_stdout_buffer`]).
pub fn stdout_buffer() -> usize {
    stdout_buffer_cell().load(Ordering::Relaxed)
}

/// Sets the STDOUT buffer of requests accepted from now on, for the whole
/// process; 0 sends every write at once. A size above
/// [`super::output::MAX_CAPACITY`] is refused (`false`, nothing changes).
pub fn set_stdout_buffer(bytes: usize) -> bool {
    if bytes > super::output::MAX_CAPACITY {
        return false;
    }
    stdout_buffer_cell().store(bytes, Ordering::Relaxed);
    true
}

/// Most diagnostic lines written in one second.
pub const LOG_LINES_PER_SECOND: u32 = 10;

struct LogRate {
    second: u64,
    written: u32,
    suppressed: u64,
}

static LOG_RATE: std::sync::Mutex<LogRate> = std::sync::Mutex::new(LogRate {
    second: 0,
    written: 0,
    suppressed: 0,
});

/// The process configuration, read from the environment on first use.
pub fn config() -> &'static Config {
    CONFIG.get_or_init(Config::from_env)
}

/// Writes one diagnostic line where `LIBFCGI_LOG` says (standard error by
/// default, but only when it is not a socket: a web server may have closed
/// fd 2 and a connection may now sit there).
///
/// At most [`LOG_LINES_PER_SECOND`] lines a second are written, so a peer
/// that opens connections only to break them cannot flood the log; the
/// number of lines left out is reported with the next line written.
pub fn log(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if config().log == LogTarget::Off {
        return;
    }
    let suppressed = {
        let mut rate = LOG_RATE.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if rate.second != now {
            rate.second = now;
            rate.written = 0;
        }
        if rate.written >= LOG_LINES_PER_SECOND {
            rate.suppressed += 1;
            return;
        }
        rate.written += 1;
        std::mem::take(&mut rate.suppressed)
    };
    let mut line = format!("libfcgi[{}]: {}\n", std::process::id(), msg);
    if suppressed > 0 {
        line = format!(
            "libfcgi[{}]: ({suppressed} similar lines left out)\n{line}",
            std::process::id()
        );
    }
    match &config().log {
        LogTarget::Off => {}
        #[cfg(unix)]
        LogTarget::Stderr => {
            let stderr = std::io::stderr();
            let fd = std::os::fd::AsFd::as_fd(&stderr);
            if crate::sys::socket_family(fd).is_err() {
                let _ = crate::sys::write_all(fd, line.as_bytes());
            }
        }
        // Windows: the standard error handle (a socket is never passed there).
        #[cfg(windows)]
        LogTarget::Stderr => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        LogTarget::File(p) => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_list_parsing() {
        let l = parse_addr_list("127.0.0.1, 10.0.0.2,bogus,::1 ");
        assert_eq!(l.len(), 3);
        let mut c = Config::from_env();
        c.web_server_addrs = Some(l);
        assert!(c.allows("127.0.0.1".parse().unwrap()));
        assert!(c.allows("::ffff:10.0.0.2".parse().unwrap()));
        assert!(!c.allows("10.0.0.3".parse().unwrap()));
        c.web_server_addrs = Some(parse_addr_list("garbage, more garbage"));
        assert!(
            !c.allows("127.0.0.1".parse().unwrap()),
            "a list of no addresses must not fail open"
        );
        c.web_server_addrs = None;
        assert!(c.allows("10.0.0.3".parse().unwrap()));
    }
}
