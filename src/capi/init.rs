//! Library set-up: `FCGX_Init`, `FCGX_IsCGI`, `FCGX_OpenSocket`,
//! `FCGX_ShutdownPending`.

use crate::server::listen::{BindAddr, request_shutdown};
#[cfg(unix)]
use crate::server::listen::{set_wake_signal, shutdown_signal};
use crate::server::{config, socket_file};
use crate::sys::{self, IntoRawFd};
use std::ffi::{CStr, c_char, c_int};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, Ordering};

static INIT: Once = Once::new();
/// 0 = not decided yet, 1 = CGI, 2 = FastCGI.
static MODE: AtomicI32 = AtomicI32::new(0);

/// Runs `f` inside a signal handler and gives the interrupted code its
/// `errno` back: the handler may make system calls that fail (waking a
/// thread that is gone), and the program may be about to read the `errno`
/// of a call the signal interrupted. Async-signal-safe.
#[cfg(unix)]
fn keeping_errno(f: impl FnOnce()) {
    let saved = sys::errno();
    f();
    sys::set_errno(saved);
}

/// SIGPIPE: nothing to do; the write that raised it fails with EPIPE.
#[cfg(unix)]
extern "C" fn on_sigpipe(_: c_int) {
    keeping_errno(|| {});
}

/// SIGUSR1 and SIGTERM (unless the program has its own handler): a
/// shutdown request, which wakes the threads waiting in accept.
#[cfg(unix)]
extern "C" fn on_shutdown_signal(sig: c_int) {
    keeping_errno(|| shutdown_signal(sig));
}

/// Reads the environment and installs libfcgi's signal conventions (once).
/// Windows has neither SIGPIPE nor SIGUSR1 and no handlers are installed
/// there: writes to a vanished peer fail with an error anyway, and
/// `FCGX_ShutdownPending` alone asks accept loops to stop.
pub(crate) fn ensure_init() {
    INIT.call_once(|| {
        config::config();
        #[cfg(unix)]
        take_passed_socket();
        #[cfg(unix)]
        {
            let installed = sys::install_signal_handlers(on_sigpipe, on_shutdown_signal);
            // Prefer SIGUSR1 for waking threads: it is the quieter of the two.
            for sig in [libc::SIGUSR1, libc::SIGTERM] {
                if installed.contains(&sig) {
                    set_wake_signal(sig);
                    break;
                }
            }
        }
    });
}

/// systemd socket activation (`sd_listen_fds(3)` semantics): when a
/// service manager passed listening sockets to this process (`LISTEN_PID`
/// is its pid, `LISTEN_FDS` >= 1; they start at fd 3, named by
/// `LISTEN_FDNAMES`), the one to serve (the first, or the one named by
/// `LIBFCGI_LISTEN_FDNAME`) is made fd 0, where libfcgi programs find
/// their listening socket (`FCGX_IsCGI`, `FCGI_Accept`, `FCGX_Accept`,
/// `FCGX_InitRequest(&r, 0, 0)`), replacing what fd 0 was (systemd's
/// `StandardInput`, /dev/null by default; anything but /dev/null or a
/// closed fd 0 is logged). Every passed descriptor is
/// set close-on-exec, and the three variables are removed so that child
/// processes do not take them for theirs. Nothing is done when fd 0 is
/// a listening socket already (spawn-fcgi, `StandardInput=socket`), or
/// when the chosen descriptor is not a listening socket (`Accept=yes`
/// passes connections: not supported); each case is logged.
#[cfg(unix)]
fn take_passed_socket() {
    use crate::server::activation;
    let var = |name: &str| std::env::var(name).ok();
    let Some(passed) = activation::passed(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        var("LIBFCGI_LISTEN_FDNAME").as_deref(),
        sys::getpid() as u32,
    ) else {
        return;
    };
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: at the library's first call, as sd_listen_fds(1) does it:
        // a C thread reading the environment at this very moment could
        // see it change (the program started no thread of the library's
        // yet; Rust's own readers take std's lock).
        unsafe { std::env::remove_var(name) };
    }
    for fd in passed.fds.clone() {
        let _ = sys::set_cloexec_number(fd);
    }
    let fd = match passed.chosen {
        Ok(fd) => fd,
        Err(why) => {
            config::log(format_args!(
                "socket activation: {why}; nothing served from it"
            ));
            return;
        }
    };
    if sys::is_listening_socket(0) {
        config::log(format_args!(
            "socket activation: fd 0 is a listening socket already; it is served, not fd {fd}"
        ));
        return;
    }
    if !sys::is_listening_socket(fd) {
        config::log(format_args!(
            "socket activation: fd {fd} is not a listening socket (Accept=yes is not supported)"
        ));
        return;
    }
    let replaced = sys::open_file_kind(0);
    // SAFETY: fd 0 is the C program's standard input, which no Rust
    // value owns; a program started by socket activation reads no input
    // from it (it is /dev/null unless the unit says otherwise).
    if let Err(e) = unsafe { sys::dup_onto(fd, 0) } {
        config::log(format_args!("socket activation: fd {fd} onto fd 0: {e}"));
    } else if let Some(kind) = replaced {
        // Not silent: the program's standard input was something.
        config::log(format_args!(
            "socket activation: standard input (fd 0, {kind}) replaced by the passed socket (fd {fd})"
        ));
    }
}

/// Initialises the library: reads `FCGI_WEB_SERVER_ADDRS` and the
/// `LIBFCGI_*` settings, and installs the signal handlers libfcgi installs
/// (SIGPIPE: an empty handler, so writes to a vanished peer fail with
/// EPIPE; SIGUSR1 and SIGTERM, unless the program has its own: request a
/// shutdown so a thread waiting in accept returns). Idempotent.
///
/// Returns 0.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_Init() -> c_int {
    ffi_guard!(-1, {
        ensure_init();
        0
    })
}

/// Returns 1 if the process runs as a plain CGI program, 0 if it was
/// started as a FastCGI application (fd 0 is a listening socket). Also
/// initialises the library like `FCGX_Init`. The answer is computed once.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_IsCGI() -> c_int {
    ffi_guard!(1, {
        ensure_init();
        let mut mode = MODE.load(Ordering::SeqCst);
        if mode == 0 {
            mode = if sys::is_listening_socket(0) { 2 } else { 1 };
            MODE.store(mode, Ordering::SeqCst);
        }
        (mode == 1) as c_int
    })
}

/// Creates a listening socket and returns its descriptor, or -1 with errno
/// set. `path` is `":port"` or `"*:port"` (all interfaces), `"host:port"`,
/// `"[ipv6]:port"`, or else a Unix socket path. An existing file at the
/// path is replaced only if it is a stale socket (EADDRINUSE otherwise).
/// Unlike libfcgi, errors never terminate the process. A Unix socket's
/// file gets the mode and owner of `LIBFCGI_SOCKET_MODE`,
/// `LIBFCGI_SOCKET_USER` and `LIBFCGI_SOCKET_GROUP` if they are set (a
/// bad value: -1, EINVAL, logged), and is removed when the process exits
/// after a shutdown request (see `FCGX_OpenSocketMode` in fcgi_ext.h).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGX_OpenSocket(path: *const c_char, backlog: c_int) -> c_int {
    // SAFETY: the caller's contract is open_socket's.
    ffi_guard!(-1, { unsafe { open_socket(path, backlog, None) } })
}

/// `FCGX_OpenSocket`, with the Unix socket file's mode and owner given
/// (`None`: from the environment; each `None` field inside: as `bind()`
/// makes it).
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
pub(crate) unsafe fn open_socket(
    path: *const c_char,
    backlog: c_int,
    perms: Option<sys::SocketPerms>,
) -> c_int {
    if path.is_null() {
        sys::set_errno(sys::code::EINVAL);
        return -1;
    }
    // SAFETY: non-NULL and NUL-terminated per the contract above.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    let addr = match std::str::from_utf8(bytes) {
        Ok(text) => BindAddr::parse(text),
        Err(_) => BindAddr::Unix(non_utf8_path(bytes)),
    };
    let fail = |why: &dyn std::fmt::Display, code: i32| {
        config::log(format_args!(
            "FCGX_OpenSocket({}): {why}",
            String::from_utf8_lossy(bytes)
        ));
        sys::set_errno(code);
        -1
    };
    let perms = match (perms, &addr) {
        (Some(p), _) => p,
        (None, BindAddr::Tcp { .. }) => sys::SocketPerms::default(),
        (None, BindAddr::Unix(_)) => match socket_file::perms_from_env() {
            Ok(p) => p,
            Err(why) => return fail(&why, sys::code::EINVAL),
        },
    };
    match addr.listen_with(backlog, perms) {
        Ok(fd) => {
            let fd = fd.into_raw_fd();
            if fd == 0 {
                MODE.store(2, Ordering::SeqCst);
            }
            fd
        }
        Err(e) => fail(&e, e.raw_os_error().unwrap_or(sys::code::EINVAL)),
    }
}

/// A socket path given in bytes that are not UTF-8.
#[cfg(unix)]
pub(crate) fn non_utf8_path(bytes: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(bytes).into()
}

/// A socket path given in bytes that are not UTF-8 (Windows has no local
/// sockets by path; the listen fails anyway).
#[cfg(windows)]
pub(crate) fn non_utf8_path(bytes: &[u8]) -> std::path::PathBuf {
    String::from_utf8_lossy(bytes).into_owned().into()
}

/// Asks every accept loop to end: the next `FCGX_Accept_r` (and one that
/// is interrupted by a signal) returns an error instead of waiting.
/// Async-signal-safe.
#[unsafe(no_mangle)]
pub extern "C" fn FCGX_ShutdownPending() {
    // catch_unwind costs nothing (and calls nothing) unless a panic comes.
    ffi_guard!((), { request_shutdown() })
}

/// The version of this library, e.g. `"0.1.0"` (a static string). An
/// extension: libfcgi has no such function. The libfcgi API level this
/// library implements is 2.4.7 (what `pkg-config --modversion fcgi` says).
#[unsafe(no_mangle)]
pub extern "C" fn fcgi_rs_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    ffi_guard!(std::ptr::null(), { VERSION.as_ptr().cast() })
}
