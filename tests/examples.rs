//! The C examples driven by the Rust client, on the library under test
//! (ours; `FCGI_TEST_LIB=original` runs the same tests on Debian's libfcgi).

mod common;

use common::{App, Options, Transport, contains, echoed_body, echoed_env, pattern, secs};
use fcgi::client::{Client, Request, Response};
use fcgi::protocol::{kind, status};
use std::collections::HashSet;
use std::time::Duration;

fn echo() -> App {
    App::under_test("echo")
}

/// Checks the framing every response must have: complete, STDOUT ended,
/// data records of at most 65535 bytes, END_REQUEST last.
fn assert_well_formed(r: &Response) {
    assert_eq!(r.protocol_status, status::REQUEST_COMPLETE);
    assert!(r.stdout_ended, "no empty STDOUT record");
    let last = r.records.last().expect("records");
    assert_eq!(last.kind, kind::END_REQUEST);
    assert_eq!(
        r.records
            .iter()
            .filter(|h| h.kind == kind::END_REQUEST)
            .count(),
        1
    );
    if !r.stderr.is_empty() {
        assert!(r.stderr_ended, "STDERR data without its empty record");
    }
}

#[test]
fn get_with_params() {
    let app = echo();
    let long = "v".repeat(300);
    let req = Request::responder()
        .param("REQUEST_METHOD", "GET")
        .param("QUERY_STRING", "a=1&b=two")
        .param("LONG_VALUE", &long)
        .param("EMPTY", "")
        .param("DUP", "first")
        .param("DUP", "second")
        .param("BYTES", [0xc3u8, 0xa9, 0x01, 0x7f, 0xff]);
    let r = app.client().request(&req).unwrap();
    assert_well_formed(&r);
    assert_eq!(r.app_status, 0);
    assert_eq!(r.cgi_header("Content-Type").as_deref(), Some("text/plain"));
    let env = echoed_env(&r);
    let want = [
        "FCGI_ROLE=RESPONDER".to_string(),
        "REQUEST_METHOD=GET".into(),
        "QUERY_STRING=a=1&b=two".into(),
        format!("LONG_VALUE={long}"),
        "EMPTY=".into(),
        "DUP=first".into(),
        "DUP=second".into(),
    ];
    assert_eq!(&env[..want.len()], &want[..]);
    let body = r.body();
    assert!(
        contains(body, b"\nBYTES=\xc3\xa9\x01\x7f\xff\n"),
        "binary value lost: {body:?}"
    );
    assert!(echoed_body(&r).is_empty());
    assert!(r.stderr.is_empty());
}

#[test]
fn get_over_tcp_and_params_split_across_records() {
    let app = App::under_test_with(
        "echo",
        Options {
            transport: Transport::Tcp,
            ..Options::default()
        },
    );
    assert!(app.addr.starts_with("127.0.0.1:"));
    // 3-byte PARAMS records: every pair and length field straddles records.
    let req = Request::responder()
        .param("SCRIPT_NAME", "/split")
        .param("X", "y".repeat(200))
        .params_record_size(3)
        .align(true);
    let r = app.client().request(&req).unwrap();
    assert_well_formed(&r);
    let env = echoed_env(&r);
    assert_eq!(env[1], "SCRIPT_NAME=/split");
    assert_eq!(env[2], format!("X={}", "y".repeat(200)));
}

#[test]
fn post_8_mib_in_many_stdin_records() {
    let app = echo();
    let body = pattern(8 << 20);
    let req = Request::responder()
        .param("REQUEST_METHOD", "POST")
        .param("CONTENT_LENGTH", body.len().to_string())
        .stdin(body.clone())
        .record_size(8000)
        .align(true);
    let mut c = app.client().with_timeout(secs(30)).unwrap();
    let r = c.request(&req).unwrap();
    assert_well_formed(&r);
    let got = echoed_body(&r);
    assert_eq!(got.len(), body.len());
    assert!(got == body.as_slice(), "8 MiB echo differs");
    assert!(
        r.records
            .iter()
            .all(|h| usize::from(h.content_length) <= 65535)
    );
}

#[test]
fn keep_alive_series_on_one_connection() {
    let app = echo();
    let mut c = app.client();
    let sizes = [
        0usize, 1, 7, 8, 100, 8191, 8192, 8193, 65535, 65536, 200_000, 3,
    ];
    for (i, &size) in sizes.iter().enumerate() {
        let body = pattern(size + i);
        let id = (i % 3 + 1) as u16;
        let req = Request::responder()
            .id(id)
            .keep_conn(true)
            .param("QUERY_STRING", format!("n={i}"))
            .stdin(body.clone())
            .record_size(1000 + i * 997);
        let r = c
            .request(&req)
            .unwrap_or_else(|e| panic!("request {i} on the kept connection: {e}"));
        assert_well_formed(&r);
        assert_eq!(r.request_id, id);
        assert_eq!(echoed_env(&r)[1], format!("QUERY_STRING=n={i}"));
        assert!(
            echoed_body(&r) == body.as_slice(),
            "request {i}: echo differs"
        );
    }
    // Without KEEP_CONN the application closes after the response.
    let r = c
        .request(&Request::responder().id(9).stdin(b"last".to_vec()))
        .unwrap();
    assert_eq!(echoed_body(&r), b"last");
    let (rest, end) = c.drain(secs(5), secs(5)).unwrap();
    assert!(
        rest.is_empty(),
        "bytes after the last END_REQUEST: {rest:?}"
    );
    assert_ne!(
        end,
        fcgi::client::DrainEnd::Idle,
        "connection not closed without KEEP_CONN"
    );
}

#[test]
fn stderr_output() {
    let app = echo();
    let short = Request::responder()
        .param("STDERR_TEXT", "something went wrong\n")
        .stdin(b"in".to_vec());
    let r = app.client().request(&short).unwrap();
    assert_well_formed(&r);
    assert_eq!(r.stderr, b"something went wrong\n");
    assert!(r.stderr_ended);
    assert_eq!(echoed_body(&r), b"in");

    // More than any STDERR buffer: must arrive whole, in order.
    let text: String = (0..5000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let r = app
        .client()
        .request(&Request::responder().param("STDERR_TEXT", &text))
        .unwrap();
    assert_well_formed(&r);
    assert_eq!(r.stderr, text.as_bytes());

    // No STDERR written: no STDERR data.
    let r = app.client().request(&Request::responder()).unwrap();
    assert!(r.stderr.is_empty());
}

#[test]
fn exit_status_in_end_request() {
    let app = echo();
    let cases: [(Request, u32); 4] = [
        (Request::responder().param("EXIT_STATUS", "42"), 42),
        (Request::responder().param("QUERY_STRING", "x=1&exit=3"), 3),
        (Request::responder().param("EXIT_STATUS", "-1"), 0xffff_ffff),
        (
            Request::responder().param("EXIT_STATUS", "2147483647"),
            0x7fff_ffff,
        ),
    ];
    for (req, want) in cases {
        let r = app.client().request(&req).unwrap();
        assert_well_formed(&r);
        assert_eq!(r.app_status, want, "for {:?}", req.params);
    }
}

#[test]
fn large_response_without_body() {
    let app = echo();
    let r = app
        .client()
        .request(&Request::responder().param("RESPONSE_SIZE", "3000000"))
        .unwrap();
    assert_well_formed(&r);
    let body = echoed_body(&r);
    assert_eq!(body.len(), 3_000_000);
    assert!(
        body.iter()
            .enumerate()
            .all(|(i, &b)| b == b'a' + ((i % 16384) % 26) as u8)
    );
}

fn authorize(app: &App, req: Request) -> Response {
    let r = app.client().request(&req).unwrap();
    assert_well_formed(&r);
    r
}

#[test]
fn authorizer_grants_and_denies() {
    let app = App::under_test("authorizer");
    let ok = authorize(
        &app,
        Request::authorizer()
            .param("HTTP_AUTHORIZATION", "Bearer letmein")
            .param("REMOTE_USER", "alice"),
    );
    assert_eq!(ok.cgi_header("Status").as_deref(), Some("200 OK"));
    assert_eq!(
        ok.cgi_header("Variable-AUTH_USER").as_deref(),
        Some("alice")
    );
    assert_eq!(
        ok.cgi_header("Variable-AUTH_METHOD").as_deref(),
        Some("bearer")
    );
    assert!(ok.body().is_empty());

    let denied = authorize(
        &app,
        Request::authorizer().param("HTTP_AUTHORIZATION", "Bearer nope"),
    );
    assert_eq!(
        denied.cgi_header("Status").as_deref(),
        Some("403 Forbidden")
    );
    assert_eq!(denied.body(), b"access denied\n");
    assert!(denied.cgi_header("Variable-AUTH_USER").is_none());

    let anonymous = authorize(
        &app,
        Request::authorizer().param("HTTP_AUTHORIZATION", "Bearer letmein"),
    );
    assert_eq!(
        anonymous.cgi_header("Variable-AUTH_USER").as_deref(),
        Some("anonymous")
    );

    let wrong_role = authorize(
        &app,
        Request::responder().param("HTTP_AUTHORIZATION", "Bearer letmein"),
    );
    assert_eq!(
        wrong_role.cgi_header("Status").as_deref(),
        Some("500 Internal Server Error")
    );
    assert_eq!(wrong_role.body(), b"role RESPONDER\n");
}

#[test]
fn filter_uppercases_the_data_stream() {
    let app = App::under_test("filter");
    let stdin = pattern(1000);
    let data: Vec<u8> = b"hello, filter world! 0123 \xff\n"
        .iter()
        .copied()
        .cycle()
        .take(200_000)
        .collect();
    let req = Request::filter()
        .param("FCGI_DATA_LENGTH", data.len().to_string())
        .param("FCGI_DATA_LAST_MOD", "1700000000")
        .stdin(stdin.clone())
        .data(data.clone())
        .record_size(4096);
    let r = app
        .client()
        .with_timeout(secs(20))
        .unwrap()
        .request(&req)
        .unwrap();
    assert_well_formed(&r);
    assert_eq!(r.cgi_header("X-Stdin-Length").as_deref(), Some("1000"));
    assert_eq!(r.cgi_header("X-Data-Length"), Some(data.len().to_string()));
    assert_eq!(r.body(), data.to_ascii_uppercase().as_slice());

    // Empty STDIN and empty DATA.
    let r = app.client().request(&Request::filter()).unwrap();
    assert_well_formed(&r);
    assert_eq!(r.cgi_header("X-Stdin-Length").as_deref(), Some("0"));
    assert!(r.body().is_empty());

    // FCGX_StartFilterData in a RESPONDER request fails with FCGX_CALL_SEQ_ERROR.
    let r = app
        .client()
        .request(&Request::responder().stdin(b"abc".to_vec()))
        .unwrap();
    assert_well_formed(&r);
    assert_eq!(
        r.cgi_header("Status").as_deref(),
        Some("500 Internal Server Error")
    );
    assert_eq!(r.body(), b"FCGX_StartFilterData failed: -5\n");
}

fn start_threaded(threads: &str) -> App {
    App::under_test_with(
        "threaded",
        Options {
            args: &[threads],
            ..Options::default()
        },
    )
}

fn thread_of(r: &Response) -> String {
    r.cgi_header("X-Thread").expect("X-Thread header")
}

/// Four connections are open at once with their requests half sent; only
/// concurrent accepts in four threads can answer them all.
#[test]
fn threaded_serves_connections_concurrently() {
    let app = start_threaded("4");
    let mut clients: Vec<(Client, Request, Vec<u8>)> = (0..4)
        .map(|i| {
            let body = pattern(50_000 + i);
            let req = Request::responder()
                .id(1 + i as u16)
                .param("QUERY_STRING", format!("c={i}"))
                .stdin(body.clone());
            (app.client(), req, body)
        })
        .collect();
    let mut tails = Vec::new();
    for (c, req, _) in clients.iter_mut() {
        let wire = fcgi::client::encode_request(req);
        let cut = wire.len() - 20_000;
        c.send_raw(&wire[..cut]).unwrap();
        tails.push(wire[cut..].to_vec());
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut threads = HashSet::new();
    for ((c, req, body), tail) in clients.iter_mut().zip(tails).rev() {
        let mut sender = c.try_clone().unwrap();
        let t = std::thread::spawn(move || sender.send_raw(&tail));
        let r = c.read_response(req.id).unwrap();
        t.join().unwrap().unwrap();
        assert_well_formed(&r);
        assert_eq!(echoed_body(&r), body.as_slice());
        threads.insert(thread_of(&r));
    }
    assert_eq!(
        threads.len(),
        4,
        "each open connection needs its own thread: {threads:?}"
    );
}

#[test]
fn threaded_many_concurrent_clients() {
    let app = start_threaded("8");
    let addr = app.addr.clone();
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut seen = HashSet::new();
                let mut kept: Option<Client> = None;
                for n in 0..12 {
                    let keep = w % 2 == 0 && n < 11;
                    let body = pattern((w * 7919 + n * 104_729) % 70_000);
                    let query = format!("worker={w}&n={n}");
                    let req = Request::responder()
                        .id((n % 4 + 1) as u16)
                        .keep_conn(keep)
                        .param("QUERY_STRING", &query)
                        .stdin(body.clone());
                    let mut c = match kept.take() {
                        Some(c) => c,
                        None => Client::connect(&addr)
                            .unwrap()
                            .with_timeout(secs(20))
                            .unwrap(),
                    };
                    let r = c
                        .request(&req)
                        .unwrap_or_else(|e| panic!("worker {w} request {n}: {e}"));
                    assert_well_formed(&r);
                    assert_eq!(
                        echoed_env(&r)[0],
                        format!("QUERY_STRING={query}"),
                        "crossed response"
                    );
                    assert!(
                        echoed_body(&r) == body.as_slice(),
                        "worker {w} request {n}: body differs"
                    );
                    seen.insert(thread_of(&r));
                    if keep {
                        kept = Some(c);
                    }
                }
                seen
            })
        })
        .collect();
    let mut all = HashSet::new();
    for w in workers {
        all.extend(w.join().expect("client worker"));
    }
    assert!(all.len() > 1, "only one thread ever answered: {all:?}");
}
