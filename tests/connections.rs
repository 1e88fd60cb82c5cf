//! Threads serve requests, not connections (issue #12): a connection that
//! is idle, or whose request head is still incomplete, waits without a
//! thread, so an application with a few threads keeps answering however
//! many such connections are open.
//!
//! With libfcgi's model (and ours before the change) a thread in
//! `FCGX_Accept_r` stays with its connection until that connection closes:
//! four silent connections take four threads, and every later request
//! waits in the listen backlog. These tests then fail at their first
//! deadline (each is bounded in time).
//!
//! The application is `tests/c/conn_app.c`: N threads, one listening TCP
//! socket; each answer says the request's `keepConnection` flag and the
//! peer port of the connection it came on, so the connections are counted
//! from inside the application.
//!
//! The nginx test installs nothing (`.ci/run` installs nginx); without
//! nginx it prints a message and passes, except under CI (env `CI`).

mod common;

use common::nginx::{HttpConn, Nginx, Scratch, nginx_binary};
use common::{App, Options, Transport, scale};
use fcgi::client::{Client, Request};
use fcgi::protocol::record::push_record;
use fcgi::protocol::{BeginRequest, kind, push_pair};
use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The tests of this file measure latencies on a 2-CPU machine: they run
/// one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// conn_app with `threads` threads on a fresh loopback port.
fn conn_app(threads: &str) -> App {
    App::under_test_with(
        "conn_app",
        Options {
            transport: Transport::Tcp,
            args: &[threads],
            env: &[],
        },
    )
}

fn socket_addr(app: &App) -> SocketAddr {
    app.addr.parse().expect("conn_app listens on host:port")
}

/// What conn_app says about a request: `keep=K peer=P thread=T query=Q`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    keep: u32,
    peer: u16,
    thread: u32,
    query: String,
}

fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(body);
    let line = text.trim_end_matches('\n');
    let field = |name: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("no {name}= in the answer {line:?}"))
    };
    let number = |name: &str| -> Result<u64, String> {
        field(name)?
            .parse()
            .map_err(|_| format!("{name} is not a number in {line:?}"))
    };
    Ok(Answer {
        keep: number("keep")? as u32,
        peer: number("peer")? as u16,
        thread: number("thread")? as u32,
        query: field("query")?.to_string(),
    })
}

/// The first 8 bytes of a BEGIN_REQUEST record: its header alone.
fn begin_header_only(id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let body = BeginRequest { role: 1, flags: 1 }.encode();
    push_record(&mut out, kind::BEGIN_REQUEST, id, &body);
    out.truncate(8);
    out
}

/// A whole BEGIN_REQUEST, then a PARAMS record of which only the first
/// complete pair and half of the second arrive: the connection stops in the
/// middle of a name-value pair (and of a record).
fn begin_and_half_params(id: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let body = BeginRequest { role: 1, flags: 1 }.encode();
    push_record(&mut out, kind::BEGIN_REQUEST, id, &body);
    let mut pairs = Vec::new();
    push_pair(&mut pairs, b"REQUEST_METHOD", b"GET");
    let first = pairs.len();
    push_pair(&mut pairs, b"QUERY_STRING", b"stalled=1");
    push_record(&mut out, kind::PARAMS, id, &pairs);
    let cut = out.len() - (pairs.len() - first) / 2;
    out.truncate(cut);
    out
}

/// How a connection opened by the test looks from our side now.
fn still_open(s: &mut TcpStream) -> Result<(), String> {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    let r = match s.read(&mut b) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
        Ok(0) => Err("closed by the application".to_string()),
        Ok(n) => Err(format!("the application sent {n} bytes: {:02x?}", &b[..n])),
        Err(e) => Err(format!("{e}")),
    };
    s.set_nonblocking(false).unwrap();
    r
}

/// One request on a new connection: connected, sent and answered
/// completely within `limit`, on that very connection, with the right
/// keepConnection flag. Returns how long it took.
fn request_on_new_connection(
    addr: SocketAddr,
    n: u16,
    keep: bool,
    limit: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let s = TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    // A little beyond the limit, to tell "late" from "never".
    s.set_read_timeout(Some(limit + Duration::from_millis(500)))
        .unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    let local_port = s.local_addr().unwrap().port();
    let mut client = Client::from_tcp(s);
    let req = Request::responder()
        .id(n)
        .keep_conn(keep)
        .param("REQUEST_METHOD", "GET")
        .param("QUERY_STRING", format!("n={n}"));
    let resp = client
        .request(&req)
        .map_err(|e| format!("no complete answer after {:?}: {e}", start.elapsed()))?;
    let took = start.elapsed();
    if resp.protocol_status != 0 || resp.app_status != 0 || !resp.stdout_ended {
        return Err(format!(
            "END_REQUEST protocolStatus {} appStatus {}, stdout ended: {}",
            resp.protocol_status, resp.app_status, resp.stdout_ended
        ));
    }
    let a = parse_answer(resp.body())?;
    let want = Answer {
        keep: keep as u32,
        peer: local_port,
        thread: a.thread,
        query: format!("n={n}"),
    };
    if a != want {
        return Err(format!("answer {a:?}, expected {want:?}"));
    }
    if took > limit {
        return Err(format!("answered completely, but only after {took:?}"));
    }
    Ok(took)
}

const WAITING: usize = 1000;

#[test]
fn thousand_waiting_connections_do_not_starve_threads() {
    let _serial = one_at_a_time();
    let test_start = Instant::now();
    // Ours and the application's descriptors (it inherits the limit).
    let need = (WAITING + 200) as u64;
    let soft = common::raise_nofile_limit(need);
    assert!(
        soft >= need,
        "RLIMIT_NOFILE is {soft} even after raising the soft limit to the hard one; \
         this test needs {need} descriptors"
    );
    let mut app = conn_app("4");
    let addr = socket_addr(&app);
    let base_fds = app.fd_count();

    // 500 connections that send nothing, 250 with the first 8 bytes of a
    // BEGIN_REQUEST, 250 with BEGIN_REQUEST and half a PARAMS pair;
    // interleaved, as they would arrive from many peers.
    let opening = Instant::now();
    let mut waiting = Vec::with_capacity(WAITING);
    for i in 0..WAITING {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i} of {WAITING}: {e}"));
        let id = (i % 60000 + 1) as u16;
        match i % 4 {
            0 | 1 => {}
            2 => s.write_all(&begin_header_only(id)).unwrap(),
            _ => s.write_all(&begin_and_half_params(id)).unwrap(),
        }
        waiting.push(s);
    }
    let opened = opening.elapsed();
    // Give the application a moment to take them in (informational: the
    // old model takes four and leaves the rest in the backlog).
    let settle = Instant::now() + Duration::from_secs(2);
    while app.fd_count() < base_fds + WAITING && Instant::now() < settle {
        thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{WAITING} waiting connections opened in {opened:?}; the application holds {} \
         descriptors ({} before)",
        app.fd_count(),
        base_fds
    );

    let limit = Duration::from_secs(1) * scale();
    // Ten one after the other, half of them asking to keep the connection.
    let mut slowest = Duration::ZERO;
    for n in 1..=10u16 {
        match request_on_new_connection(addr, n, n % 2 == 0, limit) {
            Ok(took) => slowest = slowest.max(took),
            Err(e) => panic!(
                "request {n} (sequential) while {WAITING} connections wait: {e}; \
                 the application holds {} descriptors (four threads: a thread must not \
                 stay with an idle or incomplete connection)",
                app.fd_count()
            ),
        }
    }
    // Ten more from five threads at once.
    let results: Vec<(u16, Result<Duration, String>)> = thread::scope(|s| {
        let handles: Vec<_> = (0..5u16)
            .map(|t| {
                s.spawn(move || {
                    (0..2u16)
                        .map(|k| {
                            let n = 11 + t * 2 + k;
                            (n, request_on_new_connection(addr, n, k == 1, limit))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread panicked"))
            .collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("request {n}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "concurrent requests while {WAITING} connections wait:\n{}",
        failed.join("\n")
    );
    for (_, r) in &results {
        slowest = slowest.max(*r.as_ref().unwrap());
    }

    // The waiting connections were left alone: none closed, none answered.
    let mut disturbed = Vec::new();
    for (i, s) in waiting.iter_mut().enumerate() {
        if let Err(e) = still_open(s) {
            disturbed.push(format!("connection {i}: {e}"));
        }
    }
    assert!(
        disturbed.is_empty(),
        "{} of the {WAITING} waiting connections did not simply wait, e.g. {:?}",
        disturbed.len(),
        &disturbed[..disturbed.len().min(5)]
    );
    app.assert_alive();
    eprintln!(
        "20 requests answered while {WAITING} connections waited; slowest {slowest:?}; \
         whole test {:?}",
        test_start.elapsed()
    );
}

// ---------------------------------------------------------------- nginx

const NGINX_WORKERS: u32 = 4;
const CLIENTS: usize = 128;
const LOAD_SECS: u64 = 10;

fn keepalive_conf(dir: &std::path::Path, port: u16, app_port: u16) -> String {
    format!(
        r#"{preamble}    access_log off;
    keepalive_requests 1000000;
    upstream app {{
        server 127.0.0.1:{app_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            fastcgi_pass app;
            fastcgi_keep_conn on;
            fastcgi_connect_timeout 5s;
            fastcgi_send_timeout 5s;
            fastcgi_read_timeout 5s;{params}        }}
    }}
}}
"#,
        preamble = common::nginx::preamble_with_workers(dir, "1m", NGINX_WORKERS, 1024),
        params = common::nginx::FASTCGI_PARAMS,
    )
}

/// What one load thread saw.
#[derive(Default)]
struct Seen {
    ok: u64,
    latencies_us: Vec<u64>,
    errors: Vec<String>,
    not_kept: u64,
    peers: HashSet<u16>,
    /// Requests slower than [`SLOW`]: (microseconds, what the app said).
    slow: Vec<(u64, String)>,
}

/// Requests this slow are listed when the test fails.
const SLOW: Duration = Duration::from_millis(200);

/// One client: keep-alive GETs back to back until `stop`, a new connection
/// only after an error or a close by nginx.
fn load_client(port: u16, client: usize, stop: &AtomicBool, timeout: Duration) -> Seen {
    let mut seen = Seen::default();
    let mut conn: Option<HttpConn> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if conn.as_ref().is_none_or(|c| c.closed) {
            match HttpConn::connect(port, timeout) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    seen.errors.push(format!("client {client}: {e}"));
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
        }
        n += 1;
        let target = format!("/load?c={client}&n={n}");
        let start = Instant::now();
        let result = conn.as_mut().unwrap().get(&target);
        let took = start.elapsed();
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                seen.errors
                    .push(format!("client {client} {target}: {e} after {took:?}"));
                conn = None;
                continue;
            }
        };
        seen.latencies_us.push(took.as_micros() as u64);
        if resp.status != 200 {
            seen.errors.push(format!(
                "client {client} {target}: status {} after {took:?}",
                resp.status
            ));
            continue;
        }
        match parse_answer(&resp.body) {
            Ok(a) if a.query == format!("c={client}&n={n}") => {
                if took >= SLOW {
                    seen.slow.push((
                        took.as_micros() as u64,
                        format!("client {client} request {n}: FastCGI connection from port {}, thread {}", a.peer, a.thread),
                    ));
                }
                seen.ok += 1;
                if a.keep != 1 {
                    seen.not_kept += 1;
                }
                seen.peers.insert(a.peer);
            }
            Ok(a) => seen.errors.push(format!(
                "client {client} {target}: answer for {:?}",
                a.query
            )),
            Err(e) => seen.errors.push(format!("client {client} {target}: {e}")),
        }
    }
    seen
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[test]
fn nginx_keepalive_with_more_connections_than_threads() {
    let _serial = one_at_a_time();
    let test = "keepalive_more_conns_than_threads";
    let Some(nginx_bin) = nginx_binary(test) else {
        return;
    };
    let mut app = conn_app("4");
    let app_port = socket_addr(&app).port();
    let dir = Scratch::new("connections-test", test);
    let mut nginx = Nginx::start(&nginx_bin, dir.path(), |port| {
        keepalive_conf(dir.path(), port, app_port)
    });
    let port = nginx.port;

    // A first request through the whole chain before the clock starts.
    let mut first = HttpConn::connect(port, Duration::from_secs(10)).unwrap();
    let r = first
        .get("/warmup")
        .unwrap_or_else(|e| panic!("warm-up request: {e}\n{}", nginx.error_log()));
    assert_eq!(r.status, 200, "warm-up: {r:?}\n{}", nginx.error_log());
    drop(first);

    // Below nginx's 5 s fastcgi_read_timeout, so a request no thread ever
    // serves fails here as a client timeout, not as a late 504.
    let timeout = Duration::from_secs(4) * scale();
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let seen: Vec<Seen> = thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let stop = &stop;
                s.spawn(move || load_client(port, c, stop, timeout))
            })
            .collect();
        thread::sleep(Duration::from_secs(LOAD_SECS));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect()
    });
    let elapsed = start.elapsed();

    let ok: u64 = seen.iter().map(|s| s.ok).sum();
    let not_kept: u64 = seen.iter().map(|s| s.not_kept).sum();
    let errors: Vec<&String> = seen.iter().flat_map(|s| &s.errors).collect();
    let mut lat: Vec<u64> = seen
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let max = lat.last().copied().unwrap_or(0);
    let p99 = percentile(&lat, 99.0);
    let p50 = percentile(&lat, 50.0);
    let peers: HashSet<u16> = seen.iter().flat_map(|s| s.peers.iter().copied()).collect();
    eprintln!(
        "{CLIENTS} clients -> nginx ({NGINX_WORKERS} workers, keepalive 32) -> conn_app (4 \
         threads) for {elapsed:.1?}: {ok} requests answered, {:.0} req/s, latency p50 {:.2} ms, \
         p99 {:.2} ms, max {:.2} ms; {} errors; {} FastCGI connections",
        ok as f64 / elapsed.as_secs_f64(),
        p50 as f64 / 1000.0,
        p99 as f64 / 1000.0,
        max as f64 / 1000.0,
        errors.len(),
        peers.len()
    );

    let mut slow: Vec<&(u64, String)> = seen.iter().flat_map(|s| &s.slow).collect();
    slow.sort_by_key(|s| std::cmp::Reverse(s.0));
    let slowest = slow
        .iter()
        .take(10)
        .map(|(us, what)| format!("{:.1} ms: {what}", *us as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join("\n");
    if !slow.is_empty() {
        eprintln!(
            "{} requests took {SLOW:?} or more; the slowest:\n{slowest}",
            slow.len()
        );
    }

    app.assert_alive();
    nginx.assert_running();
    assert!(
        errors.is_empty(),
        "{} of the requests failed, e.g.:\n{}\nnginx's last warnings and errors:\n{}",
        errors.len(),
        errors
            .iter()
            .take(8)
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        log_problems(&nginx.error_log(), 10)
    );
    assert!(ok > 0, "no request was answered");
    assert!(
        max < 2_500_000 * u64::from(scale()),
        "the slowest request took {:.1} ms (p99 {:.1} ms); {} took {SLOW:?} or more, the \
         slowest:\n{slowest}",
        max as f64 / 1000.0,
        p99 as f64 / 1000.0,
        slow.len(),
    );
    assert_eq!(
        not_kept, 0,
        "{not_kept} of {ok} requests came without FCGI_KEEP_CONN"
    );
    assert!(
        (peers.len() as u64) * 10 < ok,
        "{} FastCGI connections for {ok} requests: nginx did not keep them alive",
        peers.len()
    );
    assert!(
        peers.len() > 4,
        "only {} FastCGI connections: the test must have nginx use more connections than the \
         application has threads",
        peers.len()
    );
}

/// The last `lines` warnings and errors of an nginx error log (its info
/// lines, e.g. clients closing, left out).
fn log_problems(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("[info]") && !l.contains("[notice]"))
        .collect();
    if all.is_empty() {
        return "(no warnings or errors)".into();
    }
    all[all.len().saturating_sub(lines)..].join("\n")
}
