//! Streams: reading `in`, writing `out`/`err`, errors, exit status, and the
//! standalone writers of `FCGX_CreateWriter`. Formatted output
//! (`FCGX_FPrintF`, `FCGX_VFPrintF`) is in `c/printf.c`, which formats with
//! the C library and hands the bytes to `FCGX_PutStr`.

use super::handle::{Owner, StandaloneWriter, StreamBox, Target, Which, target, writer_fd};
use super::types::FCGX_Stream;
use crate::protocol::record;
use crate::server::output::OutputStream;
use crate::server::session::ByteSink;
use crate::server::{Output, StreamError};
use crate::sys;
use std::ffi::{CStr, c_char, c_int};
use std::mem::MaybeUninit;
use std::ptr::null_mut;

/// `EOF` of `<stdio.h>`.
const EOF: c_int = -1;

/// Runs `f` on the request stream behind `stream`, then mirrors the state
/// into the C struct. Standalone writers go to `w`.
///
/// # Safety
/// As [`target`].
unsafe fn on_stream<T>(
    stream: *mut FCGX_Stream,
    none: T,
    f: impl FnOnce(&mut super::handle::Handle, Which) -> T,
    w: impl FnOnce(&mut StandaloneWriter, &mut FCGX_Stream) -> T,
) -> T {
    // SAFETY: forwarded contract.
    match unsafe { target(stream) } {
        None => none,
        Some(Target::Request(h, which)) => {
            let r = f(h, which);
            h.sync_stream(which);
            r
        }
        Some(Target::Writer(wr, c)) => {
            let r = w(wr, c);
            c.isClosed = wr.stream.closed as c_int;
            c.FCGI_errno = wr.stream.error.map_or(0, StreamError::code);
            r
        }
    }
}

/// Reads bytes from an input stream into `buf`; 0 at EOF or for a writer.
///
/// # Safety
/// As [`target`].
unsafe fn get<B: ByteSink + ?Sized>(stream: *mut FCGX_Stream, buf: &mut B) -> usize {
    // SAFETY: forwarded contract.
    unsafe {
        on_stream(
            stream,
            0,
            |h, which| {
                if which == Which::In {
                    h.session.read_full(buf)
                } else {
                    0
                }
            },
            |_, _| 0,
        )
    }
}

/// Writes bytes to an output stream; false on error or for a reader.
///
/// # Safety
/// As [`target`].
unsafe fn put(stream: *mut FCGX_Stream, data: &[u8]) -> bool {
    let standalone = |wr: &mut StandaloneWriter, _: &mut FCGX_Stream| {
        // SAFETY: a writer's descriptor is open while its stream is used
        // (FCGX_CreateWriter's contract); the borrow ends in this call.
        match unsafe { writer_fd(wr) } {
            Some(fd) => wr.stream.write(fd, wr.request_id, data).is_ok(),
            None => false,
        }
    };
    let request = |h: &mut super::handle::Handle, which: Which| match which.output() {
        Some(o) => h.session.write(o, data).is_ok(),
        None => false,
    };
    // SAFETY: forwarded contract.
    unsafe { on_stream(stream, false, request, standalone) }
}

/// Reads one byte: 0..255, or EOF at end of stream, on error, or for a
/// writer or NULL stream.
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetChar(stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(EOF, {
        let mut b = [0u8];
        // SAFETY: forwarded contract.
        if unsafe { get(stream, &mut b[..]) } == 1 {
            c_int::from(b[0])
        } else {
            EOF
        }
    })
}

/// Pushes `c` back onto an input stream so the next read returns it. One
/// byte deep; fails (EOF) for EOF, a closed stream, or a writer. Returns `c`.
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_UnGetChar(c: c_int, stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(EOF, {
        if c == EOF {
            return EOF;
        }
        // SAFETY: forwarded contract.
        let ok = unsafe {
            on_stream(
                stream,
                false,
                |h, w| w == Which::In && h.session.unget(c as u8),
                |_, _| false,
            )
        };
        if ok { c } else { EOF }
    })
}

/// The C buffer `str` of `n > 0` bytes, as memory that may not be
/// initialised: a `&mut [u8]` over it would claim it holds values.
///
/// # Safety
/// `str` is writable for `n` bytes and nothing else refers to them while
/// the slice is used.
unsafe fn uninit_bytes<'a>(str: *mut c_char, n: c_int) -> &'a mut [MaybeUninit<u8>] {
    // SAFETY: per the contract; MaybeUninit<u8> has the layout of u8 and
    // no validity requirement.
    unsafe { std::slice::from_raw_parts_mut(str.cast::<MaybeUninit<u8>>(), n as usize) }
}

/// Reads up to `n` bytes into `str`, waiting for more input as needed.
/// Returns the count read: less than `n` only at end of stream or on error.
///
/// # Safety
/// `str` is NULL or writable for `n` bytes; `stream` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetStr(
    str: *mut c_char,
    n: c_int,
    stream: *mut FCGX_Stream,
) -> c_int {
    ffi_guard!(0, {
        if str.is_null() || n <= 0 {
            return 0;
        }
        // SAFETY: str is writable for n > 0 bytes per the contract; as
        // MaybeUninit, the bytes need hold no values yet (they are only
        // written).
        let buf = unsafe { uninit_bytes(str, n) };
        // SAFETY: forwarded contract.
        unsafe { get(stream, buf) as c_int }
    })
}

/// Reads a line: at most `n - 1` bytes, up to and including a newline,
/// always NUL-terminated. Returns `str`, or NULL if the stream ended before
/// any byte (or `n <= 0`, which libfcgi answered with a 1-byte overflow).
///
/// # Safety
/// `str` is NULL or writable for `n` bytes; `stream` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetLine(
    str: *mut c_char,
    n: c_int,
    stream: *mut FCGX_Stream,
) -> *mut c_char {
    ffi_guard!(null_mut(), {
        if str.is_null() || n <= 0 {
            return null_mut();
        }
        // SAFETY: str is writable for n > 0 bytes per the contract; as
        // MaybeUninit, the bytes need hold no values yet (they are only
        // written).
        let buf = unsafe { uninit_bytes(str, n) };
        let room = buf.len() - 1;
        let got = if room == 0 {
            0
        } else {
            // SAFETY: forwarded contract.
            unsafe {
                on_stream(
                    stream,
                    usize::MAX,
                    |h, w| {
                        if w == Which::In {
                            h.session.read_line(&mut buf[..room])
                        } else {
                            usize::MAX
                        }
                    },
                    |_, _| usize::MAX,
                )
            }
        };
        if got == usize::MAX || (got == 0 && room > 0) {
            return null_mut();
        }
        buf[got].write(0);
        str
    })
}

/// EOF (-1) if the stream reached its end, was closed or failed; else 0.
/// Does not look ahead: it can be 0 while the next read returns EOF.
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_HasSeenEOF(stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: forwarded contract.
        let Some(s) = (unsafe { stream.as_ref() }) else {
            return EOF;
        };
        if s.isClosed != 0 { EOF } else { 0 }
    })
}

/// Writes one byte; returns it (as `unsigned char`), or EOF on error.
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_PutChar(c: c_int, stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(EOF, {
        let b = c as u8;
        // SAFETY: forwarded contract.
        if unsafe { put(stream, &[b]) } {
            c_int::from(b)
        } else {
            EOF
        }
    })
}

/// Writes `n` bytes of `str`; returns `n`, or -1 on error (also for a
/// negative `n` or NULL `str`).
///
/// # Safety
/// `str` is NULL or readable for `n` bytes; `stream` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_PutStr(
    str: *const c_char,
    n: c_int,
    stream: *mut FCGX_Stream,
) -> c_int {
    ffi_guard!(-1, {
        if n == 0 {
            return 0;
        }
        if str.is_null() || n < 0 {
            sys::set_errno(libc::EINVAL);
            return -1;
        }
        // SAFETY: str is readable for n > 0 bytes per the contract.
        let data = unsafe { std::slice::from_raw_parts(str.cast::<u8>(), n as usize) };
        // SAFETY: forwarded contract.
        if unsafe { put(stream, data) } { n } else { -1 }
    })
}

/// Writes a NUL-terminated string; returns its length, or -1 on error.
///
/// # Safety
/// `str` is NULL or NUL-terminated; `stream` is NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_PutS(str: *const c_char, stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(-1, {
        if str.is_null() {
            sys::set_errno(libc::EINVAL);
            return -1;
        }
        // SAFETY: NUL-terminated per the contract.
        let data = unsafe { CStr::from_ptr(str) }.to_bytes();
        let Ok(n) = c_int::try_from(data.len()) else {
            return -1;
        };
        // SAFETY: forwarded contract.
        if n == 0 || unsafe { put(stream, data) } {
            n
        } else {
            -1
        }
    })
}

/// Sends what an output stream has buffered, as a record, now. Returns -1
/// if that write fails, else 0. As in libfcgi, a stream is closed at its
/// first error, so only the flush during which the error happens returns
/// -1: flushing a closed stream (failed, or closed with `FCGX_FClose`)
/// does nothing and returns 0, and so does flushing an input stream.
/// `FCGX_GetError` keeps telling the error.
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_FFlush(stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(-1, {
        let request = |h: &mut super::handle::Handle, which: Which| match which.output() {
            None => true,
            Some(o) => {
                let closed = match o {
                    Output::Stdout => h.session.stdout.closed,
                    Output::Stderr => h.session.stderr.closed,
                };
                closed || h.session.flush(o).is_ok()
            }
        };
        let standalone = |wr: &mut StandaloneWriter, _: &mut FCGX_Stream| {
            // SAFETY: a writer's descriptor is open while its stream is
            // used (FCGX_CreateWriter's contract); the borrow ends here.
            wr.stream.closed
                || match unsafe { writer_fd(wr) } {
                    Some(fd) => wr.stream.flush(fd, wr.request_id).is_ok(),
                    None => false,
                }
        };
        // SAFETY: forwarded contract.
        let ok = unsafe { on_stream(stream, false, request, standalone) };
        if ok { 0 } else { -1 }
    })
}

/// Closes a stream. For an output stream: sends what is buffered and the
/// end-of-stream record, and FCGI_END_REQUEST when it is the request's
/// last open writer. Later calls do nothing. Returns 0, or EOF if the
/// stream has an error. NULL: 0.
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_FClose(stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: forwarded contract.
        let ok = unsafe {
            on_stream(
                stream,
                true,
                |h, which| match which.output() {
                    None => {
                        h.session.close_input();
                        true
                    }
                    Some(o) => h.session.close_output(o).is_ok(),
                },
                |wr, _| close_writer(wr),
            )
        };
        // SAFETY: non-NULL streams are live per the contract.
        if let Some(s) = unsafe { stream.as_mut() } {
            s.wasFCloseCalled = 1;
        }
        if ok { 0 } else { EOF }
    })
}

fn close_writer(wr: &mut StandaloneWriter) -> bool {
    if wr.stream.closed {
        return wr.stream.error.is_none();
    }
    let id = wr.request_id;
    // SAFETY: a writer's descriptor is open while its stream is used
    // (FCGX_CreateWriter's contract); the borrow ends in this call.
    let Some(fd) = (unsafe { writer_fd(wr) }) else {
        wr.stream
            .sent(Some(&std::io::Error::from_raw_os_error(sys::code::EBADF)));
        return false;
    };
    let bytes = wr.stream.frame_final(id, true, &[]).to_vec();
    let r = sys::write_all(fd, &bytes);
    wr.stream.sent(r.as_ref().err());
    r.is_ok()
}

/// The stream's error: 0, an errno value, or an FCGX_* code (< 0).
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetError(stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(0, {
        // SAFETY: forwarded contract.
        unsafe { stream.as_ref() }.map_or(0, |s| s.FCGI_errno)
    })
}

/// Clears the stream's error code (an end of stream stays seen).
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_ClearError(stream: *mut FCGX_Stream) {
    ffi_guard!((), {
        // SAFETY: forwarded contract.
        unsafe {
            on_stream(
                stream,
                (),
                |h, which| match which {
                    Which::In => h.session.input.error = None,
                    Which::Out => h.session.stdout.error = None,
                    Which::Err => h.session.stderr.error = None,
                },
                |wr, _| wr.stream.error = None,
            )
        }
    })
}

/// Sets the exit status sent in FCGI_END_REQUEST; any of the request's
/// streams will do. Applies to the current request only.
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_SetExitStatus(status: c_int, stream: *mut FCGX_Stream) {
    ffi_guard!((), {
        // SAFETY: forwarded contract.
        unsafe {
            on_stream(
                stream,
                (),
                |h, _| h.session.set_exit_status(status),
                |_, _| (),
            )
        }
    })
}

/// For a FILTER request whose FCGI_STDIN has been read to its end: switches
/// the input stream to FCGI_DATA and returns 0. Otherwise sets the stream's
/// error to FCGX_CALL_SEQ_ERROR and returns -1.
///
/// # Safety
/// `stream` is NULL or a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_StartFilterData(stream: *mut FCGX_Stream) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: forwarded contract.
        let ok = unsafe {
            on_stream(
                stream,
                false,
                |h, w| w == Which::In && h.session.start_filter_data().is_ok(),
                |_, _| false,
            )
        };
        if ok { 0 } else { -1 }
    })
}

/// Creates a stand-alone output stream writing records of type
/// `streamType` for `requestId` to `socket` (as cgi-fcgi does); `bufflen`
/// is clamped to [32, 65528]. It never sends FCGI_END_REQUEST. Free it
/// with `FCGX_FreeStream`. Returns NULL for an unknown stream type.
///
/// # Safety
/// `socket` stays open (the same socket) as long as the stream is used:
/// every write on the stream goes to it.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn FCGX_CreateWriter(
    socket: c_int,
    requestId: c_int,
    bufflen: c_int,
    streamType: c_int,
) -> *mut FCGX_Stream {
    ffi_guard!(null_mut(), {
        let Ok(t) = u8::try_from(streamType) else {
            return null_mut();
        };
        if !(1..=record::kind::MAX).contains(&t) {
            sys::set_errno(libc::EINVAL);
            return null_mut();
        }
        let capacity = usize::try_from(bufflen.clamp(32, 65528)).unwrap_or(32);
        let writer = StandaloneWriter {
            fd: socket,
            request_id: requestId as u16,
            stream: OutputStream::new(t, capacity),
        };
        let mut sb = Box::new(StreamBox::new(Owner::Writer(Box::new(writer)), false));
        sb.c.isClosed = 0;
        Box::into_raw(sb).cast::<FCGX_Stream>()
    })
}

/// Frees a stream made by `FCGX_CreateWriter` (without flushing it) and
/// sets `*stream` to NULL. A request's own streams are left to the request.
///
/// # Safety
/// `stream` is NULL or points to NULL or to a live stream of this library.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_FreeStream(stream: *mut *mut FCGX_Stream) {
    ffi_guard!((), {
        // SAFETY: NULL or a valid pointer per the contract.
        let Some(slot) = (unsafe { stream.as_mut() }) else {
            return;
        };
        let s = std::mem::replace(slot, null_mut());
        if s.is_null() {
            return;
        }
        let sb = s.cast::<StreamBox>();
        // SAFETY: a live stream of this library is the head of a StreamBox.
        if matches!(unsafe { &(*sb).owner }, Owner::Writer(_)) {
            // SAFETY: writers are allocated by FCGX_CreateWriter with Box and
            // freed only here, once (the caller's pointer is now NULL).
            drop(unsafe { Box::from_raw(sb) });
        }
    })
}
