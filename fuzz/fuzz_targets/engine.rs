//! The request engine (`fcgi::server::Session`) driven by a peer over a
//! socketpair: the fuzz input is a peer script (records of chosen type,
//! id and content, bodies split across records, keep-alive series, raw
//! garbage; see common.rs) and an application script (reads, writes,
//! parameter lookups, flushes, closes, finishes).
//!
//! Checked: nothing panics or hangs; every record the library sends is
//! well formed (common::check_output); when the peer's bytes are clean
//! records, each served request matches a BEGIN_REQUEST the peer sent
//! (id, role, keep-alive flag, parameters) and the application's reads
//! are a prefix of that request's STDIN (or DATA), all of it at a clean
//! end; each request's STDOUT, STDERR and exit status on the wire are
//! what the application wrote.
#![no_main]

#[path = "common.rs"]
mod common;

use common::{Bytes, Served};
use fcgi::server::{Output, Session, Stdin, Writer};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

/// The application's view of the input stream it is reading.
struct Reading {
    pushback: Option<u8>,
    on_data: bool,
    closed_by_app: bool,
}

impl Reading {
    /// Records `got` (the bytes a read returned) in `s`.
    fn got(&mut self, s: &mut Served, got: &[u8]) {
        let mut got = got;
        if let Some(b) = self.pushback.take() {
            if let Some((first, rest)) = got.split_first() {
                assert_eq!(*first, b, "the pushed-back byte comes first");
                got = rest;
            } else {
                self.pushback = Some(b);
            }
        }
        if self.on_data {
            s.data.extend_from_slice(got);
        } else {
            s.stdin.extend_from_slice(got);
        }
    }

    fn eof(&mut self, s: &mut Served) {
        if self.closed_by_app {
            return;
        }
        if self.on_data {
            s.data_eof = true;
        } else {
            s.stdin_eof = true;
        }
    }
}

/// A pattern of `n` bytes to write, different per call.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Serves the current request with the application script; returns
/// whether to go on (false: the script asked for the request to end).
fn serve(sess: &mut Session, app: &mut Bytes, s: &mut Served) {
    let mut rd = Reading { pushback: None, on_data: false, closed_by_app: false };
    let mut buf = vec![0u8; 70_000];
    // Both writers closed: END_REQUEST has gone with the status of then.
    let (mut out_closed, mut err_closed) = (false, false);
    loop {
        if app.is_empty() {
            // Default: read the rest and echo it.
            let mut all = Vec::new();
            let r = Stdin(sess).read_to_end(&mut all);
            rd.got(s, &all);
            if r.is_ok() {
                rd.eof(s);
            }
            if Writer(sess, Output::Stdout).write_all(&all).is_ok() {
                s.stdout.extend_from_slice(&all);
            } else {
                s.out_error = true;
            }
            return;
        }
        let op = app.u8();
        match op % 16 {
            0 => {
                let n = usize::from(app.u8());
                match Stdin(sess).read(&mut buf[..n]) {
                    Ok(0) if n > 0 => rd.eof(s),
                    Ok(k) => rd.got(s, &buf[..k]),
                    Err(_) => {}
                }
            }
            1 => {
                let n = usize::from(app.u8()) * 64;
                let k = sess.read_some(&mut buf[..n]);
                assert!(k <= n);
                rd.got(s, &buf[..k]);
            }
            2 => {
                let n = usize::from(app.u8());
                let k = sess.read_line(&mut buf[..n]);
                assert!(k <= n);
                if let Some(i) = buf[..k].iter().position(|&b| b == b'\n') {
                    assert_eq!(i, k - 1, "read_line stops after the first newline");
                }
                rd.got(s, &buf[..k]);
            }
            3 => {
                let n = usize::from(app.u16()).min(buf.len());
                let k = sess.read_full(&mut buf[..n]);
                assert!(k <= n);
                rd.got(s, &buf[..k]);
            }
            4 => {
                let b = app.u8();
                if sess.unget(b) {
                    assert!(rd.pushback.is_none(), "a second pushback was accepted");
                    rd.pushback = Some(b);
                }
            }
            5 | 6 => {
                let which = if op % 16 == 5 { Output::Stdout } else { Output::Stderr };
                let mut n = usize::from(app.u8());
                if op & 0x10 != 0 {
                    n *= 700; // up to ~175 KiB: several records, past the buffer
                }
                let data = pattern(n, op);
                match sess.write(which, &data) {
                    Ok(()) => match which {
                        Output::Stdout => s.stdout.extend_from_slice(&data),
                        Output::Stderr => s.stderr.extend_from_slice(&data),
                    },
                    Err(_) => s.out_error = true,
                }
            }
            7 => {
                // A parameter lookup: a name the request has, or not.
                let i = usize::from(app.u8());
                if s.params.is_empty() || i % 4 == 3 {
                    let name = b"NO_SUCH_PARAMETER_HERE";
                    if !s.params.iter().any(|(n, _)| n == name) {
                        assert!(sess.param(name).is_none());
                    }
                } else {
                    let (name, _) = &s.params[i % s.params.len()];
                    let first = s.params.iter().find(|(n, _)| n == name).map(|(_, v)| v);
                    assert_eq!(sess.param(name), first.map(|v| &v[..]));
                }
            }
            8 => {
                let which = if op & 0x10 != 0 { Output::Stderr } else { Output::Stdout };
                if sess.flush(which).is_err() {
                    s.out_error = true;
                }
            }
            9 => {
                let which = if op & 0x10 != 0 { Output::Stderr } else { Output::Stdout };
                if sess.close_output(which).is_err() {
                    s.out_error = true;
                }
                match which {
                    Output::Stdout => out_closed = true,
                    Output::Stderr => err_closed = true,
                }
            }
            10 => {
                sess.close_input();
                rd.closed_by_app = true;
                rd.pushback = None;
            }
            11 => {
                let st = i32::from(app.u8() as i8) * 1000;
                sess.set_exit_status(st);
                if !(out_closed && err_closed) {
                    s.exit_status = st;
                }
            }
            12 => {
                if sess.start_filter_data().is_ok() {
                    assert_eq!(s.role, 3, "filter data for a role not FILTER");
                    assert!(!rd.on_data && rd.pushback.is_none());
                    rd.on_data = true;
                    rd.closed_by_app = false;
                } else {
                    // The input is now closed with an error.
                    rd.closed_by_app = true;
                }
            }
            13 => return,
            14 => {
                let n = usize::from(app.u8());
                let mut w = Writer(sess, Output::Stdout);
                let data = pattern(n, op);
                if w.write_all(&data).and_then(|()| w.flush()).is_ok() {
                    s.stdout.extend_from_slice(&data);
                } else {
                    s.out_error = true;
                }
            }
            _ => {
                let mut all = Vec::new();
                let r = Stdin(sess).read_to_end(&mut all);
                rd.got(s, &all);
                if r.is_ok() {
                    rd.eof(s);
                }
            }
        }
    }
}

fuzz_target!(init: { common::quiet_library(); }, |data: &[u8]| {
    let (script, app) = common::split_input(data);
    let (wire, clean) = common::build_wire(script);
    let model = if clean { Some(common::model(&wire)) } else { None };

    let (mine, theirs) = UnixStream::pair().expect("socketpair");
    let peer = common::Peer::start(theirs, wire);
    let mut sess = Session::new();
    let mut app = Bytes { b: app };
    let mut served: Vec<Served> = Vec::new();
    let mut ready = sess.accept_connection(OwnedFd::from(mine)).expect("accept_connection");
    while ready && served.len() < 64 {
        let mut s = Served {
            id: sess.request_id(),
            role: sess.role(),
            keep_conn: sess.keep_conn(),
            params: sess.params().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
            ..Default::default()
        };
        serve(&mut sess, &mut app, &mut s);
        served.push(s);
        ready = sess.next_on_connection().expect("next_on_connection");
    }
    drop(sess);
    let out = peer.finish();

    if let Some(model) = &model {
        common::check_served(model, &served, false);
    }
    let answers = common::check_output(&out);
    let complete = served.len() < 64 && served.iter().all(|s| !s.out_error);
    common::check_answers(&answers, &served, complete);
});
