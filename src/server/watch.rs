//! Threads waiting inside the library, and the one watcher thread that
//! wakes them when they must stop waiting.
//!
//! Every thread that calls into the engine claims a [`Slot`] once. Before
//! each blocking system call it writes there what it waits for ([`State`])
//! and on which listening socket: a few atomic stores, no system call, so
//! the request path costs what it cost before. The watcher looks at the
//! slots every [`TICK_MS`] and sends the library's wake signal (an empty
//! handler without `SA_RESTART`: the blocked call returns EINTR) to a
//! thread that must give up its wait, after leaving the reason in its slot
//! ([`Nudge`]):
//!
//! * **rescue**: the thread waits on one connection (between two requests
//!   of a kept-alive connection, or for a request head that has not come
//!   whole) while work that needs a thread is waiting: a connection in the
//!   listen queue that no thread is accepting, or a parked connection with
//!   input that no thread is waiting for. The thread parks its connection
//!   (see [`super::waiting`]) and takes the work;
//! * **timeout**: a request head not complete by its deadline, a read of a
//!   request's stdin or a write that has been blocked longer than its limit.
//!
//! A shutdown request wakes every waiting thread the same way.
//!
//! A wait shorter than a tick is never interrupted, and a thread is
//! signalled only while its slot says it is still in the same wait (the
//! slot's sequence number has not moved), so application code is not
//! interrupted in practice; a signal that arrives just before the thread
//! blocks is sent again at the next tick.

use super::config::{self, limits};
use super::waiting;
use crate::sys::{self, BorrowedFd, RawFd};
use std::cell::Cell;
use std::collections::HashMap;
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the watcher looks at the slots and the parked connections.
pub const TICK_MS: u64 = 10;
/// A wait on one connection shorter than this is never interrupted to
/// rescue work: two ticks.
pub const RESCUE_AFTER_MS: u64 = 2 * TICK_MS;

/// At a shutdown, how long a request head under way (or a new
/// connection's first) may still take: the web server sent it before it
/// saw the shutdown, so it is served; a peer that sends nothing does not
/// hold the shutdown longer than this.
pub const SHUTDOWN_HEAD_GRACE_MS: u64 = 1000;

/// Most threads with a slot; more threads still work, but cannot be
/// rescued, timed out or woken by a shutdown.
const MAX_THREADS: usize = 1024;

/// What a thread is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not waiting in the library (serving a request, or not in a call).
    Busy = 0,
    /// Blocked in `accept()` on the listening socket.
    Accept = 1,
    /// Blocked reading a kept-alive connection between two requests.
    Idle = 2,
    /// Blocked reading a request head (BEGIN_REQUEST to the end of PARAMS).
    Head = 3,
    /// Waiting for parked connections or the listening socket (epoll).
    Pool = 4,
    /// Blocked reading a request's stdin.
    Stdin = 5,
    /// Blocked writing a response.
    Write = 6,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Accept,
            2 => State::Idle,
            3 => State::Head,
            4 => State::Pool,
            5 => State::Stdin,
            6 => State::Write,
            _ => State::Busy,
        }
    }
}

/// Why the watcher interrupted a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Nudge {
    None = 0,
    /// Give up this connection (park it) and take the work that waits.
    Rescue = 1,
    /// The wait went past its limit.
    Timeout = 2,
}

/// One thread's slot (its own cache line).
#[repr(align(64))]
struct Slot {
    /// 0: free; else the kernel id of the thread that claimed it.
    tid: AtomicI32,
    state: AtomicU8,
    /// Why the watcher interrupted the thread: a [`Nudge`] in the low
    /// byte, the `seq` of the wait it was meant for above it.
    nudge: AtomicU64,
    /// Bumped at every wait entered: the watcher knows a wait is the same
    /// one it saw at the last tick.
    seq: AtomicU32,
    /// The listening socket of the request object (-1: none).
    listen: AtomicI32,
    /// [`now_ms`] by which a request head must be complete, or an accept
    /// with a timeout must end (0: none).
    deadline: AtomicU64,
}

static SLOTS: [Slot; MAX_THREADS] = [const {
    Slot {
        tid: AtomicI32::new(0),
        state: AtomicU8::new(0),
        nudge: AtomicU64::new(0),
        seq: AtomicU32::new(0),
        listen: AtomicI32::new(-1),
        deadline: AtomicU64::new(0),
    }
}; MAX_THREADS];

/// The library's wake signal (0: none could be installed).
static WAKE_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Bumped in the child after every `fork()`: thread ids and the watcher
/// thread are the parent's.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

extern "C" fn forked() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
    // The parent's other threads do not exist here: their slots stay
    // claimed but never count as waiting (nor may be signalled).
    for s in &SLOTS {
        s.state.store(State::Busy as u8, Ordering::SeqCst);
        s.listen.store(-1, Ordering::SeqCst);
        s.nudge.store(0, Ordering::SeqCst);
    }
}

/// How many times this process is a `fork()` child of the one that first
/// used the library (state copied from the parent is dropped when it changes).
pub fn fork_generation() -> u32 {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// Milliseconds on the process's monotonic clock (from its first use).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// The slot a thread claimed on its first wait, as of fork generation
/// `generation`; released when the thread ends.
struct Claim {
    index: Option<usize>,
    generation: Cell<u32>,
}

impl Claim {
    fn new() -> Claim {
        start();
        let tid = sys::gettid();
        let index = SLOTS.iter().position(|s| {
            s.tid
                .compare_exchange(0, tid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        if let Some(i) = index {
            HIGHEST_CLAIMED.fetch_max(i + 1, Ordering::SeqCst);
        }
        let sig = WAKE_SIGNAL.load(Ordering::SeqCst);
        if sig != 0 {
            sys::unblock_signal(sig);
        }
        Claim {
            index,
            generation: Cell::new(FORK_GENERATION.load(Ordering::SeqCst)),
        }
    }

    /// The slot, its thread id refreshed after a fork.
    fn slot(&self) -> Option<&'static Slot> {
        let slot = &SLOTS[self.index?];
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        if self.generation.get() != generation {
            self.generation.set(generation);
            slot.tid.store(sys::gettid(), Ordering::SeqCst);
            start();
        }
        Some(slot)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(i) = self.index {
            SLOTS[i].state.store(State::Busy as u8, Ordering::SeqCst);
            SLOTS[i].tid.store(0, Ordering::SeqCst);
        }
    }
}

thread_local! {
    static CLAIM: Claim = Claim::new();
}

/// A wait registered in the thread's slot; back to [`State::Busy`] when
/// dropped.
pub struct Waiting {
    slot: Option<&'static Slot>,
    /// The slot's `seq` for this wait.
    seq: Cell<u32>,
}

impl Waiting {
    /// Registers a wait of kind `state` for a request object listening on
    /// `listen`, with a head deadline (`now_ms` value, 0 for none).
    pub fn enter(state: State, listen: RawFd, deadline: u64) -> Waiting {
        let slot = CLAIM.try_with(|c| c.slot()).ok().flatten();
        let mut seq = 0;
        if let Some(s) = slot {
            s.listen.store(listen, Ordering::Relaxed);
            s.deadline.store(deadline, Ordering::Relaxed);
            seq = s.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            s.state.store(state as u8, Ordering::SeqCst);
        }
        Waiting {
            slot,
            seq: Cell::new(seq),
        }
    }

    /// The wait goes on, but it made progress (a write sent part of its
    /// bytes): its time is counted again from now.
    pub fn progressed(&self) {
        if let Some(s) = self.slot {
            self.seq
                .set(s.seq.fetch_add(1, Ordering::Relaxed).wrapping_add(1));
        }
    }

    /// Takes the reason the watcher left for interrupting this wait, if it
    /// was meant for this wait (signalled for it); a rescue left for the
    /// thread without a signal stays for [`take_rescue`]. An EINTR with no
    /// nudge of its own came from a signal of the program's.
    pub fn nudged(&self) -> Nudge {
        let Some(s) = self.slot else {
            return Nudge::None;
        };
        let v = s.nudge.load(Ordering::SeqCst);
        if (v >> 8) as u32 != self.seq.get()
            || s.nudge
                .compare_exchange(v, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return Nudge::None;
        }
        match v & 0xff {
            1 => Nudge::Rescue,
            2 => Nudge::Timeout,
            _ => Nudge::None,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(s) = self.slot {
            s.state.store(State::Busy as u8, Ordering::SeqCst);
        }
    }
}

/// Whether the watcher asked this thread to give up its connection for
/// work that no thread takes (consumed). One atomic load when not.
pub fn take_rescue() -> bool {
    CLAIM
        .try_with(|c| {
            let s = &SLOTS[c.index?];
            (s.nudge.load(Ordering::Relaxed) & 0xff == Nudge::Rescue as u64)
                .then(|| s.nudge.swap(0, Ordering::SeqCst) & 0xff == Nudge::Rescue as u64)
        })
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Writes all of `bufs` to a connection; a write that stays blocked (no
/// byte taken by the peer) for longer than the write limit fails with
/// ETIMEDOUT (logged). A slow reader that keeps taking bytes is not cut.
pub fn send_vectored(fd: BorrowedFd<'_>, bufs: &[io::IoSlice<'_>]) -> io::Result<()> {
    let waiting = Waiting::enter(State::Write, -1, 0);
    sys::write_all_vectored_checked(
        fd,
        bufs,
        || match waiting.nudged() {
            Nudge::Timeout => {
                config::log(format_args!(
                    "write blocked for more than {} ms (LIBFCGI_WRITE_TIMEOUT): the peer does not read; connection given up",
                    limits().write_timeout_ms()
                ));
                Err(io::Error::from_raw_os_error(sys::code::ETIMEDOUT))
            }
            _ => Ok(()),
        },
        || waiting.progressed(),
    )
}

/// [`send_vectored`] with one buffer.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    send_vectored(fd, &[io::IoSlice::new(buf)])
}

// ---- waking --------------------------------------------------------------

/// Signals slot `s` (if it is still in the wait the caller saw).
fn signal(s: &Slot, sig: i32) {
    let tid = s.tid.load(Ordering::SeqCst);
    if tid > 0 && sig != 0 {
        sys::signal_thread(tid, sig);
    }
}

/// A signal that the shutdown handler may use when the wake signal is
/// missing (SIGUSR1 or SIGTERM with the library's handler; 0: none).
static SHUTDOWN_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Records that the library's shutdown handler is installed for `sig`.
pub fn set_shutdown_signal(sig: i32) {
    let _ = SHUTDOWN_SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// Interrupts every thread waiting for a request (in accept, between two
/// requests of a kept-alive connection, or for parked connections).
/// `fallback` is the signal to use if the library has no wake signal.
/// Async-signal-safe: atomics, `gettid` and `tgkill` only.
pub fn wake_all_waiting(fallback: i32) {
    let sig = match WAKE_SIGNAL.load(Ordering::SeqCst) {
        0 if fallback != 0 => fallback,
        0 => SHUTDOWN_SIGNAL.load(Ordering::SeqCst),
        s => s,
    };
    let me = sys::gettid();
    for s in &SLOTS {
        if waits_for_a_request(s) && s.tid.load(Ordering::SeqCst) != me {
            signal(s, sig);
        }
    }
}

/// The slot's thread waits for a request (in accept, on a connection
/// between or inside request heads, or for parked connections).
fn waits_for_a_request(s: &Slot) -> bool {
    matches!(
        State::from_u8(s.state.load(Ordering::SeqCst)),
        State::Accept | State::Idle | State::Head | State::Pool
    )
}

// ---- the watcher -----------------------------------------------------------

static STARTED: AtomicU32 = AtomicU32::new(u32::MAX);

/// Starts the watcher thread (once per process, again in a forked child)
/// and installs the wake signal. Cheap after the first call.
pub fn start() {
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    if STARTED.load(Ordering::Acquire) == generation {
        return;
    }
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if STARTED.load(Ordering::Acquire) == generation {
        return;
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sys::on_fork_child(forked);
        if let Some(sig) = sys::install_wake_signal() {
            WAKE_SIGNAL.store(sig, Ordering::SeqCst);
        }
    });
    if WAKE_SIGNAL.load(Ordering::SeqCst) == 0 {
        // Nothing can interrupt a wait: threads keep their connections
        // (as in libfcgi) and nothing is ever parked.
        return;
    }
    let spawned = sys::spawn_without_signals(|| {
        std::thread::Builder::new()
            .name("fcgi-watch".into())
            .spawn(move || watch(generation))
    });
    match spawned {
        Ok(_) => STARTED.store(generation, Ordering::Release),
        Err(e) => {
            // Tried again at the next accept; said once.
            static SAID: AtomicBool = AtomicBool::new(false);
            if !SAID.swap(true, Ordering::Relaxed) {
                config::log(format_args!(
                    "no watcher thread ({e}): waits are not timed out or ended by a shutdown's grace"
                ));
            }
        }
    }
}

/// The watcher runs in this process (it did not fail to start: then no
/// wait is ended by a deadline or the shutdown grace, see [`start`]).
pub fn running() -> bool {
    STARTED.load(Ordering::Acquire) == FORK_GENERATION.load(Ordering::Relaxed)
}

/// The wake signal, if the library has one (tests).
pub fn wake_signal() -> i32 {
    WAKE_SIGNAL.load(Ordering::SeqCst)
}

/// What the watcher remembers of a slot between two ticks.
#[derive(Clone, Copy, Default)]
struct Seen {
    seq: u32,
    state: u8,
    since: u64,
}

/// Set while a test wants the watcher to stop looking (never in normal use).
static PAUSED: AtomicBool = AtomicBool::new(false);

fn watch(generation: u32) {
    let mut mem = Memory {
        slots: vec![Seen::default(); MAX_THREADS],
        ..Memory::default()
    };
    let mut last_sweep = 0;
    loop {
        std::thread::sleep(Duration::from_millis(TICK_MS));
        if FORK_GENERATION.load(Ordering::Relaxed) != generation {
            return; // the parent's watcher, copied by fork: gone anyway
        }
        if PAUSED.load(Ordering::Relaxed) {
            continue;
        }
        let now = now_ms();
        if now - last_sweep >= 100 {
            last_sweep = now;
            waiting::sweep(now);
        }
        tick(now, &mut mem);
    }
}

/// One listening socket as the watcher sees it at a tick.
#[derive(Default)]
struct Listener {
    /// Threads that take new connections (accept, pool).
    accepting: usize,
    /// Threads in plain `accept()`.
    in_accept: usize,
    /// Threads waiting for parked connections: (slot index, seq).
    poolers: Vec<(usize, u32)>,
    /// Threads that could take work: (rank, since, slot index, seq); the
    /// lowest rank is the best choice.
    candidates: Vec<(u8, u64, usize, u32)>,
    /// Threads blocked on one connection for more than [`RESCUE_AFTER_MS`]:
    /// (slot index, seq).
    holders: Vec<(usize, u32)>,
}

/// What the watcher remembers between ticks.
#[derive(Default)]
struct Memory {
    slots: Vec<Seen>,
    /// When the watcher first saw the shutdown flag ([`now_ms`]; 0: not yet).
    shutdown_since: u64,
    /// Listening sockets seen with a connection nobody accepts, since when.
    unaccepted: HashMap<RawFd, u64>,
}

fn tick(now: u64, mem: &mut Memory) {
    let sig = WAKE_SIGNAL.load(Ordering::SeqCst);
    if sig == 0 {
        return;
    }
    let shutdown = super::listen::shutdown_pending();
    if shutdown {
        if mem.shutdown_since == 0 {
            mem.shutdown_since = now;
        }
        wake_for_shutdown(sig);
    }
    let listeners = survey(now, mem, sig);
    // At a shutdown no work is taken any more: connections in the listen
    // queue are left to the processes that share the socket, and parked
    // ones are taken by the threads that drain (see `Room::take`).
    if shutdown {
        return;
    }
    mem.unaccepted.retain(|fd, _| listeners.contains_key(fd));
    for (listen, l) in listeners {
        rescue_work(listen, l, now, mem, sig);
    }
}

/// A thread that checked the shutdown flag just before it blocked missed
/// the wake-up: sends it again, every tick, to each waiting thread.
/// A request head under way is not woken: it is read on (see
/// [`SHUTDOWN_HEAD_GRACE_MS`]).
fn wake_for_shutdown(sig: i32) {
    for s in &SLOTS[..claimed()] {
        if waits_for_a_request(s) && State::from_u8(s.state.load(Ordering::SeqCst)) != State::Head {
            let seq = s.seq.load(Ordering::SeqCst);
            nudge(s, Nudge::None, seq, sig);
        }
    }
}

/// Looks at every thread's slot: interrupts the waits past their limit,
/// and sorts the others by listening socket, into what each could do.
fn survey(now: u64, mem: &mut Memory, sig: i32) -> HashMap<RawFd, Listener> {
    let mut listeners: HashMap<RawFd, Listener> = HashMap::new();
    // At a shutdown, heads still under way after the grace are given up.
    let grace_over = mem.shutdown_since != 0 && now >= mem.shutdown_since + SHUTDOWN_HEAD_GRACE_MS;
    for (i, s) in SLOTS[..claimed()].iter().enumerate() {
        if s.tid.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let state = s.state.load(Ordering::SeqCst);
        let seq = s.seq.load(Ordering::SeqCst);
        let was = &mut mem.slots[i];
        if was.seq != seq || was.state != state {
            *was = Seen {
                seq,
                state,
                since: now,
            };
        }
        let age = now - was.since;
        let state = State::from_u8(state);
        if past_its_limit(s, state, age, now) || (state == State::Head && grace_over) {
            nudge(s, Nudge::Timeout, seq, sig);
            continue;
        }
        let listen = s.listen.load(Ordering::Relaxed);
        if listen < 0 {
            continue;
        }
        let l = listeners.entry(listen).or_default();
        let stuck = age >= RESCUE_AFTER_MS;
        match state {
            State::Accept => {
                l.accepting += 1;
                l.in_accept += 1;
                l.candidates.push((0, was.since, i, seq));
            }
            State::Pool => {
                l.accepting += 1;
                l.poolers.push((i, seq));
            }
            State::Idle | State::Head if stuck => {
                l.holders.push((i, seq));
                l.candidates.push((1, was.since, i, seq));
            }
            // Serving a request, or in a short wait on a connection (its
            // input is probably on the way): told, not interrupted; it
            // looks at its slot before it waits on its connection again.
            State::Busy | State::Idle | State::Head => l.candidates.push((2, was.since, i, 0)),
            _ => {}
        }
    }
    listeners
}

/// Whether the wait in slot `s`, in `state` for `age` ms, has passed its
/// limit: the request head's deadline, or the stdin or write timeout.
fn past_its_limit(s: &Slot, state: State, age: u64, now: u64) -> bool {
    let lim = limits();
    match state {
        // A request head's deadline; in accept, the caller's
        // (FCGX_AcceptTimeout_r), for an accept that lost the connection
        // to another thread.
        State::Head | State::Accept => {
            let d = s.deadline.load(Ordering::Relaxed);
            d != 0 && now >= d
        }
        State::Stdin => lim.stdin_timeout_ms() > 0 && age >= lim.stdin_timeout_ms(),
        State::Write => lim.write_timeout_ms() > 0 && age >= lim.write_timeout_ms(),
        _ => false,
    }
}

/// Sends threads of listening socket `listen` to work that waits: queued
/// and parked connections, and connections nobody accepts.
fn rescue_work(listen: RawFd, mut l: Listener, now: u64, mem: &mut Memory, sig: i32) {
    let room = waiting::parked_work(listen);
    // Connections queued by a thread that took several events, while
    // others sleep in the wait: let as many look as there is work.
    for &(i, seq) in l.poolers.iter().take(room.queued) {
        nudge(&SLOTS[i], Nudge::Rescue, seq, sig);
    }
    if room.parked > 0 {
        // Connections wait without a thread: no thread should sit on
        // one connection.
        for &(i, seq) in &l.holders {
            nudge(&SLOTS[i], Nudge::Rescue, seq, sig);
        }
    }
    let pending = sys::readable_now_number(listen);
    let long_pending = if pending {
        let since = *mem.unaccepted.entry(listen).or_insert(now);
        now - since >= TICK_MS
    } else {
        mem.unaccepted.remove(&listen);
        false
    };
    if long_pending && l.in_accept == 0 && !l.poolers.is_empty() {
        // Threads wait in the room but none saw the connection: the
        // room's listener is not armed (closed and opened again under
        // the same number, for one): arm it again.
        waiting::rearm_listener(listen);
    }
    // Work that no thread will take by itself: parked connections
    // with input and nobody waiting for them, or connections in the
    // listen queue and nobody accepting (for two ticks in a row).
    let parked_waiting = room.ready && l.poolers.is_empty();
    if parked_waiting || (long_pending && l.accepting == 0) {
        l.candidates.sort_unstable();
        if let Some(&(rank, _, i, seq)) = l.candidates.first() {
            // A thread serving a request is told, not interrupted.
            let s = if rank == 2 { 0 } else { sig };
            nudge(&SLOTS[i], Nudge::Rescue, seq, s);
        }
    }
}

/// Leaves `why` in the slot for its wait `seq`, then interrupts that wait
/// with `sig` (0: only leave it, the thread looks later), unless the thread
/// has moved on since the watcher looked: then no signal can reach the
/// program's own code (but for the few instructions between this check
/// and the signal). `Nudge::None` only signals (a shutdown wake-up).
fn nudge(s: &Slot, why: Nudge, seq: u32, sig: i32) {
    if why != Nudge::None {
        s.nudge
            .store((u64::from(seq) << 8) | why as u64, Ordering::SeqCst);
    }
    if sig != 0
        && s.seq.load(Ordering::SeqCst) == seq
        && State::from_u8(s.state.load(Ordering::SeqCst)) != State::Busy
    {
        signal(s, sig);
    }
}

/// Slots ever claimed: the watcher looks at these only.
fn claimed() -> usize {
    HIGHEST_CLAIMED.load(Ordering::Relaxed)
}

/// One past the highest slot index ever claimed.
static HIGHEST_CLAIMED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Stops or restarts the watcher's look at the slots (tests that check
/// what happens without it).
#[doc(hidden)]
pub fn pause_for_tests(paused: bool) {
    PAUSED.store(paused, Ordering::SeqCst);
}
