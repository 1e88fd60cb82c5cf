//! Unix socket files the library creates (`FCGX_OpenSocket`,
//! `FCGX_OpenSocketMode`): the mode and owner they are created with, from
//! the caller or from `LIBFCGI_SOCKET_MODE`, `LIBFCGI_SOCKET_USER` and
//! `LIBFCGI_SOCKET_GROUP` (like spawn-fcgi's `-M`, `-U`, `-G`), and their
//! removal when the process that created them exits after a shutdown
//! request.
//!
//! Removal: at `exit()` (or the return from `main`) of the process that
//! created the socket, if a shutdown was requested (SIGTERM or SIGUSR1
//! with the library's handler, `FCGX_ShutdownPending`), each socket file
//! it created is removed if it is still the same file (a socket with the
//! same device and inode; the library keeps the file open, so the numbers
//! cannot be another file's). Not after SIGKILL or `_exit()`, nor in a
//! `fork()` child, nor at an exit without a shutdown request (a parent
//! that daemonises exits while its child serves): the file then stays, and
//! the next `FCGX_OpenSocket` at the path replaces it, being stale.

use super::config;
#[cfg(unix)]
use crate::sys;
use crate::sys::{SocketFile, SocketPerms};
use std::path::PathBuf;

/// Parses a mode in octal (`0660`, `660`, `0o660`): permission bits only.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "{text:?} is not a socket mode (octal permission bits, e.g. 0660)"
        )),
    }
}

/// A user or group given by number or by name (looked up with `lookup`).
pub fn parse_id(
    what: &str,
    text: &str,
    lookup: impl Fn(&str) -> Option<u32>,
) -> Result<u32, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u32>()
            .ok()
            .filter(|&n| n != u32::MAX)
            .ok_or_else(|| format!("{what} {text:?} is out of range"));
    }
    lookup(t).ok_or_else(|| format!("no {what} named {text:?}"))
}

/// The mode and owner from `LIBFCGI_SOCKET_MODE`, `LIBFCGI_SOCKET_USER`
/// and `LIBFCGI_SOCKET_GROUP` (read at the first library call); each
/// unset one leaves what `bind()` does. A value that does not parse, or a
/// name with no such user or group, is an error (the socket is not made).
pub fn perms_from_env() -> Result<SocketPerms, String> {
    let cfg = config::config();
    let with = |v: &Option<String>, name: &str, f: &dyn Fn(&str) -> Result<u32, String>| {
        v.as_deref()
            .map(f)
            .transpose()
            .map_err(|e| format!("{name}: {e}"))
    };
    Ok(SocketPerms {
        mode: with(&cfg.socket_mode, "LIBFCGI_SOCKET_MODE", &parse_mode)?,
        uid: with(&cfg.socket_user, "LIBFCGI_SOCKET_USER", &|t| {
            parse_id("user", t, user_id)
        })?,
        gid: with(&cfg.socket_group, "LIBFCGI_SOCKET_GROUP", &|t| {
            parse_id("group", t, group_id)
        })?,
    })
}

#[cfg(unix)]
fn user_id(name: &str) -> Option<u32> {
    sys::user_id(name)
}

#[cfg(unix)]
fn group_id(name: &str) -> Option<u32> {
    sys::group_id(name)
}

#[cfg(not(unix))]
fn user_id(_: &str) -> Option<u32> {
    None
}

#[cfg(not(unix))]
fn group_id(_: &str) -> Option<u32> {
    None
}

/// A socket file this process created.
#[cfg(unix)]
struct Created {
    path: PathBuf,
    file: SocketFile,
    pid: i32,
}

#[cfg(unix)]
static CREATED: std::sync::Mutex<Vec<Created>> = std::sync::Mutex::new(Vec::new());

/// Records a socket file the library created, for its removal at a clean
/// exit (see the module).
#[cfg(unix)]
pub fn remember(path: PathBuf, file: SocketFile) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| sys::at_exit(remove_at_exit));
    let pid = sys::getpid();
    let mut list = CREATED.lock().unwrap_or_else(|p| p.into_inner());
    list.retain(|c| c.path != path);
    list.push(Created { path, file, pid });
}

/// No socket files on this platform.
#[cfg(not(unix))]
pub fn remember(_path: PathBuf, _file: SocketFile) {}

/// The exit hook: removes this process's socket files after a shutdown
/// request. Never waits for the lock (exit() may run from a signal handler
/// that interrupted a thread holding it).
#[cfg(unix)]
extern "C" fn remove_at_exit() {
    if !super::listen::shutdown_pending() {
        return;
    }
    let Ok(list) = CREATED.try_lock() else {
        return;
    };
    let me = sys::getpid();
    for c in list.iter().filter(|c| c.pid == me) {
        let _ = sys::remove_socket_file(&c.path, &c.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert_eq!(parse_mode(" 0777 "), Ok(0o777));
        for bad in ["", "0o", "0888", "rw-rw----", "4755", "1000", "-1"] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_by_number_or_name() {
        let lookup = |n: &str| (n == "www-data").then_some(33);
        assert_eq!(parse_id("user", "0", lookup), Ok(0));
        assert_eq!(parse_id("user", "1001", lookup), Ok(1001));
        assert_eq!(parse_id("user", "www-data", lookup), Ok(33));
        assert!(
            parse_id("user", "nobody-here", lookup)
                .unwrap_err()
                .contains("no user")
        );
        assert!(parse_id("group", "4294967295", lookup).is_err());
        assert!(parse_id("group", "99999999999", lookup).is_err());
        assert!(parse_id("group", "", lookup).is_err());
    }

    #[cfg(unix)]
    #[test]
    fn root_is_found_by_name() {
        assert_eq!(sys::user_id("root"), Some(0));
        assert_eq!(sys::group_id("root"), Some(0));
        assert_eq!(sys::user_id("no-such-user-fcgi"), None);
    }
}
