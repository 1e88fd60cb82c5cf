//! The two ways connections are driven.
//!
//! * [`run_epoll`]: one thread drives many non-blocking connections with
//!   level-triggered epoll. A response is read as soon as it is ready and the
//!   next request goes out from the same loop iteration, so one wake-up can
//!   serve many connections (few context switches on a small machine).
//! * [`run_blocking`]: one connection per thread with blocking calls
//!   (write the request, read until END_REQUEST): the fewest system calls
//!   per request, used for a single connection with a small request.
//!
//! Both check every response and count what went wrong.

use crate::net::{self, Connect, Epoll, RawAddr};
use crate::wire::{End, ProtoError, Response, Template, Verify};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What every worker shares (read-only).
pub struct Config {
    pub addr: RawAddr,
    pub tcp: bool,
    pub keep_alive: bool,
    pub timeout: Duration,
    pub verify: Verify,
    pub template: Template,
    /// STDOUT of the first response: every later one is compared with it.
    pub reference: Vec<u8>,
}

/// When to stop issuing requests: at a deadline or after a number of them.
pub struct Stop {
    deadline: Option<Instant>,
    limit: Option<u64>,
    tickets: AtomicU64,
    stopped: AtomicBool,
    /// Set by the watchdog: blocked connections are being shut down.
    pub aborting: AtomicBool,
}

impl Stop {
    pub fn new(deadline: Option<Instant>, limit: Option<u64>) -> Stop {
        Stop {
            deadline,
            limit,
            tickets: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            aborting: AtomicBool::new(false),
        }
    }

    /// Takes a ticket for one more request, if the run is not over.
    pub fn may_start(&self, now: Instant) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return false;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.stopped.store(true, Ordering::Relaxed);
            return false;
        }
        if let Some(l) = self.limit {
            if self.tickets.fetch_add(1, Ordering::Relaxed) >= l {
                self.stopped.store(true, Ordering::Relaxed);
                return false;
            }
        }
        true
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// What went wrong with a request.
#[derive(Debug)]
enum Failure {
    Connect(io::Error),
    Io(io::Error),
    /// The server closed the connection before END_REQUEST.
    Eof,
    Proto(ProtoError),
    Timeout,
}

/// Counters of one worker; merged at the end.
#[derive(Default)]
pub struct Stats {
    pub lat_ns: Vec<u64>,
    pub ok: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub stdout_bytes: u64,
    pub conns_opened: u64,
    /// Connections that ended (or never connected) without one complete response.
    pub unserved: u64,
    pub err_connect: u64,
    pub err_io: u64,
    pub err_eof: u64,
    pub err_proto: u64,
    pub err_status: u64,
    pub err_content: u64,
    pub err_timeout: u64,
    pub first_error: Option<String>,
}

impl Stats {
    pub fn errors(&self) -> u64 {
        self.err_connect
            + self.err_io
            + self.err_eof
            + self.err_proto
            + self.err_status
            + self.err_content
            + self.err_timeout
    }

    pub fn merge(&mut self, o: Stats) {
        self.lat_ns.extend_from_slice(&o.lat_ns);
        self.ok += o.ok;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.stdout_bytes += o.stdout_bytes;
        self.conns_opened += o.conns_opened;
        self.unserved += o.unserved;
        self.err_connect += o.err_connect;
        self.err_io += o.err_io;
        self.err_eof += o.err_eof;
        self.err_proto += o.err_proto;
        self.err_status += o.err_status;
        self.err_content += o.err_content;
        self.err_timeout += o.err_timeout;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn note(&mut self, msg: impl FnOnce() -> String) {
        if self.first_error.is_none() {
            self.first_error = Some(msg());
        }
    }

    fn fail(&mut self, f: Failure, aborting: bool) {
        let f = match f {
            Failure::Io(_) | Failure::Eof if aborting => Failure::Timeout,
            f => f,
        };
        match &f {
            Failure::Connect(_) => self.err_connect += 1,
            Failure::Io(_) => self.err_io += 1,
            Failure::Eof => self.err_eof += 1,
            Failure::Proto(_) => self.err_proto += 1,
            Failure::Timeout => self.err_timeout += 1,
        }
        self.note(|| match f {
            Failure::Connect(e) => format!("connect: {e}"),
            Failure::Io(e) => format!("i/o: {e}"),
            Failure::Eof => "connection closed before END_REQUEST".into(),
            Failure::Proto(p) => format!("protocol: {p}"),
            Failure::Timeout => "request timed out".into(),
        });
    }

    /// Accounts a complete response; `true` if it was good.
    fn complete(&mut self, end: &End, latency: Duration) -> bool {
        if end.protocol_status != 0 || end.app_status != 0 {
            self.err_status += 1;
            self.note(|| {
                format!(
                    "END_REQUEST protocolStatus {} appStatus {}",
                    end.protocol_status, end.app_status
                )
            });
            false
        } else if !end.content_ok {
            self.err_content += 1;
            self.note(|| {
                format!(
                    "response differs from the first one ({} stdout bytes)",
                    end.stdout_len
                )
            });
            false
        } else {
            self.ok += 1;
            self.stdout_bytes += end.stdout_len as u64;
            self.lat_ns.push(latency.as_nanos() as u64);
            true
        }
    }
}

fn next_id(id: u16) -> u16 {
    if id == u16::MAX { 1 } else { id + 1 }
}

/// First request id of connection slot `slot` (spread so ids differ).
pub fn first_id(slot: usize) -> u16 {
    ((slot * 7919) % 65534 + 1) as u16
}

// ---------------------------------------------------------------- epoll

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Writing,
    Reading,
    Backoff(Instant),
    Done,
}

struct Conn {
    fd: Option<OwnedFd>,
    registered_out: bool,
    st: St,
    req: Vec<u8>,
    wpos: usize,
    id: u16,
    started: Instant,
    resp: Response,
    served_on_socket: u64,
}

struct Worker<'a> {
    cfg: &'a Config,
    stop: &'a Stop,
    ep: Epoll,
    conns: Vec<Conn>,
    buf: Vec<u8>,
    stats: Stats,
    active: usize,
    backoffs: usize,
}

const BACKOFF: Duration = Duration::from_millis(5);

impl Worker<'_> {
    fn close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.fd.take().is_some() && c.served_on_socket == 0 {
            self.stats.unserved += 1;
        }
        c.served_on_socket = 0;
        c.registered_out = false;
    }

    fn set_backoff(&mut self, i: usize, now: Instant) {
        self.conns[i].st = St::Backoff(now + BACKOFF);
        self.backoffs += 1;
    }

    fn fail(&mut self, i: usize, f: Failure, now: Instant) {
        self.stats.fail(f, false);
        self.close(i);
        self.set_backoff(i, now);
    }

    /// Starts the next request on slot `i` (connecting if needed).
    fn start(&mut self, i: usize, now: Instant) {
        if !self.stop.may_start(now) {
            self.close(i);
            self.conns[i].st = St::Done;
            self.active -= 1;
            return;
        }
        let cfg = self.cfg;
        let c = &mut self.conns[i];
        c.id = next_id(c.id);
        cfg.template.set_id(&mut c.req, c.id);
        c.wpos = 0;
        c.resp.reset();
        c.started = now;
        c.st = St::Writing;
        let fresh = c.fd.is_none();
        if fresh {
            match net::connect(&cfg.addr, true) {
                Ok(Connect::Done(fd)) | Ok(Connect::InProgress(fd)) => {
                    if cfg.keep_alive && cfg.tcp {
                        net::set_nodelay(fd.as_raw_fd());
                    }
                    c.fd = Some(fd);
                    c.served_on_socket = 0;
                    self.stats.conns_opened += 1;
                }
                Err(e) => {
                    self.stats.err_connect += 1;
                    self.stats.unserved += 1;
                    self.stats.note(|| format!("connect: {e}"));
                    self.set_backoff(i, now);
                    return;
                }
            }
        }
        // Optimistic write; register for writability only if it blocks.
        let done = match self.flush(i) {
            Ok(d) => d,
            Err(f) => return self.fail(i, f, now),
        };
        let c = &mut self.conns[i];
        let fd = c.fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        let want = if done { net::IN } else { net::IN | net::OUT };
        let r = if fresh {
            c.registered_out = !done;
            self.ep.add(fd, want, i as u64)
        } else if !done && !c.registered_out {
            c.registered_out = true;
            self.ep.modify(fd, want, i as u64)
        } else {
            Ok(())
        };
        if let Err(e) = r {
            self.fail(i, Failure::Io(e), now);
        }
    }

    /// Writes what is left of the request. `Ok(true)` when all is sent.
    fn flush(&mut self, i: usize) -> Result<bool, Failure> {
        let c = &mut self.conns[i];
        let Some(fd) = c.fd.as_ref().map(|f| f.as_raw_fd()) else {
            return Ok(false);
        };
        while c.wpos < c.req.len() {
            match net::write(fd, &c.req[c.wpos..]) {
                Ok(Some(n)) => {
                    c.wpos += n;
                    self.stats.bytes_out += n as u64;
                }
                Ok(None) => return Ok(false),
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                    return Err(Failure::Connect(e));
                }
                Err(e) => return Err(Failure::Io(e)),
            }
        }
        if c.st == St::Writing {
            c.st = St::Reading;
        }
        Ok(true)
    }

    fn on_writable(&mut self, i: usize, now: Instant) {
        match self.flush(i) {
            Ok(true) => {
                let c = &mut self.conns[i];
                if c.registered_out {
                    c.registered_out = false;
                    let fd = c.fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
                    if let Err(e) = self.ep.modify(fd, net::IN, i as u64) {
                        self.fail(i, Failure::Io(e), now);
                    }
                }
            }
            Ok(false) => {}
            Err(f) => self.fail(i, f, now),
        }
    }

    fn on_readable(&mut self, i: usize) {
        let cfg = self.cfg;
        loop {
            let c = &mut self.conns[i];
            let Some(fd) = c.fd.as_ref().map(|f| f.as_raw_fd()) else {
                return;
            };
            let n = match net::read(fd, &mut self.buf) {
                Ok(Some(0)) => {
                    let now = Instant::now();
                    return self.fail(i, Failure::Eof, now);
                }
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    let now = Instant::now();
                    return self.fail(i, Failure::Io(e), now);
                }
            };
            self.stats.bytes_in += n as u64;
            match c
                .resp
                .feed(&self.buf[..n], c.id, &cfg.reference, cfg.verify)
            {
                Ok(Some(end)) => {
                    let now = Instant::now();
                    if end.consumed != n {
                        return self.fail(i, Failure::Proto(ProtoError::TrailingData), now);
                    }
                    let lat = now - c.started;
                    let reuse = cfg.keep_alive && c.wpos == c.req.len();
                    c.served_on_socket += 1;
                    self.stats.complete(&end, lat);
                    if !reuse {
                        self.close(i);
                    }
                    return self.start(i, now);
                }
                Ok(None) => {
                    if n < self.buf.len() {
                        return;
                    }
                }
                Err(p) => {
                    let now = Instant::now();
                    return self.fail(i, Failure::Proto(p), now);
                }
            }
        }
    }

    /// Timeouts and the end of back-offs.
    fn sweep(&mut self, now: Instant) {
        for i in 0..self.conns.len() {
            match self.conns[i].st {
                St::Writing | St::Reading if now - self.conns[i].started > self.cfg.timeout => {
                    self.fail(i, Failure::Timeout, now);
                }
                St::Backoff(t) if now >= t => {
                    self.backoffs -= 1;
                    self.start(i, now);
                }
                _ => {}
            }
        }
    }
}

/// Drives `n` connections (slots `first_slot..first_slot + n`) until the run stops.
pub fn run_epoll(cfg: &Config, stop: &Stop, first_slot: usize, n: usize) -> Stats {
    let ep = Epoll::new().expect("epoll_create1");
    let now = Instant::now();
    let conns = (0..n)
        .map(|k| Conn {
            fd: None,
            registered_out: false,
            st: St::Done,
            req: cfg.template.bytes.clone(),
            wpos: 0,
            id: first_id(first_slot + k),
            started: now,
            resp: Response::new(),
            served_on_socket: 0,
        })
        .collect();
    let mut w = Worker {
        cfg,
        stop,
        ep,
        conns,
        buf: vec![0; 256 * 1024],
        stats: Stats::default(),
        active: n,
        backoffs: 0,
    };
    w.stats.lat_ns.reserve(1 << 16);
    for i in 0..n {
        w.start(i, now);
    }
    let mut events = vec![net::empty_event(); 256];
    let mut last_sweep = now;
    while w.active > 0 {
        let timeout = if w.backoffs > 0 { 2 } else { 20 };
        let got = w.ep.wait(&mut events, timeout);
        for ev in &events[..got] {
            let i = ev.u64 as usize;
            let e = ev.events;
            let st = w.conns[i].st;
            if st == St::Writing && e & (net::OUT | net::ERR) != 0 {
                w.on_writable(i, Instant::now());
            }
            let st = w.conns[i].st;
            if matches!(st, St::Writing | St::Reading) && e & (net::IN | net::ERR) != 0 {
                w.on_readable(i);
            }
        }
        if got == 0 || w.backoffs > 0 || last_sweep.elapsed() >= Duration::from_millis(20) {
            let now = Instant::now();
            w.sweep(now);
            last_sweep = now;
        }
    }
    w.stats
}

// ---------------------------------------------------------------- blocking

/// Drives one connection with blocking calls. `watch` publishes the open
/// socket so the watchdog can shut it down if the run hangs at its end.
pub fn run_blocking(cfg: &Config, stop: &Stop, slot: usize, watch: &AtomicI32) -> Stats {
    let mut st = Stats::default();
    st.lat_ns.reserve(1 << 16);
    let mut req = cfg.template.bytes.clone();
    let mut buf = vec![0u8; 256 * 1024];
    let mut resp = Response::new();
    let mut id = first_id(slot);
    let mut fd: Option<OwnedFd> = None;
    let mut served_on_socket = 0u64;
    let close = |fd: &mut Option<OwnedFd>, served: &mut u64, st: &mut Stats| {
        watch.store(-1, Ordering::SeqCst);
        if fd.take().is_some() && *served == 0 {
            st.unserved += 1;
        }
        *served = 0;
    };
    loop {
        let now = Instant::now();
        if !stop.may_start(now) {
            break;
        }
        if fd.is_none() {
            match net::connect(&cfg.addr, false) {
                Ok(Connect::Done(s)) | Ok(Connect::InProgress(s)) => {
                    if cfg.keep_alive && cfg.tcp {
                        net::set_nodelay(s.as_raw_fd());
                    }
                    watch.store(s.as_raw_fd(), Ordering::SeqCst);
                    fd = Some(s);
                    st.conns_opened += 1;
                }
                Err(e) => {
                    st.err_connect += 1;
                    st.unserved += 1;
                    st.note(|| format!("connect: {e}"));
                    std::thread::sleep(BACKOFF);
                    continue;
                }
            }
        }
        let raw = fd.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        id = next_id(id);
        cfg.template.set_id(&mut req, id);
        resp.reset();
        let started = Instant::now();
        let mut failure = None;
        let mut off = 0;
        while off < req.len() {
            match net::write(raw, &req[off..]) {
                Ok(Some(n)) => off += n,
                Ok(None) => {}
                Err(e) => {
                    failure = Some(Failure::Io(e));
                    break;
                }
            }
        }
        st.bytes_out += off as u64;
        let mut end = None;
        while failure.is_none() {
            match net::read(raw, &mut buf) {
                Ok(Some(0)) => failure = Some(Failure::Eof),
                Ok(Some(n)) => {
                    st.bytes_in += n as u64;
                    match resp.feed(&buf[..n], id, &cfg.reference, cfg.verify) {
                        Ok(Some(e)) if e.consumed != n => {
                            failure = Some(Failure::Proto(ProtoError::TrailingData))
                        }
                        Ok(Some(e)) => {
                            end = Some(e);
                            break;
                        }
                        Ok(None) => {}
                        Err(p) => failure = Some(Failure::Proto(p)),
                    }
                }
                Ok(None) => {}
                Err(e) => failure = Some(Failure::Io(e)),
            }
        }
        if let Some(f) = failure {
            st.fail(f, stop.aborting.load(Ordering::SeqCst));
            close(&mut fd, &mut served_on_socket, &mut st);
            if stop.aborting.load(Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(BACKOFF);
            continue;
        }
        if let Some(e) = end {
            served_on_socket += 1;
            st.complete(&e, started.elapsed());
            if !cfg.keep_alive {
                close(&mut fd, &mut served_on_socket, &mut st);
            }
        }
    }
    close(&mut fd, &mut served_on_socket, &mut st);
    st
}
