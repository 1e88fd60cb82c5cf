//! Hostile input against our library (the `echo` example compiled against
//! our headers, or the library named by `FCGI_TEST_LIB`). After each attack
//! the application must still be alive and serve a normal request.
//!
//! Set `FCGI_TEST_WRAPPER="valgrind --error-exitcode=99 -q"` to run the
//! application under valgrind, or `scripts/sanitizers.sh` to run it with
//! AddressSanitizer (the RSS bound is then not checked).

mod common;

use common::{App, Options, contains, echoed_body, echoed_env, instrumented, pattern, secs};
use fcgi::client::{
    Client, DrainEnd, Record, Request, encode_get_values, encode_request, parse_records,
    push_padded_record, record,
};
use fcgi::protocol::{BeginRequest, kind, role, status};
use std::net::Shutdown;
use std::time::Duration;

fn echo() -> App {
    App::under_test("echo")
}

fn begin(id: u16, role: u16, keep: bool) -> Vec<u8> {
    record(
        kind::BEGIN_REQUEST,
        id,
        &BeginRequest {
            role,
            flags: u8::from(keep),
        }
        .encode(),
    )
}

fn end_of(kind: u8, id: u16) -> Vec<u8> {
    record(kind, id, &[])
}

/// BEGIN (responder), the given raw PARAMS content, end of PARAMS, empty STDIN.
fn request_with_params_block(id: u16, keep: bool, block: &[u8]) -> Vec<u8> {
    let mut w = begin(id, role::RESPONDER, keep);
    w.extend(record(kind::PARAMS, id, block));
    w.extend(end_of(kind::PARAMS, id));
    w.extend(end_of(kind::STDIN, id));
    w
}

/// Reads until the application closes the connection; fails if it stays
/// open. Returns the records received (and any trailing partial bytes).
fn expect_closed(c: &mut Client, what: &str) -> (Vec<Record>, Vec<u8>) {
    let (bytes, end) = c.drain(secs(5), secs(10)).unwrap();
    let (recs, rest) = parse_records(&bytes);
    let rest = rest.to_vec();
    assert_ne!(
        end,
        DrainEnd::Idle,
        "{what}: connection still open; received {recs:?} {rest:?}"
    );
    (recs, rest)
}

fn stdout_data(recs: &[Record]) -> Vec<u8> {
    recs.iter()
        .filter(|r| r.header.kind == kind::STDOUT)
        .flat_map(|r| r.content.clone())
        .collect()
}

/// The attack was refused: connection closed, no output of a request.
fn expect_rejected(app: &App, wire: &[u8], what: &str) {
    let mut c = app.client();
    c.send_raw(wire).unwrap();
    let (recs, _) = expect_closed(&mut c, what);
    assert!(
        stdout_data(&recs).is_empty(),
        "{what}: a request was delivered: {recs:?}"
    );
}

// ---- parameter lengths ---------------------------------------------------

#[test]
fn params_lengths_ffffffff() {
    let mut app = echo();
    let mut block = vec![0xff; 8];
    block.extend_from_slice(&[b'A'; 64]);
    // KEEP_CONN: a library that accepted the pair would answer and keep going.
    expect_rejected(
        &app,
        &request_with_params_block(1, true, &block),
        "lengths 0x7fffffff + 0x7fffffff",
    );
    app.assert_serves();
}

#[test]
fn params_length_7ffffffe_plus_0() {
    let mut app = echo();
    let mut block = vec![0xff, 0xff, 0xff, 0xfe, 0x00];
    block.extend_from_slice(&[b'B'; 32]);
    expect_rejected(
        &app,
        &request_with_params_block(1, true, &block),
        "lengths 0x7ffffffe + 0",
    );
    // The same with the declared bytes partly following in more records.
    let mut w = begin(1, role::RESPONDER, true);
    w.extend(record(kind::PARAMS, 1, &[0xff, 0xff, 0xff, 0xfe, 0x00]));
    for _ in 0..20 {
        w.extend(record(kind::PARAMS, 1, &[b'C'; 60000]));
    }
    w.extend(end_of(kind::PARAMS, 1));
    w.extend(end_of(kind::STDIN, 1));
    let mut c = app.client();
    let mut sender = c.try_clone().unwrap();
    let t = std::thread::spawn(move || sender.send_raw(&w));
    let (recs, _) = expect_closed(&mut c, "0x7ffffffe name followed by 1.2 MB");
    let _ = t.join().unwrap();
    assert!(stdout_data(&recs).is_empty());
    app.assert_serves();
}

#[test]
fn params_lengths_running_past_the_stream() {
    let mut app = echo();
    let cases: [(&str, Vec<u8>); 5] = [
        ("name length 5, 1 byte present", vec![5, 1, b'a']),
        (
            "4-byte name length 65536, 100 bytes present",
            [&[0x80, 1, 0, 0, 0][..], &[b'n'; 100]].concat(),
        ),
        (
            "value length past the end",
            [&[1, 0x7f, b'N'][..], &[b'v'; 20]].concat(),
        ),
        ("length field cut in half", vec![1, 1, b'A', b'b', 0x80, 0]),
        ("lone length byte", vec![3]),
    ];
    for (what, block) in cases {
        expect_rejected(&app, &request_with_params_block(1, true, &block), what);
        app.assert_alive();
    }
    app.assert_serves();
}

/// A control: pairs straddling PARAMS records are legal and must work.
#[test]
fn pairs_straddling_records_are_accepted() {
    let app = echo();
    let value = "z".repeat(70_000);
    let req = Request::responder()
        .param("BIG", &value)
        .param("SMALL", "1")
        .params_record_size(1)
        .keep_conn(true);
    let mut c = app.client();
    let r = c.request(&req.clone().params_record_size(65535)).unwrap();
    assert_eq!(
        echoed_env(&r)[1..3],
        [format!("BIG={value}"), "SMALL=1".into()]
    );
    let req = Request::responder()
        .param("A", "1")
        .param("B", "22")
        .params_record_size(1);
    let r = c.request(&req).unwrap();
    assert_eq!(echoed_env(&r)[1..], ["A=1".to_string(), "B=22".into()]);
}

#[test]
fn params_over_one_mib_are_rejected_while_others_are_served() {
    let mut app = App::under_test_with(
        "threaded",
        Options {
            args: &["2"],
            ..Options::default()
        },
    );
    // 18 records of 60000 bytes: one pair of 1,080,000 bytes in total.
    let mut head = begin(1, role::RESPONDER, true);
    let total = 18 * 60000;
    let name_len = (total as u32 - 5) | 0x8000_0000;
    let mut block = name_len.to_be_bytes().to_vec();
    block.push(0); // value length 0
    block.resize(total, b'p');
    assert_eq!(fcgi::protocol::params::validate(&block), Ok(1));
    let (first, second) = block.split_at(9 * 60000);
    fcgi::client::push_stream(&mut head, kind::PARAMS, 1, first, 60000, false);
    let mut tail = Vec::new();
    fcgi::client::push_stream(&mut tail, kind::PARAMS, 1, second, 60000, false);
    tail.extend(end_of(kind::PARAMS, 1));
    tail.extend(end_of(kind::STDIN, 1));

    let mut big = app.client();
    big.send_raw(&head).unwrap();
    // Half of it is in; another connection is served meanwhile.
    app.assert_serves();
    let mut sender = big.try_clone().unwrap();
    let t = std::thread::spawn(move || sender.send_raw(&tail));
    let (recs, _) = expect_closed(&mut big, "PARAMS over 1 MiB");
    let _ = t.join().unwrap();
    assert!(
        stdout_data(&recs).is_empty(),
        "oversized PARAMS were delivered"
    );
    app.assert_serves();

    // A control: 900 KB of parameters are fine.
    let r = app
        .client()
        .request(
            &Request::responder()
                .param("QUERY_STRING", "q")
                .param("PAD", "x".repeat(900_000)),
        )
        .unwrap();
    assert_eq!(echoed_body(&r), b"");
}

// ---- broken records ------------------------------------------------------

#[test]
fn truncated_records() {
    let mut app = echo();
    let full = encode_request(
        &Request::responder()
            .param("A", "b")
            .stdin(b"0123456789".to_vec()),
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("5 header bytes", full[..5].to_vec()),
        ("BEGIN body cut", full[..12].to_vec()),
        (
            "PARAMS record cut",
            [
                &begin(1, 1, false)[..],
                &[1, 4, 0, 1, 0, 100, 0, 0],
                &[b'x'; 10],
            ]
            .concat(),
        ),
        (
            "STDIN record cut",
            [
                &begin(1, 1, false)[..],
                &end_of(kind::PARAMS, 1),
                &[1, 5, 0, 1, 3, 232, 0, 0],
                &[b'y'; 10],
            ]
            .concat(),
        ),
        (
            "padding cut",
            [
                &begin(1, 1, false)[..],
                &[1, 4, 0, 1, 0, 0, 200, 0],
                &[0; 10],
            ]
            .concat(),
        ),
    ];
    for (what, wire) in cases {
        let mut c = app.client();
        c.send_raw(&wire).unwrap();
        c.shutdown_write().unwrap();
        let (recs, _) = expect_closed(&mut c, what);
        // A request may be delivered (cut inside STDIN), but none of the
        // missing body may appear.
        assert!(!contains(&stdout_data(&recs), b"yyyyyyyyyyy"), "{what}");
        app.assert_alive();
    }
    app.assert_serves();
}

#[test]
fn bad_version_byte() {
    let mut app = echo();
    for version in [0u8, 2, 0xff] {
        let mut wire = begin(1, role::RESPONDER, true);
        wire[0] = version;
        let mut c = app.client();
        c.send_raw(&wire).unwrap();
        let (recs, rest) = expect_closed(&mut c, "BEGIN with a bad version");
        assert!(
            recs.is_empty() && rest.is_empty(),
            "reply to a bad version: {recs:?} {rest:?}"
        );
    }
    // A bad version in the middle of a request's STDIN.
    let mut wire = begin(1, role::RESPONDER, true);
    wire.extend(end_of(kind::PARAMS, 1));
    wire.extend(record(kind::STDIN, 1, b"first"));
    let mut bad = record(kind::STDIN, 1, b"second");
    bad[0] = 9;
    wire.extend(bad);
    wire.extend(end_of(kind::STDIN, 1));
    let mut c = app.client();
    c.send_raw(&wire).unwrap();
    let (recs, _) = expect_closed(&mut c, "bad version inside STDIN");
    assert!(!contains(&stdout_data(&recs), b"second"));
    // And on a GET_VALUES.
    let mut gv = encode_get_values(["FCGI_MAX_CONNS"]);
    gv[0] = 0;
    expect_rejected(&app, &gv, "GET_VALUES with version 0");
    app.assert_serves();
}

#[test]
fn malformed_begin_request() {
    let mut app = echo();
    for len in [0usize, 7, 9, 100] {
        let mut wire = record(kind::BEGIN_REQUEST, 1, &vec![0; len]);
        if len >= 2 {
            wire[9] = 1; // role RESPONDER
        }
        wire.extend(end_of(kind::PARAMS, 1));
        wire.extend(end_of(kind::STDIN, 1));
        expect_rejected(
            &app,
            &wire,
            &format!("BEGIN_REQUEST with {len} content bytes"),
        );
    }
    app.assert_serves();
}

// ---- peers going away ----------------------------------------------------

#[test]
fn peer_closes_mid_request_at_every_byte() {
    let mut app = echo();
    let wire = encode_request(
        &Request::responder()
            .param("QUERY_STRING", "x=1")
            .param("B", "2")
            .stdin(b"body".to_vec()),
    );
    let fds = app.fd_count();
    for cut in 1..wire.len() {
        let mut c = app.client();
        c.send_raw(&wire[..cut]).unwrap();
        drop(c);
        if cut % 16 == 0 {
            app.assert_alive();
        }
    }
    let now = app.settle_fds(fds);
    assert!(now <= fds, "descriptors leaked: {fds} before, {now} after");
    app.assert_serves();
}

#[test]
fn peer_closes_mid_response() {
    let mut app = echo();
    // A 50 MB response; the peer reads one record and leaves.
    for how in [Shutdown::Both, Shutdown::Read] {
        let mut c = app.client();
        c.send(&Request::responder().param("RESPONSE_SIZE", "50000000"))
            .unwrap();
        let first = c.read_record().unwrap();
        assert_eq!(first.header.kind, kind::STDOUT);
        c.shutdown(how).unwrap();
        drop(c);
        app.assert_serves();
    }
    // The peer leaves while the application is echoing a body it is still sending.
    let mut c = app.client();
    c.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut wire = encode_request(&Request::responder().stdin(pattern(4 << 20)));
    wire.truncate(wire.len() - 100_000);
    let _ = c.send_raw(&wire); // blocks once both directions are full; that is the point
    drop(c);
    app.assert_serves();
}

// ---- records the application must answer or ignore ----------------------

fn expect_unknown_type(r: &Record, t: u8) {
    assert_eq!(r.header.kind, kind::UNKNOWN_TYPE, "{r:?}");
    assert_eq!(r.header.request_id, 0);
    assert_eq!(r.content, [t, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn unknown_record_types() {
    let mut app = echo();
    let mut c = app.client();
    // Before any request, empty body.
    c.send_raw(&record(42, 0, &[])).unwrap();
    expect_unknown_type(&c.read_record().unwrap(), 42);
    // With a body that looks like a name-value pair, between BEGIN and
    // PARAMS: it must be answered and must not become a parameter.
    let mut wire = begin(1, role::RESPONDER, true);
    push_padded_record(&mut wire, 200, 0, b"\x06\x05HIDDENvalue", 4);
    wire.extend(record(kind::PARAMS, 1, b"\x01\x01Ab"));
    wire.extend(record(kind::ABORT_REQUEST + 40, 0, b"\x06\x05HIDDENvalue"));
    wire.extend(end_of(kind::PARAMS, 1));
    wire.extend(record(kind::STDIN, 1, b"in"));
    wire.extend(record(99, 0, b"\x06\x05HIDDENvalue"));
    wire.extend(end_of(kind::STDIN, 1));
    c.send_raw(&wire).unwrap();
    let r = c.read_response(1).unwrap();
    assert_eq!(
        echoed_env(&r),
        ["FCGI_ROLE=RESPONDER", "A=b"],
        "management body leaked into the request"
    );
    assert_eq!(echoed_body(&r), b"in");
    let types: Vec<u8> = r
        .other_records
        .iter()
        .map(|x| x.content.first().copied().unwrap_or(0))
        .collect();
    assert_eq!(types, [200, 42, 99]);
    for (x, t) in r.other_records.iter().zip(types) {
        expect_unknown_type(x, t);
    }
    // The connection is still usable.
    let r = c
        .request(&Request::responder().id(2).stdin(b"again".to_vec()))
        .unwrap();
    assert_eq!(echoed_body(&r), b"again");
    app.assert_serves();
}

#[test]
fn unknown_role() {
    let mut app = echo();
    // With KEEP_CONN: refused with UNKNOWN_ROLE, then the connection goes on.
    let mut c = app.client();
    let mut wire = begin(3, 7, true);
    wire.extend(end_of(kind::PARAMS, 3));
    wire.extend(end_of(kind::STDIN, 3));
    c.send_raw(&wire).unwrap();
    let rec = c.read_record().unwrap();
    let end = rec
        .end_request()
        .unwrap_or_else(|| panic!("expected END_REQUEST, got {rec:?}"));
    assert_eq!(
        (rec.header.request_id, end.app_status, end.protocol_status),
        (3, 0, status::UNKNOWN_ROLE)
    );
    let r = c
        .request(&Request::responder().id(4).stdin(b"after".to_vec()))
        .unwrap();
    assert_eq!(echoed_body(&r), b"after");
    // Without KEEP_CONN: refused, then closed.
    for role in [0u16, 4, 0xffff] {
        let mut c = app.client();
        c.send_raw(&begin(5, role, false)).unwrap();
        let (recs, _) = expect_closed(&mut c, "unknown role");
        let ends: Vec<_> = recs
            .iter()
            .filter_map(|r| {
                r.end_request()
                    .map(|e| (r.header.request_id, e.protocol_status))
            })
            .collect();
        assert_eq!(ends, [(5, status::UNKNOWN_ROLE)], "role {role}: {recs:?}");
    }
    app.assert_serves();
}

#[test]
fn second_begin_request_gets_cant_mpx_conn() {
    let mut app = echo();
    let mut c = app.client();
    let body = pattern(30_000);
    let mut wire = begin(1, role::RESPONDER, true);
    wire.extend(record(kind::PARAMS, 1, b"\x01\x01Ab"));
    // Another request while PARAMS of the first are being read ...
    wire.extend(begin(2, role::RESPONDER, false));
    wire.extend(record(kind::PARAMS, 2, b"\x05\x03OTHERyes"));
    wire.extend(end_of(kind::PARAMS, 1));
    wire.extend(record(kind::STDIN, 1, &body[..10_000]));
    // ... and one while its STDIN is being read.
    wire.extend(begin(3, role::FILTER, true));
    wire.extend(end_of(kind::PARAMS, 2));
    wire.extend(record(kind::STDIN, 2, b"INTRUDER"));
    wire.extend(record(kind::STDIN, 3, b"INTRUDER"));
    wire.extend(record(kind::STDIN, 1, &body[10_000..]));
    wire.extend(end_of(kind::STDIN, 2));
    wire.extend(end_of(kind::STDIN, 1));
    c.send_raw(&wire).unwrap();
    let r = c.read_response(1).unwrap();
    assert_eq!(r.protocol_status, status::REQUEST_COMPLETE);
    assert_eq!(echoed_env(&r), ["FCGI_ROLE=RESPONDER", "A=b"]);
    assert!(
        echoed_body(&r) == body.as_slice(),
        "the active request was disturbed"
    );
    let refused: Vec<_> = r
        .other_records
        .iter()
        .map(|x| {
            (
                x.header.request_id,
                x.end_request().map(|e| (e.app_status, e.protocol_status)),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (2, Some((0, status::CANT_MPX_CONN))),
            (3, Some((0, status::CANT_MPX_CONN)))
        ]
    );
    // The kept connection serves id 2 normally now.
    let r = c
        .request(
            &Request::responder()
                .id(2)
                .param("N", "2")
                .stdin(b"two".to_vec()),
        )
        .unwrap();
    assert_eq!(echoed_env(&r), ["FCGI_ROLE=RESPONDER", "N=2"]);
    assert_eq!(echoed_body(&r), b"two");
    app.assert_serves();
}

fn check_get_values_result(rec: &Record) -> Vec<(Vec<u8>, Vec<u8>)> {
    assert_eq!(
        (rec.header.kind, rec.header.request_id),
        (kind::GET_VALUES_RESULT, 0),
        "{rec:?}"
    );
    assert!(
        rec.padding.iter().all(|&b| b == 0),
        "padding leaks bytes: {:?}",
        rec.padding
    );
    let pairs = rec
        .pairs()
        .unwrap_or_else(|| panic!("malformed GET_VALUES_RESULT {:?}", rec.content));
    for (n, v) in &pairs {
        assert!(
            [&b"FCGI_MAX_CONNS"[..], b"FCGI_MAX_REQS", b"FCGI_MPXS_CONNS"].contains(&n.as_slice()),
            "unexpected name {n:?}"
        );
        assert!(
            !v.is_empty() && v.iter().all(u8::is_ascii_digit),
            "bad value {v:?}"
        );
    }
    pairs
}

#[test]
fn get_values_naming_max_conns_200_times() {
    let mut app = echo();
    let mut c = app.client();
    let names = vec!["FCGI_MAX_CONNS"; 200];
    c.send_raw(&encode_get_values(&names)).unwrap();
    let rec = c.read_record().unwrap();
    let pairs = check_get_values_result(&rec);
    assert!(!pairs.is_empty() && pairs.iter().all(|(n, _)| n == b"FCGI_MAX_CONNS"));
    assert!(
        rec.content.len() <= 200 * 17,
        "reply of {} bytes",
        rec.content.len()
    );
    // Then a request on the same connection.
    let r = c
        .request(&Request::responder().stdin(b"x".to_vec()))
        .unwrap();
    assert_eq!(echoed_body(&r), b"x");
    app.assert_serves();
}

#[test]
fn get_values_with_garbage_names() {
    let mut app = echo();
    let mut c = app.client();
    let cases: [&[u8]; 4] = [
        &[0xff; 100],
        b"\x0e\x05FCGI_MAX_CONNS",
        b"\x0e\x00FCGI_MAX_CONNS\x0f",
        b"\x0dFCGI_MAX_REQS",
    ];
    for content in cases {
        c.send_raw(&record(kind::GET_VALUES, 0, content)).unwrap();
        let rec = c.read_record().unwrap();
        let pairs = check_get_values_result(&rec);
        assert!(pairs.len() <= 1, "{content:?} answered with {pairs:?}");
    }
    drop(c);
    app.assert_serves();
}

#[test]
fn get_values_as_the_last_bytes_sent() {
    let mut app = echo();
    let all = ["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"];
    // The record ends exactly where the sent bytes end; the peer waits.
    let mut c = app.client();
    c.send_raw(&encode_get_values(all)).unwrap();
    let pairs = check_get_values_result(&c.read_record().unwrap());
    let names: Vec<&[u8]> = pairs.iter().map(|(n, _)| n.as_slice()).collect();
    assert_eq!(names, all.map(str::as_bytes));
    assert_eq!(pairs[2].1, b"0", "FCGI_MPXS_CONNS");
    // An empty GET_VALUES as the very last bytes: an empty result.
    c.send_raw(&record(kind::GET_VALUES, 0, &[])).unwrap();
    let rec = c.read_record().unwrap();
    assert!(check_get_values_result(&rec).is_empty());
    drop(c); // (echo serves one connection at a time)
    // Followed by a half-close: still answered, then closed.
    let mut c = app.client();
    c.send_raw(&encode_get_values(["FCGI_MAX_REQS"])).unwrap();
    c.shutdown_write().unwrap();
    let (recs, _) = expect_closed(&mut c, "GET_VALUES then EOF");
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(check_get_values_result(&recs[0]).len(), 1);
    // Between two requests of a kept connection.
    let mut c = app.client();
    let r = c.request(&Request::responder().keep_conn(true)).unwrap();
    assert!(echoed_body(&r).is_empty());
    assert_eq!(c.get_values(["FCGI_MAX_CONNS"]).unwrap().len(), 1);
    drop(c);
    app.assert_serves();
}

#[test]
fn padding_on_begin_and_on_the_empty_params_record() {
    let mut app = echo();
    let body = pattern(5000);
    let mut wire = Vec::new();
    let begin_body = BeginRequest {
        role: role::RESPONDER,
        flags: 1,
    }
    .encode();
    push_padded_record(&mut wire, kind::BEGIN_REQUEST, 1, &begin_body, 8);
    push_padded_record(
        &mut wire,
        kind::PARAMS,
        1,
        b"\x01\x01Ab\x0c\x03QUERY_STRINGq=1",
        255,
    );
    push_padded_record(&mut wire, kind::PARAMS, 1, &[], 7);
    push_padded_record(&mut wire, kind::STDIN, 1, &body[..3000], 3);
    push_padded_record(&mut wire, kind::STDIN, 1, &body[3000..], 0);
    push_padded_record(&mut wire, kind::STDIN, 1, &[], 5);
    let mut c = app.client();
    c.send_raw(&wire).unwrap();
    let r = c.read_response(1).unwrap();
    assert_eq!(
        echoed_env(&r),
        ["FCGI_ROLE=RESPONDER", "A=b", "QUERY_STRING=q=1"]
    );
    assert!(
        echoed_body(&r) == body.as_slice(),
        "body lost or changed by padding"
    );
    // Non-zero padding bytes are ignored just the same.
    let mut wire = Vec::new();
    push_padded_record(&mut wire, kind::BEGIN_REQUEST, 2, &begin_body, 3);
    let n = wire.len();
    wire[n - 3..].fill(0xEE);
    push_padded_record(&mut wire, kind::PARAMS, 2, &[], 1);
    *wire.last_mut().unwrap() = 0x01;
    push_padded_record(&mut wire, kind::STDIN, 2, b"ok", 0);
    push_padded_record(&mut wire, kind::STDIN, 2, &[], 0);
    c.send_raw(&wire).unwrap();
    let r = c
        .read_response(2)
        .unwrap_or_else(|e| panic!("request with non-zero padding bytes: {e}"));
    assert_eq!(echoed_body(&r), b"ok");
    drop(c);
    app.assert_serves();
}

#[test]
fn ten_thousand_management_records_do_not_grow_memory() {
    let mut app = echo();
    let mut c = app.client();
    let batch = |n: usize| {
        let mut w = Vec::new();
        for i in 0..n {
            if i % 2 == 0 {
                w.extend(record(50 + (i % 100) as u8, 0, b"\x01\x01ab"));
            } else {
                w.extend(encode_get_values(["FCGI_MAX_CONNS", "FCGI_MPXS_CONNS"]));
            }
        }
        w
    };
    let exchange = |c: &mut Client, n: usize| {
        let mut sender = c.try_clone().unwrap();
        let w = batch(n);
        let t = std::thread::spawn(move || sender.send_raw(&w));
        for i in 0..n {
            let rec = c
                .read_record()
                .unwrap_or_else(|e| panic!("reply {i} of {n}: {e}"));
            let want = if i % 2 == 0 {
                kind::UNKNOWN_TYPE
            } else {
                kind::GET_VALUES_RESULT
            };
            assert_eq!(rec.header.kind, want, "reply {i}");
        }
        t.join().unwrap().unwrap();
    };
    exchange(&mut c, 200); // warm up allocators and buffers
    let before = app.rss_kib();
    exchange(&mut c, 10_000);
    let after = app.rss_kib();
    let r = c
        .request(&Request::responder().stdin(b"end".to_vec()))
        .unwrap();
    assert_eq!(echoed_body(&r), b"end");
    // Not under valgrind or ASan, whose allocators hold freed memory back.
    if !instrumented() {
        assert!(
            after < before + 512,
            "VmRSS grew from {before} KiB to {after} KiB over 10000 management records"
        );
    }
    app.assert_serves();
}

// ---- request sequencing ----------------------------------------------------

#[test]
fn exit_status_does_not_leak_into_the_next_request() {
    let mut app = echo();
    let mut c = app.client();
    let r = c
        .request(
            &Request::responder()
                .keep_conn(true)
                .param("EXIT_STATUS", "7"),
        )
        .unwrap();
    assert_eq!(r.app_status, 7);
    let r = c
        .request(&Request::responder().id(2).keep_conn(true))
        .unwrap();
    assert_eq!(
        r.app_status, 0,
        "status of the previous request on the same connection leaked"
    );
    drop(c); // (echo serves one connection at a time)
    let r = app
        .client()
        .request(&Request::responder().param("EXIT_STATUS", "9"))
        .unwrap();
    assert_eq!(r.app_status, 9);
    let r = app.client().request(&Request::responder()).unwrap();
    assert_eq!(
        r.app_status, 0,
        "status of the previous request leaked to a new connection"
    );
    app.assert_serves();
}

#[test]
fn pipelined_keep_alive_requests_are_all_answered() {
    let mut app = echo();
    let mut c = app.client();
    let reqs: Vec<Request> = (0..8)
        .map(|i| {
            Request::responder()
                .id(1 + (i % 2) as u16)
                .keep_conn(i < 7)
                .param("QUERY_STRING", format!("p={i}"))
                .stdin(pattern(i * 3001))
        })
        .collect();
    // A GET_VALUES rides along after every request.
    let wire: Vec<u8> = reqs
        .iter()
        .flat_map(|r| [encode_request(r), encode_get_values(["FCGI_MAX_REQS"])].concat())
        .collect();
    let mut sender = c.try_clone().unwrap();
    let t = std::thread::spawn(move || sender.send_raw(&wire));
    let mut answered = 0;
    for (i, req) in reqs.iter().enumerate() {
        let r = c
            .read_response(req.id)
            .unwrap_or_else(|e| panic!("pipelined request {i}: {e}"));
        for x in &r.other_records {
            check_get_values_result(x);
            answered += 1;
        }
        assert_eq!(echoed_env(&r)[1], format!("QUERY_STRING=p={i}"));
        assert!(
            echoed_body(&r) == req.stdin.as_slice(),
            "pipelined request {i}: body differs"
        );
    }
    t.join().unwrap().unwrap();
    // The last GET_VALUES came after a request without KEEP_CONN: it may
    // be answered or dropped with the connection.
    let (recs, _) = expect_closed(&mut c, "after the last pipelined request without KEEP_CONN");
    for x in &recs {
        check_get_values_result(x);
    }
    assert!(answered >= 7, "only {answered} GET_VALUES answered");
    app.assert_serves();
}

#[test]
fn abort_request_before_the_body() {
    let mut app = echo();
    let mut c = app.client();
    let mut wire = begin(1, role::RESPONDER, true);
    wire.extend(end_of(kind::PARAMS, 1));
    wire.extend(record(kind::STDIN, 1, b"part"));
    wire.extend(record(kind::ABORT_REQUEST, 1, &[]));
    c.send_raw(&wire).unwrap();
    // The application sees the end of its input after "part" (as an error)
    // and its response still completes the request; then the connection
    // is closed, as with libfcgi, or kept, since KEEP_CONN was asked.
    let r = c.read_response(1).unwrap();
    assert_eq!(r.protocol_status, status::REQUEST_COMPLETE);
    assert_eq!(echoed_body(&r), b"part");
    drop(c);
    app.assert_serves();
}

// ---- mutated streams -----------------------------------------------------

/// A small deterministic generator (xorshift64), so a failing case can be
/// replayed from its number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Applies one to four random edits: a byte changed (often to a length
/// boundary value), bytes inserted, a range removed or repeated, or the end
/// cut off.
fn mutate(wire: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut w = wire.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(w.len());
        match rng.below(6) {
            0 => w[at] = rng.next() as u8,
            1 => w[at] = [0x00, 0x7f, 0x80, 0xff, 0x01, 0x08][rng.below(6)],
            2 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                w.splice(at..at, bytes);
            }
            3 => {
                let end = (at + 1 + rng.below(32)).min(w.len());
                w.drain(at..end);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(w.len());
                let copy = w[at..end].to_vec();
                w.splice(at..at, copy);
            }
            _ => w.truncate(at.max(1)),
        }
        if w.is_empty() {
            w.push(1);
        }
    }
    w
}

#[test]
fn randomly_mutated_streams_never_break_the_application() {
    // Three pipelined requests (two keep-alive, with parameters straddling
    // records and bodies), a GET_VALUES between them, then a fourth that
    // closes. Each case sends a mutated copy on its own connection, half-
    // closes, and reads until the application closes. Whatever the
    // application answers must be well-formed FastCGI: whole records of
    // version 1 and of the types an application sends. After all cases it
    // must still be alive, hold no extra descriptors, and serve a normal
    // request correctly.
    let mut app = echo();
    let mut wire = Vec::new();
    for id in 1..=4u16 {
        let req = Request::responder()
            .id(id)
            .keep_conn(id < 4)
            .param("QUERY_STRING", format!("n={id}"))
            .param("HTTP_COOKIE", "a".repeat(200 * usize::from(id)))
            .params_record_size(37)
            .stdin(pattern(100 * usize::from(id)));
        wire.extend(encode_request(&req));
        if id == 2 {
            wire.extend(encode_get_values(["FCGI_MAX_CONNS", "FCGI_MPXS_CONNS"]));
        }
    }
    let fds = app.fd_count();
    let mut rng = Rng(0x5eed_f00d_cafe_b0ba);
    let cases = 300;
    let mut answered = 0;
    for case in 0..cases {
        let m = mutate(&wire, &mut rng);
        let mut c = app.client();
        // The application may close first (a fault ends the connection).
        let _ = c.send_raw(&m);
        let _ = c.shutdown_write();
        let (bytes, end) = c.drain(secs(2), secs(10)).unwrap();
        assert_ne!(end, DrainEnd::Idle, "case {case}: connection left open");
        let (recs, rest) = parse_records(&bytes);
        if end == DrainEnd::Closed {
            assert!(rest.is_empty(), "case {case}: partial record {rest:?}");
        }
        for r in &recs {
            assert_eq!(r.header.version, 1, "case {case}: {r:?}");
            assert!(
                [
                    kind::STDOUT,
                    kind::STDERR,
                    kind::END_REQUEST,
                    kind::GET_VALUES_RESULT,
                    kind::UNKNOWN_TYPE
                ]
                .contains(&r.header.kind),
                "case {case}: an application never sends {r:?}"
            );
        }
        if recs.iter().any(|r| r.header.kind == kind::END_REQUEST) {
            answered += 1;
        }
        if case % 50 == 49 {
            app.assert_alive();
        }
    }
    eprintln!("{answered} of {cases} mutated streams answered");
    // Both paths were taken: some mutated streams still carried requests,
    // others were refused.
    assert!(
        (cases / 10..cases * 9 / 10).contains(&answered),
        "{answered} of {cases} cases answered"
    );
    let now = app.settle_fds(fds);
    assert!(now <= fds, "descriptors leaked: {fds} before, {now} after");
    app.assert_serves();
}
