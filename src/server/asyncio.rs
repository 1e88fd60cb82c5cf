//! The asynchronous I/O of libfcgi's OS layer (`OS_AsyncRead`,
//! `OS_AsyncWrite`, `OS_DoIo`, used by `cgi-fcgi`'s event loop): a table of
//! pending operations, at most one read and one write per descriptor, and
//! the poll loop that performs those whose descriptor became ready.
//!
//! What an operation is (for the C ABI: the caller's buffer and callback)
//! is the caller's type `T`. This module only keeps it and hands it back to
//! the caller's `perform` once its descriptor is ready; it never looks
//! inside.
//!
//! The table is a map keyed by descriptor, behind a mutex: callbacks run
//! without the lock and may register and cancel operations, from any
//! thread (libfcgi had no thread affinity). Waiting uses `poll()`, so
//! descriptors above `FD_SETSIZE` work (libfcgi's `select()` overflowed
//! there, CVE-2012-6687).

use crate::sys::{self, RawFd};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Mutex, MutexGuard};

/// Which way an operation moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dir {
    Read,
    Write,
}

/// Most operations pending at once. Registration also requires an open
/// descriptor and allows one read and one write per descriptor, so the
/// real bound is twice the number of open descriptors.
pub const MAX_PENDING: usize = 1 << 20;

struct Pending<T> {
    op: T,
    /// Its descriptor was reported ready; the next [`AsyncTable::run`]
    /// performs it (without waiting, if a callback never returned).
    posted: bool,
}

type Map<T> = BTreeMap<(RawFd, Dir), Pending<T>>;

/// The pending operations of a process (one `static` in the C ABI).
pub struct AsyncTable<T> {
    ops: Mutex<Map<T>>,
}

impl<T> Default for AsyncTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> AsyncTable<T> {
    pub const fn new() -> Self {
        AsyncTable {
            ops: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Map<T>> {
        // The map stays consistent even if a holder panicked: every change
        // is a single insert or remove.
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers the operation `make` builds on `fd`. The errors, as errno
    /// values, in the order they are looked for: `fd` is not open (EBADF),
    /// `make`'s own, an operation of the same kind is already pending on
    /// `fd` (EALREADY), the table is full (ENOMEM).
    pub fn register(
        &self,
        fd: RawFd,
        dir: Dir,
        make: impl FnOnce() -> Result<T, i32>,
    ) -> Result<(), i32> {
        if !sys::is_open(fd) {
            return Err(sys::code::EBADF);
        }
        let op = make()?;
        let mut t = self.lock();
        if t.contains_key(&(fd, dir)) {
            return Err(sys::code::EALREADY);
        }
        if t.len() >= MAX_PENDING {
            return Err(sys::code::ENOMEM);
        }
        t.insert((fd, dir), Pending { op, posted: false });
        Ok(())
    }

    /// Forgets the pending operations on `fd` (one direction, or both).
    pub fn cancel(&self, fd: RawFd, only: Option<Dir>) {
        let mut t = self.lock();
        for dir in [Dir::Read, Dir::Write] {
            if only.is_none_or(|d| d == dir) {
                t.remove(&(fd, dir));
            }
        }
    }

    /// Forgets every pending operation.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// `OS_DoIo`: waits until a descriptor with a pending operation is
    /// ready, or `timeout_ms` passes (-1: no limit; with nothing pending,
    /// until a signal comes), then hands each ready operation to
    /// `perform`, taken out of the table first (so `perform` may register
    /// the next one on the same descriptor). `perform` gives an operation
    /// back if it found its descriptor not ready after all (EAGAIN): it
    /// stays pending. Operations left ready by a `perform` that never
    /// returned (a `longjmp` out of a C callback) are performed first,
    /// without waiting. A signal ends the wait without an error.
    pub fn run(
        &self,
        timeout_ms: i32,
        mut perform: impl FnMut(RawFd, Dir, T) -> Result<(), T>,
    ) -> io::Result<()> {
        if !self.any_posted() && !self.wait_ready(timeout_ms)? {
            return Ok(());
        }
        for key in self.posted() {
            let Some(op) = self.take_posted(key) else {
                continue; // cancelled by an earlier callback
            };
            if let Err(op) = perform(key.0, key.1, op) {
                self.lock()
                    .entry(key)
                    .or_insert(Pending { op, posted: false });
            }
        }
        Ok(())
    }

    fn any_posted(&self) -> bool {
        self.lock().values().any(|p| p.posted)
    }

    /// One `poll()` entry per descriptor with pending operations.
    fn poll_set(&self) -> Vec<sys::PollFd> {
        let mut set: Vec<sys::PollFd> = Vec::new();
        // Keys are ordered by descriptor: both directions of one are adjacent.
        for &(fd, dir) in self.lock().keys() {
            let (input, output) = (dir == Dir::Read, dir == Dir::Write);
            match set.last_mut() {
                Some(p) if p.fd() == fd => p.add(input, output),
                _ => set.push(sys::PollFd::new(fd, input, output)),
            }
        }
        set
    }

    /// Waits for the pending operations' descriptors and marks those ready
    /// as posted. False if nothing became ready (the timeout passed, or a
    /// signal came).
    fn wait_ready(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut set = self.poll_set();
        match sys::poll_set(&mut set, timeout_ms) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut t = self.lock();
        for p in &set {
            let (input, output) = p.ready();
            for (dir, ready) in [(Dir::Read, input), (Dir::Write, output)] {
                if let (true, Some(pending)) = (ready, t.get_mut(&(p.fd(), dir))) {
                    pending.posted = true;
                }
            }
        }
        Ok(true)
    }

    /// The operations marked ready, in descriptor order.
    fn posted(&self) -> Vec<(RawFd, Dir)> {
        self.lock()
            .iter()
            .filter(|(_, p)| p.posted)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Takes the operation at `key` out of the table if it is still the
    /// one marked ready (a callback may have cancelled it, or replaced it).
    fn take_posted(&self, key: (RawFd, Dir)) -> Option<T> {
        let mut t = self.lock();
        match t.get(&key) {
            Some(p) if p.posted => t.remove(&key).map(|p| p.op),
            _ => None,
        }
    }
}

/// The `poll()` timeout in ms for `OS_DoIo`'s `struct timeval`, given as
/// (seconds, microseconds); `None` (a NULL pointer) waits without limit
/// (-1). A negative time or microseconds outside 0..10^6 give EINVAL. Rounds
/// up to whole milliseconds; saturates at `i32::MAX`.
pub fn timeout_ms(tv: Option<(i64, i64)>) -> Result<i32, i32> {
    let Some((sec, usec)) = tv else {
        return Ok(-1);
    };
    if sec < 0 || !(0..1_000_000).contains(&usec) {
        return Err(sys::code::EINVAL);
    }
    // usec < 10^6 here, so adding 999 cannot overflow.
    let ms = sec.saturating_mul(1000).saturating_add((usec + 999) / 1000);
    Ok(ms.min(i64::from(i32::MAX)) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn timeval_conversion() {
        assert_eq!(timeout_ms(None), Ok(-1));
        assert_eq!(timeout_ms(Some((1, 1))), Ok(1001));
        assert_eq!(timeout_ms(Some((0, 0))), Ok(0));
        assert_eq!(timeout_ms(Some((-1, 0))), Err(sys::code::EINVAL));
        assert_eq!(timeout_ms(Some((0, 1_000_000))), Err(sys::code::EINVAL));
        assert_eq!(timeout_ms(Some((i64::MAX, 0))), Ok(i32::MAX));
    }

    #[test]
    fn registration_checks_in_order() {
        let table: AsyncTable<u32> = AsyncTable::new();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        assert_eq!(
            table.register(-1, Dir::Read, || Ok(1)),
            Err(sys::code::EBADF)
        );
        assert_eq!(table.register(fd, Dir::Read, || Err(7)), Err(7));
        assert_eq!(table.register(fd, Dir::Read, || Ok(1)), Ok(()));
        assert_eq!(
            table.register(fd, Dir::Read, || Ok(2)),
            Err(sys::code::EALREADY)
        );
        assert_eq!(table.register(fd, Dir::Write, || Ok(3)), Ok(()));
        table.cancel(fd, Some(Dir::Read));
        assert_eq!(table.register(fd, Dir::Read, || Ok(4)), Ok(()));
        table.clear();
        assert!(table.lock().is_empty());
    }

    #[test]
    fn ready_operations_are_performed_and_not_ready_ones_kept() {
        let table: AsyncTable<&str> = AsyncTable::new();
        let (a, b) = UnixStream::pair().unwrap();
        let (fa, fb) = (a.as_raw_fd(), b.as_raw_fd());
        table.register(fa, Dir::Read, || Ok("read a")).unwrap();
        table.register(fa, Dir::Write, || Ok("write a")).unwrap();
        table.register(fb, Dir::Read, || Ok("read b")).unwrap();
        let mut seen = Vec::new();
        // Only a's write is ready (nothing was sent yet).
        table
            .run(1000, |fd, dir, op| {
                seen.push((fd, dir, op));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(fa, Dir::Write, "write a")]);
        // Nothing ready within the timeout: nothing performed.
        seen.clear();
        table.run(10, |_, _, op| Err(op)).unwrap();
        use std::io::Write;
        (&a).write_all(b"x").unwrap();
        // b's read is ready; perform gives it back (EAGAIN): it stays.
        table.run(1000, |_, _, op| Err(op)).unwrap();
        assert_eq!(table.posted(), vec![]);
        assert_eq!(table.lock().len(), 2);
        table
            .run(1000, |fd, dir, op| {
                seen.push((fd, dir, op));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(fb, Dir::Read, "read b")]);
    }
}
