//! systemd socket activation: which of the descriptors a service manager
//! passed (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`, as
//! `sd_listen_fds(3)` reads them) the library serves. Pure: the values
//! come in as strings, the decision goes out; `capi::init` applies it.

use crate::sys::RawFd;
use std::ops::Range;

/// The first descriptor a service manager passes.
pub const FIRST_PASSED_FD: RawFd = 3;

/// Descriptors passed by a service manager for this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// All of them (`3..3 + LISTEN_FDS`): each is set close-on-exec.
    pub fds: Range<RawFd>,
    /// The one to serve, or why there is none.
    pub chosen: Result<RawFd, String>,
}

/// Reads the variables' values. `None`: nothing was passed to this
/// process (no `LISTEN_PID`, another process's, or no `LISTEN_FDS`);
/// the variables are then left alone. `wanted`: the name
/// (`LIBFCGI_LISTEN_FDNAME`) of the descriptor to serve, matched against
/// `LISTEN_FDNAMES` (colon-separated, in descriptor order); without it,
/// the first descriptor.
pub fn passed(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    wanted: Option<&str>,
    my_pid: u32,
) -> Option<Passed> {
    let pid: u32 = listen_pid?.trim().parse().ok()?;
    if pid != my_pid {
        return None;
    }
    let count = match listen_fds?.trim().parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            return Some(Passed {
                fds: FIRST_PASSED_FD..FIRST_PASSED_FD,
                chosen: Err(format!(
                    "LISTEN_FDS={:?} is not a number",
                    listen_fds.unwrap_or_default()
                )),
            });
        }
    };
    // More than a process can have open is a bad value, not a range to walk.
    let count = RawFd::try_from(count.min(65_536)).unwrap_or(0);
    let fds = FIRST_PASSED_FD..FIRST_PASSED_FD + count;
    let chosen = if count == 0 {
        Err("LISTEN_FDS=0: no socket passed".to_string())
    } else {
        match wanted.filter(|w| !w.is_empty()) {
            None => Ok(FIRST_PASSED_FD),
            Some(w) => names
                .unwrap_or_default()
                .split(':')
                .take(count as usize)
                .position(|n| n == w)
                .map(|i| FIRST_PASSED_FD + i as RawFd)
                .ok_or_else(|| {
                    format!(
                        "LIBFCGI_LISTEN_FDNAME={w:?} names none of the passed sockets (LISTEN_FDNAMES={:?})",
                        names.unwrap_or_default()
                    )
                }),
        }
    };
    Some(Passed { fds, chosen })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_process_s_sockets() {
        assert_eq!(passed(None, Some("1"), None, None, 42), None);
        assert_eq!(passed(Some("41"), Some("1"), None, None, 42), None);
        assert_eq!(passed(Some("x"), Some("1"), None, None, 42), None);
        assert_eq!(passed(Some("42"), None, None, None, 42), None);
        let p = passed(Some("42"), Some("1"), None, None, 42).unwrap();
        assert_eq!((p.fds, p.chosen), (3..4, Ok(3)));
    }

    #[test]
    fn the_first_or_the_one_named() {
        let names = Some("web:admin:metrics");
        let p = passed(Some("7"), Some("3"), names, None, 7).unwrap();
        assert_eq!((p.fds, p.chosen), (3..6, Ok(3)));
        let p = passed(Some("7"), Some("3"), names, Some("admin"), 7).unwrap();
        assert_eq!(p.chosen, Ok(4));
        let p = passed(Some("7"), Some("3"), names, Some("metrics"), 7).unwrap();
        assert_eq!(p.chosen, Ok(5));
        let p = passed(Some("7"), Some("2"), names, Some("metrics"), 7).unwrap();
        assert!(p.chosen.is_err(), "a name beyond LISTEN_FDS");
        let p = passed(Some("7"), Some("3"), None, Some("web"), 7).unwrap();
        assert!(p.chosen.unwrap_err().contains("names none"));
        let p = passed(Some("7"), Some("2"), names, Some(""), 7).unwrap();
        assert_eq!(p.chosen, Ok(3), "an empty name: the first");
    }

    #[test]
    fn bad_counts_are_errors() {
        let p = passed(Some("7"), Some("many"), None, None, 7).unwrap();
        assert!(p.chosen.is_err());
        assert!(p.fds.is_empty());
        let p = passed(Some("7"), Some("0"), None, None, 7).unwrap();
        assert!(p.chosen.is_err());
        let p = passed(Some("7"), Some("-1"), None, None, 7).unwrap();
        assert!(p.chosen.is_err());
    }
}
