//! The limits that protect a process from slow and hostile peers (issue
//! #12, README "Connections, threads and limits"): each is set small
//! through its environment variable, the peer goes past it, and then the
//! connection is closed (or the call fails), one line is logged, and the
//! application goes on serving. Shutdown with parked connections, too.
//!
//! `examples/threaded.c` is the application: N threads, each echoing
//! QUERY_STRING and the request body.

mod common;

use common::{App, Options, secs};
use fcgi::client::{Request, encode_request};
use fcgi::protocol::record::push_record;
use fcgi::protocol::{BeginRequest, kind, push_pair};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn threaded(threads: &str, env: &[(&str, &str)]) -> App {
    App::under_test_with(
        "threaded",
        Options {
            args: &[threads],
            env,
            ..Options::default()
        },
    )
}

fn begin(id: u16, keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let b = BeginRequest {
        role: 1,
        flags: keep as u8,
    }
    .encode();
    push_record(&mut out, kind::BEGIN_REQUEST, id, &b);
    out
}

fn connect(app: &App) -> UnixStream {
    let s = UnixStream::connect(&app.addr).expect("connect");
    s.set_read_timeout(Some(secs(10))).unwrap();
    s
}

/// Reads until the peer closes; returns what came and how long it took.
fn read_to_close(s: &mut UnixStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no close within the read timeout: {e}"),
        }
    }
    (got, start.elapsed())
}

/// Waits until the application's stderr contains `text`.
fn wait_for_log(app: &App, text: &str) -> String {
    let deadline = Instant::now() + secs(15);
    loop {
        let log = app.stderr();
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {text:?} in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn served(s: &mut UnixStream, query: &str) -> Vec<u8> {
    let req = Request::responder()
        .keep_conn(true)
        .param("QUERY_STRING", query);
    s.write_all(&encode_request(&req)).unwrap();
    // The response ends with FCGI_END_REQUEST (16 bytes).
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got
        .windows(8)
        .any(|w| w[0] == 1 && w[1] == kind::END_REQUEST)
    {
        let n = s.read(&mut buf).expect("a response");
        assert!(n > 0, "closed instead of answering {query}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn request_heads_not_complete_in_time_are_closed_held_or_parked() {
    // One thread, five slow heads: one is held by the thread (until the
    // watcher rescues it), the others wait parked. All are closed at the
    // deadline; normal requests are served meanwhile and afterwards.
    let mut app = threaded("1", &[("LIBFCGI_HEAD_TIMEOUT", "400")]);
    let mut slow: Vec<UnixStream> = Vec::new();
    for i in 0..5 {
        let mut s = connect(&app);
        match i % 3 {
            0 => {}                                          // silent
            1 => s.write_all(&begin(1, true)[..8]).unwrap(), // half a BEGIN_REQUEST
            _ => {
                let mut head = begin(1, true);
                let mut p = Vec::new();
                push_pair(&mut p, b"QUERY_STRING", b"x");
                push_record(&mut head, kind::PARAMS, 1, &p);
                head.truncate(head.len() - 3); // in the middle of a pair
                s.write_all(&head).unwrap();
            }
        }
        slow.push(s);
    }
    let start = Instant::now();
    app.assert_serves();
    assert!(
        start.elapsed() < Duration::from_millis(1000) * common::scale(),
        "a normal request waited behind slow heads: {:?}",
        start.elapsed()
    );
    for mut s in slow {
        let (got, _) = read_to_close(&mut s);
        assert!(got.is_empty(), "a slow head got bytes: {got:?}");
    }
    assert!(
        start.elapsed() < secs(3),
        "the slow heads were closed late: {:?}",
        start.elapsed()
    );
    wait_for_log(&app, "LIBFCGI_HEAD_TIMEOUT");
    app.assert_serves();
}

#[test]
fn a_kept_alive_connection_between_requests_has_no_head_deadline() {
    // Idle is not slow: the head deadline starts with the next request.
    let mut app = threaded("2", &[("LIBFCGI_HEAD_TIMEOUT", "300")]);
    let mut s = connect(&app);
    served(&mut s, "first=1");
    std::thread::sleep(Duration::from_millis(900));
    let got = served(&mut s, "second=1");
    assert!(common::contains(&got, b"second=1"));
    app.assert_serves();
}

#[test]
fn stdin_that_stalls_fails_the_read_and_a_steady_upload_does_not() {
    // The limit is eight times the pace of the steady upload below, so a
    // slow, loaded machine that oversleeps a pause does not look stalled.
    let mut app = threaded("2", &[("LIBFCGI_STDIN_TIMEOUT", "800")]);
    // Steady: 1.6 s of uploading, a piece every 100 ms, twice the 800 ms
    // limit in total: nothing is cut.
    let mut s = connect(&app);
    let mut head = begin(1, false);
    push_record(&mut head, kind::PARAMS, 1, &[]);
    s.write_all(&head).unwrap();
    let piece = vec![b's'; 1000];
    for _ in 0..16 {
        let mut r = Vec::new();
        push_record(&mut r, kind::STDIN, 1, &piece);
        s.write_all(&r).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut end = Vec::new();
    push_record(&mut end, kind::STDIN, 1, &[]);
    s.write_all(&end).unwrap();
    let (got, _) = read_to_close(&mut s);
    let echoed = got.iter().filter(|&&b| b == b's').count();
    assert_eq!(echoed, 16_000, "the steady upload was cut");

    // Stalled: half a body, then nothing.
    let mut s = connect(&app);
    let mut head = begin(1, false);
    push_record(&mut head, kind::PARAMS, 1, &[]);
    push_record(&mut head, kind::STDIN, 1, b"partial");
    s.write_all(&head).unwrap();
    let (got, took) = read_to_close(&mut s);
    assert!(
        common::contains(&got, b"partial"),
        "what came before the stall is echoed"
    );
    assert!(
        took >= Duration::from_millis(700) && took < secs(4),
        "closed after {took:?}"
    );
    wait_for_log(&app, "LIBFCGI_STDIN_TIMEOUT");
    app.assert_serves();
}

#[test]
fn a_write_blocked_on_a_peer_that_does_not_read_fails() {
    let mut app = threaded("2", &[("LIBFCGI_WRITE_TIMEOUT", "400")]);
    let s = connect(&app);
    // 16 MiB of body echoed back to a client that does not read while it
    // sends: the application's write blocks, gives up after the limit,
    // and the application reads the rest of the body (its writes now fail
    // at once); the connection is closed when the request finishes.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut out = begin(1, false);
        push_record(&mut out, kind::PARAMS, 1, &[]);
        w.write_all(&out).unwrap();
        let chunk = vec![b'w'; 65000];
        let mut rec = Vec::new();
        push_record(&mut rec, kind::STDIN, 1, &chunk);
        for _ in 0..256 {
            w.write_all(&rec).unwrap();
        }
        let mut end = Vec::new();
        push_record(&mut end, kind::STDIN, 1, &[]);
        w.write_all(&end).unwrap();
    });
    let start = Instant::now();
    wait_for_log(&app, "LIBFCGI_WRITE_TIMEOUT");
    assert!(start.elapsed() < secs(15));
    writer.join().expect("the whole body was taken");
    let mut s = s;
    let (got, _) = read_to_close(&mut s);
    assert!(
        got.len() < 16 * 1024 * 1024,
        "the response was not cut: {} bytes",
        got.len()
    );
    app.assert_serves();
}

#[test]
fn at_the_waiting_limit_the_oldest_idle_connection_is_closed_then_new_ones_refused() {
    let mut app = threaded("1", &[("LIBFCGI_MAX_WAITING_CONNS", "3")]);
    // Five kept-alive connections, each served once and then idle: one
    // thread, so all but one wait parked, and at most 3 may wait.
    let mut idle = Vec::new();
    for i in 0..5 {
        let mut s = connect(&app);
        served(&mut s, &format!("conn={i}"));
        idle.push(s);
    }
    // The oldest were closed to make room; the newest still work.
    let (got, _) = read_to_close(&mut idle[0]);
    assert!(got.is_empty());
    wait_for_log(&app, "LIBFCGI_MAX_WAITING_CONNS");
    let last = idle.len() - 1;
    served(&mut idle[last], "still=1");

    // Heads that cannot complete fill the room; past the limit, new
    // connections that would have to wait are refused (closed).
    let mut heads = Vec::new();
    for _ in 0..6 {
        let mut s = connect(&app);
        // Refused already (under valgrind the write may come after it).
        let _ = s.write_all(&begin(1, false)[..8]);
        heads.push(s);
        std::thread::sleep(Duration::from_millis(60));
    }
    wait_for_log(&app, "connection refused");
    let mut closed = 0;
    for s in &mut heads {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let refused = match s.read(&mut [0u8; 16]) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        if refused {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no waiting connection was refused");
    drop(heads);
    app.assert_serves();
}

#[test]
fn requests_with_too_many_params_are_refused() {
    let mut app = threaded("2", &[("LIBFCGI_MAX_PARAMS", "10")]);
    let ok = Request::responder().params((0..10).map(|i| (format!("P{i}"), "v")));
    let mut c = app.client();
    c.request(&ok).expect("10 parameters are served");
    let mut s = connect(&app);
    let too_many = Request::responder().params((0..11).map(|i| (format!("P{i}"), "v")));
    s.write_all(&encode_request(&too_many)).unwrap();
    let (got, _) = read_to_close(&mut s);
    assert!(got.is_empty(), "a refused request got an answer: {got:?}");
    wait_for_log(&app, "more than 10 name-value pairs");
    app.assert_serves();
}

#[test]
fn half_a_million_empty_params_are_refused_by_the_default_limit() {
    let mut app = threaded("1", &[]);
    let mut s = connect(&app);
    let mut out = begin(1, false);
    let empty_pairs = vec![0u8; 65534];
    for _ in 0..15 {
        push_record(&mut out, kind::PARAMS, 1, &empty_pairs);
    }
    push_record(&mut out, kind::PARAMS, 1, &[]);
    s.write_all(&out).unwrap();
    let (got, _) = read_to_close(&mut s);
    assert!(got.is_empty());
    wait_for_log(&app, "more than 1000 name-value pairs");
    app.assert_serves();
}

#[test]
fn shutdown_wakes_parked_waiters_and_finishes_the_request_in_flight() {
    let app = threaded("2", &[]);
    // Four idle kept-alive connections on two threads: some parked.
    let mut idle = Vec::new();
    for i in 0..4 {
        let mut s = connect(&app);
        served(&mut s, &format!("idle={i}"));
        idle.push(s);
    }
    // A request in flight: its body comes after the signal.
    let mut busy = connect(&app);
    let mut head = begin(1, false);
    push_record(&mut head, kind::PARAMS, 1, &[]);
    push_record(&mut head, kind::STDIN, 1, b"before ");
    busy.write_all(&head).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = app.pid() as i32;
    // SAFETY: kill(2) on the application's process id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(100));
    let mut rest = Vec::new();
    push_record(&mut rest, kind::STDIN, 1, b"after");
    push_record(&mut rest, kind::STDIN, 1, &[]);
    busy.write_all(&rest).unwrap();
    let (got, _) = read_to_close(&mut busy);
    assert!(
        common::contains(&got, b"before after"),
        "the request in flight was not finished: {:?}",
        String::from_utf8_lossy(&got)
    );
    // Every thread returns from FCGX_Accept_r: the process ends.
    let deadline = Instant::now() + secs(5);
    loop {
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "));
        if !alive {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the application did not end after SIGTERM:\n{}",
            app.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A request whose body is still on its way: BEGIN_REQUEST, the end of
/// PARAMS and a first piece of stdin; [`finish_in_flight`] sends the rest.
fn start_in_flight(app: &App) -> UnixStream {
    let mut busy = connect(app);
    let mut head = begin(1, false);
    push_record(&mut head, kind::PARAMS, 1, &[]);
    push_record(&mut head, kind::STDIN, 1, b"before ");
    busy.write_all(&head).unwrap();
    busy
}

fn finish_in_flight(busy: &mut UnixStream) {
    let mut rest = Vec::new();
    push_record(&mut rest, kind::STDIN, 1, b"after");
    push_record(&mut rest, kind::STDIN, 1, &[]);
    busy.write_all(&rest).unwrap();
    let (got, _) = read_to_close(busy);
    assert!(
        common::contains(&got, b"before after"),
        "the request in flight was not finished: {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Waits until process `pid` has ended.
fn wait_gone(app: &App, pid: i32) {
    let deadline = Instant::now() + secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(
            Instant::now() < deadline,
            "the application did not end after SIGTERM:\n{}",
            app.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_shutdown_closes_idle_connections_while_a_request_is_in_flight() {
    // Web servers cache idle kept-alive connections: at a shutdown they are
    // closed at once, so the web server stops sending requests there,
    // while the request in flight on another thread goes on.
    let app = threaded("2", &[]);
    let mut idle = Vec::new();
    for i in 0..4 {
        let mut s = connect(&app);
        served(&mut s, &format!("idle={i}"));
        idle.push(s);
    }
    let mut busy = start_in_flight(&app);
    std::thread::sleep(Duration::from_millis(200) * common::scale());
    let pid = app.pid() as i32;
    // SAFETY: kill(2) on the application's process id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    for (i, s) in idle.iter_mut().enumerate() {
        s.set_read_timeout(Some(secs(2))).unwrap();
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("idle connection {i} still open at the shutdown: {other:?}"),
        }
    }
    finish_in_flight(&mut busy);
    wait_gone(&app, pid);
}

#[test]
fn a_request_that_arrived_before_a_shutdown_is_answered() {
    // The only thread serves a request whose body is on its way; meanwhile
    // a kept-alive connection gets its next request (the web server sent
    // it before the shutdown). After SIGTERM both are answered; then the
    // connections are closed and the process ends.
    let app = threaded("1", &[]);
    let mut late = connect(&app);
    served(&mut late, "first=1");
    let mut quiet = connect(&app);
    served(&mut quiet, "quiet=1");
    let mut busy = start_in_flight(&app);
    std::thread::sleep(Duration::from_millis(200) * common::scale());
    let req = Request::responder()
        .keep_conn(true)
        .param("QUERY_STRING", "late=1");
    late.write_all(&encode_request(&req)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let pid = app.pid() as i32;
    // SAFETY: kill(2) on the application's process id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(100));
    finish_in_flight(&mut busy);
    let (got, _) = read_to_close(&mut late);
    assert!(
        common::contains(&got, b"QUERY_STRING=late=1"),
        "the request sent before the shutdown was not answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(got.windows(2).any(|w| w == [1, kind::END_REQUEST]));
    let (got, _) = read_to_close(&mut quiet);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    wait_gone(&app, pid);
}

#[test]
fn a_request_begun_on_a_kept_alive_connection_before_a_shutdown_is_answered() {
    // As above, but only the first bytes of the next request's first
    // record had come when the thread, done with the request in flight,
    // looked at the connection: the rest comes within the grace, and the
    // request is served, not dropped as an idle connection.
    let app = threaded("1", &[]);
    let mut late = connect(&app);
    served(&mut late, "first=1");
    let mut busy = start_in_flight(&app);
    std::thread::sleep(Duration::from_millis(200) * common::scale());
    let req = encode_request(
        &Request::responder()
            .keep_conn(true)
            .param("QUERY_STRING", "late=1"),
    );
    late.write_all(&req[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let pid = app.pid() as i32;
    // SAFETY: kill(2) on the application's process id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(100));
    finish_in_flight(&mut busy);
    std::thread::sleep(Duration::from_millis(300));
    late.write_all(&req[5..]).unwrap();
    let (got, _) = read_to_close(&mut late);
    assert!(
        common::contains(&got, b"QUERY_STRING=late=1"),
        "the request begun before the shutdown was not answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    wait_gone(&app, pid);
}

#[test]
fn a_head_under_way_at_a_shutdown_is_read_on_and_served() {
    // The only thread has accepted a connection and waits for its head:
    // the web server sent the request before it saw the shutdown. A head
    // that comes within the grace (1 s) is served; then the process ends.
    let app = threaded("1", &[]);
    let mut s = connect(&app);
    let req = encode_request(&Request::responder().param("QUERY_STRING", "after=1"));
    s.write_all(&req[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(200) * common::scale());
    let pid = app.pid() as i32;
    // SAFETY: kill(2) on the application's process id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(&req[5..]).unwrap();
    let (got, _) = read_to_close(&mut s);
    assert!(
        common::contains(&got, b"QUERY_STRING=after=1"),
        "the request under way at the shutdown was not served: {:?}",
        String::from_utf8_lossy(&got)
    );
    wait_gone(&app, pid);
}

#[test]
fn a_kept_alive_connection_that_starts_a_head_and_stalls_is_closed() {
    // The deadline starts with the first byte of the next request: held
    // by the thread (one connection) or parked (more than threads).
    let mut app = threaded("1", &[("LIBFCGI_HEAD_TIMEOUT", "300")]);
    let mut conns = Vec::new();
    for i in 0..2 {
        let mut s = connect(&app);
        served(&mut s, &format!("first={i}"));
        conns.push(s);
    }
    let start = Instant::now();
    for s in &mut conns {
        s.write_all(&begin(1, true)[..3]).unwrap();
    }
    for s in &mut conns {
        let (got, _) = read_to_close(s);
        assert!(got.is_empty());
    }
    assert!(
        start.elapsed() < secs(3),
        "closed after {:?}",
        start.elapsed()
    );
    app.assert_serves();
}

#[test]
fn shutdown_ends_a_wait_for_a_request_head() {
    // The only thread waits for the head of a silent connection; SIGTERM
    // must not wait for the head deadline (30 s by default).
    let app = threaded("1", &[]);
    let _silent = connect(&app);
    std::thread::sleep(Duration::from_millis(300));
    let pid = app.pid() as i32;
    let start = Instant::now();
    // SAFETY: kill(2) on the application's process id.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    loop {
        let gone = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.contains(") Z "));
        if gone {
            break;
        }
        assert!(
            start.elapsed() < secs(3),
            "still waiting for the head after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Logged as what it is, not as the head timeout.
    let log = app.stderr();
    assert!(log.contains("within the shutdown grace"), "{log}");
    assert!(!log.contains("LIBFCGI_HEAD_TIMEOUT"), "{log}");
}

#[test]
fn a_slow_but_steady_body_inside_one_record_is_not_cut() {
    // 1,000 bytes of one STDIN record at 100 bytes every 100 ms, with a
    // 400 ms stall limit: every wait is short, the whole is not.
    let mut app = threaded("1", &[("LIBFCGI_STDIN_TIMEOUT", "400")]);
    let mut s = connect(&app);
    let mut head = begin(1, false);
    push_record(&mut head, kind::PARAMS, 1, &[]);
    s.write_all(&head).unwrap();
    let mut rec = Vec::new();
    push_record(&mut rec, kind::STDIN, 1, &[b't'; 1000]);
    push_record(&mut rec, kind::STDIN, 1, &[]);
    for piece in rec.chunks(100) {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let (got, _) = read_to_close(&mut s);
    assert!(
        common::contains(&got, &[b't'; 1000]),
        "the body was cut: {:?}",
        String::from_utf8_lossy(&got)
    );
    app.assert_serves();
}
