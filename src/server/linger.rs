//! Closing a connection whose peer may still be sending.
//!
//! Closing a socket with unread input makes the kernel send a reset, which
//! can destroy a response the peer has not read yet. libfcgi avoided that by
//! half-closing and draining for up to 2 s in the request thread, stalling
//! the next request. Here the drain happens in one background thread, so
//! the worker goes straight back to accepting.

use super::config::config;
use crate::sys;
use crate::sys::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Most connections drained at once; past that, the oldest is closed.
const MAX_LINGERING: usize = 1024;

struct Lingering {
    fd: OwnedFd,
    deadline: Instant,
}

struct Drainer {
    pid: i32,
    queue: Vec<Lingering>,
}

static DRAINER: Mutex<Option<Drainer>> = Mutex::new(None);
static WAKE: Condvar = Condvar::new();

/// Half-closes `fd` and drains it in the background until the peer closes
/// or the close timeout passes; then closes it.
pub fn close_gracefully(fd: OwnedFd) {
    let _ = sys::shutdown_write(fd.as_fd());
    let timeout = config().close_timeout_ms;
    if timeout == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_millis(timeout as u64);
    let Ok(mut guard) = DRAINER.lock() else {
        return;
    };
    let pid = sys::getpid();
    // A forked child has no drainer thread even if its parent had one.
    if guard.as_ref().is_none_or(|d| d.pid != pid) {
        *guard = Some(Drainer {
            pid,
            queue: Vec::new(),
        });
        // The drainer never takes a signal meant for the program's threads.
        let spawned = sys::spawn_without_signals(|| {
            std::thread::Builder::new()
                .name("fcgi-linger".into())
                .spawn(run)
        });
        if spawned.is_err() {
            *guard = None;
            return; // fd dropped: closed at once
        }
    }
    if let Some(d) = guard.as_mut() {
        if d.queue.len() >= MAX_LINGERING {
            d.queue.remove(0);
        }
        d.queue.push(Lingering { fd, deadline });
    }
    WAKE.notify_one();
}

fn run() {
    let mut scratch = vec![0u8; 16 * 1024];
    loop {
        let fds: Vec<i32> = {
            let Ok(mut guard) = DRAINER.lock() else {
                return;
            };
            let Some(d) = guard.as_mut() else { return };
            if d.pid != sys::getpid() {
                return;
            }
            let now = Instant::now();
            d.queue.retain(|l| l.deadline > now);
            if d.queue.is_empty() {
                let _ = WAKE.wait_timeout(guard, Duration::from_secs(60));
                continue;
            }
            d.queue.iter().map(|l| l.fd.as_raw_fd()).collect()
        };
        let ready = match sys::poll_readable(&fds, 100) {
            Ok(r) => r,
            Err(_) => vec![true; fds.len()],
        };
        let Ok(mut guard) = DRAINER.lock() else {
            return;
        };
        let Some(d) = guard.as_mut() else { return };
        d.queue.retain(|l| {
            let Some(i) = fds.iter().position(|&f| f == l.fd.as_raw_fd()) else {
                return true;
            };
            if !ready[i] {
                return true;
            }
            // Readable: discard what is there; EOF or an error ends the linger.
            match sys::read_nonblocking(l.fd.as_fd(), &mut scratch) {
                Ok(Some(0)) | Err(_) => false,
                Ok(_) => true,
            }
        });
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// The signals blocked in the thread named `name` (from /proc).
    fn blocked_in_thread(name: &str) -> Option<u64> {
        for task in std::fs::read_dir("/proc/self/task").ok()? {
            let dir = task.ok()?.path();
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            if comm.trim() == name {
                let status = std::fs::read_to_string(dir.join("status")).ok()?;
                let line = status.lines().find(|l| l.starts_with("SigBlk:"))?;
                return u64::from_str_radix(line[7..].trim(), 16).ok();
            }
        }
        None
    }

    #[test]
    fn the_drainer_thread_takes_no_signal_meant_for_the_program() {
        // With the thread unmasked, a process-directed SIGINT could land
        // there and never interrupt the program's blocking read.
        let (ours, _peer) = UnixStream::pair().unwrap();
        close_gracefully(OwnedFd::from(ours));
        let mut mask = None;
        for _ in 0..200 {
            mask = blocked_in_thread("fcgi-linger");
            if mask.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mask = mask.expect("the fcgi-linger thread runs");
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGUSR1,
            libc::SIGHUP,
            libc::SIGQUIT,
        ] {
            assert!(
                mask & (1 << (sig - 1)) != 0,
                "signal {sig} not blocked: {mask:x}"
            );
        }
    }
}
