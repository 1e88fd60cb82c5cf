//! In-process tests of the C boundary, written to run under Miri (Stacked
//! and Tree Borrows: `scripts/miri.sh`) as well as natively: every pointer
//! the library hands to C (the request's streams, `envp`, `paramsPtr`, the
//! writers of `FCGX_CreateWriter`, `FCGI_FILE`s) is used here the way a C
//! program uses it, interleaved with the calls that make the library's own
//! references to the same memory. A connection is one end of a
//! `socketpair` put into the request with [`accept_connection_r`]; the test
//! plays the web server on the other end.

use super::request::*;
use super::stream::*;
use super::types::*;
use crate::client::{self, Record, Request};
use crate::protocol::record::kind;
use std::ffi::{CStr, CString, c_char, c_int};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

const EOF: c_int = -1;

/// A request set up by `FCGX_InitRequest` with no listening socket.
fn new_request() -> Box<FCGX_Request> {
    let mut r = Box::new(FCGX_Request::new(0, 0));
    // SAFETY: r is writable storage of the right size.
    assert_eq!(unsafe { FCGX_InitRequest(&mut *r, -1, 0) }, 0);
    r
}

/// Sends `req` (fully) on a new socketpair and puts our end into `r`.
/// Returns the web server's end and what `accept_connection_r` returned.
fn serve(r: &mut FCGX_Request, req: &Request) -> (File, c_int) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    // The web server's end as a plain file: read() and write(), which Miri
    // emulates on a socketpair (send() and recv() it does not).
    let mut theirs = File::from(OwnedFd::from(theirs));
    theirs.write_all(&client::encode_request(req)).unwrap();
    // SAFETY: r was set up by FCGX_InitRequest; this thread alone uses it.
    let rc = unsafe { accept_connection_r(r, Some(ours.into())) };
    (theirs, rc)
}

/// Everything the application sent until it closed the connection.
fn response(mut theirs: File) -> Vec<Record> {
    // A read() loop: File::read_to_end would ask for the size (statx).
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match theirs.read(&mut chunk).unwrap() {
            0 => break,
            n => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let (records, rest) = client::parse_records(&bytes);
    assert!(rest.is_empty(), "trailing bytes: {rest:?}");
    records
}

/// The concatenated content of the records of type `k`.
fn stream_of(records: &[Record], k: u8) -> Vec<u8> {
    records
        .iter()
        .filter(|r| r.header.kind == k)
        .flat_map(|r| r.content.iter().copied())
        .collect()
}

/// `FCGX_GetParam` on `envp`, as an owned string.
fn param(name: &str, envp: FCGX_ParamArray) -> Option<String> {
    let name = CString::new(name).unwrap();
    // SAFETY: a NUL-terminated name and an envp from the library.
    let v = unsafe { FCGX_GetParam(name.as_ptr(), envp) };
    // SAFETY: NULL or a NUL-terminated value inside envp's strings.
    (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
}

#[test]
fn request_streams_params_and_response() {
    let mut r = new_request();
    let req = Request::responder()
        .param("REQUEST_METHOD", "POST")
        .param("QUERY_STRING", "a=1")
        .stdin(&b"line one\nline two\nrest"[..]);
    let (theirs, rc) = serve(&mut r, &req);
    assert_eq!(rc, 0);
    let (input, out, err) = (r.in_, r.out, r.err);
    assert!(!input.is_null() && !out.is_null() && !err.is_null());
    assert_eq!(param("REQUEST_METHOD", r.envp).as_deref(), Some("POST"));
    assert_eq!(param("QUERY_STRING", r.envp).as_deref(), Some("a=1"));
    assert_eq!(param("MISSING", r.envp), None);
    // SAFETY: the request's live streams, and buffers of the sizes given.
    unsafe {
        assert_eq!(FCGX_GetChar(input), c_int::from(b'l'));
        assert_eq!(FCGX_UnGetChar(c_int::from(b'L'), input), c_int::from(b'L'));
        let mut line = [0 as c_char; 64];
        let lp = line.as_mut_ptr();
        let got = FCGX_GetLine(lp, 64, input);
        assert_eq!(got, lp);
        assert_eq!(CStr::from_ptr(got).to_bytes(), b"Line one\n");
        let mut buf = [0 as c_char; 4];
        assert_eq!(FCGX_GetStr(buf.as_mut_ptr(), 4, input), 4);
        assert_eq!(buf.map(|c| c as u8), *b"line");
        assert_eq!(FCGX_HasSeenEOF(input), 0);
        let mut rest = [0 as c_char; 32];
        assert_eq!(FCGX_GetStr(rest.as_mut_ptr(), 32, input), 9);
        assert_eq!(FCGX_GetChar(input), EOF);
        assert_eq!(FCGX_HasSeenEOF(input), EOF);
        assert_eq!(FCGX_PutS(c"Content-type: text/plain\r\n\r\n".as_ptr(), out), 28);
        assert_eq!(FCGX_PutStr(c"hello".as_ptr(), 5, out), 5);
        assert_eq!(FCGX_PutChar(c_int::from(b'!'), out), c_int::from(b'!'));
        assert_eq!(FCGX_FFlush(out), 0);
        assert_eq!(FCGX_PutS(c"warning".as_ptr(), err), 7);
        FCGX_SetExitStatus(3, out);
        assert_eq!(FCGX_GetError(out), 0);
        FCGX_Finish_r(&mut *r);
    }
    assert!(r.in_.is_null());
    let records = response(theirs);
    assert_eq!(
        stream_of(&records, kind::STDOUT),
        b"Content-type: text/plain\r\n\r\nhello!"
    );
    assert_eq!(stream_of(&records, kind::STDERR), b"warning");
    let end = records.last().unwrap().end_request().unwrap();
    assert_eq!(end.app_status, 3);
    // SAFETY: r is set up; FCGX_Free releases its handle.
    unsafe { FCGX_Free(&mut *r, 1) };
    assert!(r.paramsPtr.is_null());
}
