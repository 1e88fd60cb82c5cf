//! Differential tests: one binary, compiled against the original headers,
//! run once on Debian's libfcgi and once on ours (LD_LIBRARY_PATH). For the
//! same requests both must give the same STDOUT and STDERR bytes, the same
//! application status and protocol status. Record boundaries may differ.
//!
//! Only behaviour where the original is correct is compared: its exit
//! status leaks into later requests, so every request of a series that sets
//! one sets it explicitly; it cannot answer pipelined requests, so requests
//! on a kept connection wait for the previous response.

mod common;

use common::{App, Lib, Options, Transport, pattern, secs};
use fcgi::client::{Client, Request, Response};

/// What must be equal between the two libraries.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    app_status: u32,
    protocol_status: u8,
    stdout_ended: bool,
}

impl From<Response> for Outcome {
    fn from(r: Response) -> Outcome {
        Outcome {
            stdout: r.stdout,
            stderr: r.stderr,
            app_status: r.app_status,
            protocol_status: r.protocol_status,
            stdout_ended: r.stdout_ended,
        }
    }
}

/// Runs `series` (a list of connections, each a list of requests) on the
/// example `name` built against the original headers, on each library.
fn run(
    name: &str,
    opts: impl Fn() -> Options<'static>,
    series: &[Vec<Request>],
) -> Vec<Vec<Outcome>> {
    let app = App::start_with(name, Lib::Original, Lib::Ours, opts());
    let ours = play(&app, series);
    drop(app);
    let app = App::start_with(name, Lib::Original, Lib::Original, opts());
    let original = play(&app, series);
    for (c, (o, x)) in original.iter().zip(&ours).enumerate() {
        for (i, (o, x)) in o.iter().zip(x).enumerate() {
            if o != x {
                panic!(
                    "connection {c}, request {i}: libraries differ\noriginal: {}\nours:     {}",
                    show(o),
                    show(x)
                );
            }
        }
    }
    assert_eq!(original, ours);
    ours
}

fn show(o: &Outcome) -> String {
    let cut = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(600)]).into_owned();
    format!(
        "status {}/{} stdout({} bytes, ended {}) {:?} stderr({} bytes) {:?}",
        o.app_status,
        o.protocol_status,
        o.stdout.len(),
        o.stdout_ended,
        cut(&o.stdout),
        o.stderr.len(),
        cut(&o.stderr)
    )
}

fn play(app: &App, series: &[Vec<Request>]) -> Vec<Vec<Outcome>> {
    series
        .iter()
        .map(|conn| {
            let mut c = Client::connect(&app.addr)
                .unwrap()
                .with_timeout(secs(30))
                .unwrap();
            conn.iter()
                .enumerate()
                .map(|(i, req)| {
                    let r = c.request(req).unwrap_or_else(|e| {
                        panic!(
                            "{} on {:?}: request {i} failed: {e}; stderr:\n{}",
                            app.name,
                            app.lib,
                            app.stderr()
                        )
                    });
                    Outcome::from(r)
                })
                .collect()
        })
        .collect()
}

fn unix() -> Options<'static> {
    Options::default()
}

fn tcp() -> Options<'static> {
    Options {
        transport: Transport::Tcp,
        ..Options::default()
    }
}

fn get(query: &str) -> Request {
    Request::responder()
        .param("GATEWAY_INTERFACE", "CGI/1.1")
        .param("REQUEST_METHOD", "GET")
        .param("QUERY_STRING", query)
        .param("SCRIPT_NAME", "/echo")
        .param("SERVER_SOFTWARE", "x".repeat(500))
        .param("HTTP_COOKIE", [b'a', 0xff, 0x80, b'=', 1])
}

#[test]
fn get_requests() {
    let series = vec![
        vec![get("")],
        vec![get("a=1&b=2")],
        vec![get("x").param("EMPTY", "").params_record_size(5)],
    ];
    let out = run("echo", unix, &series);
    assert!(out[1][0].stdout.ends_with(b"\n\n"));
}

#[test]
fn get_over_tcp() {
    run(
        "echo",
        tcp,
        &[vec![get("tcp=1")], vec![get("tcp=2").align(true)]],
    );
}

#[test]
fn post_8_mib() {
    let body = pattern(8 << 20);
    let req = Request::responder()
        .param("REQUEST_METHOD", "POST")
        .param("CONTENT_LENGTH", body.len().to_string())
        .stdin(body)
        .record_size(65535);
    let out = run("echo", unix, &[vec![req]]);
    assert!(out[0][0].stdout.len() > 8 << 20);
}

#[test]
fn keep_alive_series() {
    let conn: Vec<Request> = (0..10)
        .map(|i| {
            get(&format!("n={i}"))
                .id(1 + (i % 2) as u16)
                .keep_conn(i < 9)
                .stdin(pattern(i * 9000))
                .record_size(4000 + i)
        })
        .collect();
    run("echo", unix, &[conn.clone(), conn]);
}

#[test]
fn stderr_output() {
    let long: String = (0..3000)
        .map(|i| char::from(b'A' + (i % 26) as u8))
        .collect();
    let series = vec![
        vec![
            get("")
                .param("STDERR_TEXT", "warning: something\n")
                .stdin(b"body".to_vec()),
        ],
        vec![get("").param("STDERR_TEXT", &long)],
        vec![get("").param("STDERR_TEXT", "")],
    ];
    let out = run("echo", unix, &series);
    assert_eq!(out[1][0].stderr.len(), 3000);
}

#[test]
fn exit_status() {
    // Every request sets its status: the original leaks the last one.
    let series = vec![
        vec![get("exit=3")],
        vec![get("exit=0")],
        vec![get("").param("EXIT_STATUS", "-7")],
        vec![
            get("").param("EXIT_STATUS", "255").keep_conn(true),
            get("exit=9").keep_conn(true),
            get("exit=0"),
        ],
    ];
    let out = run("echo", unix, &series);
    let statuses: Vec<u32> = out.iter().flatten().map(|o| o.app_status).collect();
    assert_eq!(statuses, vec![3, 0, -7i32 as u32, 255, 9, 0]);
}

#[test]
fn authorizer() {
    let series = vec![
        vec![
            Request::authorizer()
                .param("HTTP_AUTHORIZATION", "Bearer letmein")
                .param("REMOTE_USER", "bob"),
        ],
        vec![Request::authorizer().param("HTTP_AUTHORIZATION", "Basic Zm9v")],
        vec![Request::responder()],
    ];
    run("authorizer", unix, &series);
}

#[test]
fn filter() {
    let data: Vec<u8> = pattern(300_000);
    let series = vec![
        vec![
            Request::filter()
                .param("FCGI_DATA_LENGTH", "300000")
                .stdin(pattern(5000))
                .data(data),
        ],
        vec![Request::filter()],
        vec![Request::responder().stdin(b"not a filter".to_vec())],
    ];
    run("filter", unix, &series);
}

#[test]
fn threaded() {
    let conns: Vec<Vec<Request>> = (0..6)
        .map(|c| {
            (0..3)
                .map(|i| {
                    get(&format!("c={c}&i={i}"))
                        .keep_conn(i < 2)
                        .stdin(pattern(c * 1000 + i))
                })
                .collect()
        })
        .collect();
    // One worker thread keeps X-Thread deterministic.
    run(
        "threaded",
        || Options {
            args: &["1"],
            ..Options::default()
        },
        &conns,
    );
}
