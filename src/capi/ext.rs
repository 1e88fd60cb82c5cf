//! Extensions of this library that libfcgi does not have, declared in
//! `fcgi_ext.h` (never in the original headers): the limits that protect a
//! process from slow and hostile peers. Each is also read from an
//! environment variable at the first library call, for programs that
//! cannot be changed; these functions override it for the whole process,
//! at any time (a change applies to waits that start afterwards).

use crate::server::config::{Limit, limits};
use crate::sys;
use std::ffi::c_int;

fn set(limit: Limit, value: c_int) -> c_int {
    match u64::try_from(value).map(|v| limits().set(limit, v)) {
        Ok(true) => 0,
        _ => {
            sys::set_errno(sys::code::EINVAL);
            -1
        }
    }
}

/// How long a connection may take to deliver a complete request head
/// (`FCGI_BEGIN_REQUEST` through the end of `FCGI_PARAMS`), in
/// milliseconds, from its accept (or from the first byte of the next
/// request on a kept-alive connection). Past it the connection is closed
/// and a line is logged. 0: no limit. Default 30000
/// (`LIBFCGI_HEAD_TIMEOUT`). Returns 0, or -1 with errno EINVAL for a
/// negative value.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_SetHeadTimeout(ms: c_int) -> c_int {
    ffi_guard!(-1, { set(Limit::HeadTimeout, ms) })
}

/// How long one read of a request's stdin may wait for the next bytes,
/// in milliseconds. Past it the read fails: the stream's error
/// (`FCGX_GetError`) is ETIMEDOUT, and the connection is closed when the
/// request finishes. A steady upload of any size is never cut. 0: no
/// limit. Default 60000 (`LIBFCGI_STDIN_TIMEOUT`). Returns 0, or -1 with
/// errno EINVAL for a negative value.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_SetStdinTimeout(ms: c_int) -> c_int {
    ffi_guard!(-1, { set(Limit::StdinTimeout, ms) })
}

/// How long one write of a response may stay blocked on a peer that does
/// not read, in milliseconds. Past it the write fails with ETIMEDOUT and
/// the connection is closed when the request finishes. 0: no limit.
/// Default 60000 (`LIBFCGI_WRITE_TIMEOUT`). Returns 0, or -1 with errno
/// EINVAL for a negative value.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_SetWriteTimeout(ms: c_int) -> c_int {
    ffi_guard!(-1, { set(Limit::WriteTimeout, ms) })
}

/// How many connections may wait without a thread, in all (kept-alive
/// connections between two requests and request heads not yet complete).
/// Beyond it the oldest idle kept-alive connection is closed first, then
/// new connections that would have to wait are refused (closed); each is
/// logged. Default 1024 (`LIBFCGI_MAX_WAITING_CONNS`). Returns 0, or -1
/// with errno EINVAL for a value below 1.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_SetMaxWaitingConnections(n: c_int) -> c_int {
    ffi_guard!(-1, { set(Limit::MaxWaiting, n) })
}

/// How many `FCGI_PARAMS` name-value pairs one request may have. A request
/// with more is refused: its connection is closed and a line is logged.
/// Default 1000 (`LIBFCGI_MAX_PARAMS`; the total size is bounded
/// separately by `LIBFCGI_MAX_PARAMS_SIZE`). Returns 0, or -1 with errno
/// EINVAL for a value below 1.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_SetMaxParams(n: c_int) -> c_int {
    ffi_guard!(-1, { set(Limit::MaxParams, n) })
}

/// How many bytes of a response's STDOUT are buffered before they are
/// sent, for every request accepted from now on (the whole process). 0:
/// unbuffered, each write is sent at once as its own records (server-sent
/// events, long polls; behind nginx also set `fastcgi_buffering off`).
/// Default 262112 (four records of 65528 bytes), at most 16 MiB; also
/// `LIBFCGI_STDOUT_BUFFER`. A write larger than the buffer is never
/// copied: it goes out at once with what was buffered. Returns 0, or -1
/// with errno EINVAL for a size above 16 MiB (nothing changes).
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_SetOutputBufferSize(bytes: usize) -> c_int {
    ffi_guard!(-1, {
        if crate::server::config::set_stdout_buffer(bytes) {
            0
        } else {
            sys::set_errno(sys::code::EINVAL);
            -1
        }
    })
}

/// How many bytes one output stream buffers before it sends them: a
/// request's `out` or `err` until the request ends (the next request
/// starts with the process's setting: `FCGX_SetOutputBufferSize`), or a
/// stream of `FCGX_CreateWriter`. 0: unbuffered, each write is sent at
/// once. Bytes already buffered beyond the new size are sent now. Use it
/// on a request's `out` after `FCGX_Accept_r`, e.g. for one URL that
/// streams events while the others stay buffered; with fcgi_stdio.h, pass
/// `FCGI_stdout->fcgx_stream`. Returns 0, or -1 with errno EINVAL (NULL,
/// an input stream, a request stream between requests, a size above 16
/// MiB), or -1 when sending what was buffered failed (errno and
/// `FCGX_GetError` say why).
///
/// # Safety
/// `stream` is NULL or a live stream of this library (fcgiapp.h must be
/// included before fcgi_ext.h for this declaration).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_SetStreamBufferSize(
    stream: *mut super::types::FCGX_Stream,
    bytes: usize,
) -> c_int {
    use super::handle::{Target, target, writer_fd};
    use crate::server::StreamError;
    ffi_guard!(-1, {
        let fail = |code: i32| {
            sys::set_errno(if code > 0 { code } else { sys::code::EINVAL });
            -1
        };
        if bytes > crate::server::output::MAX_CAPACITY {
            return fail(0);
        }
        // SAFETY: NULL or a live stream of this library (the contract).
        let result = match unsafe { target(stream) } {
            None => return fail(0),
            Some(Target::Request(h, which)) => {
                let Some(out) = which.output() else {
                    return fail(0);
                };
                let r = h.session.set_buffer(out, bytes);
                h.sync_stream(which);
                r
            }
            Some(Target::Writer(w, c)) => {
                w.stream.set_capacity(bytes);
                let r = if w.stream.pending() > bytes {
                    // SAFETY: the writer's descriptor is open while its
                    // stream is used (FCGX_CreateWriter's contract); the
                    // borrow ends in this call.
                    match unsafe { writer_fd(w) } {
                        Some(fd) => w.stream.flush(fd, w.request_id),
                        None => Err(StreamError::Os(sys::code::EBADF)),
                    }
                } else {
                    Ok(())
                };
                c.isClosed = w.stream.closed as c_int;
                c.FCGI_errno = w.stream.error.map_or(0, StreamError::code);
                r
            }
        };
        match result {
            Ok(()) => 0,
            Err(e) => fail(e.code()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused_and_change_nothing() {
        let before = limits().max_params();
        assert_eq!(FCGX_SetMaxParams(0), -1);
        assert_eq!(sys::errno(), libc::EINVAL);
        assert_eq!(FCGX_SetHeadTimeout(-5), -1);
        assert_eq!(limits().max_params(), before);
        assert_eq!(FCGX_SetWriteTimeout(0), 0, "0: no limit");
        assert_eq!(limits().write_timeout_ms(), 0);
        assert_eq!(FCGX_SetWriteTimeout(60_000), 0);
    }
}
