//! The fcgiapp.h contract, call by call (tests/c/api_probe.c prints what
//! each call returned), and the process conventions of libfcgi: signals,
//! the web-server allowlist, closing without stalls, slow clients.
//!
//! Scenarios where libfcgi 2.4 is correct also run on Debian's library and
//! must print the same bytes there.

mod common;

use common::{App, Lib, Options, Transport, ours_available, secs};
use fcgi::client::{Client, Request};
use fcgi::protocol::kind;
use std::time::{Duration, Instant};

const BODY: &[u8] = b"ab\ncdefghijkl\n\nlast";

fn probe(lib: Lib) -> App {
    App::start_with("api_probe", Lib::Original, lib, Options::default())
}

fn run(app: &App, scenario: &str) -> fcgi::client::Response {
    let req = Request::responder()
        .param("SCENARIO", scenario)
        .stdin(BODY.to_vec());
    app.client()
        .request(&req)
        .unwrap_or_else(|e| panic!("{scenario}: {e}"))
}

fn body(app: &App, scenario: &str) -> String {
    let r = run(app, scenario);
    String::from_utf8_lossy(r.body()).into_owned()
}

/// Scenario and the exact output the contract gives (libfcgi's behaviour).
const CONTRACT: &[(&str, &str)] = &[
    // Lines longer than n-1 are split; the newline is kept; NULL only at EOF
    // before any byte; n == 1 stores just the NUL and returns str.
    ("getline", "[ab\n][cdefghi][jkl\n][\n][last]NULL n1=str"),
    // One byte of pushback after a read; a second one fails; EOF cannot be pushed.
    ("unget", "c=a a=a b=-1 next=a then=b eofpush=-1"),
    // HasSeenEOF does not look ahead; after EOF reads and pushback fail.
    ("eof", "got=19 before=0 after=-1 getc=-1 unget=-1 err=0"),
    // StartFilterData on a responder: -1, FCGX_CALL_SEQ_ERROR, stream closed.
    ("filter_seq", "start=-1 err=-5 eof=-1"),
    // PutChar stores (unsigned char)c and returns it: 300 -> 44 (',').
    ("putchar", ",|put=44 zero=0"),
    (
        "getparam",
        "scenario=getparam role=RESPONDER missing=none prefix=none null=none",
    ),
    (
        "fields",
        "id=1 role=1 keep=0 fd=yes listen=yes reader=1/0 closed=0/0",
    ),
    ("flush", "firstsecond flush=0"),
    ("exit", "status set"),
];

#[test]
fn contract_scenarios() {
    let app = probe(Lib::under_test());
    for (scenario, want) in CONTRACT {
        assert_eq!(body(&app, scenario), *want, "scenario {scenario}");
    }
}

#[test]
fn contract_scenarios_match_the_original() {
    if !ours_available() {
        return;
    }
    let original = probe(Lib::Original);
    let ours = probe(Lib::Ours);
    for (scenario, _) in CONTRACT {
        let (a, b) = (run(&original, scenario), run(&ours, scenario));
        assert_eq!(
            (
                String::from_utf8_lossy(&a.stdout),
                String::from_utf8_lossy(&a.stderr),
                a.app_status
            ),
            (
                String::from_utf8_lossy(&b.stdout),
                String::from_utf8_lossy(&b.stderr),
                b.app_status
            ),
            "scenario {scenario}: original vs ours"
        );
    }
}

#[test]
fn printf_handles_what_libfcgi_could_not() {
    // libfcgi aborts on a width of 100 or more, crashes on a NULL %s and
    // fails on %zu / %jd.
    let app = probe(Lib::under_test());
    let out = body(&app, "printf");
    let want = format!(
        "   42|42   |00042|+42|7|-8|9|(null)|ab|w           |%|ff|q|3.142\nn=64\n{:<120}|\nwide=121\n",
        "wide"
    );
    assert_eq!(out, want);
}

#[test]
fn exit_status_and_stderr_and_early_fclose() {
    let app = probe(Lib::under_test());
    let r = run(&app, "exit");
    assert_eq!(r.app_status, 77);
    let r = run(&app, "stderr");
    assert_eq!((r.body(), &r.stderr[..]), (&b"to out"[..], &b"to err"[..]));
    assert!(r.stderr_ended && r.stdout_ended);
    // FClose(out) sends STDOUT's end at once; later writes fail; a second
    // FClose is a no-op; END_REQUEST follows the close of err.
    let r = run(&app, "fclose_out");
    assert_eq!(r.body(), b"body");
    assert_eq!(
        String::from_utf8_lossy(&r.stderr),
        "fclose=0 after=-1 eof=-1 again=0"
    );
    let kinds: Vec<u8> = r.records.iter().map(|h| h.kind).collect();
    let end_out = kinds.iter().rposition(|&k| k == kind::STDOUT).unwrap();
    let first_err = kinds.iter().position(|&k| k == kind::STDERR).unwrap();
    assert!(
        end_out < first_err,
        "STDOUT ended before STDERR began: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&kind::END_REQUEST));
}

#[test]
fn fflush_sends_a_record_at_once() {
    let app = probe(Lib::under_test());
    let r = run(&app, "flush");
    let data: Vec<u16> = r
        .records
        .iter()
        .filter(|h| h.kind == kind::STDOUT && h.content_length > 0)
        .map(|h| h.content_length)
        .collect();
    assert!(data.len() >= 2, "FFlush must emit its own record: {data:?}");
}

// ---- process conventions ---------------------------------------------------

fn wait_exit(app: &mut App, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !app.alive() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn sigterm_and_sigusr1_end_an_idle_accept_loop() {
    for sig in [libc::SIGTERM, libc::SIGUSR1] {
        let mut app = App::under_test("echo");
        app.assert_serves();
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(app.pid() as i32, sig) }, 0);
        assert!(
            wait_exit(&mut app, secs(3)),
            "signal {sig} did not end the accept loop"
        );
    }
}

#[test]
fn web_server_allowlist_refuses_other_peers() {
    let refused = App::start_with(
        "echo",
        Lib::under_test(),
        Lib::under_test(),
        Options {
            transport: Transport::Tcp,
            env: &[("FCGI_WEB_SERVER_ADDRS", "10.9.8.7")],
            ..Options::default()
        },
    );
    let mut c = refused.client();
    let r = c.request(&Request::responder().param("QUERY_STRING", "x=1"));
    assert!(
        r.is_err(),
        "a peer outside FCGI_WEB_SERVER_ADDRS was served: {r:?}"
    );

    let mut allowed = App::start_with(
        "echo",
        Lib::under_test(),
        Lib::under_test(),
        Options {
            transport: Transport::Tcp,
            env: &[("FCGI_WEB_SERVER_ADDRS", "10.9.8.7, 127.0.0.1")],
            ..Options::default()
        },
    );
    allowed.assert_serves();
}

#[test]
fn slow_unix_client_is_served() {
    // libfcgi dropped a Unix-socket peer silent for 2 s after connecting.
    let mut app = App::under_test("echo");
    let mut c = app.client();
    std::thread::sleep(Duration::from_millis(2500));
    let r = c
        .request(&Request::responder().param("QUERY_STRING", "slow=1"))
        .expect("slow client served");
    assert_eq!(r.app_status, 0);
    app.assert_serves();
}

#[test]
fn closing_never_stalls_on_unread_input() {
    // Non-keep-alive request whose body the app does not read to the end
    // while the client keeps its side open: libfcgi drained for 2 s before
    // it accepted again. The response must be complete, with no reset.
    let app = probe(Lib::under_test());
    let big = vec![b'x'; 200_000];
    let start = Instant::now();
    let mut open = Vec::new();
    for _ in 0..3 {
        // "fields" reads nothing of the body.
        let req = Request::responder()
            .param("SCENARIO", "fields")
            .stdin(big.clone());
        let mut c: Client = app.client();
        let r = c.request(&req).expect("response despite unread input");
        assert!(String::from_utf8_lossy(r.body()).starts_with("id=1"));
        assert!(r.stdout_ended);
        open.push(c); // the web server keeps its side open
    }
    // A close that waits for the peer costs 2 s each (6 s for three).
    assert!(
        start.elapsed() < Duration::from_millis(3500),
        "closing stalled: {:?}",
        start.elapsed()
    );
}

#[test]
fn open_socket_errors_return_minus_one() {
    // A regular file at the socket path is left alone; the program keeps
    // running and reports the error (libfcgi deleted the file, or exit()ed).
    if Lib::under_test() != Lib::Ours {
        return;
    }
    let dir = std::env::temp_dir().join(format!("fcgi-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    let bin = common::compile("api_probe", Lib::under_test());
    let out = std::process::Command::new(&bin)
        .arg(&file)
        .env("LD_LIBRARY_PATH", common::our_lib_dir())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("FCGX_OpenSocket"));
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    let out = std::process::Command::new(&bin)
        .arg("no-such-host.invalid:9000")
        .env("LD_LIBRARY_PATH", common::our_lib_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_ends_every_thread_blocked_in_accept() {
    // threaded.c: several threads each blocked in FCGX_Accept_r on one
    // socket; main joins them. libfcgi only woke the thread that received
    // the signal, so the process hung until the others got a request.
    let mut app = App::under_test("threaded");
    app.assert_serves();
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(app.pid() as i32, libc::SIGTERM) }, 0);
    assert!(
        wait_exit(&mut app, secs(3)),
        "some threads stayed blocked in accept after SIGTERM"
    );
}

#[test]
fn sigterm_ends_a_wait_on_a_kept_alive_connection() {
    // After a keep-alive request the library waits for the next request on
    // the same connection; a shutdown must end that wait too (the
    // connection is kept: the web server may still use it).
    let mut app = App::under_test("echo");
    let mut c = app.client();
    let r = c
        .request(
            &Request::responder()
                .keep_conn(true)
                .param("QUERY_STRING", "ka=1"),
        )
        .unwrap();
    assert_eq!(r.app_status, 0);
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(app.pid() as i32, libc::SIGTERM) }, 0);
    assert!(
        wait_exit(&mut app, secs(3)),
        "the wait on the kept-alive connection ignored SIGTERM"
    );
    drop(c);
}

#[test]
fn envp_is_empty_after_a_failed_accept() {
    // A kept-alive connection starts a second request whose parameters are
    // malformed: the library drops the connection (rewriting its
    // environment block on the way) and waits for a new one, then SIGTERM
    // fails the accept. The request's envp must then be empty, not point at
    // the first request's strings, which the failed one overwrote.
    let mut app = App::under_test("api_probe");
    let mut c = app.client();
    let first = Request::responder()
        .keep_conn(true)
        .param("SCENARIO", "getparam")
        .param("FILLER", "x".repeat(200));
    assert_eq!(c.request(&first).unwrap().app_status, 0);
    let mut bad = fcgi::client::record(kind::BEGIN_REQUEST, 2, &[0, 1, 1, 0, 0, 0, 0, 0]);
    let mut params = fcgi::client::encode_pairs([("SCENARIO", "getparam")]);
    params.extend_from_slice(&[0x7f, 0x7f, b'x']); // a pair longer than the record
    bad.extend_from_slice(&fcgi::client::record(kind::PARAMS, 2, &params));
    bad.extend_from_slice(&fcgi::client::record(kind::PARAMS, 2, &[]));
    c.send_raw(&bad).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(app.pid() as i32, libc::SIGTERM) }, 0);
    assert!(
        wait_exit(&mut app, secs(3)),
        "SIGTERM did not end the accept"
    );
    let err = app.stderr();
    assert!(err.contains("bad FCGI_PARAMS"), "{err}");
    assert!(err.contains("after the loop: envp empty"), "{err}");
}
