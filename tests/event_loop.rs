//! Accept with a timeout and event-loop integration (issue #14 item 1):
//! `FCGX_AcceptTimeout_r` gives up after its limit with
//! `FCGX_ACCEPT_TIMEOUT`, and `FCGX_GetReadyFd` is a descriptor a
//! program's own poll loop waits on, readable for new connections, for
//! kept-alive connections the library holds without a thread, and at a
//! shutdown.
//!
//! examples/eventloop.c is such a program (one thread, poll() over the
//! ready descriptor and a 100 ms timer, `FCGX_AcceptTimeout_r(&req, 0)`
//! only); tests/c/accept_timeout.c probes the calls one by one.

mod common;

use common::{App, Lib, compile, our_lib_dir, secs};
use fcgi::client::{Client, Request, Response};
use std::process::Command;
use std::time::{Duration, Instant};

/// The extension functions exist only in our library (on Linux).
fn ours(test: &str) -> bool {
    let ok = Lib::under_test() == Lib::Ours && Lib::headers_under_test() == Lib::Ours;
    if !ok {
        eprintln!("SKIPPED {test}: fcgi_ext.h is this library's");
    }
    ok
}

/// FCGX_ACCEPT_TIMEOUT in fcgi_ext.h.
const ACCEPT_TIMEOUT: i64 = -9000;

/// Runs the probe with `args` on a fresh socket; returns its `key=value`
/// output.
fn probe(args: &[&str]) -> Vec<(String, i64)> {
    let bin = compile("accept_timeout", Lib::Ours);
    let dir = tempdir("probe");
    let sock = dir.join("app.sock");
    let out = Command::new(bin)
        .arg(&sock)
        .args(args)
        .env("LD_LIBRARY_PATH", our_lib_dir())
        .output()
        .expect("run accept_timeout");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "accept_timeout {args:?}: {}\n{text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().expect("a number")))
        .collect()
}

fn value(kv: &[(String, i64)], key: &str) -> i64 {
    kv.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in {kv:?}"))
        .1
}

fn tempdir(what: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fcgi-evloop-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn timeout_is_honoured_with_a_distinct_code() {
    if !ours("timeout") {
        return;
    }
    let slack = 250 * i64::from(common::scale());
    for ms in [300, 50] {
        let kv = probe(&["wait", &ms.to_string()]);
        assert_eq!(value(&kv, "rc"), ACCEPT_TIMEOUT, "{ms} ms: {kv:?}");
        let took = value(&kv, "ms");
        assert!(
            took >= ms - 1 && took <= ms + slack,
            "a {ms} ms limit took {took} ms"
        );
        assert_eq!(
            value(&kv, "ipcfd"),
            -1,
            "no connection held after a timeout"
        );
    }
    // 0: a look, never a wait.
    let kv = probe(&["wait", "0"]);
    assert_eq!(value(&kv, "rc"), ACCEPT_TIMEOUT);
    assert!(value(&kv, "ms") < 50, "a 0 ms limit took {kv:?}");
    // Refused calls: NULL, a limit below -1, a request without a socket.
    let kv = probe(&["bad"]);
    assert_eq!(value(&kv, "null"), -i64::from(libc::EINVAL));
    assert_eq!(value(&kv, "neg"), -i64::from(libc::EINVAL));
    assert_eq!(value(&kv, "nofd"), -1);
    assert_eq!(value(&kv, "errno"), i64::from(libc::EBADF));
}

#[test]
fn no_descriptor_left_is_emfile_not_enosys() {
    if !ours("emfile") {
        return;
    }
    // The epoll set cannot be made: the caller learns why, and a later
    // call, with descriptors again, succeeds.
    let kv = probe(&["emfile"]);
    assert_eq!(value(&kv, "ready"), -1);
    assert_eq!(value(&kv, "errno"), i64::from(libc::EMFILE));
    assert_eq!(value(&kv, "accept"), -i64::from(libc::EMFILE));
    assert!(value(&kv, "again") >= 0, "{kv:?}");
}

#[test]
fn shutdown_from_another_thread_wakes_a_poll_on_the_ready_fd() {
    if !ours("shutdown_thread") {
        return;
    }
    // The main thread sleeps in poll() on the descriptor, with no limit;
    // FCGX_ShutdownPending in another thread (no signal reaches the poll)
    // must make it readable, and the accept then says -EINTR.
    let kv = probe(&["shutdown-thread", "300"]);
    assert_eq!(value(&kv, "rc"), -i64::from(libc::EINTR), "{kv:?}");
    let took = value(&kv, "ms");
    assert!(
        (290..=300 + 1000 * i64::from(common::scale())).contains(&took),
        "woke after {took} ms"
    );
}

/// The `name value` lines of eventloop's response.
fn field(resp: &Response, name: &str) -> i64 {
    let body = String::from_utf8_lossy(resp.body()).into_owned();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body:?}"))
}

fn keep_alive() -> Request {
    Request::responder()
        .keep_conn(true)
        .param("REQUEST_URI", "/")
}

#[test]
fn event_loop_serves_kept_alive_connections_without_blocking() {
    if !ours("event_loop") {
        return;
    }
    let mut app = App::under_test("eventloop");
    // Three kept-alive connections, served in turns by one thread that
    // never blocks in the library: each one's next request arrives while
    // the library holds it without a thread, and must make the ready
    // descriptor readable (else the loop sleeps in poll for ever).
    let mut clients: Vec<Client> = (0..3).map(|_| app.client()).collect();
    let mut count = 0;
    let mut last_ticks = 0;
    for round in 0..4 {
        for (i, c) in clients.iter_mut().enumerate() {
            let t = Instant::now();
            let resp = c
                .request(&keep_alive())
                .unwrap_or_else(|e| panic!("round {round}, connection {i}: {e}"));
            assert!(
                t.elapsed() < secs(2),
                "round {round}, connection {i}: answered after {:?}",
                t.elapsed()
            );
            count += 1;
            assert_eq!(field(&resp, "request"), count);
            let accept_us = field(&resp, "longest-accept-us");
            // (Under valgrind a first call through new code takes long.)
            assert!(
                common::instrumented() || accept_us < 20_000,
                "FCGX_AcceptTimeout_r(0) blocked for {accept_us} us"
            );
            last_ticks = field(&resp, "ticks");
        }
        // Idle connections: the timer goes on meanwhile.
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        last_ticks >= 7,
        "the program's timer ticked {last_ticks} times in over 750 ms"
    );
    // A request head that arrives in two parts: the loop serves others
    // meanwhile, then this one when the rest comes.
    let mut partial = app.client();
    let bytes = fcgi::client::encode_request(&keep_alive());
    partial.send_raw(&bytes[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let resp = clients[0].request(&keep_alive()).unwrap();
    assert_eq!(field(&resp, "request"), count + 1);
    partial.send_raw(&bytes[10..]).unwrap();
    let resp = partial.read_response(1).expect("the head completed later");
    assert_eq!(field(&resp, "request"), count + 2);
    app.assert_alive();
}

#[test]
fn sigterm_ends_the_event_loop() {
    if !ours("sigterm") {
        return;
    }
    let mut app = App::under_test("eventloop");
    let mut c = app.client();
    c.request(&keep_alive()).unwrap();
    let t = Instant::now();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(app.pid().to_string())
        .status();
    let status = app.wait_exit(secs(3)).expect("exited after SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert!(t.elapsed() < secs(3));
    assert!(app.stderr().contains("shutdown"), "{}", app.stderr());
}

/// A program that asks for the ready descriptor before it forks its
/// workers (the contract: call it again in each child) gives each child a
/// room of its own: one child's shutdown does not wake the other's loop
/// (it woke it for nothing, about a million times a second, when the
/// children shared the parent's epoll set and shutdown event).
#[test]
fn children_forked_after_get_ready_fd_have_their_own() {
    let kv = probe(&["fork"]);
    assert_eq!(value(&kv, "stopped"), -4, "the child sent SIGTERM: -EINTR");
    let spins = value(&kv, "spins");
    assert!(
        spins < 50,
        "the other child was woken {spins} times for nothing"
    );
}
