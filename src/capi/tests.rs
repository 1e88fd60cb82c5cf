//! In-process tests of the C boundary, written to run under Miri (Stacked
//! and Tree Borrows: `scripts/miri.sh`) as well as natively: every pointer
//! the library hands to C (the request's streams, `envp`, `paramsPtr`, the
//! writers of `FCGX_CreateWriter`, `FCGI_FILE`s) is used here the way a C
//! program uses it, interleaved with the calls that make the library's own
//! references to the same memory. A connection is one end of a
//! `socketpair` put into the request with [`accept_connection_r`]; the test
//! plays the web server on the other end.

use super::request::*;
use super::stdio::*;
use super::stream::*;
use super::types::*;
use crate::client::{self, Record, Request};
use crate::protocol::record::kind;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fs::File;
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::ptr::null_mut;

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
        assert_eq!(
            FCGX_PutS(c"Content-type: text/plain\r\n\r\n".as_ptr(), out),
            28
        );
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

/// A request whose web server kept the connection (FCGI_KEEP_CONN), with
/// the second request already on its way.
fn two_requests() -> Vec<u8> {
    let first = Request::responder()
        .keep_conn(true)
        .param("N", "1")
        .stdin(&b"first"[..]);
    let second = Request::responder()
        .id(2)
        .param("N", "2")
        .stdin(&b"second"[..]);
    let mut bytes = client::encode_request(&first);
    bytes.extend(client::encode_request(&second));
    bytes
}

/// Reads the whole input stream with FCGX_GetStr.
///
/// # Safety
/// `s` is a live input stream of this library.
unsafe fn read_all(s: *mut FCGX_Stream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0 as c_char; 3];
    loop {
        // SAFETY: buf is writable for its length; s is live per the contract.
        let n = unsafe { FCGX_GetStr(buf.as_mut_ptr(), 3, s) };
        out.extend(buf[..n as usize].iter().map(|&c| c as u8));
        if n < 3 {
            return out;
        }
    }
}

/// Suspects 1 and 2 (the handle's references and back-pointers): the
/// stream pointers a program keeps in locals, the C fields it reads
/// directly (`isClosed`, `FCGI_errno`) and the handle's own `&mut` made by
/// each call are interleaved over two requests on one kept connection,
/// whose streams are the same three `FCGX_Stream`s.
#[test]
fn stream_pointers_stay_valid_across_calls_and_requests() {
    let mut r = new_request();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut theirs = File::from(OwnedFd::from(theirs));
    theirs.write_all(&two_requests()).unwrap();
    assert_eq!(
        // SAFETY: r was set up by FCGX_InitRequest; one thread uses it.
        unsafe { accept_connection_r(&mut *r, Some(ours.into())) },
        0
    );
    let (input, out, err) = (r.in_, r.out, r.err);
    let envp = r.envp;
    let params_ptr = r.paramsPtr;
    // SAFETY: live streams and request throughout; the reads of the C
    // fields are what C bindings do between calls.
    unsafe {
        assert_eq!((*input).isReader, 1);
        assert_eq!((*out).isClosed, 0);
        assert_eq!(FCGX_GetChar(input), c_int::from(b'f'));
        assert_eq!(FCGX_PutStr(c"a".as_ptr(), 1, out), 1);
        assert_eq!((*err).FCGI_errno, 0);
        assert_eq!(FCGX_PutStr(c"b".as_ptr(), 1, err), 1);
        assert_eq!(FCGX_GetChar(input), c_int::from(b'i'));
        assert_eq!(param("N", envp).as_deref(), Some("1"));
        assert_eq!(read_all(input), b"rst");
        assert_eq!((*input).isClosed, 1);
        assert_eq!(FCGX_PutS(c"c".as_ptr(), out), 1);
        FCGX_SetExitStatus(7, err);
        assert_eq!(FCGX_FClose(out), 0);
        assert_eq!((*out).wasFCloseCalled, 1);
        assert_eq!((*out).isClosed, 1);
        assert_eq!(FCGX_PutS(c"late".as_ptr(), out), -1);
        assert_eq!(FCGX_HasSeenEOF(out), EOF);
        // The next request on the same connection: the same handle and
        // streams, the pointers kept from the first still in use.
        assert_eq!(accept_connection_r(&mut *r, None), 0);
        assert_eq!(r.requestId, 2);
        assert_eq!(
            (r.in_, r.out, r.err, r.paramsPtr),
            (input, out, err, params_ptr)
        );
        assert_eq!(param("N", r.envp).as_deref(), Some("2"));
        assert_eq!(read_all(input), b"second");
        assert_eq!((*out).isClosed, 0);
        assert_eq!(FCGX_PutS(c"d".as_ptr(), out), 1);
        FCGX_Finish_r(&mut *r);
        assert_eq!(r.ipcFd, -1);
        FCGX_Free(&mut *r, 1);
    }
    let records = response(theirs);
    let first: Vec<Record> = records
        .iter()
        .filter(|r| r.header.request_id == 1)
        .cloned()
        .collect();
    let second: Vec<Record> = records
        .iter()
        .filter(|r| r.header.request_id == 2)
        .cloned()
        .collect();
    assert_eq!(stream_of(&first, kind::STDOUT), b"ac");
    assert_eq!(stream_of(&first, kind::STDERR), b"b");
    assert_eq!(first.last().unwrap().end_request().unwrap().app_status, 7);
    assert_eq!(stream_of(&second, kind::STDOUT), b"d");
    assert_eq!(second.last().unwrap().end_request().unwrap().app_status, 0);
}

/// Suspect 5: FCGX_GetStr and FCGX_GetLine fill buffers that hold no
/// values yet (as C's `char buf[N];`), writing only; the test reads back
/// only the bytes they report.
#[test]
fn reads_fill_uninitialised_buffers() {
    let mut r = new_request();
    let req = Request::responder().stdin(&b"abc\ndefghij"[..]);
    let (theirs, rc) = serve(&mut r, &req);
    assert_eq!(rc, 0);
    let input = r.in_;
    let mut line = MaybeUninit::<[c_char; 16]>::uninit();
    let mut rest = MaybeUninit::<[c_char; 32]>::uninit();
    let mut tiny = MaybeUninit::<[c_char; 1]>::uninit();
    // SAFETY: each buffer is writable for the size passed, and read back
    // only where the call reports it wrote.
    unsafe {
        let lp = line.as_mut_ptr().cast::<c_char>();
        assert_eq!(FCGX_GetLine(lp, 16, input), lp);
        assert_eq!(CStr::from_ptr(lp).to_bytes(), b"abc\n");
        // n == 1: room for the NUL only; nothing is read.
        let tp = tiny.as_mut_ptr().cast::<c_char>();
        assert_eq!(FCGX_GetLine(tp, 1, input), tp);
        assert_eq!(*tp, 0);
        let rp = rest.as_mut_ptr().cast::<c_char>();
        let n = FCGX_GetStr(rp, 32, input);
        assert_eq!(n, 7);
        let got = std::slice::from_raw_parts(rp.cast::<u8>(), n as usize);
        assert_eq!(got, b"defghij");
        assert_eq!(FCGX_GetLine(lp, 16, input), null_mut());
        FCGX_Finish_r(&mut *r);
        FCGX_Free(&mut *r, 1);
    }
    drop(theirs);
}

/// Suspect 4: every `envp` the library leaves in a request is writable
/// memory (C sees `char **`): after a connection that brought no request
/// (the handle's own empty array) and after FCGX_Free (a static in
/// writable memory). A store through a read-only static is UB in Miri.
#[test]
fn empty_environments_are_writable() {
    let mut r = new_request();
    let (ours, theirs) = UnixStream::pair().unwrap();
    drop(theirs);
    // SAFETY: r was set up by FCGX_InitRequest; one thread uses it.
    unsafe {
        assert_eq!(accept_connection_r(&mut *r, Some(ours.into())), 1);
        assert!(r.in_.is_null());
        assert!(!r.envp.is_null() && (*r.envp).is_null());
        assert_eq!(param("X", r.envp), None);
        *r.envp = null_mut();
        FCGX_Free(&mut *r, 1);
        assert!(r.paramsPtr.is_null());
        assert!(!r.envp.is_null() && (*r.envp).is_null());
        *r.envp = null_mut();
        // Freeing again, and finishing, a freed request do nothing.
        FCGX_Free(&mut *r, 1);
        FCGX_Finish_r(&mut *r);
    }
}

/// FCGX_CreateWriter's stream over one end of a socketpair: records of
/// its type and id, buffered until FCGX_FFlush or FCGX_FClose, freed by
/// FCGX_FreeStream, which sets the caller's pointer to NULL.
#[test]
fn standalone_writer() {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let ours = File::from(OwnedFd::from(ours));
    let theirs = File::from(OwnedFd::from(theirs));
    let fd = ours.as_raw_fd();
    // SAFETY: fd stays open until `ours` is dropped, after the stream is
    // freed; the stream is used by this thread only.
    unsafe {
        let mut s = FCGX_CreateWriter(fd, 5, 100, c_int::from(kind::STDERR));
        assert!(!s.is_null());
        assert_eq!((*s).isReader, 0);
        assert_eq!((*s).isClosed, 0);
        assert_eq!(FCGX_PutS(c"one ".as_ptr(), s), 4);
        assert_eq!(FCGX_PutChar(c_int::from(b'2'), s), c_int::from(b'2'));
        assert_eq!(FCGX_FFlush(s), 0);
        assert_eq!(FCGX_PutStr(c" three".as_ptr(), 6, s), 6);
        assert_eq!(FCGX_GetChar(s), EOF);
        assert_eq!(FCGX_UnGetChar(c_int::from(b'x'), s), EOF);
        FCGX_SetExitStatus(1, s);
        assert_eq!(FCGX_StartFilterData(s), -1);
        assert_eq!(FCGX_GetError(s), 0);
        assert_eq!(FCGX_FClose(s), 0);
        assert_eq!((*s).isClosed, 1);
        assert_eq!((*s).wasFCloseCalled, 1);
        assert_eq!(FCGX_FClose(s), 0);
        FCGX_FreeStream(&mut s);
        assert!(s.is_null());
        FCGX_FreeStream(&mut s);
        FCGX_FreeStream(std::ptr::null_mut());
        assert!(FCGX_CreateWriter(fd, 1, 100, 0).is_null());
        assert!(FCGX_CreateWriter(fd, 1, 100, 99).is_null());
    }
    drop(ours);
    let records = response(theirs);
    assert!(
        records
            .iter()
            .all(|r| r.header.kind == kind::STDERR && r.header.request_id == 5)
    );
    assert_eq!(stream_of(&records, kind::STDERR), b"one 2 three");
    assert_eq!(records.last().unwrap().content, b"");
}

/// A writer on a negative descriptor refuses every write; FCGX_FClose
/// then reports EBADF, which sticks until FCGX_ClearError. NULL streams
/// are answered without touching memory.
#[test]
fn writer_errors_and_clear_error() {
    // SAFETY: -1 is never open, so nothing is written anywhere.
    unsafe {
        let mut s = FCGX_CreateWriter(-1, 1, 32, c_int::from(kind::STDOUT));
        assert_eq!(FCGX_PutStr(c"x".as_ptr(), 1, s), -1);
        assert_eq!(FCGX_FFlush(s), -1);
        assert_eq!(FCGX_FClose(s), EOF);
        assert_ne!(FCGX_GetError(s), 0);
        assert_eq!(FCGX_HasSeenEOF(s), EOF);
        FCGX_ClearError(s);
        assert_eq!(FCGX_GetError(s), 0);
        FCGX_FreeStream(&mut s);
        // NULL streams: every call answers without touching memory.
        let null = null_mut();
        assert_eq!(FCGX_GetChar(null), EOF);
        assert_eq!(FCGX_PutChar(1, null), EOF);
        assert_eq!(FCGX_PutS(c"x".as_ptr(), null), -1);
        assert_eq!(FCGX_FFlush(null), -1);
        assert_eq!(FCGX_FClose(null), 0);
        assert_eq!(FCGX_GetError(null), 0);
        assert_eq!(FCGX_HasSeenEOF(null), EOF);
        FCGX_ClearError(null);
        FCGX_SetExitStatus(1, null);
        assert_eq!(FCGX_StartFilterData(null), -1);
    }
}

/// A peer that went away: the write fails (EPIPE), the stream keeps the
/// error (FCGX_GetError) until FCGX_ClearError, and the request still
/// finishes and frees cleanly.
#[test]
fn write_to_a_vanished_peer() {
    let mut r = new_request();
    let (theirs, rc) = serve(&mut r, &Request::responder());
    assert_eq!(rc, 0);
    drop(theirs);
    let out = r.out;
    let big = vec![b'x' as c_char; 70000];
    // SAFETY: a live request and stream; big is readable for its length.
    unsafe {
        let n = FCGX_PutStr(big.as_ptr(), big.len() as c_int, out);
        let flushed = FCGX_FFlush(out);
        assert!(n == -1 || flushed == -1, "{n} {flushed}");
        assert_ne!(FCGX_GetError(out), 0);
        assert_ne!((*out).FCGI_errno, 0);
        FCGX_ClearError(out);
        assert_eq!(FCGX_GetError(out), 0);
        FCGX_Finish_r(&mut *r);
        FCGX_Free(&mut *r, 1);
    }
}

/// A FILTER request: once FCGI_STDIN is read to its end,
/// FCGX_StartFilterData switches the input stream to FCGI_DATA (and is
/// refused on an output stream).
#[test]
fn filter_data() {
    let mut r = new_request();
    let req = Request::filter().stdin(&b"in"[..]).data(&b"file data"[..]);
    let (theirs, rc) = serve(&mut r, &req);
    assert_eq!(rc, 0);
    assert_eq!(r.role, 3);
    let input = r.in_;
    // SAFETY: a live request and stream.
    unsafe {
        assert_eq!(read_all(input), b"in");
        assert_eq!(FCGX_StartFilterData(input), 0);
        assert_eq!(read_all(input), b"file data");
        assert_eq!(FCGX_StartFilterData(r.out), -1);
        FCGX_Finish_r(&mut *r);
        FCGX_Free(&mut *r, 1);
    }
    let records = response(theirs);
    assert!(records.last().unwrap().end_request().is_some());
}

/// FCGX_Detach marks the connection as handed over, FCGX_Attach takes it
/// back; FCGX_Free without `close` keeps the handle and the connection.
#[test]
fn attach_detach_and_free_without_close() {
    let mut r = new_request();
    let (theirs, rc) = serve(&mut r, &Request::responder().keep_conn(true));
    assert_eq!(rc, 0);
    // SAFETY: a live request; NULL requests are answered with -1.
    unsafe {
        assert_eq!(FCGX_Detach(null_mut()), -1);
        assert_eq!(FCGX_Attach(null_mut()), -1);
        assert!(r.ipcFd > 0);
        assert_eq!(FCGX_Detach(&mut *r), 0);
        assert_eq!(r.detached, 1);
        assert_eq!(FCGX_Attach(&mut *r), 0);
        assert_eq!(r.detached, 0);
        assert_eq!(FCGX_Detach(&mut *r), 0);
        FCGX_Free(&mut *r, 0);
        assert!(!r.paramsPtr.is_null());
        assert!(r.in_.is_null());
        FCGX_Free(&mut *r, 1);
        assert!(r.paramsPtr.is_null());
        assert_eq!(r.ipcFd, -1);
        assert_eq!(FCGX_Detach(&mut *r), -1);
    }
    drop(theirs);
}

/// FCGX_InitRequest on memory that holds no request yet, and on NULL.
#[test]
fn init_request_on_uninitialised_memory() {
    let mut slot = MaybeUninit::<FCGX_Request>::uninit();
    // SAFETY: the slot is writable storage of the request's size; it is
    // read only after FCGX_InitRequest wrote all of it.
    unsafe {
        assert_eq!(
            FCGX_InitRequest(slot.as_mut_ptr(), 9, FCGI_FAIL_ACCEPT_ON_INTR),
            0
        );
        let r = slot.assume_init_mut();
        assert_eq!(
            (r.listen_sock, r.flags, r.ipcFd),
            (9, FCGI_FAIL_ACCEPT_ON_INTR, -1)
        );
        assert!(r.paramsPtr.is_null() && r.envp.is_null());
        assert_eq!(FCGX_InitRequest(null_mut(), 0, 0), -1);
        FCGX_Finish_r(r);
        FCGX_Free(r, 1);
    }
}

/// An `FCGI_FILE` over a FastCGI stream, allocated as FCGI_fopen's are
/// (FCGI_fclose frees it).
fn fcgi_file(s: *mut FCGX_Stream) -> *mut FCGI_FILE {
    Box::into_raw(Box::new(FCGI_FILE {
        stdio_stream: null_mut(),
        fcgx_stream: s,
    }))
}

/// The stdio layer's `FCGI_FILE` functions on a request's streams (what
/// `FCGI_stdin`/`FCGI_stdout` hold after `FCGI_Accept`), reading into
/// uninitialised buffers.
#[test]
fn stdio_files_over_request_streams() {
    let mut r = new_request();
    let req = Request::responder().stdin(&b"xy\nline two\n0123456789"[..]);
    let (theirs, rc) = serve(&mut r, &req);
    assert_eq!(rc, 0);
    let fin = fcgi_file(r.in_);
    let fout = fcgi_file(r.out);
    let mut line = MaybeUninit::<[c_char; 32]>::uninit();
    let mut items = MaybeUninit::<[u8; 16]>::uninit();
    // SAFETY: live streams and wrappers; the buffers are writable for the
    // sizes passed and read back only where the calls wrote.
    unsafe {
        assert_eq!(FCGI_fgetc(fin), c_int::from(b'x'));
        assert_eq!(FCGI_ungetc(c_int::from(b'X'), fin), c_int::from(b'X'));
        let lp = line.as_mut_ptr().cast::<c_char>();
        assert_eq!(FCGI_fgets(lp, 32, fin), lp);
        assert_eq!(CStr::from_ptr(lp).to_bytes(), b"Xy\n");
        assert_eq!(FCGI_fgets(lp, 32, fin), lp);
        assert_eq!(CStr::from_ptr(lp).to_bytes(), b"line two\n");
        // Items of 4 bytes: 10 bytes left make 2 whole items.
        let ip = items.as_mut_ptr().cast::<c_void>();
        assert_eq!(FCGI_fread(ip, 4, 4, fin), 2);
        let got = std::slice::from_raw_parts(ip.cast::<u8>(), 8);
        assert_eq!(got, b"01234567");
        assert_eq!(FCGI_feof(fin), EOF);
        assert_eq!(FCGI_ferror(fin), 0);
        FCGI_clearerr(fin);
        assert_eq!(FCGI_fseek(fin, 0, 0), -1);
        assert_eq!(FCGI_ftell(fin), -1);
        assert_eq!(FCGI_fileno(fin), -1);
        assert_eq!(FCGI_setvbuf(fin, null_mut(), 0, 0), -1);
        assert_eq!(FCGI_fputc(c_int::from(b'<'), fout), c_int::from(b'<'));
        assert_eq!(FCGI_fputs(c"body".as_ptr(), fout), 4);
        let tail = *b">!!";
        assert_eq!(FCGI_fwrite(tail.as_ptr().cast_mut().cast(), 1, 3, fout), 3);
        assert_eq!(FCGI_fwrite(tail.as_ptr().cast_mut().cast(), 0, 3, fout), 0);
        assert_eq!(FCGI_fflush(fout), 0);
        assert_eq!(FCGI_ferror(fout), 0);
        assert_eq!(FCGI_fgetc(fout), EOF);
        assert_eq!(FCGI_fclose(fout), 0);
        assert_eq!(FCGI_fclose(fin), 0);
        assert_eq!(FCGI_fclose(null_mut()), EOF);
        assert_eq!(FCGI_fgetc(null_mut()), EOF);
        FCGX_Finish_r(&mut *r);
        FCGX_Free(&mut *r, 1);
    }
    let records = response(theirs);
    assert_eq!(stream_of(&records, kind::STDOUT), b"<body>!!");
}

/// The three standard files of `_fcgi_sF` over a request (as
/// `FCGI_Accept` sets them): FCGI_getchar, FCGI_gets, FCGI_putchar,
/// FCGI_puts, FCGI_SetExitStatus, FCGI_StartFilterData. The only test
/// that touches `_fcgi_sF`; it unsets the files again.
#[test]
fn standard_files_over_a_request() {
    let mut r = new_request();
    let req = Request::responder().stdin(&b"ab\nlast"[..]);
    let (theirs, rc) = serve(&mut r, &req);
    assert_eq!(rc, 0);
    let std_files = (&raw mut _fcgi_sF).cast::<FCGI_FILE>();
    let mut line = MaybeUninit::<[c_char; 16]>::uninit();
    // SAFETY: the static's three elements, written as FCGI_Accept does
    // (no other test uses them); live streams; a line buffer larger than
    // any line of the input.
    unsafe {
        for (i, s) in [r.in_, r.out, r.err].into_iter().enumerate() {
            let f = std_files.add(i);
            (*f).stdio_stream = null_mut();
            (*f).fcgx_stream = s;
        }
        assert_eq!(FCGI_getchar(), c_int::from(b'a'));
        let lp = line.as_mut_ptr().cast::<c_char>();
        assert_eq!(FCGI_gets(lp), lp);
        assert_eq!(CStr::from_ptr(lp).to_bytes(), b"b");
        assert_eq!(FCGI_gets(lp), lp);
        assert_eq!(CStr::from_ptr(lp).to_bytes(), b"last");
        assert_eq!(FCGI_gets(lp), null_mut());
        assert_eq!(FCGI_putchar(c_int::from(b'[')), c_int::from(b'['));
        assert_eq!(FCGI_puts(c"out".as_ptr()), 4);
        assert_eq!(FCGI_fputs(c"oops".as_ptr(), std_files.add(2)), 4);
        FCGI_SetExitStatus(9);
        assert_eq!(FCGI_StartFilterData(), -1);
        // FCGI_fclose keeps a standard file's wrapper.
        assert_eq!(FCGI_fclose(std_files.add(1)), 0);
        assert!((*std_files.add(1)).fcgx_stream.is_null());
        assert_eq!(FCGI_putchar(c_int::from(b'x')), EOF);
        for i in 0..3 {
            (*std_files.add(i)).fcgx_stream = null_mut();
        }
        assert_eq!(FCGI_getchar(), EOF);
        FCGI_SetExitStatus(1);
        FCGX_Finish_r(&mut *r);
        FCGX_Free(&mut *r, 1);
    }
    let records = response(theirs);
    assert_eq!(stream_of(&records, kind::STDOUT), b"[out\n");
    assert_eq!(stream_of(&records, kind::STDERR), b"oops");
    assert_eq!(records.last().unwrap().end_request().unwrap().app_status, 9);
}

/// FCGI_fopen and the C-file side of the stdio layer on a temporary file.
/// The C library's FILE functions are C code, which Miri cannot run.
#[test]
#[cfg_attr(miri, ignore)]
fn stdio_files_over_c_files() {
    let path = std::env::temp_dir().join(format!("fcgi-capi-test-{}", std::process::id()));
    let cpath = CString::new(path.to_str().unwrap()).unwrap();
    let mut line = MaybeUninit::<[c_char; 16]>::uninit();
    // SAFETY: NUL-terminated strings; a file opened here and closed once;
    // buffers writable for the sizes passed.
    unsafe {
        let f = FCGI_fopen(cpath.as_ptr(), c"w+".as_ptr());
        assert!(!f.is_null());
        assert!(FCGI_fileno(f) >= 0);
        assert!(FCGI_fputs(c"one\n".as_ptr(), f) >= 0);
        assert_eq!(FCGI_fputc(c_int::from(b'2'), f), c_int::from(b'2'));
        let data = *b"345";
        assert_eq!(FCGI_fwrite(data.as_ptr().cast_mut().cast(), 1, 3, f), 3);
        assert_eq!(FCGI_fflush(f), 0);
        assert_eq!(FCGI_ftell(f), 8);
        FCGI_rewind(f);
        let lp = line.as_mut_ptr().cast::<c_char>();
        assert_eq!(FCGI_fgets(lp, 16, f), lp);
        assert_eq!(CStr::from_ptr(lp).to_bytes(), b"one\n");
        assert_eq!(FCGI_fgetc(f), c_int::from(b'2'));
        assert_eq!(FCGI_ungetc(c_int::from(b'9'), f), c_int::from(b'9'));
        let mut rest = [0u8; 8];
        assert_eq!(FCGI_fread(rest.as_mut_ptr().cast(), 1, 8, f), 4);
        assert_eq!(&rest[..4], b"9345");
        assert_ne!(FCGI_feof(f), 0);
        FCGI_clearerr(f);
        assert_eq!(FCGI_feof(f), 0);
        assert_eq!(FCGI_fseek(f, 1, 0), 0);
        assert_eq!(FCGI_fgetc(f), c_int::from(b'n'));
        assert_eq!(FCGI_fclose(f), 0);
    }
    std::fs::remove_file(&path).unwrap();
}
