//! Closing a connection whose peer may still be sending.
//!
//! Closing a socket with unread input makes the kernel send a reset, which
//! can destroy a response the peer has not read yet. libfcgi avoided that by
//! half-closing and draining for up to 2 s in the request thread, stalling
//! the next request. Here the drain happens in one background thread, so
//! the worker goes straight back to accepting.
//!
//! A closing thread only appends to a queue under the lock. The drainer
//! takes the whole queue out, polls, reads and closes without the lock, and
//! puts the connections still draining back in front of those that arrived
//! meanwhile: constant work per connection and pass, and no system call
//! while a serving thread may be waiting for the lock.

use super::config::config;
use crate::sys;
use crate::sys::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Most connections drained at once; past that, the oldest is closed.
/// (Connections handed over while the drainer works on a batch wait beside
/// it, up to as many again; the oldest beyond the bound are closed when the
/// batch is put back, after each pass of at most about 100 ms.)
pub const MAX_LINGERING: usize = 1024;

/// How long the drainer waits for input before it looks at new arrivals
/// and deadlines again.
const POLL_MS: i32 = 100;

struct Lingering {
    fd: OwnedFd,
    deadline: Instant,
}

struct Drainer {
    pid: i32,
    /// Oldest first. While the drainer thread polls and reads, it holds the
    /// connections it took out of here, and this holds only later arrivals.
    queue: VecDeque<Lingering>,
}

/// Taken by every serving thread that closes a connection, so it guards
/// memory only: no system call is made while it is held (descriptors
/// taken out are closed after it is released).
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
    let pid = sys::getpid();
    // Closed once the lock is released.
    let mut evicted = None;
    let mut stale = None;
    let start = {
        let Ok(mut guard) = DRAINER.lock() else {
            return; // fd dropped: closed at once
        };
        // A forked child has no drainer thread even if its parent had one;
        // what the parent had queued is the child's to close.
        let start = guard.as_ref().is_none_or(|d| d.pid != pid);
        if start {
            stale = guard.replace(Drainer {
                pid,
                queue: VecDeque::new(),
            });
        }
        if let Some(d) = guard.as_mut() {
            if d.queue.len() >= MAX_LINGERING {
                evicted = d.queue.pop_front();
            }
            d.queue.push_back(Lingering { fd, deadline });
        }
        start
    };
    WAKE.notify_one();
    drop(evicted);
    drop(stale);
    if start {
        // The drainer never takes a signal meant for the program's threads.
        let spawned = sys::spawn_without_signals(|| {
            std::thread::Builder::new()
                .name("fcgi-linger".into())
                .spawn(move || run(pid))
        });
        if spawned.is_err() {
            // No thread to drain them: close what was queued for it now.
            let queued = DRAINER.lock().ok().and_then(|mut guard| {
                if guard.as_ref().is_some_and(|d| d.pid == pid) {
                    guard.take()
                } else {
                    None
                }
            });
            drop(queued);
        }
    }
}

/// The drainer thread of process `pid`: takes every queued connection out
/// of [`DRAINER`], polls and reads them without the lock, closes those
/// done (EOF, error, deadline), and puts the others back in front of the
/// connections that arrived meanwhile.
fn run(pid: i32) {
    let mut scratch = vec![0u8; 16 * 1024];
    // The connections being worked on; between passes, the empty spare
    // that is swapped with the queue (so both keep their capacity).
    let mut batch: VecDeque<Lingering> = VecDeque::new();
    let mut fds = Vec::new();
    loop {
        {
            let Ok(mut guard) = DRAINER.lock() else {
                return;
            };
            loop {
                let Some(d) = guard.as_mut() else { return };
                if d.pid != pid {
                    return;
                }
                if !d.queue.is_empty() {
                    std::mem::swap(&mut d.queue, &mut batch);
                    break;
                }
                guard = match WAKE.wait_timeout(guard, Duration::from_secs(60)) {
                    Ok((g, _)) => g,
                    Err(_) => return,
                };
            }
        }
        let now = Instant::now();
        batch.retain(|l| l.deadline > now);
        if !batch.is_empty() {
            fds.clear();
            fds.extend(batch.iter().map(|l| l.fd.as_raw_fd()));
            let ready = sys::poll_readable(&fds, POLL_MS).unwrap_or_else(|_| vec![true; fds.len()]);
            // retain visits the entries once each, in order: index-aligned
            // with `ready`.
            let mut i = 0;
            batch.retain(|l| {
                let readable = ready.get(i).copied().unwrap_or(true);
                i += 1;
                if !readable {
                    return true;
                }
                // Readable: discard what is there; EOF or an error ends the linger.
                discard_input(l.fd.as_fd(), &mut scratch) != Discarded::Over
            });
        }
        let mut evicted = Vec::new();
        {
            let Ok(mut guard) = DRAINER.lock() else {
                return;
            };
            let Some(d) = guard.as_mut() else { return };
            if d.pid != pid {
                return;
            }
            // Survivors are older than anything queued meanwhile: they go
            // first. Whichever side is shorter is moved.
            if batch.len() >= d.queue.len() {
                batch.append(&mut d.queue);
                std::mem::swap(&mut d.queue, &mut batch);
            } else {
                while let Some(l) = batch.pop_back() {
                    d.queue.push_front(l);
                }
            }
            let excess = d.queue.len().saturating_sub(MAX_LINGERING);
            evicted.extend(d.queue.drain(..excess));
        }
        drop(evicted);
    }
}

/// What [`discard_input`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discarded {
    /// End of file or an error: the linger is over.
    Over,
    /// Some bytes, thrown away.
    Some,
    /// Nothing to read now.
    Nothing,
}

/// Reads and throws away what the peer sent, without waiting.
fn discard_input(fd: BorrowedFd<'_>, scratch: &mut [u8]) -> Discarded {
    match sys::read_nonblocking(fd, scratch) {
        Ok(Some(0)) | Err(_) => Discarded::Over,
        Ok(Some(_)) => Discarded::Some,
        Ok(None) => Discarded::Nothing,
    }
}

/// The closing thread's own linger, for `OS_Close` (whose callers expect
/// the drain to be over when it returns): half-closes `fd` and reads and
/// discards what the peer still sends, until it closes or the close
/// timeout (in total, however slowly the peer trickles bytes) passes. The
/// caller closes `fd` afterwards. Nothing happens if `fd` is not a
/// connected socket.
pub fn drain_now(fd: BorrowedFd<'_>) {
    if sys::shutdown_write(fd).is_err() {
        return;
    }
    let timeout = Duration::from_millis(config().close_timeout_ms.max(0) as u64);
    let deadline = Instant::now() + timeout;
    let mut scratch = [0u8; 4096];
    loop {
        match discard_input(fd, &mut scratch) {
            Discarded::Over => return,
            Discarded::Some if Instant::now() >= deadline => return,
            Discarded::Some => continue,
            Discarded::Nothing => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        match sys::poll_input(fd, ms.max(1)) {
            Ok(true) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(false) | Err(_) => return,
        }
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

    #[test]
    fn connections_are_drained_and_closed_without_the_lock() {
        // Serving threads take DRAINER for every close: the drainer must
        // not hold it while it polls, reads and closes. Here the test holds
        // the lock once the drainer has taken the connections out, and the
        // drainer must still notice each peer's EOF and close our end.
        use std::io::Write;
        use std::net::Shutdown;
        let mut peers = Vec::new();
        for _ in 0..8 {
            let (ours, mut peer) = UnixStream::pair().unwrap();
            peer.write_all(b"unread input").unwrap();
            close_gracefully(OwnedFd::from(ours));
            peers.push(peer);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let guard = loop {
            let guard = DRAINER.lock().unwrap();
            if guard.as_ref().is_some_and(|d| d.queue.is_empty()) {
                break guard;
            }
            drop(guard);
            assert!(
                Instant::now() < deadline,
                "the drainer never took the queued connections out"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        // Writing to a socket whose other end is closed fails (EPIPE).
        let still_open = |peers: &[UnixStream]| {
            peers
                .iter()
                .filter(|p| {
                    let mut s: &UnixStream = p;
                    s.write(b"x").is_ok()
                })
                .count()
        };
        // Nothing was closed yet: not by the close timeout (2 s) either.
        assert_eq!(still_open(&peers), peers.len());
        for p in &peers {
            p.shutdown(Shutdown::Write).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut open = peers.len();
        while open > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            open = still_open(&peers);
        }
        drop(guard);
        assert_eq!(open, 0, "connections left open while the lock was held");
    }
}
