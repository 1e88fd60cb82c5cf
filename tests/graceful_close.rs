//! Closing stays cheap when thousands of connections close at once: each
//! is half-closed and handed to the drainer thread without waiting, at most
//! `MAX_LINGERING` of them linger (the oldest beyond are closed), and once
//! the peers close, every descriptor is gone. (Its own test binary: it
//! counts the process's descriptors.)

use fcgi::server::linger::{MAX_LINGERING, close_gracefully};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const WANTED: usize = 3000;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The soft and hard RLIMIT_NOFILE of this process (from /proc).
fn nofile() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok().or((w == "unlimited").then_some(u64::MAX)))
        .collect();
    (v[0], v[1])
}

/// How many socket pairs fit: the soft limit is raised to the hard one
/// first (with prlimit(1), which needs no unsafe code here).
fn connections_that_fit() -> usize {
    let (soft, hard) = nofile();
    let need = (2 * WANTED + 64) as u64;
    if soft < need && hard > soft {
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard}:{hard}"))
            .status();
    }
    let (soft, _) = nofile();
    let room = soft.saturating_sub(open_fds() as u64 + 64) / 2;
    WANTED.min(room as usize)
}

/// Waits up to `limit` until at most `max` descriptors are open.
fn settle(max: usize, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let n = open_fds();
        if n <= max || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn thousands_of_connections_closed_at_once() {
    let n = connections_that_fit();
    assert!(n >= 2 * MAX_LINGERING, "RLIMIT_NOFILE too low: {n} pairs");
    // The drainer thread (and its memory) exists before the count starts.
    let base = open_fds();
    let (warm, warm_peer) = UnixStream::pair().unwrap();
    close_gracefully(OwnedFd::from(warm));
    drop(warm_peer);
    assert_eq!(settle(base, Duration::from_secs(3)), base);

    let mut peers = Vec::with_capacity(n);
    let mut ours = Vec::with_capacity(n);
    for _ in 0..n {
        let (a, mut b) = UnixStream::pair().unwrap();
        // Input the application never read: what makes a plain close()
        // send a reset.
        b.write_all(&[b'x'; 512]).unwrap();
        ours.push(OwnedFd::from(a));
        peers.push(b);
    }
    let start = Instant::now();
    for fd in ours {
        close_gracefully(fd);
    }
    let closing = start.elapsed();
    assert!(
        closing < Duration::from_secs(3),
        "{n} graceful closes took {closing:?}"
    );

    // The newest MAX_LINGERING peers see the half-close (EOF) at once;
    // older ones may have been closed with their input unread (a reset).
    let mut resets = 0;
    for (i, p) in peers.iter_mut().enumerate() {
        p.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 16];
        match p.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && i < n - MAX_LINGERING => {
                resets += 1
            }
            other => panic!("peer {i} of {n}: {other:?}"),
        }
    }
    assert!(resets <= n - MAX_LINGERING);
    // Beyond MAX_LINGERING, the oldest were closed (within a drainer pass).
    let lingering = settle(base + n + MAX_LINGERING, Duration::from_secs(1)) - base - n;
    assert!(
        lingering <= MAX_LINGERING,
        "{lingering} connections linger (at most {MAX_LINGERING})"
    );

    // The peers close: the drainer reads their EOF and closes the rest
    // (well before the 2 s close timeout).
    let peers_closed = Instant::now();
    drop(peers);
    let left = settle(base, Duration::from_secs(5));
    let took = peers_closed.elapsed();
    assert_eq!(left, base, "descriptors left open after the peers closed");
    assert!(
        took < Duration::from_millis(1500),
        "closing the drained connections took {took:?}"
    );
}
