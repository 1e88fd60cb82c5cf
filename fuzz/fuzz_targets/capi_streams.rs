//! The C API's stream functions (fcgiapp.h) on real requests: a peer
//! connects to a Unix listening socket (one per process), sends the
//! requests of the fuzz input's peer script (common.rs), and the
//! application script calls FCGX_GetStr, FCGX_GetLine, FCGX_GetChar,
//! FCGX_UnGetChar, FCGX_PutStr, FCGX_PutChar, FCGX_PutS, FCGX_FPrintF (the
//! C shim, variadic), FCGX_FFlush, FCGX_FClose, FCGX_GetError,
//! FCGX_ClearError, FCGX_HasSeenEOF, FCGX_SetExitStatus,
//! FCGX_StartFilterData and FCGX_GetParam in any order, on any stream,
//! between FCGX_Accept_r and FCGX_Finish_r / FCGX_Free.
//!
//! Checked: no panic (the library's panic guard would hide one, but
//! libFuzzer's panic hook aborts first), no memory error (AddressSanitizer
//! on the Rust side and the C shim), the bytes read are a prefix of the
//! request's STDIN (clean peer input), return values are within their
//! contracts, GetLine NUL-terminates within its buffer, the records sent
//! are well formed and STDOUT/STDERR carry what the application wrote.
//!
//! A second client, the sentinel, connects once the library has closed
//! the fuzzed connection, with one plain request: FCGX_Accept_r returns
//! it once the fuzzed connection has no more requests, instead of
//! blocking in accept(). (Connecting it earlier would let the library
//! park the kept-alive fuzzed connection to serve the sentinel, as it
//! should, and leave it parked after the iteration.)
#![no_main]

#[path = "common.rs"]
mod common;

use common::{Bytes, Served};
use fcgi::capi::request::{FCGX_Accept_r, FCGX_Finish_r, FCGX_Free, FCGX_GetParam, FCGX_InitRequest};
use fcgi::capi::stream::{
    FCGX_ClearError, FCGX_FClose, FCGX_FFlush, FCGX_GetChar, FCGX_GetError, FCGX_GetLine,
    FCGX_GetStr, FCGX_HasSeenEOF, FCGX_PutChar, FCGX_PutS, FCGX_PutStr, FCGX_SetExitStatus,
    FCGX_StartFilterData, FCGX_UnGetChar,
};
use fcgi::capi::{FCGX_Request, FCGX_Stream};
use libfuzzer_sys::fuzz_target;
use std::ffi::{c_char, c_int, CStr, CString};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::OnceLock;

extern "C" {
    // c/printf.c, linked into the fcgi rlib by its build script.
    fn FCGX_FPrintF(stream: *mut FCGX_Stream, format: *const c_char, ...) -> c_int;
}

const EOF: c_int = -1;
const SENTINEL: &[u8] = b"FCGI_FUZZ_SENTINEL";

struct Listening {
    listener: UnixListener,
    path: std::path::PathBuf,
}

fn listening() -> &'static Listening {
    static L: OnceLock<Listening> = OnceLock::new();
    L.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fcgi-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("listen.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind the listening socket");
        Listening { listener, path }
    })
}

/// The sentinel's one request: a GET with the SENTINEL parameter.
fn sentinel_wire() -> Vec<u8> {
    use fcgi::protocol::record::{kind, push_end_of_stream, push_record};
    let mut w = Vec::new();
    push_record(&mut w, kind::BEGIN_REQUEST, 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    let mut p = Vec::new();
    fcgi::protocol::params::push_pair(&mut p, SENTINEL, b"1");
    push_record(&mut w, kind::PARAMS, 1, &p);
    push_end_of_stream(&mut w, kind::PARAMS, 1);
    push_end_of_stream(&mut w, kind::STDIN, 1);
    w
}

/// The request's environment, each entry split at its first `=`.
///
/// # Safety
/// `envp` is the NULL-terminated array of a live request.
unsafe fn env_pairs(envp: *mut *mut c_char) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: envp is NULL-terminated (per the contract); i stops at the NULL.
        let p = unsafe { *envp.add(i) };
        if p.is_null() {
            break;
        }
        // SAFETY: each entry is a NUL-terminated string of the request.
        out.push(common::c_split(unsafe { CStr::from_ptr(p) }.to_bytes()));
        i += 1;
    }
    out
}

/// The request's environment strings as C sees them.
///
/// # Safety
/// `envp` is the NULL-terminated array of a live request.
unsafe fn raw_env(envp: *mut *mut c_char) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // SAFETY: envp is NULL-terminated (per the contract); i stops at the NULL.
        let p = unsafe { *envp.add(i) };
        if p.is_null() {
            return out;
        }
        // SAFETY: each entry is a NUL-terminated string of the request.
        out.push(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec());
        i += 1;
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| b'a' + ((i as u8).wrapping_add(seed) % 26)).collect()
}

struct Reading {
    pushback: Option<u8>,
    closed_by_app: bool,
    on_data: bool,
}

impl Reading {
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

    /// A read came short: the end of the stream if no error is set.
    fn end(&mut self, s: &mut Served, error: c_int) {
        if self.closed_by_app || error != 0 || self.pushback.is_some() {
            return;
        }
        if self.on_data {
            s.data_eof = true;
        } else {
            s.stdin_eof = true;
        }
    }
}

/// Runs the application script on the request until it asks to finish
/// or runs out (then reads the rest of the input).
///
/// # Safety
/// `req` is a request FCGX_Accept_r has just returned 0 for.
unsafe fn serve(req: &mut FCGX_Request, env: &[(Vec<u8>, Vec<u8>)], app: &mut Bytes, s: &mut Served) {
    let mut rd = Reading { pushback: None, closed_by_app: false, on_data: false };
    let mut buf = vec![0u8; 70_000];
    let (inp, out, err) = (req.in_, req.out, req.err);
    let (mut out_closed, mut err_closed) = (false, false);
    loop {
        if app.is_empty() {
            // Default: read the rest and echo it.
            loop {
                // SAFETY: buf is writable for 4096 bytes; inp is live.
                let k = unsafe { FCGX_GetStr(buf.as_mut_ptr().cast(), 4096, inp) };
                assert!((0..=4096).contains(&k));
                let got = buf[..k as usize].to_vec();
                rd.got(s, &got);
                // SAFETY: got is readable for k bytes; out is live.
                if unsafe { FCGX_PutStr(got.as_ptr().cast(), k, out) } == k {
                    s.stdout.extend_from_slice(&got);
                } else {
                    s.out_error = true;
                }
                if k < 4096 {
                    // SAFETY: inp is live.
                    rd.end(s, unsafe { FCGX_GetError(inp) });
                    return;
                }
            }
        }
        let op = app.u8();
        let pick = |op: u8| match (op >> 4) % 3 {
            0 => out,
            1 => err,
            _ => inp,
        };
        match op % 16 {
            0 => {
                let n = c_int::from(app.u8()) * if op & 0x10 != 0 { 270 } else { 1 };
                // SAFETY: buf is writable for n bytes; inp is live.
                let k = unsafe { FCGX_GetStr(buf.as_mut_ptr().cast(), n, inp) };
                assert!((0..=n).contains(&k), "GetStr returned {k} for {n}");
                rd.got(s, &buf[..k as usize]);
                if k < n {
                    // SAFETY: inp is live.
                    rd.end(s, unsafe { FCGX_GetError(inp) });
                }
            }
            1 => {
                let n = usize::from(app.u8());
                buf[..=n].fill(0xAA);
                // SAFETY: buf is writable for n bytes; inp is live.
                let r = unsafe { FCGX_GetLine(buf.as_mut_ptr().cast(), n as c_int, inp) };
                assert_eq!(buf[n], 0xAA, "GetLine wrote past its buffer");
                if !r.is_null() {
                    assert_eq!(r.cast::<u8>(), buf.as_mut_ptr());
                    // The NUL the library wrote is the last 0 in the buffer:
                    // nothing after it is written.
                    let end = buf[..n].iter().rposition(|&b| b == 0).expect("GetLine NUL-terminates");
                    assert!(buf[end + 1..n].iter().all(|&b| b == 0xAA), "GetLine wrote after its NUL");
                    if let Some(i) = buf[..end].iter().position(|&b| b == b'\n') {
                        assert_eq!(i, end - 1, "GetLine stops after the first newline");
                    }
                    let line = buf[..end].to_vec();
                    rd.got(s, &line);
                } else {
                    assert!(buf[..n].iter().all(|&b| b == 0xAA), "GetLine wrote and returned NULL");
                }
            }
            2 => {
                // SAFETY: inp (or another of the request's streams) is live.
                let c = unsafe { FCGX_GetChar(pick(op)) };
                assert!((-1..=255).contains(&c));
                if pick(op) == inp && c >= 0 {
                    rd.got(s, &[c as u8]);
                }
            }
            3 => {
                let b = app.u8();
                let c = if b == 0xff && op & 0x10 != 0 { EOF } else { c_int::from(b) };
                // SAFETY: the stream is live.
                let r = unsafe { FCGX_UnGetChar(c, pick(op)) };
                assert!(r == EOF || r == c);
                if r != EOF {
                    assert!(pick(op) == inp && rd.pushback.is_none());
                    rd.pushback = Some(c as u8);
                }
            }
            4 | 5 => {
                let stream = pick(op);
                let mut n = usize::from(app.u8());
                if op % 16 == 5 {
                    n *= 500;
                }
                let data = pattern(n, op);
                // SAFETY: data is readable for n bytes; the stream is live.
                let r = unsafe { FCGX_PutStr(data.as_ptr().cast(), n as c_int, stream) };
                if stream == inp {
                    assert!(r == -1 || (r == 0 && n == 0), "PutStr on the input stream: {r}");
                } else if r == n as c_int {
                    if stream == out { s.stdout.extend_from_slice(&data) } else { s.stderr.extend_from_slice(&data) }
                } else {
                    assert_eq!(r, -1);
                    s.out_error = true;
                }
            }
            6 => {
                // A format the shim expands: a string from the input, a
                // number and a precision-limited copy.
                let stream = pick(op);
                let n = usize::from(app.u8() % 64);
                let text: Vec<u8> = app.take(n).iter().map(|&b| if b == 0 { b'0' } else { b }).collect();
                let num = c_int::from(app.u8() as i8) * 12345;
                let prec = c_int::from(app.u8() % 80);
                let arg = CString::new(text.clone()).unwrap();
                let fmt = CString::new("%s|%d|%.*s%%\n").unwrap();
                // SAFETY: the format's conversions match the arguments (a
                // C string, an int, an int precision and a C string).
                let r = unsafe { FCGX_FPrintF(stream, fmt.as_ptr(), arg.as_ptr(), num, prec, arg.as_ptr()) };
                let mut want = text.clone();
                want.extend_from_slice(format!("|{num}|").as_bytes());
                want.extend_from_slice(&text[..text.len().min(prec as usize)]);
                want.extend_from_slice(b"%\n");
                if stream == inp {
                    assert_eq!(r, -1);
                } else if r == want.len() as c_int {
                    if stream == out { s.stdout.extend_from_slice(&want) } else { s.stderr.extend_from_slice(&want) }
                } else {
                    assert_eq!(r, -1, "FPrintF returned {r}, wrote {}", want.len());
                    s.out_error = true;
                }
            }
            7 => {
                // SAFETY: the stream is live.
                let r = unsafe { FCGX_FFlush(pick(op)) };
                if r != 0 {
                    assert_eq!(r, -1);
                    if pick(op) != inp {
                        s.out_error = true;
                    }
                }
            }
            8 => {
                let stream = pick(op);
                // SAFETY: the stream is live; it stays allocated after FClose.
                let r = unsafe { FCGX_FClose(stream) };
                assert!(r == 0 || r == -1);
                if stream == inp {
                    rd.closed_by_app = true;
                    rd.pushback = None;
                } else {
                    if r != 0 {
                        s.out_error = true;
                    }
                    if stream == out { out_closed = true } else { err_closed = true }
                }
            }
            9 => {
                let stream = pick(op);
                // SAFETY: the stream is live.
                unsafe {
                    let e = FCGX_GetError(stream);
                    let eof = FCGX_HasSeenEOF(stream);
                    assert!(eof == 0 || eof == EOF);
                    if op & 0x40 != 0 && e != 0 {
                        FCGX_ClearError(stream);
                        assert_eq!(FCGX_GetError(stream), 0);
                        if stream != inp {
                            s.out_error = true;
                        } else {
                            // The stream stays closed, now without its
                            // error: a short read no longer means the end.
                            rd.closed_by_app = true;
                        }
                    }
                }
            }
            10 => {
                let stream = pick(op);
                let c = c_int::from(app.u8());
                // SAFETY: the stream is live.
                let r = unsafe { FCGX_PutChar(c, stream) };
                if stream == inp {
                    assert_eq!(r, EOF);
                } else if r == c {
                    if stream == out { s.stdout.push(c as u8) } else { s.stderr.push(c as u8) }
                } else {
                    assert_eq!(r, EOF);
                    s.out_error = true;
                }
            }
            11 => {
                let stream = pick(op);
                let n = usize::from(app.u8() % 100);
                let text: Vec<u8> = app.take(n).iter().map(|&b| if b == 0 { b'.' } else { b }).collect();
                let c = CString::new(text.clone()).unwrap();
                // SAFETY: c is NUL-terminated; the stream is live.
                let r = unsafe { FCGX_PutS(c.as_ptr(), stream) };
                if stream == inp {
                    assert!(r == -1 || (r == 0 && text.is_empty()), "PutS on the input stream: {r}");
                } else if r == text.len() as c_int {
                    if stream == out { s.stdout.extend_from_slice(&text) } else { s.stderr.extend_from_slice(&text) }
                } else {
                    assert_eq!(r, -1);
                    s.out_error = true;
                }
            }
            12 => {
                let st = c_int::from(app.u8() as i8) * 7;
                // SAFETY: the stream is live.
                unsafe { FCGX_SetExitStatus(st, pick(op)) };
                if !(out_closed && err_closed) {
                    s.exit_status = st;
                }
            }
            13 => {
                // SAFETY: the stream is live.
                let r = unsafe { FCGX_StartFilterData(pick(op)) };
                if r == 0 {
                    assert!(pick(op) == inp && s.role == 3 && !rd.on_data);
                    rd.on_data = true;
                    rd.closed_by_app = false;
                } else if pick(op) == inp {
                    rd.closed_by_app = true;
                }
            }
            14 => {
                // A parameter lookup: FCGX_GetParam gives the first value.
                let i = usize::from(app.u8());
                let names: Vec<Vec<u8>> = env.iter().map(|p| p.0.clone()).collect();
                let name = if names.is_empty() || i % 4 == 3 {
                    b"NO_SUCH_NAME".to_vec()
                } else {
                    names[i % names.len()].clone()
                };
                if let Ok(c) = CString::new(name.clone()) {
                    // SAFETY: c is NUL-terminated; envp is the request's.
                    let v = unsafe { FCGX_GetParam(c.as_ptr(), req.envp) };
                    // libfcgi's rule: the first entry that starts with
                    // `name=` (an entry cut short by a NUL before its '='
                    // matches no name).
                    let mut key = name.clone();
                    key.push(b'=');
                    // SAFETY: envp is the request's NULL-terminated array.
                    let want = unsafe { raw_env(req.envp) }
                        .into_iter()
                        .find(|e| e.starts_with(&key))
                        .map(|e| e[key.len()..].to_vec());
                    // SAFETY: a non-NULL result points into envp's strings.
                    let got = (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_bytes().to_vec());
                    assert_eq!(got, want, "FCGX_GetParam");
                }
            }
            _ => return,
        }
    }
}

fuzz_target!(init: { common::quiet_library(); }, |data: &[u8]| {
    let l = listening();
    let (script, app) = common::split_input(data);
    let (wire, clean) = common::build_wire(script);
    let model = if clean { Some(common::model(&wire)) } else { None };

    let client = UnixStream::connect(&l.path).expect("connect");
    let peer = common::Peer::start(client, wire);
    let path = l.path.clone();
    let sentinel = std::thread::spawn(move || {
        // What the library sent on the fuzzed connection, once it closed it.
        let out = peer.finish();
        let s = UnixStream::connect(&path).expect("connect the sentinel");
        let _ = common::Peer::start(s, sentinel_wire()).finish();
        out
    });

    let mut req = FCGX_Request::new(-1, 0);
    // SAFETY: req is a live, writable FCGX_Request.
    assert_eq!(unsafe { FCGX_InitRequest(&mut req, l.listener.as_raw_fd(), 0) }, 0);
    let mut app = Bytes { b: app };
    let mut served: Vec<Served> = Vec::new();
    loop {
        // SAFETY: req was set up by FCGX_InitRequest and is used by this
        // thread only.
        let r = unsafe { FCGX_Accept_r(&mut req) };
        assert_eq!(r, 0, "FCGX_Accept_r failed");
        // SAFETY: the request was just accepted: envp is its environment.
        let env = unsafe { env_pairs(req.envp) };
        if env.iter().any(|(n, _)| n == SENTINEL) {
            break;
        }
        let mut s = Served {
            id: req.requestId as u16,
            role: req.role as u16,
            keep_conn: req.keepConnection != 0,
            // The library's FCGI_ROLE first, then the peer's.
            params: env.get(1..).unwrap_or_default().to_vec(),
            ..Default::default()
        };
        // SAFETY: FCGX_Accept_r returned 0 for req.
        unsafe { serve(&mut req, &env, &mut app, &mut s) };
        served.push(s);
        if app.u8() & 1 == 1 {
            // SAFETY: as above; Accept_r would finish it too.
            unsafe { FCGX_Finish_r(&mut req) };
        }
    }
    // SAFETY: req is the request set up above; close its connection.
    unsafe {
        FCGX_Finish_r(&mut req);
        FCGX_Free(&mut req, 1);
    }
    let out = sentinel.join().expect("the peer's threads");

    if let Some(model) = &model {
        // envp cannot tell a name with '=' from its value: parameters are
        // compared as C sees them.
        common::check_served(model, &served, true);
    }
    let answers = common::check_output(&out);
    let complete = served.iter().all(|s| !s.out_error);
    common::check_answers(&answers, &served, complete);
});
