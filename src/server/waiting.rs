//! Connections that wait without a thread ("parked"), one room per
//! listening socket.
//!
//! A connection is parked when no thread should block on it: a kept-alive
//! connection between two requests while other work waits, or one whose
//! request head has not arrived whole. Its descriptor goes into the room's
//! epoll set (one event, then disarmed), with what it had sent of a head.
//! Threads without a connection take parked connections whose input has
//! arrived, and new connections from the listening socket, which is in the
//! same set.
//!
//! While a room holds no connection, nothing here runs: threads block in
//! `accept()` and on their own connection as they always did (the fast
//! path). The watcher ([`super::watch`]) rescues threads from those waits
//! when work arrives that no thread would take.
//!
//! Limits: at most `LIBFCGI_MAX_WAITING_CONNS` connections wait in all
//! rooms together; past it the oldest idle kept-alive connection is closed,
//! and a connection that cannot wait is refused (closed). A parked request
//! head past its deadline is closed. Each is logged. Descriptors are closed
//! after the room's lock is released.

use super::config::{self, limits};
use super::listen::{self, Accepted};
use super::session::Carry;
use super::watch;
#[cfg(target_os = "linux")]
use super::watch::{State, Waiting};
#[cfg(target_os = "linux")]
use crate::sys;
use crate::sys::{BorrowedFd, OwnedFd, RawFd};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A connection waiting without a thread.
pub struct Parked {
    pub fd: OwnedFd,
    /// No request has been served on it yet.
    pub fresh: bool,
    /// [`watch::now_ms`] by which its request head must be complete; 0 for
    /// a kept-alive connection between two requests.
    pub deadline: u64,
    /// What it has sent of a request head that is not complete.
    pub carry: Option<Box<Carry>>,
    /// Its token in the room's epoll set, where it stays from its first
    /// park until it is closed (0: never parked).
    pub token: u64,
}

impl Parked {
    fn is_idle(&self) -> bool {
        self.deadline == 0 && self.carry.is_none()
    }
}

/// What a thread without a connection gets from [`Room::take`].
pub enum Taken {
    /// A parked connection whose input has arrived.
    Parked(Parked),
    /// A new connection.
    New(Accepted),
    /// Nothing is parked: block in `accept()` as usual.
    Accept,
    /// A shutdown request, or a signal with `FCGI_FAIL_ACCEPT_ON_INTR`.
    Interrupted,
    /// [`Room::take_until`]: nothing was ready by the deadline.
    TimedOut,
}

/// What the watcher needs to know of a room.
#[derive(Default, Clone, Copy)]
pub struct Work {
    pub parked: usize,
    /// A parked connection has input (or is queued for a thread).
    pub ready: bool,
    /// Connections that fired, queued for a thread.
    pub queued: usize,
}

/// The listening socket's token in the epoll set.
#[cfg(target_os = "linux")]
const LISTENER: u64 = u64::MAX;
/// The shutdown event's token (in rooms whose set a program waits on).
#[cfg(target_os = "linux")]
const SHUTDOWN: u64 = u64::MAX - 1;

/// Tokens of parked connections: never reused, so an event that comes
/// late can never be taken for another connection.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

#[derive(Default)]
struct Rooms {
    /// Parked connections by token, with the number of their park.
    entries: HashMap<u64, (u64, Parked)>,
    /// Fired connections not yet taken by a thread.
    ready: VecDeque<u64>,
    /// Idle kept-alive connections, oldest first: (token, park number);
    /// entries parked again since, or taken, are skipped.
    idle: VecDeque<(u64, u64)>,
    /// Parks so far (numbers the parks of one connection).
    parks: u64,
    /// Events of connections not parked at the moment: input that arrived
    /// while a thread held the connection (or between its registration and
    /// its entry). Its next park makes it ready at once; its close forgets
    /// it (as do a deadline, an eviction or a refusal).
    early: HashSet<u64>,
}

impl Rooms {
    fn remove(&mut self, token: u64) -> Option<Parked> {
        self.entries.remove(&token).map(|(_, p)| p)
    }
}

/// The parked connections of one listening socket.
pub struct Room {
    listen: RawFd,
    #[cfg(target_os = "linux")]
    epoll: sys::Epoll,
    fork_generation: u32,
    inner: Mutex<Rooms>,
    parked: AtomicUsize,
    /// Threads in [`Room::take`]'s wait.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    waiters: AtomicUsize,
    /// The shutdown event is in the set ([`Room::ready_fd`]).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    shutdown_watched: std::sync::Mutex<bool>,
}

/// Connections parked in all rooms.
static WAITING_TOTAL: AtomicUsize = AtomicUsize::new(0);

static ROOMS: Mutex<Vec<Arc<Room>>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The room of listening socket `listen`, made on first use. `None` where
/// connections cannot wait without a thread (no epoll: not Linux).
pub fn room(listen: RawFd) -> io::Result<Arc<Room>> {
    let generation = watch::fork_generation();
    let mut rooms = lock(&ROOMS);
    // Rooms copied from the parent by fork() are not this process's.
    rooms.retain(|r| {
        let mine = r.fork_generation == generation;
        if !mine {
            WAITING_TOTAL.fetch_sub(r.parked.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        mine
    });
    if let Some(r) = rooms.iter().find(|r| r.listen == listen) {
        r.watch_listener();
        return Ok(r.clone());
    }
    let r = Arc::new(Room::new(listen, generation)?);
    rooms.push(r.clone());
    ROOMS_MADE.fetch_add(1, Ordering::SeqCst);
    Ok(r)
}

/// Rooms made so far in this process (never decreases): a session that has
/// no room looks for one only when this moved, so threads that never had
/// to park learn of a room another thread made, at one atomic load per
/// request.
static ROOMS_MADE: AtomicUsize = AtomicUsize::new(0);

pub fn rooms_made() -> usize {
    ROOMS_MADE.load(Ordering::Relaxed)
}

/// The room of `listen` if one was made (none is made here).
pub fn existing_room(listen: RawFd) -> Option<Arc<Room>> {
    let generation = watch::fork_generation();
    lock(&ROOMS)
        .iter()
        .find(|r| r.listen == listen && r.fork_generation == generation)
        .cloned()
}

/// What the watcher needs to know of the room of `listen`.
pub fn parked_work(listen: RawFd) -> Work {
    if rooms_made() == 0 {
        return Work::default(); // not even a lock taken (a fork may come)
    }
    existing_room(listen).map_or(Work::default(), |r| r.work())
}

/// Arms the listening socket again in the room of `listen`.
pub fn rearm_listener(listen: RawFd) {
    if let Some(r) = existing_room(listen) {
        r.watch_listener();
    }
}

/// Closes parked connections whose request head is past its deadline.
pub fn sweep(now: u64) {
    if rooms_made() == 0 {
        return;
    }
    let generation = watch::fork_generation();
    let rooms: Vec<Arc<Room>> = lock(&ROOMS)
        .iter()
        .filter(|r| r.fork_generation == generation)
        .cloned()
        .collect();
    for r in rooms {
        r.expire(now);
    }
}

fn log_closed(why: &str, n: usize) {
    if n > 0 {
        config::log(format_args!("{n} waiting connection(s) closed: {why}"));
    }
}

/// The shutdown event of this process (an eventfd, made by the first
/// [`Room::ready_fd`] of each fork generation and never closed), as
/// `(fork generation + 1) << 32 | descriptor`; 0: none. Read by
/// [`announce_shutdown`] from signal handlers, hence an atomic.
#[cfg(target_os = "linux")]
static SHUTDOWN_EVENT: AtomicU64 = AtomicU64::new(0);

/// The shutdown event of this fork generation, made on first use.
#[cfg(target_os = "linux")]
fn shutdown_event() -> io::Result<RawFd> {
    static MAKING: Mutex<()> = Mutex::new(());
    let _guard = lock(&MAKING);
    let generation = u64::from(watch::fork_generation()) + 1;
    let v = SHUTDOWN_EVENT.load(Ordering::SeqCst);
    if v >> 32 == generation {
        return Ok((v & 0xffff_ffff) as RawFd);
    }
    // (A parent's event copied by fork() stays open, unused: closing it
    // could let a signal handler write to a reused number.)
    let fd = sys::IntoRawFd::into_raw_fd(sys::event_fd()?);
    SHUTDOWN_EVENT.store((generation << 32) | fd as u32 as u64, Ordering::SeqCst);
    if listen::shutdown_pending() {
        sys::signal_event_number(fd);
    }
    Ok(fd)
}

/// A shutdown was requested: makes the shutdown event readable, so that
/// programs waiting on a room's descriptor ([`Room::ready_fd`]) in their
/// own event loop wake up. Async-signal-safe (atomics and one `write`).
pub fn announce_shutdown() {
    #[cfg(target_os = "linux")]
    {
        let v = SHUTDOWN_EVENT.load(Ordering::SeqCst);
        if v != 0 && v >> 32 == u64::from(watch::fork_generation()) + 1 {
            sys::signal_event_number((v & 0xffff_ffff) as RawFd);
        }
    }
}

impl Room {
    #[cfg(target_os = "linux")]
    fn new(listen: RawFd, fork_generation: u32) -> io::Result<Room> {
        let epoll = sys::Epoll::new()?;
        epoll.add_number(listen, LISTENER)?;
        Ok(Room {
            listen,
            epoll,
            fork_generation,
            inner: Mutex::new(Rooms::default()),
            parked: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            shutdown_watched: std::sync::Mutex::new(false),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn new(_listen: RawFd, _fork_generation: u32) -> io::Result<Room> {
        Err(io::Error::from_raw_os_error(crate::sys::code::UNSUPPORTED))
    }

    /// A wait's end after the listening socket fired and it tried to accept:
    /// lets the next waiter see the socket again, then `Some` ends the wait
    /// (a new connection, an interrupted accept), `None` waits on (nothing
    /// was there, or a shutdown, which the wait's loop drains at its top).
    fn after_accept(&self, accepted: io::Result<Option<Accepted>>) -> io::Result<Option<Taken>> {
        self.watch_listener();
        match accepted {
            Ok(Some(a)) => Ok(Some(Taken::New(a))),
            Ok(None) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                Ok((!listen::shutdown_pending()).then_some(Taken::Interrupted))
            }
            Err(e) => Err(e),
        }
    }

    /// Makes sure the listening socket is in the set (a socket closed and
    /// opened again under the same number has left it).
    fn watch_listener(&self) {
        #[cfg(target_os = "linux")]
        if self.epoll.rearm_number(self.listen, LISTENER).is_err() {
            let _ = self.epoll.add_number(self.listen, LISTENER);
        }
    }

    /// Whether connections wait here: then no thread should block on a
    /// single connection.
    pub fn busy(&self) -> bool {
        self.parked.load(Ordering::Relaxed) > 0
    }

    pub fn is_for(&self, listen: RawFd) -> bool {
        self.listen == listen && self.fork_generation == watch::fork_generation()
    }

    fn work(&self) -> Work {
        let parked = self.parked.load(Ordering::Relaxed);
        if parked == 0 {
            return Work::default();
        }
        let queued = lock(&self.inner).ready.len();
        #[cfg(target_os = "linux")]
        let fired = sys::readable_now(sys::AsFd::as_fd(&self.epoll));
        #[cfg(not(target_os = "linux"))]
        let fired = false;
        Work {
            parked,
            ready: queued > 0 || fired,
            queued,
        }
    }

    fn count(&self, delta: isize) {
        if delta > 0 {
            self.parked.fetch_add(delta as usize, Ordering::Relaxed);
            WAITING_TOTAL.fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            self.parked.fetch_sub((-delta) as usize, Ordering::Relaxed);
            WAITING_TOTAL.fetch_sub((-delta) as usize, Ordering::Relaxed);
        }
    }

    /// Parks a connection. At the waiting limit the oldest idle kept-alive
    /// connection (of this room) is closed first; if none is left, this
    /// connection is closed (refused).
    pub fn park(&self, mut parked: Parked) {
        // A connection parked for the first time enters the epoll set,
        // outside the lock (the descriptor is still ours), and stays there:
        // its later parks make no system call.
        let first = parked.token == 0;
        if first {
            parked.token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.register(&parked.fd, parked.token) {
                drop(parked);
                config::log(format_args!("connection dropped: cannot wait for it: {e}"));
                return;
            }
        }
        let token = parked.token;
        let mut evicted = Vec::new();
        let mut refused = None;
        {
            let mut st = lock(&self.inner);
            let max = limits().max_waiting();
            while WAITING_TOTAL.load(Ordering::Relaxed) >= max {
                let Some((t, n)) = st.idle.pop_front() else {
                    break;
                };
                if st.entries.get(&t).is_some_and(|(m, _)| *m == n) {
                    if let Some(p) = st.remove(t) {
                        st.early.remove(&t);
                        self.count(-1);
                        evicted.push(p);
                    }
                }
            }
            if WAITING_TOTAL.load(Ordering::Relaxed) >= max {
                st.early.remove(&token);
                refused = Some(parked);
            } else {
                st.parks += 1;
                let n = st.parks;
                if parked.is_idle() {
                    st.idle.push_back((token, n));
                }
                if st.early.remove(&token) {
                    st.ready.push_back(token);
                }
                st.entries.insert(token, (n, parked));
                self.count(1);
            }
        }
        if !evicted.is_empty() {
            let n = evicted.len();
            drop(evicted);
            log_closed(
                &format!(
                    "the oldest idle kept-alive connections, at the limit of {} waiting connections (LIBFCGI_MAX_WAITING_CONNS)",
                    limits().max_waiting()
                ),
                n,
            );
        }
        if let Some(p) = refused {
            drop(p);
            config::log(format_args!(
                "connection refused: {} connections already wait for a request (LIBFCGI_MAX_WAITING_CONNS)",
                limits().max_waiting()
            ));
        }
    }

    /// Puts `fd` in the epoll set for good, with `token`.
    #[cfg(target_os = "linux")]
    fn register(&self, fd: &OwnedFd, token: u64) -> io::Result<()> {
        self.epoll.add_edge(sys::AsFd::as_fd(fd), token)
    }

    #[cfg(not(target_os = "linux"))]
    fn register(&self, _fd: &OwnedFd, _token: u64) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    /// A connection that was parked once is being closed by the thread
    /// that holds it: out of the epoll set (its descriptor may live on a
    /// little, draining), and its pending event forgotten.
    pub fn forget(&self, fd: &OwnedFd, token: u64) {
        #[cfg(target_os = "linux")]
        let _ = self.epoll.remove(sys::AsFd::as_fd(fd));
        #[cfg(not(target_os = "linux"))]
        let _ = fd;
        lock(&self.inner).early.remove(&token);
    }

    /// Closes parked request heads past their deadline.
    fn expire(&self, now: u64) {
        let expired: Vec<Parked> = {
            let mut st = lock(&self.inner);
            // Idle entries taken or parked again since.
            let Rooms { idle, entries, .. } = &mut *st;
            idle.retain(|(t, n)| entries.get(t).is_some_and(|(m, _)| m == n));
            let late: Vec<u64> = st
                .entries
                .iter()
                .filter(|(_, (_, p))| p.deadline != 0 && p.deadline <= now)
                .map(|(&t, _)| t)
                .collect();
            late.into_iter()
                .filter_map(|t| {
                    st.early.remove(&t);
                    st.remove(t)
                })
                .collect()
        };
        if !expired.is_empty() {
            self.count(-(expired.len() as isize));
            let n = expired.len();
            drop(expired);
            log_closed(
                &format!(
                    "request head not complete within {} ms (LIBFCGI_HEAD_TIMEOUT)",
                    limits().head_timeout_ms()
                ),
                n,
            );
        }
    }

    /// A parked connection whose input has arrived, if one is queued.
    fn pop_ready(&self) -> Option<Parked> {
        let mut st = lock(&self.inner);
        while let Some(t) = st.ready.pop_front() {
            if let Some(p) = st.remove(t) {
                drop(st);
                self.count(-1);
                return Some(p);
            }
        }
        None
    }

    /// The descriptor a program's own event loop waits on for "a request
    /// may be ready here": the room's epoll set, readable when a new
    /// connection is pending on the listening socket, when input arrives
    /// on a parked connection, and after a shutdown request (its event is
    /// put in the set here). It stays open for the life of the process
    /// (in a `fork()` child, the child's room has another).
    #[cfg(target_os = "linux")]
    pub fn ready_fd(&self) -> io::Result<RawFd> {
        // Watched once it worked: a call that failed (EMFILE) leaves it for
        // the next call to try again.
        let mut watched = self
            .shutdown_watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*watched {
            let fd = shutdown_event()?;
            self.epoll.add_level_number(fd, SHUTDOWN)?;
            *watched = true;
        }
        Ok(sys::AsRawFd::as_raw_fd(&sys::AsFd::as_fd(&self.epoll)))
    }

    #[cfg(not(target_os = "linux"))]
    pub fn ready_fd(&self) -> io::Result<RawFd> {
        Err(io::Error::from_raw_os_error(crate::sys::code::UNSUPPORTED))
    }

    /// Like [`Room::take`], for a caller that gives up at `deadline` (a
    /// [`watch::now_ms`] value; one already past: look once, never
    /// block): never [`Taken::Accept`], the thread waits in the room even
    /// while nothing is parked (the listening socket is in the set), and
    /// takes one event per wait, so the set stays readable while more
    /// work is there. [`Taken::TimedOut`] when nothing came in time.
    pub fn take_until(
        &self,
        listen: BorrowedFd<'_>,
        fail_on_intr: bool,
        deadline: u64,
    ) -> io::Result<Taken> {
        loop {
            if listen::shutdown_pending() {
                return Ok(self.drain());
            }
            if let Some(p) = self.pop_ready() {
                return Ok(Taken::Parked(p));
            }
            let remaining = deadline.saturating_sub(watch::now_ms());
            let timeout = i32::try_from(remaining).unwrap_or(i32::MAX);
            match self.wait_events(fail_on_intr, timeout, 1)? {
                Some(true) => {
                    // A connection another thread (or process) accepted
                    // first leaves this accept blocked: the watcher ends
                    // it at the deadline (Ok(None), as for a rescue).
                    let accepted = listen::accept_one_by(
                        listen,
                        fail_on_intr,
                        config::config(),
                        deadline.max(1),
                    );
                    if let Some(taken) = self.after_accept(accepted)? {
                        return Ok(taken);
                    }
                }
                Some(false) if remaining == 0 => {
                    return Ok(self.pop_ready().map_or(Taken::TimedOut, Taken::Parked));
                }
                Some(false) => {}
                None if listen::shutdown_pending() => {}
                None => return Ok(Taken::Interrupted),
            }
        }
    }

    /// Waits for work: a parked connection with input, or a new connection.
    /// Returns [`Taken::Accept`] when nothing is parked any more.
    /// At a shutdown: a parked connection whose input has arrived, if
    /// any; else every parked connection is closed and the wait ends
    /// ([`Room::drain`]).
    pub fn take(&self, listen: BorrowedFd<'_>, fail_on_intr: bool) -> io::Result<Taken> {
        loop {
            if listen::shutdown_pending() {
                return Ok(self.drain());
            }
            if let Some(p) = self.pop_ready() {
                return Ok(Taken::Parked(p));
            }
            if !self.busy() {
                return Ok(Taken::Accept);
            }
            match self.wait_events(fail_on_intr, -1, 8)? {
                Some(true) => {
                    // The listening socket fired: accept one connection,
                    // then let the next waiter see the socket again.
                    let accepted = listen::accept_one(listen, fail_on_intr, config::config());
                    if let Some(taken) = self.after_accept(accepted)? {
                        return Ok(taken);
                    }
                }
                Some(false) => {}
                None if listen::shutdown_pending() => {}
                None => return Ok(Taken::Interrupted),
            }
        }
    }

    /// At a shutdown, without blocking: a parked connection whose input
    /// has arrived (a request the web server sent before it saw the
    /// shutdown: it is served), or else [`Taken::Interrupted`] after
    /// closing every parked connection (idle ones, so the web server drops
    /// them from its cache rather than send them a request nobody would
    /// read; and request heads that did not come whole). No new connection
    /// is accepted: those in the listen queue stay there for another
    /// process that shares the socket.
    fn drain(&self) -> Taken {
        #[cfg(target_os = "linux")]
        loop {
            if let Some(p) = self.pop_ready() {
                return Taken::Parked(p);
            }
            let mut tokens = [0u64; 8];
            let n = self.epoll.wait(&mut tokens, 0).unwrap_or(0);
            let mut st = lock(&self.inner);
            let mut found = false;
            for &t in &tokens[..n] {
                if st.entries.contains_key(&t) {
                    st.ready.push_back(t);
                    found = true;
                } else if t != LISTENER && t != SHUTDOWN {
                    st.early.insert(t);
                }
            }
            // (The shutdown event stays readable: it alone ends the look.)
            if !found {
                break;
            }
        }
        let closed: Vec<Parked> = {
            let mut st = lock(&self.inner);
            st.idle.clear();
            st.ready.clear();
            st.entries.drain().map(|(_, (_, p))| p).collect()
        };
        if !closed.is_empty() {
            self.count(-(closed.len() as isize));
            let heads = closed.iter().filter(|p| !p.is_idle()).count();
            drop(closed);
            if heads > 0 {
                log_closed("shutdown, request head not complete", heads);
            }
        }
        Taken::Interrupted
    }

    /// One epoll wait of at most `timeout_ms` (-1: no limit) for at most
    /// `most` events. `Some(true)`: the listening socket fired (it must be
    /// armed again); `Some(false)`: fired connections were queued, or the
    /// wait timed out or was interrupted to look again; `None`:
    /// interrupted for good.
    #[cfg(target_os = "linux")]
    fn wait_events(
        &self,
        fail_on_intr: bool,
        timeout_ms: i32,
        most: usize,
    ) -> io::Result<Option<bool>> {
        let mut tokens = [0u64; 8];
        // Alone, take a few events at once; with other waiters, two each
        // (one to serve now, one queued for whoever is free first).
        let others = self.waiters.fetch_add(1, Ordering::SeqCst);
        let want = if others > 0 { 2 } else { tokens.len() }.min(most);
        let waiting = Waiting::enter(State::Pool, self.listen, 0);
        if listen::shutdown_pending() {
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            return Ok(None);
        }
        let r = self.epoll.wait(&mut tokens[..want], timeout_ms);
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        let n = match r {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                let ours = waiting.nudged() != watch::Nudge::None;
                if listen::shutdown_pending() || (fail_on_intr && !ours) {
                    return Ok(None);
                }
                return Ok(Some(false));
            }
            Err(e) => return Err(e),
        };
        let mut listener = false;
        let mut shutdown = false;
        let mut st = lock(&self.inner);
        // Every event is kept, even after the shutdown's: a connection's
        // edge-triggered event comes once, and the drain serves it.
        for &t in &tokens[..n] {
            if t == SHUTDOWN {
                shutdown |= listen::shutdown_pending();
            } else if t == LISTENER {
                listener = true;
            } else if st.entries.contains_key(&t) {
                st.ready.push_back(t);
            } else {
                st.early.insert(t);
            }
        }
        if shutdown {
            return Ok(None);
        }
        Ok(Some(listener))
    }

    #[cfg(not(target_os = "linux"))]
    fn wait_events(&self, _: bool, _: i32, _: usize) -> io::Result<Option<bool>> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}
