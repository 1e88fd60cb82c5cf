//! Extensions of this library that libfcgi does not have, declared in
//! `fcgi_ext.h` (never in the original headers): the limits that protect a
//! process from slow and hostile peers, output buffering, and accepting
//! from a program's own event loop. Each limit is also read from an
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

/// What `FCGX_AcceptTimeout_r` returns when no request was ready in time:
/// a value that is neither a negative errno nor one of libfcgi's codes.
pub const FCGX_ACCEPT_TIMEOUT: c_int = -9000;

/// `FCGX_Accept_r` with a time limit, for programs with an event loop of
/// their own. Finishes the current request, then waits at most
/// `timeout_ms` milliseconds for the next one: on the kept-alive
/// connection, on any connection the library holds without a thread, or
/// on a new connection. 0: takes a request that is ready now and never
/// blocks; -1: no limit. Returns 0 with `in`, `out`, `err` and `envp` set
/// as after `FCGX_Accept_r`; `FCGX_ACCEPT_TIMEOUT` when no request was
/// complete in time; or a negative errno: -EINTR after a shutdown request
/// (SIGTERM, SIGUSR1 with the library's handler, `FCGX_ShutdownPending`)
/// or, with `FCGI_FAIL_ACCEPT_ON_INTR`, a signal; -EINVAL for a NULL
/// request or a timeout below -1; -EBADF without a listening socket;
/// -ENOSYS where connections cannot wait without a thread (not Linux;
/// on Windows -WSAEOPNOTSUPP); -EMFILE when the set where connections
/// wait could not be made (no descriptor left).
///
/// After `FCGX_ACCEPT_TIMEOUT` the request holds no connection and no
/// request (`ipcFd` is -1, `envp` empty): call it again, or wait on
/// `FCGX_GetReadyFd` first. A connection whose request head has begun but
/// not arrived whole is kept for a later call, with its head deadline
/// (`LIBFCGI_HEAD_TIMEOUT`). The time limit is kept to the millisecond
/// while the library waits in its epoll set; an `accept()` that loses a
/// connection to another thread or process at the last moment ends at
/// the next tick of the library's watcher after the limit (10 ms).
///
/// # Safety
/// `request` is NULL or a request set up by `FCGX_InitRequest`, used by
/// one thread at a time; its listening socket stays open during the call
/// (fcgiapp.h must be included before fcgi_ext.h for this declaration).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_AcceptTimeout_r(
    request: *mut super::types::FCGX_Request,
    timeout_ms: c_int,
) -> c_int {
    ffi_guard!(-sys::code::EINVAL, {
        // SAFETY: NULL or an initialised request, per the contract.
        let Some(r) = (unsafe { request.as_mut() }) else {
            return -sys::code::EINVAL;
        };
        if timeout_ms < -1 {
            return -sys::code::EINVAL;
        }
        let timeout = u64::try_from(timeout_ms).unwrap_or(u64::MAX / 2);
        // SAFETY: the listening socket stays open during the call (the
        // contract).
        let rc = unsafe {
            super::request::accept_with(r, |session, listen, fail_on_intr| {
                session.accept_until(listen, fail_on_intr, timeout)
            })
        };
        // accept_with's 1: no request in time.
        if rc == 1 { FCGX_ACCEPT_TIMEOUT } else { rc }
    })
}

/// A descriptor that a program's own `poll`, `epoll` or `select` waits on
/// for "a request may be ready" on the request's listening socket; then
/// `FCGX_AcceptTimeout_r(request, 0)` takes it without blocking. It is
/// readable when a connection is pending on the listening socket, when
/// input arrives on a connection the library holds without a thread (a
/// kept-alive connection between two requests, a request head not yet
/// whole), and, for good, once a shutdown is requested (then
/// `FCGX_AcceptTimeout_r` returns -EINTR).
///
/// The contract: wait for input (POLLIN, EPOLLIN; it is an epoll set,
/// level-triggered for the waiter), then call `FCGX_AcceptTimeout_r(request,
/// 0)` and serve what it returns, again and again until it returns
/// `FCGX_ACCEPT_TIMEOUT`; only then wait again. Readiness can be spurious
/// (input that was not a whole request yet, a connection another thread
/// took): then the call returns `FCGX_ACCEPT_TIMEOUT` at once. Never read
/// from it, and never close it: it belongs to the library, the same for
/// every request on the same listening socket, open for the life of the
/// process (after `fork()`, call this again in the child). Returns the
/// descriptor, or -1 with errno: EINVAL (NULL request), EBADF (no
/// listening socket), ENOSYS (not Linux; WSAEOPNOTSUPP on Windows), or
/// what creating it failed with (EMFILE).
///
/// # Safety
/// `request` is NULL or a request set up by `FCGX_InitRequest`, used by
/// one thread at a time (not during an `FCGX_Accept_r` or
/// `FCGX_AcceptTimeout_r` of another thread on the same request); its
/// listening socket stays open during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetReadyFd(request: *mut super::types::FCGX_Request) -> c_int {
    use super::handle::handle_root;
    ffi_guard!(-1, {
        // SAFETY: NULL or an initialised request, per the contract.
        let Some(r) = (unsafe { request.as_mut() }) else {
            sys::set_errno(sys::code::EINVAL);
            return -1;
        };
        if r.listen_sock < 0 {
            sys::set_errno(sys::code::EBADF);
            return -1;
        }
        super::init::ensure_init();
        let listen = r.listen_sock;
        let root = handle_root(r);
        // SAFETY: root is this request's live handle, the only reference
        // to it (one thread at a time, per the contract); it ends with
        // this statement.
        let h = unsafe { &mut *root.as_ptr() };
        // SAFETY: the listening socket stays open during the call (the
        // contract); the borrow ends with the call.
        let listen = unsafe { sys::borrow_fd(listen) };
        match h.session.ready_fd(listen) {
            Ok(fd) => fd,
            Err(e) => {
                sys::set_errno(e.raw_os_error().unwrap_or(sys::code::EINVAL));
                -1
            }
        }
    })
}

/// `FCGX_OpenSocket` with the Unix socket file's permission bits and
/// owner, as spawn-fcgi's `-M`, `-U` and `-G` set them: `mode` (e.g.
/// 0660), `uid` and `gid` (numbers; -1: left as `bind()` makes them, i.e.
/// the umask's mode and the process's ids). The file is created with them
/// before the socket listens, so no peer can connect before they are in
/// place (the mode is set on the socket before `bind()`; the owner, and
/// any bit the umask removed, on the new file through a descriptor that
/// cannot be a link put in its place). Changing the owner needs the
/// privilege to (root, CAP_CHOWN; a group the process is in). The
/// environment variables of `FCGX_OpenSocket` (`LIBFCGI_SOCKET_MODE`,
/// `LIBFCGI_SOCKET_USER`, `LIBFCGI_SOCKET_GROUP`) do not apply here.
///
/// The file is removed when the process that created it exits (returns
/// from `main` or calls `exit()`) after a shutdown request (SIGTERM or
/// SIGUSR1 with the library's handler, `FCGX_ShutdownPending`), if it is
/// still the same file: not after SIGKILL or `_exit()`, not by a `fork()`
/// child, not at an exit without a shutdown request (a parent that
/// daemonises); a file left behind is replaced by the next open at that
/// path, being stale. The same holds for every Unix socket
/// `FCGX_OpenSocket` creates.
///
/// Returns the listening socket, or -1 with errno: EINVAL (NULL path, a
/// mode above 0777, an id below -1, any of them not -1 for a TCP
/// address), EPERM (owner not allowed), EADDRINUSE (a file that is not a
/// stale socket is at the path), or what creating the socket failed with;
/// on an error no file is left at the path.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_OpenSocketMode(
    path: *const std::ffi::c_char,
    backlog: c_int,
    mode: c_int,
    uid: std::ffi::c_long,
    gid: std::ffi::c_long,
) -> c_int {
    ffi_guard!(-1, {
        let id = |v: std::ffi::c_long| match v {
            -1 => Ok(None),
            v => u32::try_from(v)
                .ok()
                .filter(|&n| n != u32::MAX)
                .map(Some)
                .ok_or(()),
        };
        let mode = match mode {
            -1 => Ok(None),
            m => u32::try_from(m)
                .ok()
                .filter(|&m| m <= 0o777)
                .map(Some)
                .ok_or(()),
        };
        let (Ok(mode), Ok(uid), Ok(gid)) = (mode, id(uid), id(gid)) else {
            sys::set_errno(sys::code::EINVAL);
            return -1;
        };
        let perms = sys::SocketPerms { mode, uid, gid };
        // SAFETY: NULL or NUL-terminated, per the contract.
        unsafe { super::init::open_socket(path, backlog, Some(perms)) }
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
