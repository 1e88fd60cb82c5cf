//! Streaming and large output (issue #14 item 4): the STDOUT buffer size
//! set for the process (`FCGX_SetOutputBufferSize`, `LIBFCGI_STDOUT_BUFFER`)
//! and per stream (`FCGX_SetStreamBufferSize`); unbuffered output reaching
//! an HTTP client through nginx (`fastcgi_buffering off`) while the
//! response is still open (examples/sse.c); 100 MiB responses streamed in
//! constant memory, checked byte for byte.
//!
//! tests/c/stream_app.c writes PIECES pieces of PIECE_SIZE bytes without a
//! flush, then holds the request open until the file GATE exists: what
//! reaches the client before the gate opens is what the buffer let go.

mod common;

use common::nginx::{Nginx, Scratch, nginx_binary};
use common::{App, Lib, Options, secs};
use fcgi::client::{Client, Request};
use fcgi::protocol::kind;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The extension functions exist only in our library.
fn ours(test: &str) -> bool {
    let ok = Lib::under_test() == Lib::Ours && Lib::headers_under_test() == Lib::Ours;
    if !ok {
        eprintln!("SKIPPED {test}: fcgi_ext.h is this library's");
    }
    ok
}

fn stream_app(process_buffer: Option<&str>, env: &[(&str, &str)]) -> App {
    let args: Vec<&str> = process_buffer.into_iter().collect();
    App::under_test_with(
        "stream_app",
        Options {
            args: &args,
            env,
            ..Options::default()
        },
    )
}

/// Byte `i` of stream_app's pattern.
fn pattern(i: u64) -> u8 {
    ((i * 7 + i / 65521) & 0xff) as u8
}

/// Sends one request and returns the STDOUT bytes that arrive before the
/// gate file is created (waiting `settle` for them), then opens the gate
/// and checks the rest of the response: the pattern, `total` bytes, exit
/// status 0.
fn before_gate(app: &App, params: &[(&str, &str)], total: usize) -> usize {
    let gate = app.dir.join(format!("gate-{}", rand_suffix()));
    let gate_s = gate.to_string_lossy().into_owned();
    let mut req = Request::responder().param("GATE", &gate_s);
    for (k, v) in params {
        req = req.param(k, v);
    }
    let mut c = Client::connect(&app.addr).unwrap();
    c.send(&req).unwrap();
    // What arrives while the application holds the response.
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut early = Vec::new();
    let settle = Instant::now() + secs(2);
    while Instant::now() < settle {
        match c.read_record() {
            Ok(r) if r.header.kind == kind::STDOUT => early.extend_from_slice(&r.content),
            Ok(r) => panic!("unexpected record before the gate: {:?}", r.header),
            Err(fcgi::client::ClientError::Timeout) => {}
            Err(e) => panic!("read before the gate: {e}"),
        }
    }
    std::fs::write(&gate, b"").unwrap();
    c.set_read_timeout(Some(secs(10))).unwrap();
    let mut all = early.clone();
    loop {
        let r = c.read_record().expect("read after the gate");
        match r.header.kind {
            kind::STDOUT => all.extend_from_slice(&r.content),
            kind::END_REQUEST => {
                assert_eq!(r.end_request().unwrap().app_status, 0, "exit status");
                break;
            }
            k => panic!("unexpected record type {k}"),
        }
    }
    assert_eq!(all.len(), total, "response length");
    assert!(
        all.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)),
        "response bytes differ from the pattern"
    );
    early.len()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Five pieces of 60 bytes with a gate: how many bytes leave before it.
fn five_pieces(app: &App, extra: &[(&str, &str)]) -> usize {
    let mut params = vec![("PIECES", "5"), ("PIECE_SIZE", "60")];
    params.extend_from_slice(extra);
    before_gate(app, &params, 300)
}

#[test]
fn buffer_size_from_the_environment_and_the_functions() {
    if !ours("buffer_size") {
        return;
    }
    // Default: 256 KiB buffered, nothing leaves before the end (this is
    // what makes the other cases fail without the setting).
    let app = stream_app(None, &[]);
    assert_eq!(five_pieces(&app, &[]), 0, "default buffer");
    // Per stream: unbuffered, every piece at once; 100 bytes: a write that
    // does not fit sends what was buffered with it (60, then 120 twice).
    assert_eq!(five_pieces(&app, &[("STREAM_BUFFER", "0")]), 300);
    assert_eq!(five_pieces(&app, &[("STREAM_BUFFER", "100")]), 240);
    // The per-stream size lasts one request: the next one is buffered.
    assert_eq!(five_pieces(&app, &[]), 0, "after a per-stream size");
    drop(app);

    // LIBFCGI_STDOUT_BUFFER for programs that cannot be changed.
    let app = stream_app(None, &[("LIBFCGI_STDOUT_BUFFER", "0")]);
    assert_eq!(five_pieces(&app, &[]), 300, "LIBFCGI_STDOUT_BUFFER=0");
    drop(app);
    let app = stream_app(None, &[("LIBFCGI_STDOUT_BUFFER", "100")]);
    assert_eq!(five_pieces(&app, &[]), 240, "LIBFCGI_STDOUT_BUFFER=100");
    // The stream's own size wins over the process's.
    assert_eq!(five_pieces(&app, &[("STREAM_BUFFER", "1000")]), 0);
    drop(app);

    // FCGX_SetOutputBufferSize, which also overrides the variable.
    let app = stream_app(Some("0"), &[("LIBFCGI_STDOUT_BUFFER", "100000")]);
    assert_eq!(five_pieces(&app, &[]), 300, "FCGX_SetOutputBufferSize(0)");
    drop(app);
    // 130 bytes: 60 and 120 fit, 180 does not (sent), then 60 and 120.
    let app = stream_app(Some("130"), &[]);
    assert_eq!(five_pieces(&app, &[]), 180, "FCGX_SetOutputBufferSize(130)");
    drop(app);
}

#[test]
fn bad_sizes_are_refused() {
    if !ours("bad_sizes") {
        return;
    }
    // Above 16 MiB: FCGX_SetOutputBufferSize fails and the program exits 3.
    let bin = common::compile("stream_app", Lib::Ours);
    let status = std::process::Command::new(bin)
        .args(["127.0.0.1:0", "16777217"])
        .env("LD_LIBRARY_PATH", common::our_lib_dir())
        .stdin(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    // A too large stream size: the request's exit status says it failed,
    // and the stream keeps the process's buffer.
    let app = stream_app(None, &[]);
    let mut c = Client::connect(&app.addr).unwrap();
    let r = c
        .request(
            &Request::responder()
                .param("STREAM_BUFFER", "16777217")
                .param("PIECES", "2"),
        )
        .unwrap();
    assert_eq!(r.app_status, 4);
    assert_eq!(r.stdout.len(), 32);
    // An invalid variable is ignored (the default stays).
    drop(app);
    let app = stream_app(None, &[("LIBFCGI_STDOUT_BUFFER", "lots")]);
    assert_eq!(five_pieces(&app, &[]), 0);
}

/// Peak resident memory of `pid` in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM in /proc/<pid>/status")
}

/// Reads one response's STDOUT to its end, hashing it (FNV-1a) and
/// checking it against the pattern without keeping it.
fn stream_response(c: &mut Client) -> (u64, u64) {
    let mut len = 0u64;
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    loop {
        let r = c.read_record().expect("read the response");
        match r.header.kind {
            kind::STDOUT => {
                for &b in &r.content {
                    assert_eq!(b, pattern(len), "byte {len} of the response");
                    hash = (hash ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
                    len += 1;
                }
            }
            kind::END_REQUEST => return (len, hash),
            k => panic!("unexpected record type {k}"),
        }
    }
}

#[test]
fn hundred_mib_responses_stream_in_constant_memory() {
    if !ours("hundred_mib") || common::instrumented() {
        return;
    }
    const MIB: u64 = 1 << 20;
    let expected = {
        let mut hash = 0xcbf2_9ce4_8422_2325_u64;
        for i in 0..100 * MIB {
            hash = (hash ^ u64::from(pattern(i))).wrapping_mul(0x100_0000_01b3);
        }
        hash
    };
    // The default buffer, unbuffered, and a 16 MiB buffer; writes of 8 KiB
    // and of 1 MiB.
    for (buffer, piece) in [
        (None, 8192u64),
        (Some("0"), 8192),
        (None, MIB),
        (Some("16777216"), MIB),
    ] {
        let app = stream_app(buffer, &[]);
        let mut c = Client::connect(&app.addr).unwrap();
        c.set_read_timeout(Some(secs(30))).unwrap();
        // A small request first: the baseline includes the library's
        // threads and first buffers.
        c.send(&Request::responder().keep_conn(true)).unwrap();
        stream_response(&mut c);
        let base = peak_rss_kib(app.pid());
        let pieces = (100 * MIB / piece).to_string();
        let size = piece.to_string();
        let start = Instant::now();
        c.send(
            &Request::responder()
                .param("PIECES", &pieces)
                .param("PIECE_SIZE", &size),
        )
        .unwrap();
        let (len, hash) = stream_response(&mut c);
        let took = start.elapsed();
        let peak = peak_rss_kib(app.pid());
        eprintln!(
            "100 MiB in writes of {piece} bytes, buffer {}: {took:.2?}, app peak RSS {base} -> \
             {peak} KiB",
            buffer.unwrap_or("default")
        );
        assert_eq!(len, 100 * MIB);
        assert_eq!(hash, expected, "checksum");
        // The application's own piece buffer (1 MiB, static) is touched by
        // the large writes; the library may add its buffer (at most 16
        // MiB) and a record per write, never the response.
        assert!(
            peak - base < 40 * 1024,
            "peak RSS grew by {} KiB while streaming 100 MiB",
            peak - base
        );
    }
}

// ---------------------------------------------------------------- nginx

fn sse_conf(dir: &Path, port: u16, app: &str) -> String {
    format!(
        r#"{preamble}    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location /events {{
            fastcgi_pass unix:{app};
            fastcgi_buffering off;
            fastcgi_read_timeout 60s;{params}        }}
    }}
}}
"#,
        preamble = common::nginx::preamble(dir, "1m"),
        params = common::nginx::FASTCGI_PARAMS,
    )
}

/// Reads from `s` until `text` has arrived; everything read so far.
fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, text: &str) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(got).contains(text) {
        match s.read(&mut buf) {
            Ok(0) => return Err(format!("connection closed before {text:?}")),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("no {text:?} in time ({e})")),
        }
    }
    Ok(())
}

#[test]
fn server_sent_events_reach_the_client_through_nginx_at_once() {
    let test = "sse_through_nginx";
    if !ours(test) {
        return;
    }
    let Some(nginx_bin) = nginx_binary(test) else {
        return;
    };
    let dir = Scratch::new("streaming-test", test);
    let events = dir.path().join("events.txt");
    std::fs::write(&events, b"").unwrap();
    let events_s = events.to_string_lossy().into_owned();
    let app = App::under_test_with(
        "sse",
        Options {
            args: &[&events_s],
            ..Options::default()
        },
    );
    let nginx = Nginx::start(&nginx_bin, dir.path(), |port| {
        sse_conf(dir.path(), port, &app.addr)
    });

    let mut s = TcpStream::connect(("127.0.0.1", nginx.port)).unwrap();
    s.set_read_timeout(Some(secs(10))).unwrap();
    s.write_all(b"GET /events HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    read_until(&mut s, &mut got, "\r\n\r\n")
        .unwrap_or_else(|e| panic!("headers: {e}\n{}", nginx.error_log()));
    let head = String::from_utf8_lossy(&got).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");

    // Each line appended to the file reaches the client while the
    // application still holds the response open.
    for (n, word) in ["hello", "world", "again"].iter().enumerate() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .unwrap();
        writeln!(f, "{word}").unwrap();
        let start = Instant::now();
        read_until(
            &mut s,
            &mut got,
            &format!("id: {}\ndata: {word}\n\n", n + 1),
        )
        .unwrap_or_else(|e| panic!("event {word}: {e}\n{}", nginx.error_log()));
        eprintln!(
            "event {word} reached the HTTP client after {:?}",
            start.elapsed()
        );
    }
    // Still open: nothing more, no end of the response.
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("the response should still be open: {other:?}"),
    }
    // "end" ends it.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap();
    writeln!(f, "end").unwrap();
    s.set_read_timeout(Some(secs(10))).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}
