//! Requests: `FCGX_InitRequest`, `FCGX_Accept_r`, `FCGX_Finish_r`,
//! `FCGX_Free`, the single-threaded `FCGX_Accept`/`FCGX_Finish`,
//! `FCGX_Attach`/`FCGX_Detach` and `FCGX_GetParam`.

use super::handle::{Handle, drop_handle, handle_root};
use super::init::ensure_init;
use super::types::{FCGI_FAIL_ACCEPT_ON_INTR, FCGX_ParamArray, FCGX_Request, FCGX_Stream};
use crate::server::session::Session;
use crate::sys;
use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int};
use std::io;
use std::ptr::{NonNull, null_mut};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// The empty environment `envp` points at after `FCGX_Free` has freed the
/// request's own: one NULL, in writable memory (C sees `char **`, and a
/// program may store through it; a plain static would be read-only).
struct EmptyEnv(UnsafeCell<[*mut c_char; 1]>);
// SAFETY: the library never writes the cell; it hands out its address,
// and reads it only when a program passes it to FCGX_GetParam. What C
// stores there is C's to synchronise (libfcgi left a freed pointer).
unsafe impl Sync for EmptyEnv {}
static EMPTY_ENV: EmptyEnv = EmptyEnv(UnsafeCell::new([null_mut()]));

fn empty_env() -> *mut *mut c_char {
    EMPTY_ENV.0.get().cast::<*mut c_char>()
}

/// Prepares a caller-allocated request: clears all of it, then sets the
/// listening socket `sock` and `flags` (`FCGI_FAIL_ACCEPT_ON_INTR`).
/// Returns 0, or -1 (EINVAL) for a NULL request.
///
/// # Safety
/// `request` is NULL or points to writable memory of `sizeof(FCGX_Request)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_InitRequest(
    request: *mut FCGX_Request,
    sock: c_int,
    flags: c_int,
) -> c_int {
    ffi_guard!(-1, {
        if request.is_null() {
            sys::set_errno(libc::EINVAL);
            return -1;
        }
        let blank = FCGX_Request::new(sock, flags);
        // SAFETY: non-NULL and writable per the contract; write() does not
        // read the (possibly uninitialised) old contents.
        unsafe { request.write(blank) };
        0
    })
}

/// Finishes the previous request (if any), then waits for the next one
/// on the kept-alive connection or on `listen_sock`. Returns 0 with
/// `in`, `out`, `err` and `envp` set, or a negative errno from accept
/// (-EINTR after a shutdown request or, with FCGI_FAIL_ACCEPT_ON_INTR, a
/// signal). Connections that fail before a request arrives are dropped
/// and logged; the caller never sees them. Initialises the library if the
/// program did not (libfcgi returned -9998 then).
///
/// # Safety
/// `request` is NULL or a request set up by `FCGX_InitRequest`, used by
/// one thread at a time; its listening socket, if not negative, stays open
/// during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Accept_r(request: *mut FCGX_Request) -> c_int {
    ffi_guard!(-libc::EINVAL, {
        // SAFETY: NULL or an initialised request, per the contract.
        let Some(r) = (unsafe { request.as_mut() }) else {
            return -libc::EINVAL;
        };
        // SAFETY: the program set this request up with its listening
        // socket (FCGX_InitRequest), which stays open during the call.
        unsafe {
            accept_with(r, |session, listen, fail_on_intr| {
                session.accept(listen, fail_on_intr).map(|()| true)
            })
        }
    })
}

/// What `FCGX_Accept_r` and `FCGX_AcceptTimeout_r` share: initialises the
/// library if needed, finishes the previous request and runs `wait` (the
/// engine's accept, given the request's listening socket and whether a
/// signal fails it) on the request's handle, then [`accepted`]: 0 with a
/// request, 1 when `wait` found none (`Ok(false)`), or a negative errno
/// (-EBADF without a listening socket).
///
/// # Safety
/// `r`'s listening socket, if not negative, stays open during the call.
pub(super) unsafe fn accept_with(
    r: &mut FCGX_Request,
    wait: impl FnOnce(&mut Session, sys::BorrowedFd<'_>, bool) -> io::Result<bool>,
) -> c_int {
    ensure_init();
    let listen = r.listen_sock;
    let fail_on_intr = r.flags & FCGI_FAIL_ACCEPT_ON_INTR != 0;
    let root = handle_root(r);
    let result = {
        // SAFETY: root is this request's live handle, and this is the
        // only reference to it (one thread at a time, per the
        // contract); it ends with this block, before accepted().
        let h = unsafe { &mut *root.as_ptr() };
        h.session.set_detached(r.detached != 0);
        if listen < 0 {
            h.session.finish();
            Err(io::Error::from_raw_os_error(sys::code::EBADF))
        } else {
            // SAFETY: the listening socket stays open during the call
            // (this function's contract); the borrow ends with the call.
            let listen = unsafe { sys::borrow_fd(listen) };
            wait(&mut h.session, listen, fail_on_intr)
        }
    };
    // SAFETY: root is the live handle and no reference to it is live.
    unsafe { accepted(r, root, result) }
}

/// What `FCGX_Accept_r` and [`accept_connection_r`] do once the engine
/// has a request (`Ok(true)`), none (`Ok(false)`: returns 1) or an error
/// (a negative errno, -9999 without one): rebuilds `envp` and mirrors the
/// engine's state into `r`. Without a request, `envp` is the handle's own
/// empty environment: the last request's strings may have been overwritten
/// by a request that failed half-way.
///
/// # Safety
/// `root` is `r`'s live handle and no reference to it is live.
pub(super) unsafe fn accepted(
    r: &mut FCGX_Request,
    root: NonNull<Handle>,
    result: io::Result<bool>,
) -> c_int {
    let ready = matches!(result, Ok(true));
    {
        // SAFETY: per the contract; the borrow ends with this block.
        let h = unsafe { &mut *root.as_ptr() };
        if ready {
            h.build_envp();
        } else {
            h.clear_envp();
        }
    }
    // SAFETY: per the contract; no reference to the handle is live.
    unsafe { Handle::sync_request(root, r) };
    if ready {
        r.detached = 0;
    } else {
        // SAFETY: as above; read-only and brief. The handle's vector holds
        // one NULL now, and Vec::as_mut_ptr makes no reference to it.
        r.envp = unsafe { (*root.as_ptr()).envp.as_mut_ptr() };
    }
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => match e.raw_os_error().unwrap_or(0) {
            0 => -9999,
            code => -code,
        },
    }
}

/// Serves a connection the caller accepted itself (one end of a
/// `socketpair`, or a connection from its own event loop) on a request set
/// up by `FCGX_InitRequest`: with `Some(fd)`, finishes the current request,
/// closes its connection and takes `fd`; with `None`, finishes the current
/// request and waits for the next one on the same connection (if the web
/// server kept it). Returns 0 with `in`, `out`, `err` and `envp` set as
/// after `FCGX_Accept_r`; 1 when the connection ended without a request
/// (it is closed); a negative errno on an error (-EINTR at a shutdown).
/// A Rust-level function, not part of the C ABI: the Miri and fuzzing
/// harnesses use it to run the C API without a listening socket.
///
/// # Safety
/// `request` is a request set up by `FCGX_InitRequest`, used by one
/// thread at a time.
#[doc(hidden)]
pub unsafe fn accept_connection_r(request: *mut FCGX_Request, fd: Option<sys::OwnedFd>) -> c_int {
    ffi_guard!(-libc::EINVAL, {
        // SAFETY: NULL or an initialised request, per the contract.
        let Some(r) = (unsafe { request.as_mut() }) else {
            return -libc::EINVAL;
        };
        ensure_init();
        let root = handle_root(r);
        let result = {
            // SAFETY: root is this request's live handle, the only
            // reference to it; it ends with this block.
            let h = unsafe { &mut *root.as_ptr() };
            h.session.set_detached(r.detached != 0);
            match fd {
                Some(fd) => h.session.accept_connection(fd),
                None => h.session.next_on_connection(),
            }
        };
        // SAFETY: root is the live handle and no reference to it is live.
        unsafe { accepted(r, root, result) }
    })
}

/// Ends the current request: sends what is left of STDERR and STDOUT and
/// FCGI_END_REQUEST with the exit status, and closes the connection unless
/// the web server asked to keep it (and nothing failed). `envp` stays valid
/// until the next accept. Does nothing for NULL or an idle request.
///
/// # Safety
/// `request` is NULL or a request set up by `FCGX_InitRequest`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Finish_r(request: *mut FCGX_Request) {
    ffi_guard!((), {
        // SAFETY: NULL or an initialised request, per the contract.
        let Some(r) = (unsafe { request.as_mut() }) else {
            return;
        };
        if r.paramsPtr.is_null() {
            return;
        }
        let root = handle_root(r);
        {
            // SAFETY: root is this request's live handle, the only
            // reference to it; it ends with this block.
            let h = unsafe { &mut *root.as_ptr() };
            h.session.set_detached(r.detached != 0);
            h.session.finish();
        }
        // SAFETY: root is the live handle and no reference to it is live.
        unsafe { Handle::sync_request(root, r) };
        if r.ipcFd < 0 {
            r.detached = 0;
        }
    })
}

/// Releases the request's streams without sending anything more, and with
/// `close` also the connection and all memory the request holds. Unlike
/// libfcgi, `envp` is left pointing at an empty environment, not at freed
/// memory.
///
/// # Safety
/// `request` is NULL or a request set up by `FCGX_InitRequest`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Free(request: *mut FCGX_Request, close: c_int) {
    ffi_guard!((), {
        // SAFETY: NULL or an initialised request, per the contract.
        let Some(r) = (unsafe { request.as_mut() }) else {
            return;
        };
        if r.paramsPtr.is_null() {
            return;
        }
        let root = handle_root(r);
        {
            // SAFETY: root is this request's live handle, the only
            // reference to it; it ends with this block.
            let h = unsafe { &mut *root.as_ptr() };
            h.session.set_detached(r.detached != 0);
            h.session.release(close != 0);
        }
        // SAFETY: root is the live handle and no reference to it is live.
        unsafe { Handle::sync_request(root, r) };
        if close != 0 {
            drop_handle(r);
            r.envp = empty_env();
            r.ipcFd = -1;
            r.detached = 0;
        }
    })
}

struct GlobalRequest(FCGX_Request);
// SAFETY: the request is only touched with the mutex held.
unsafe impl Send for GlobalRequest {}

/// The request behind `FCGX_Accept`/`FCGX_Finish` (listening on fd 0).
///
/// `FCGX_Accept` holds the lock while it waits for the next request (two
/// threads calling it, which the API does not allow, take turns). Nothing
/// else ever waits for the lock: `FCGX_Finish` only tries it, because
/// exit() runs it (through `FCGI_Finish`, registered with atexit by
/// `FCGI_Accept`, or a program's own handler) from a signal handler that
/// interrupted the waiting thread, or from another thread, and the wait
/// may never end.
static GLOBAL: Mutex<Option<GlobalRequest>> = Mutex::new(None);

/// Runs `f` on the process-wide request, creating it (listening on fd 0)
/// on first use, with the lock held.
fn on_global_request<T>(
    guard: &mut MutexGuard<'_, Option<GlobalRequest>>,
    f: impl FnOnce(*mut FCGX_Request) -> T,
) -> T {
    let slot = guard.get_or_insert_with(|| GlobalRequest(FCGX_Request::new(0, 0)));
    f(&mut slot.0)
}

/// Runs `f` on the process-wide request used by `FCGX_Accept` and the
/// stdio layer, waiting for the lock (see [`GLOBAL`]).
fn with_global_request<T>(f: impl FnOnce(*mut FCGX_Request) -> T) -> T {
    let mut guard = GLOBAL.lock().unwrap_or_else(|p| p.into_inner());
    on_global_request(&mut guard, f)
}

/// Runs `f` on the process-wide request if no other call is using it;
/// otherwise returns None at once, without waiting.
fn try_with_global_request<T>(f: impl FnOnce(*mut FCGX_Request) -> T) -> Option<T> {
    let mut guard = match GLOBAL.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) => return None,
    };
    Some(on_global_request(&mut guard, f))
}

/// Single-threaded form of `FCGX_Accept_r` on a request that listens on
/// fd 0. Stores the new request's streams and environment in the four
/// pointers (each may be NULL); on failure they are set to NULL and the
/// negative error is returned.
///
/// # Safety
/// Each argument is NULL or points to writable storage of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Accept(
    r#in: *mut *mut FCGX_Stream,
    out: *mut *mut FCGX_Stream,
    err: *mut *mut FCGX_Stream,
    envp: *mut FCGX_ParamArray,
) -> c_int {
    ffi_guard!(-libc::EINVAL, {
        ensure_init();
        with_global_request(|r| {
            // SAFETY: r points at the global request, locked by the caller.
            let rc = unsafe { FCGX_Accept_r(r) };
            // SAFETY: as above; the request is initialised.
            let r = unsafe { &*r };
            let ok = rc == 0;
            // SAFETY: each destination is NULL or writable per the contract.
            unsafe {
                if let Some(p) = r#in.as_mut() {
                    *p = if ok { r.in_ } else { null_mut() };
                }
                if let Some(p) = out.as_mut() {
                    *p = if ok { r.out } else { null_mut() };
                }
                if let Some(p) = err.as_mut() {
                    *p = if ok { r.err } else { null_mut() };
                }
                if let Some(p) = envp.as_mut() {
                    *p = if ok { r.envp } else { null_mut() };
                }
            }
            rc
        })
    })
}

/// Finishes the request accepted by `FCGX_Accept`.
///
/// Does nothing while `FCGX_Accept` is at work (waiting for the next
/// request), as when exit() runs this from a signal handler or another
/// thread: accept began by finishing the previous request, and waiting for
/// it could keep the process from ending.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_Finish() {
    ffi_guard!((), {
        // SAFETY: the global request is valid and locked.
        let _ = try_with_global_request(|r| unsafe { FCGX_Finish_r(r) });
    })
}

/// Undoes `FCGX_Detach`. Returns 0 (-1 for NULL).
///
/// # Safety
/// `request` is NULL or a request set up by `FCGX_InitRequest`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Attach(request: *mut FCGX_Request) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: NULL or an initialised request.
        let Some(r) = (unsafe { request.as_mut() }) else {
            return -1;
        };
        r.detached = 0;
        0
    })
}

/// Marks the connection as handed to someone else (e.g. a child process):
/// closing it later skips the half-close and drain. Returns 0, or -1 when
/// there is no connection.
///
/// # Safety
/// `request` is NULL or a request set up by `FCGX_InitRequest`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_Detach(request: *mut FCGX_Request) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: NULL or an initialised request.
        let Some(r) = (unsafe { request.as_mut() }) else {
            return -1;
        };
        if r.ipcFd <= 0 {
            return -1;
        }
        r.detached = 1;
        0
    })
}

/// Looks `name` up in an environment (`NAME=value` strings, NULL-ended):
/// returns a pointer to the value of the first exact match, or NULL if
/// either argument is NULL or the name is absent. The pointer is valid
/// until the request is finished.
///
/// # Safety
/// `name` is NULL or NUL-terminated; `envp` is NULL or a NULL-terminated
/// array of NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_GetParam(name: *const c_char, envp: FCGX_ParamArray) -> *mut c_char {
    ffi_guard!(null_mut(), {
        if name.is_null() || envp.is_null() {
            return null_mut();
        }
        // SAFETY: NUL-terminated per the contract.
        let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_bytes();
        let mut p = envp;
        loop {
            // SAFETY: envp is NULL-terminated, and p has not passed the NULL.
            let entry = unsafe { *p };
            if entry.is_null() {
                return null_mut();
            }
            // Compared byte by byte, not measured first: a long value
            // (a cookie) is never scanned for a name that does not match.
            let e = entry.cast::<u8>().cast_const();
            let mut i = 0;
            // SAFETY: the entry is NUL-terminated and `name` holds no NUL,
            // so the loop stops at the entry's NUL at the latest; every
            // byte read lies inside the string.
            while i < name.len() && unsafe { *e.add(i) } == name[i] {
                i += 1;
            }
            // SAFETY: bytes 0..i matched `name` (no NUL), so the string
            // goes on at least to its NUL at index i or later.
            if i == name.len() && unsafe { *e.add(i) } == b'=' {
                return entry.wrapping_add(name.len() + 1);
            }
            p = p.wrapping_add(1);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::FCGX_GetParam;
    use std::ffi::{CStr, CString, c_char};
    use std::ptr::null_mut;

    fn lookup(env: &[&str], name: Option<&str>) -> Option<String> {
        let strings: Vec<CString> = env.iter().map(|s| CString::new(*s).unwrap()).collect();
        let mut envp: Vec<*mut c_char> = strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        envp.push(null_mut());
        let name = name.map(|n| CString::new(n).unwrap());
        let name_ptr = name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr());
        // SAFETY: a NUL-terminated name (or NULL) and a NULL-terminated
        // array of NUL-terminated strings that outlive the call.
        let v = unsafe { FCGX_GetParam(name_ptr, envp.as_mut_ptr()) };
        // SAFETY: NULL or a pointer into one of `strings`, still alive.
        (!v.is_null()).then(|| unsafe { CStr::from_ptr(v) }.to_string_lossy().into_owned())
    }

    #[test]
    fn get_param_matches_whole_names_only() {
        let env = [
            "REQUEST=short",
            "HTTP_COOKIE=a=1; b=2",
            "REQUEST_URI=/x?y=z",
            "EMPTY=",
            "=nameless",
            "NO_EQUALS",
            "REQUEST_URI=second",
        ];
        assert_eq!(lookup(&env, Some("REQUEST_URI")).as_deref(), Some("/x?y=z"));
        assert_eq!(lookup(&env, Some("REQUEST")).as_deref(), Some("short"));
        assert_eq!(
            lookup(&env, Some("HTTP_COOKIE")).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(lookup(&env, Some("EMPTY")).as_deref(), Some(""));
        assert_eq!(lookup(&env, Some("")).as_deref(), Some("nameless"));
        assert_eq!(lookup(&env, Some("REQ")), None);
        assert_eq!(lookup(&env, Some("REQUEST_URI_LONGER")), None);
        assert_eq!(lookup(&env, Some("NO_EQUALS")), None);
        assert_eq!(
            lookup(&env, Some("HTTP_COOKIE=a")).as_deref(),
            Some("1; b=2")
        );
        assert_eq!(lookup(&env, None), None);
        assert_eq!(lookup(&[], Some("X")), None);
    }
}
