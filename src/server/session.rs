//! The request engine: one worker's connection and the request on it.
//!
//! A [`Session`] is what an `FCGX_Request` is in C: it accepts a connection
//! (or keeps the previous one alive), reads `FCGI_BEGIN_REQUEST` and the
//! parameters, serves the request's streams, and at `finish` sends what is
//! left of STDERR and STDOUT with `FCGI_END_REQUEST` in one write.
//!
//! Everything the peer sends is checked here: records of other request
//! ids never touch this request, management records are answered on the
//! way, and any fault ends the connection (never the process).

use super::config::{self, Config, config, limits};
use super::error::StreamError;
use super::linger;
use super::listen;
use super::output::OutputStream;
use super::reader::{InputBuffer, ReadError, Wait};
use super::waiting::{self, Parked, Room, Taken};
use super::watch::{self, Nudge, State, Waiting};
use crate::protocol::record::{push_record, unknown_type_record};
use crate::protocol::{
    self, BeginRequest, EndRequest, EnvEntry, Header, PairError, kind, role, status,
};
use crate::sys::{self, Peer};
use crate::sys::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;
use thiserror::Error;

/// Memory the input streams copy into: an initialised `[u8]`, or a
/// `[MaybeUninit<u8>]` over a C caller's buffer that may hold no values
/// yet, which is only ever written, never read.
pub trait ByteSink {
    /// How many bytes fit.
    fn room(&self) -> usize;
    /// Copies `src` to offset `at`; `at + src.len() <= self.room()`.
    fn put(&mut self, at: usize, src: &[u8]);
}

impl ByteSink for [u8] {
    fn room(&self) -> usize {
        self.len()
    }

    fn put(&mut self, at: usize, src: &[u8]) {
        self[at..at + src.len()].copy_from_slice(src);
    }
}

impl ByteSink for [MaybeUninit<u8>] {
    fn room(&self) -> usize {
        self.len()
    }

    fn put(&mut self, at: usize, src: &[u8]) {
        for (d, &s) in self[at..at + src.len()].iter_mut().zip(src) {
            d.write(s);
        }
    }
}

/// Bytes buffered for STDOUT before they are sent: a response up to 256
/// KiB leaves in one write at `finish`, in records of 64 KiB; a larger one
/// in writes of 256 KiB. Memory beyond the first 64 KiB is taken only by a
/// request object that has written more than that without a flush, and
/// kept for its next requests.
pub const STDOUT_BUFFER: usize = super::output::MAX_BUFFERED_RECORDS * super::output::RECORD_CHUNK;
/// Bytes buffered for STDERR.
pub const STDERR_BUFFER: usize = 8184;

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

/// Why a connection was given up before a request could be delivered.
#[derive(Debug, Error)]
enum HeadError {
    #[error("{0}")]
    Read(#[from] ReadError),
    #[error("write failed: {0}")]
    Write(io::Error),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("bad FCGI_PARAMS: {0}")]
    Params(#[from] PairError),
    #[error("FCGI_PARAMS larger than {0} bytes (LIBFCGI_MAX_PARAMS_SIZE)")]
    ParamsTooLarge(usize),
    /// A signal or a shutdown request ended the wait for the next request
    /// on a kept-alive connection (the connection stays open).
    #[error("interrupted")]
    Interrupted,
    #[error("request head not complete in time (LIBFCGI_HEAD_TIMEOUT)")]
    HeadTimeout,
    /// A shutdown came while the head was under way, and the rest did
    /// not arrive in [`watch::SHUTDOWN_HEAD_GRACE_MS`].
    #[error("request head not complete within the shutdown grace (1 s)")]
    ShutdownGrace,
}

/// The input side of the current request.
#[derive(Debug, Default)]
pub struct InputState {
    /// Record type being read: FCGI_STDIN, then FCGI_DATA for filters.
    kind: u8,
    /// Unread content of the current record, inside the input buffer.
    pending: Range<usize>,
    pushback: Option<u8>,
    stdin_done: bool,
    data_done: bool,
    /// End of stream reached, stream closed, or an error met.
    pub closed: bool,
    /// The first error met (sticky until cleared).
    pub error: Option<StreamError>,
}

impl InputState {
    fn reset(&mut self) {
        *self = InputState {
            kind: kind::STDIN,
            ..InputState::default()
        };
    }

    fn fail(&mut self, e: StreamError) {
        self.error.get_or_insert(e);
        self.closed = true;
        self.pending = 0..0;
        self.pushback = None;
    }
}

struct Connection {
    fd: OwnedFd,
    /// Set by `FCGX_Detach`: close without the graceful drain.
    detached: bool,
    /// The peer closed its side.
    peer_eof: bool,
    /// No request has been served on it yet.
    fresh: bool,
    /// [`watch::now_ms`] by which the request head being read must be
    /// complete (0: none started).
    deadline: u64,
    /// Its token in the room's epoll set once it has been parked (0: never).
    token: u64,
}

/// What a connection parked in the middle of a request head brings back
/// to the thread that takes it: its unread input and the head so far.
pub struct Carry {
    input: InputBuffer,
    /// Where the parameters start in `env` once BEGIN_REQUEST was read.
    params_start: Option<usize>,
    id: u16,
    role: u16,
    keep_conn: bool,
    env: Vec<u8>,
}

/// Input buffers of connections that were parked with input, kept for the
/// next park (a few; the rest are freed).
static SPARE_BUFFERS: std::sync::Mutex<Vec<InputBuffer>> = std::sync::Mutex::new(Vec::new());
const MAX_SPARE_BUFFERS: usize = 16;

fn spare_buffer() -> InputBuffer {
    let spare = SPARE_BUFFERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .pop();
    spare.unwrap_or_default()
}

fn give_back_buffer(mut b: InputBuffer) {
    b.clear();
    let mut spare = SPARE_BUFFERS.lock().unwrap_or_else(|p| p.into_inner());
    if spare.len() < MAX_SPARE_BUFFERS {
        spare.push(b);
    }
}

/// How a request head ended.
enum Head {
    /// Complete: a request is being served.
    Ready,
    /// The connection ended without a request (closed, or not to be kept).
    Ended,
    /// Not complete and not to be waited for by this thread: park it.
    Park,
}

/// Why [`Session::head_record`] returned no record.
enum HeadWait {
    Park,
    Failed(HeadError),
}

impl From<HeadError> for HeadWait {
    fn from(e: HeadError) -> Self {
        HeadWait::Failed(e)
    }
}

impl From<ReadError> for HeadWait {
    fn from(e: ReadError) -> Self {
        HeadWait::Failed(HeadError::Read(e))
    }
}

/// One worker's connection and request (the engine behind `FCGX_Request`).
pub struct Session {
    conn: Option<Connection>,
    input_buf: InputBuffer,
    active: bool,
    end_sent: bool,
    id: u16,
    role: u16,
    keep_conn: bool,
    app_status: i32,
    pub input: InputState,
    pub stdout: OutputStream,
    pub stderr: OutputStream,
    /// `FCGI_ROLE=...` and NUL, then the parameters: as received while
    /// they arrive, then rewritten in place into `NAME=value` strings.
    env: Vec<u8>,
    /// Where each parameter's string lies in `env`.
    env_entries: Vec<EnvEntry>,
    scratch: Vec<u8>,
    /// The listening socket whose TCP_NODELAY was checked.
    nodelay_checked: Option<RawFd>,
    /// Where `FCGI_PARAMS` start in `env` while a head is being read.
    params_start: Option<usize>,
    /// The room where this session's connections wait without a thread.
    room: Option<Arc<Room>>,
    /// [`waiting::rooms_made`] when this session last looked for its room.
    rooms_seen: usize,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

fn read_error_to_stream(e: &ReadError) -> StreamError {
    match e {
        ReadError::Io(e) => StreamError::from_io(e),
        ReadError::BadVersion(_) => StreamError::UnsupportedVersion,
        ReadError::Closed | ReadError::Truncated | ReadError::WouldBlock => StreamError::Protocol,
    }
}

impl Session {
    pub fn new() -> Session {
        Session {
            conn: None,
            input_buf: InputBuffer::new(),
            active: false,
            end_sent: false,
            id: 0,
            role: 0,
            keep_conn: false,
            app_status: 0,
            input: InputState {
                kind: kind::STDIN,
                closed: true,
                ..InputState::default()
            },
            stdout: OutputStream::new(kind::STDOUT, STDOUT_BUFFER),
            stderr: OutputStream::new(kind::STDERR, STDERR_BUFFER),
            env: Vec::new(),
            env_entries: Vec::new(),
            scratch: Vec::new(),
            nodelay_checked: None,
            params_start: None,
            room: None,
            rooms_seen: 0,
        }
    }

    /// Whether a request is being served (between `accept` and `finish`).
    pub fn is_active(&self) -> bool {
        self.active
    }

    pub fn request_id(&self) -> u16 {
        self.id
    }

    pub fn role(&self) -> u16 {
        self.role
    }

    /// The FCGI_KEEP_CONN flag of the current (or last) request.
    pub fn keep_conn(&self) -> bool {
        self.keep_conn
    }

    /// The connection's descriptor, if one is open.
    pub fn connection_fd(&self) -> Option<RawFd> {
        self.conn.as_ref().map(|c| c.fd.as_raw_fd())
    }

    /// Marks the connection to be closed without the graceful drain (`FCGX_Detach`).
    pub fn set_detached(&mut self, detached: bool) {
        if let Some(c) = self.conn.as_mut() {
            c.detached = detached;
        }
    }

    /// The exit status that `finish` will send in FCGI_END_REQUEST.
    pub fn set_exit_status(&mut self, status: i32) {
        self.app_status = status;
    }

    pub fn exit_status(&self) -> i32 {
        self.app_status
    }

    /// The request's parameters as sent, in arrival order.
    pub fn params(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.env_entries
            .iter()
            .map(|e| (e.name(&self.env), e.value(&self.env)))
    }

    /// The value of the first parameter called `name`.
    pub fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The environment block and where each parameter's string lies in
    /// it: the block starts with `FCGI_ROLE=...`, then holds `NAME=value`
    /// for each parameter, each NUL-terminated.
    pub fn env_block(&mut self) -> (&mut [u8], &[EnvEntry]) {
        (&mut self.env, &self.env_entries)
    }

    // ---- accepting -------------------------------------------------------

    /// Finishes the current request, then waits for the next one: on the
    /// kept-alive connection if there is one, on a parked connection whose
    /// input has arrived, or on a new connection from `listen`. Connections
    /// that fail before a request is complete are logged and dropped; the
    /// wait goes on. Errors come only from accept (EINTR at a shutdown).
    ///
    /// While every connection has a thread, this blocks on the kept-alive
    /// connection or in `accept()`, as libfcgi did. When connections wait
    /// without a thread (see [`super::waiting`]), no thread blocks on one
    /// connection: one whose next request has not arrived is parked, and
    /// the thread takes whatever work is ready.
    pub fn accept(&mut self, listen: BorrowedFd<'_>, fail_on_intr: bool) -> io::Result<()> {
        self.finish();
        watch::start();
        let cfg = config();
        let lfd = listen.as_raw_fd();
        if self.room.as_ref().is_some_and(|r| !r.is_for(lfd)) {
            self.room = None;
        }
        if self.room.is_none() && waiting::rooms_made() != self.rooms_seen {
            // Another thread made a room: connections may wait there.
            self.rooms_seen = waiting::rooms_made();
            self.room = waiting::existing_room(lfd);
        }
        // The connection of the request just finished, kept alive: its
        // next request has almost never arrived yet.
        let mut kept = self.conn.is_some();
        loop {
            if self.conn.is_none() {
                self.obtain_connection(listen, fail_on_intr, cfg)?;
                kept = false;
            }
            // At a shutdown a head under way is read on, never parked.
            let pooled =
                self.room.as_ref().is_some_and(|r| r.busy()) && !listen::shutdown_pending();
            let head = self.read_request_head(cfg, lfd, fail_on_intr, pooled, kept);
            kept = false;
            match head {
                Ok(Head::Ready) => return Ok(()),
                Ok(Head::Ended) => self.close_connection(),
                Ok(Head::Park) => self.park(lfd),
                // A shutdown, and no request on this connection: close it
                // now (the web server drops it from its cache instead of
                // sending it a request nobody reads), then serve what
                // waits in the room; the accept ends with EINTR.
                Err(HeadError::Interrupted) if listen::shutdown_pending() => {
                    self.close_connection();
                }
                Err(HeadError::Interrupted) => {
                    return Err(io::Error::from_raw_os_error(sys::code::EINTR));
                }
                Err(e) => {
                    config::log(format_args!("connection dropped: {e}"));
                    self.close_connection();
                }
            }
        }
    }

    /// [`Session::accept`] that gives up after `timeout_ms` milliseconds
    /// (0: only takes what is ready now, never blocks): `Ok(false)` when
    /// no request was complete by then. No thread blocks on one connection
    /// here: the kept-alive connection of the request just finished, and
    /// connections whose request head has not arrived whole, wait in the
    /// listening socket's room (its epoll set: see [`Session::ready_fd`]),
    /// where a later call takes them. Errors as for [`Session::accept`]
    /// (EINTR at a shutdown); where connections cannot wait without a
    /// thread (not Linux), [`sys::code::UNSUPPORTED`] before anything is
    /// done.
    pub fn accept_until(
        &mut self,
        listen: BorrowedFd<'_>,
        fail_on_intr: bool,
        timeout_ms: u64,
    ) -> io::Result<bool> {
        let lfd = listen.as_raw_fd();
        let room = self.room_for(lfd)?;
        self.finish();
        watch::start();
        let deadline = watch::now_ms().saturating_add(timeout_ms);
        let cfg = config();
        let mut kept = self.conn.is_some();
        loop {
            if self.conn.is_none() {
                match room.take_until(listen, fail_on_intr, deadline)? {
                    Taken::Parked(p) => self.resume(p),
                    Taken::New(a) => self.adopt(listen, a),
                    // (Accept comes only from take.)
                    Taken::TimedOut | Taken::Accept => return Ok(false),
                    Taken::Interrupted => {
                        return Err(io::Error::from_raw_os_error(sys::code::EINTR));
                    }
                }
                kept = false;
            }
            match self.read_request_head(cfg, lfd, fail_on_intr, true, kept) {
                Ok(Head::Ready) => return Ok(true),
                Ok(Head::Ended) => self.close_connection(),
                Ok(Head::Park) => self.park(lfd),
                Err(HeadError::Interrupted) => {
                    return Err(io::Error::from_raw_os_error(sys::code::EINTR));
                }
                Err(e) => {
                    config::log(format_args!("connection dropped: {e}"));
                    self.close_connection();
                }
            }
            kept = false;
        }
    }

    /// The descriptor an event loop waits on for "a request may be ready"
    /// on `listen` (see [`Room::ready_fd`]); then [`Session::accept_until`]
    /// with 0 takes it without blocking. [`sys::code::UNSUPPORTED`] where
    /// connections cannot wait without a thread (not Linux).
    pub fn ready_fd(&mut self, listen: BorrowedFd<'_>) -> io::Result<RawFd> {
        // The watcher's start registers the fork-child hook: a program that
        // calls this before its first accept and then forks must give its
        // children rooms (epoll sets, shutdown events) of their own.
        watch::start();
        self.room_for(listen.as_raw_fd())?.ready_fd()
    }

    /// The room of listening socket `lfd`, made if there is none yet:
    /// [`sys::code::UNSUPPORTED`] where connections cannot wait without a
    /// thread (not Linux), or why its epoll set could not be made (EMFILE).
    fn room_for(&mut self, lfd: RawFd) -> io::Result<Arc<Room>> {
        if self.room.as_ref().is_some_and(|r| !r.is_for(lfd)) {
            self.room = None;
        }
        match &self.room {
            Some(room) => Ok(room.clone()),
            None => {
                let room = waiting::room(lfd)?;
                self.room = Some(room.clone());
                Ok(room)
            }
        }
    }

    // ---- connections the caller accepted -----------------------------------

    /// Serves requests from a connection the caller accepted itself (from
    /// its own event loop, or one end of a `socketpair`): finishes the
    /// current request and closes its connection, takes `fd`, and reads
    /// the first request head from it. `Ok(true)`: a request is ready.
    /// `Ok(false)`: the connection ended without a complete head; it is
    /// closed, and a peer that broke the protocol is logged. The wait
    /// blocks (the head timeout applies): such a connection never waits
    /// without a thread. Errors: EINTR once a shutdown is requested.
    pub fn accept_connection(&mut self, fd: OwnedFd) -> io::Result<bool> {
        self.finish();
        self.close_connection();
        self.take_connection(fd);
        self.next_on_connection()
    }

    /// Finishes the current request, then reads the next request head on
    /// the same connection, if the peer kept it open (FCGI_KEEP_CONN).
    /// `Ok(false)`: there is no connection any more, or it ended without a
    /// complete head (as for [`Session::accept_connection`]).
    pub fn next_on_connection(&mut self) -> io::Result<bool> {
        self.finish();
        if self.conn.is_none() {
            return Ok(false);
        }
        watch::start();
        loop {
            match self.read_request_head(config(), -1, false, false, false) {
                Ok(Head::Ready) => return Ok(true),
                Ok(Head::Ended) => {
                    self.close_connection();
                    return Ok(false);
                }
                // A rescue meant for threads that serve a listener: this
                // connection has no room to wait in, so wait on.
                Ok(Head::Park) => {}
                Err(HeadError::Interrupted) => {
                    return Err(io::Error::from_raw_os_error(sys::code::EINTR));
                }
                Err(e) => {
                    config::log(format_args!("connection dropped: {e}"));
                    self.close_connection();
                    return Ok(false);
                }
            }
        }
    }

    /// Gets a connection: a parked one with input, or a new one.
    fn obtain_connection(
        &mut self,
        listen: BorrowedFd<'_>,
        fail_on_intr: bool,
        cfg: &Config,
    ) -> io::Result<()> {
        let lfd = listen.as_raw_fd();
        // A thread without a connection takes work anyway: a request to
        // give up its connection is void.
        watch::take_rescue();
        loop {
            if let Some(room) = self.room.clone().filter(|r| r.busy()) {
                match room.take(listen, fail_on_intr)? {
                    Taken::Parked(p) => {
                        self.resume(p);
                        return Ok(());
                    }
                    Taken::New(a) => {
                        self.adopt(listen, a);
                        return Ok(());
                    }
                    Taken::Interrupted => {
                        return Err(io::Error::from_raw_os_error(sys::code::EINTR));
                    }
                    // (TimedOut comes only from take_until.)
                    Taken::Accept | Taken::TimedOut => {}
                }
            }
            match listen::accept_one(listen, fail_on_intr, cfg)? {
                Some(a) => {
                    self.adopt(listen, a);
                    return Ok(());
                }
                // Parked connections need this thread: see the room.
                None => self.room = self.room.take().or_else(|| waiting::room(lfd).ok()),
            }
        }
    }

    /// Takes a newly accepted connection.
    fn adopt(&mut self, listen: BorrowedFd<'_>, a: listen::Accepted) {
        if let Peer::Ip(_) = a.peer {
            if self.nodelay_checked != Some(listen.as_raw_fd()) {
                // Once per request object and listening socket:
                // connections inherit TCP_NODELAY from the
                // listener, so set it there (and on this first
                // connection) unless it is set already.
                if !sys::nodelay(listen).unwrap_or(false) {
                    let _ = sys::set_nodelay(listen);
                    let _ = sys::set_nodelay(a.fd.as_fd());
                }
                self.nodelay_checked = Some(listen.as_raw_fd());
            }
        }
        self.take_connection(a.fd);
    }

    /// Makes `fd` the session's connection, new: no request served yet.
    fn take_connection(&mut self, fd: OwnedFd) {
        self.input_buf.clear();
        self.params_start = None;
        let timeout = limits().head_timeout_ms();
        self.conn = Some(Connection {
            fd,
            detached: false,
            peer_eof: false,
            fresh: true,
            deadline: if timeout > 0 {
                watch::now_ms().saturating_add(timeout)
            } else {
                0
            },
            token: 0,
        });
    }

    /// Takes a parked connection back, with what it had sent of a head.
    fn resume(&mut self, p: Parked) {
        match p.carry {
            Some(carry) => {
                let Carry {
                    input,
                    params_start,
                    id,
                    role,
                    keep_conn,
                    env,
                } = *carry;
                give_back_buffer(std::mem::replace(&mut self.input_buf, input));
                self.params_start = params_start;
                self.id = id;
                self.role = role;
                self.keep_conn = keep_conn;
                self.env_entries.clear(); // they point into `env`
                self.env = env;
            }
            None => {
                self.input_buf.clear();
                self.params_start = None;
            }
        }
        // It was taken because input arrived: read before parking it again.
        self.input_buf.expect_input();
        self.conn = Some(Connection {
            fd: p.fd,
            detached: false,
            peer_eof: false,
            fresh: p.fresh,
            deadline: p.deadline,
            token: p.token,
        });
    }

    /// Parks the connection (it waits without a thread), with what it has
    /// sent of a request head. Without a room (no epoll), it is closed.
    fn park(&mut self, lfd: RawFd) {
        let room = match self.room_for(lfd) {
            Ok(room) => room,
            Err(e) => {
                config::log(format_args!(
                    "connection dropped: it cannot wait without a thread ({e})"
                ));
                self.close_connection();
                return;
            }
        };
        let mid_head = self.input_buf.buffered() > 0 || self.params_start.is_some();
        let fresh = self.conn.as_ref().is_some_and(|c| c.fresh);
        if mid_head || fresh {
            // A head that has begun has a deadline, parked or not.
            self.head_deadline();
        }
        let Some(conn) = self.conn.take() else { return };
        let carry = mid_head.then(|| {
            let carry = Box::new(Carry {
                input: std::mem::replace(&mut self.input_buf, spare_buffer()),
                params_start: self.params_start.take(),
                id: self.id,
                role: self.role,
                keep_conn: self.keep_conn,
                env: std::mem::take(&mut self.env),
            });
            self.env_entries.clear(); // they pointed into `env`
            carry
        });
        let deadline = if mid_head || conn.fresh {
            conn.deadline
        } else {
            0
        };
        room.park(Parked {
            fd: conn.fd,
            fresh: conn.fresh,
            deadline,
            carry,
            token: conn.token,
        });
    }

    fn conn_fd(&self) -> Option<BorrowedFd<'_>> {
        self.conn.as_ref().map(|c| c.fd.as_fd())
    }

    fn next_record(&mut self, wait: Wait) -> Result<(Header, Range<usize>), ReadError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(ReadError::Closed);
        };
        let r = self.input_buf.next_record(conn.fd.as_fd(), wait);
        if matches!(r, Err(ReadError::Closed | ReadError::Truncated)) {
            conn.peer_eof = true;
        }
        r
    }

    fn send(&self, bytes: &[u8]) -> io::Result<()> {
        match self.conn_fd() {
            Some(fd) => watch::send(fd, bytes),
            None => Err(io::Error::from_raw_os_error(sys::code::EBADF)),
        }
    }

    /// Answers a management record (request id 0).
    fn answer_management(&mut self, h: Header, content: Range<usize>) -> io::Result<()> {
        if h.kind == kind::GET_VALUES {
            let mut reply = std::mem::take(&mut self.scratch);
            protocol::get_values_reply(
                self.input_buf.get(content),
                &config().capabilities,
                &mut reply,
            );
            let mut rec = Vec::with_capacity(reply.len() + 8);
            push_record(&mut rec, kind::GET_VALUES_RESULT, 0, &reply);
            self.scratch = reply;
            self.send(&rec)
        } else {
            self.send(&unknown_type_record(h.kind))
        }
    }

    /// A record for a request id other than the active one: a new
    /// BEGIN_REQUEST is refused with CANT_MPX_CONN, anything else ignored.
    fn answer_other_id(&mut self, h: Header) -> io::Result<()> {
        if h.kind == kind::BEGIN_REQUEST {
            let end = EndRequest {
                app_status: 0,
                protocol_status: status::CANT_MPX_CONN,
            };
            self.send(&end.record(h.request_id))?;
        }
        Ok(())
    }

    /// The connection's head deadline, started now if it has none yet.
    fn head_deadline(&mut self) -> u64 {
        let timeout = limits().head_timeout_ms();
        match self.conn.as_mut() {
            Some(c) if c.deadline == 0 && timeout > 0 => {
                c.deadline = watch::now_ms().saturating_add(timeout);
                c.deadline
            }
            Some(c) => c.deadline,
            None => 0,
        }
    }

    /// The next record of a request head. `pooled`: never block (a record
    /// that has not arrived parks the connection). Otherwise block, as a
    /// wait the watcher can end: between two requests (`Idle`: ended by a
    /// shutdown too, or by a signal with `fail_on_intr`), or inside a head
    /// (`Head`, with its deadline).
    fn head_record(
        &mut self,
        lfd: RawFd,
        fail_on_intr: bool,
        pooled: bool,
        kept: bool,
    ) -> Result<(Header, Range<usize>), HeadWait> {
        loop {
            if self.input_buf.has_record() {
                return Ok(self.next_record(Wait::Block)?);
            }
            let fresh = self.conn.as_ref().is_some_and(|c| c.fresh);
            let idle = !fresh && self.params_start.is_none() && self.input_buf.buffered() == 0;
            // (A connection whose last read may have left input in the
            // socket is read once more first: its watch in the room is
            // edge-triggered and would not see input that is already there.)
            if idle && kept && self.input_buf.drained() && watch::take_rescue() {
                // Work waits that no thread takes: leave this connection.
                return Err(HeadWait::Park);
            }
            if pooled {
                if idle && kept && self.input_buf.drained() {
                    // Just served: its next request has almost never
                    // arrived yet, park it without a read.
                    return Err(HeadWait::Park);
                }
                return match self.next_record(Wait::NoWait) {
                    Err(ReadError::WouldBlock) => Err(HeadWait::Park),
                    other => Ok(other?),
                };
            }
            let (state, deadline) = if idle {
                (State::Idle, 0)
            } else {
                (State::Head, self.head_deadline())
            };
            let waiting = Waiting::enter(state, lfd, deadline);
            // After the slot says we wait: a shutdown requested before
            // this point found nobody to wake. At a shutdown nothing new
            // is waited for, but what has arrived is served: an idle
            // connection is looked at once without blocking (a request
            // the web server sent before it saw the shutdown); a head
            // under way (or a new connection's first) is read on, until
            // the watcher ends the wait (see `watch::SHUTDOWN_HEAD_GRACE_MS`).
            if idle && listen::shutdown_pending() {
                match self.next_record(Wait::NoWait) {
                    // Part of a record arrived: a head under way now.
                    Err(ReadError::WouldBlock) if self.input_buf.buffered() > 0 => continue,
                    Err(ReadError::WouldBlock) => return Err(HeadError::Interrupted.into()),
                    other => return Ok(other?),
                }
            }
            // One read per wait: once part of a head has arrived, the rest
            // is waited for as a head, with its deadline.
            match self.read_more(Wait::Interruptible) {
                Ok(true) => {}
                Ok(false) => return Ok(self.next_record(Wait::Block)?), // end of file: the error
                // Only an interrupted wait takes the nudge: a rescue left
                // for this thread while its read succeeded stays for the
                // next time it would wait on this connection.
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    match waiting.nudged() {
                        Nudge::Rescue => return Err(HeadWait::Park),
                        Nudge::Timeout if listen::shutdown_pending() => {
                            return Err(HeadError::ShutdownGrace.into());
                        }
                        Nudge::Timeout => return Err(HeadError::HeadTimeout.into()),
                        // A shutdown: looked at again above (a head is
                        // read on only while the watcher can end that
                        // wait: it has a wake signal and is running). A
                        // signal of the program's: a partial head stays
                        // with the request object and the next accept
                        // goes on with it.
                        Nudge::None => {
                            let shutdown = listen::shutdown_pending();
                            let watched = watch::wake_signal() != 0 && watch::running();
                            if (fail_on_intr && !shutdown) || (shutdown && !watched) {
                                return Err(HeadError::Interrupted.into());
                            }
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One read on the connection (see [`InputBuffer::read_more`]).
    fn read_more(&mut self, wait: Wait) -> Result<bool, ReadError> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(ReadError::Closed);
        };
        let r = self.input_buf.read_more(conn.fd.as_fd(), wait);
        if matches!(r, Ok(false)) {
            conn.peer_eof = true;
        }
        r
    }

    /// Reads BEGIN_REQUEST and the parameters, from where the connection
    /// left off (a parked connection brings its partial head back).
    fn read_request_head(
        &mut self,
        cfg: &Config,
        lfd: RawFd,
        fail_on_intr: bool,
        pooled: bool,
        kept: bool,
    ) -> Result<Head, HeadError> {
        loop {
            let (h, r) = match self.head_record(lfd, fail_on_intr, pooled, kept) {
                Ok(rec) => rec,
                Err(HeadWait::Park) => return Ok(Head::Park),
                Err(HeadWait::Failed(HeadError::Read(ReadError::Closed)))
                    if self.params_start.is_none() =>
                {
                    return Ok(Head::Ended);
                }
                Err(HeadWait::Failed(e)) => return Err(e),
            };
            if h.is_management() {
                self.answer_management(h, r).map_err(HeadError::Write)?;
                continue;
            }
            let Some(params_start) = self.params_start else {
                // Any other record is left over from a finished request:
                // its id is inactive.
                if h.kind == kind::BEGIN_REQUEST && !self.begin_request(h, r)? {
                    return Ok(Head::Ended);
                }
                continue;
            };
            if h.request_id != self.id {
                self.answer_other_id(h).map_err(HeadError::Write)?;
                continue;
            }
            if let Some(head) = self.head_request_record(cfg, h, r, params_start)? {
                return Ok(head);
            }
        }
    }

    /// A record of the request whose head is being read (after its
    /// BEGIN_REQUEST, before the end of its FCGI_PARAMS): parameters, their
    /// end (the request is ready), or an abort. `None`: the head goes on.
    fn head_request_record(
        &mut self,
        cfg: &Config,
        h: Header,
        r: Range<usize>,
        params_start: usize,
    ) -> Result<Option<Head>, HeadError> {
        match h.kind {
            kind::PARAMS if r.is_empty() => {
                self.start_request(params_start)?;
                Ok(Some(Head::Ready))
            }
            kind::PARAMS => {
                if self.env.len() - params_start + r.len() > cfg.max_params_size {
                    return Err(HeadError::ParamsTooLarge(cfg.max_params_size));
                }
                self.env.extend_from_slice(self.input_buf.get(r));
                Ok(None)
            }
            kind::ABORT_REQUEST => {
                let end = EndRequest {
                    app_status: 0,
                    protocol_status: status::REQUEST_COMPLETE,
                };
                self.send(&end.record(self.id)).map_err(HeadError::Write)?;
                self.params_start = None;
                Ok((!self.keep_conn).then_some(Head::Ended))
            }
            _ => Err(HeadError::Protocol(
                "record of the request before the end of FCGI_PARAMS",
            )),
        }
    }

    /// The end of FCGI_PARAMS: indexes the parameters that start at
    /// `params_start` in `env` and makes the request active, with fresh
    /// streams.
    fn start_request(&mut self, params_start: usize) -> Result<(), HeadError> {
        self.params_start = None;
        protocol::pairs_to_env(
            &mut self.env,
            params_start,
            &mut self.env_entries,
            limits().max_params(),
        )?;
        if let Some(c) = self.conn.as_mut() {
            c.fresh = false;
            c.deadline = 0;
        }
        self.input.reset();
        self.stdout.reset();
        self.stdout.set_capacity(config::stdout_buffer());
        self.stderr.reset();
        self.stderr.set_capacity(STDERR_BUFFER);
        self.app_status = 0;
        self.end_sent = false;
        self.active = true;
        Ok(())
    }

    /// Starts a request at its BEGIN_REQUEST record. `Ok(false)`: refused
    /// (unknown role) and the connection is not to be kept.
    fn begin_request(&mut self, h: Header, r: Range<usize>) -> Result<bool, HeadError> {
        let Some(begin) = BeginRequest::decode(self.input_buf.get(r)) else {
            return Err(HeadError::Protocol(
                "FCGI_BEGIN_REQUEST body is not 8 bytes",
            ));
        };
        if role::name(begin.role).is_none() {
            let end = EndRequest {
                app_status: 0,
                protocol_status: status::UNKNOWN_ROLE,
            };
            self.send(&end.record(h.request_id))
                .map_err(HeadError::Write)?;
            config::log(format_args!(
                "request with unknown role {} refused",
                begin.role
            ));
            return Ok(begin.keep_conn());
        }
        self.id = h.request_id;
        self.role = begin.role;
        self.keep_conn = begin.keep_conn();
        self.env.clear();
        self.env_entries.clear(); // they point into `env`
        self.env.extend_from_slice(b"FCGI_ROLE=");
        self.env
            .extend_from_slice(role::name(self.role).unwrap_or("").as_bytes());
        self.env.push(0);
        self.params_start = Some(self.env.len());
        self.head_deadline();
        Ok(true)
    }

    // ---- input -----------------------------------------------------------

    fn note_end_of_input(&mut self, h: &Header) {
        if h.request_id == self.id && h.content_length == 0 {
            match h.kind {
                kind::STDIN => self.input.stdin_done = true,
                kind::DATA => self.input.data_done = true,
                _ => {}
            }
        }
    }

    /// The peer has sent every stream of the request.
    fn input_complete(&self) -> bool {
        self.input.stdin_done && (self.role != role::FILTER || self.input.data_done)
    }

    /// Gets the next record of the stream being read. `Ok(false)` at its end.
    fn next_input_record(&mut self) -> Result<bool, StreamError> {
        loop {
            let (h, r) = self.next_stream_record()?;
            if h.is_management() {
                self.answer_management(h, r)
                    .map_err(|e| StreamError::from_io(&e))?;
                continue;
            }
            if h.request_id != self.id {
                self.answer_other_id(h)
                    .map_err(|e| StreamError::from_io(&e))?;
                continue;
            }
            self.note_end_of_input(&h);
            match h.kind {
                k if k == self.input.kind => {
                    if r.is_empty() {
                        return Ok(false);
                    }
                    self.input.pending = r;
                    return Ok(true);
                }
                kind::ABORT_REQUEST => return Err(StreamError::Protocol),
                // DATA before the end of STDIN.
                kind::DATA if !self.input.stdin_done => return Err(StreamError::Protocol),
                // STDIN left unread before a switch to DATA is skipped.
                _ => {}
            }
        }
    }

    /// The next record while a request is served: a wait for its stdin
    /// that fails with ETIMEDOUT after `LIBFCGI_STDIN_TIMEOUT` without a byte.
    fn next_stream_record(&mut self) -> Result<(Header, Range<usize>), StreamError> {
        loop {
            if self.input_buf.has_record() {
                return self
                    .next_record(Wait::Block)
                    .map_err(|e| read_error_to_stream(&e));
            }
            // One read per wait: a body that keeps coming, however slowly,
            // is never taken for a stalled one.
            let waiting = Waiting::enter(State::Stdin, -1, 0);
            match self.read_more(Wait::Interruptible) {
                Ok(true) => {}
                Ok(false) => {
                    // End of file: the error that goes with it.
                    return self
                        .next_record(Wait::Block)
                        .map_err(|e| read_error_to_stream(&e));
                }
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {
                    if waiting.nudged() == Nudge::Timeout {
                        config::log(format_args!(
                            "request stdin stalled for more than {} ms (LIBFCGI_STDIN_TIMEOUT)",
                            limits().stdin_timeout_ms()
                        ));
                        return Err(StreamError::Os(sys::code::ETIMEDOUT));
                    }
                }
                Err(e) => return Err(read_error_to_stream(&e)),
            }
        }
    }

    /// Reads at least one byte (blocking until a record arrives) and at most
    /// `buf.len()`. 0 at end of stream or on error (see `input.error`).
    /// `buf` may be memory that is not initialised (see [`ByteSink`]).
    pub fn read_some<B: ByteSink + ?Sized>(&mut self, buf: &mut B) -> usize {
        self.read_some_at(buf, 0, buf.room())
    }

    /// [`Session::read_some`] into `buf[at..end]`.
    fn read_some_at<B: ByteSink + ?Sized>(&mut self, buf: &mut B, at: usize, end: usize) -> usize {
        if at >= end || !self.active {
            return 0;
        }
        if let Some(b) = self.input.pushback.take() {
            buf.put(at, &[b]);
            return 1;
        }
        if self.input.closed {
            return 0;
        }
        if self.input.pending.is_empty() {
            match self.next_input_record() {
                Ok(true) => {}
                Ok(false) => {
                    self.input.closed = true;
                    return 0;
                }
                Err(e) => {
                    self.input.fail(e);
                    return 0;
                }
            }
        }
        let p = self.input.pending.clone();
        let n = p.len().min(end - at);
        buf.put(at, self.input_buf.get(p.start..p.start + n));
        self.input.pending.start += n;
        n
    }

    /// Reads until `buf` is full or the stream ends (`FCGX_GetStr`).
    pub fn read_full<B: ByteSink + ?Sized>(&mut self, buf: &mut B) -> usize {
        let mut n = 0;
        while n < buf.room() {
            let got = self.read_some_at(buf, n, buf.room());
            if got == 0 {
                break;
            }
            n += got;
        }
        n
    }

    /// Reads up to `buf.len()` bytes, stopping after the first `\n` (which is
    /// stored), or at end of stream (`FCGX_GetLine` without the NUL).
    pub fn read_line<B: ByteSink + ?Sized>(&mut self, buf: &mut B) -> usize {
        let mut n = 0;
        while n < buf.room() {
            if self.input.pushback.is_none() && self.input.pending.is_empty() {
                // Let read_some fetch the next record.
                let mut one = [0u8];
                if self.read_some(&mut one[..]) == 0 {
                    break;
                }
                buf.put(n, &one);
                n += 1;
                if one[0] == b'\n' {
                    break;
                }
                continue;
            }
            if let Some(b) = self.input.pushback.take() {
                buf.put(n, &[b]);
                n += 1;
                if b == b'\n' {
                    break;
                }
                continue;
            }
            let p = self.input.pending.clone();
            let avail = self.input_buf.get(p.clone());
            let want = avail.len().min(buf.room() - n);
            let (take, newline) = match avail[..want].iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (want, false),
            };
            buf.put(n, &avail[..take]);
            self.input.pending.start += take;
            n += take;
            if newline {
                break;
            }
        }
        n
    }

    /// Pushes one byte back (`FCGX_UnGetChar`): one byte deep, refused on a
    /// closed stream.
    pub fn unget(&mut self, byte: u8) -> bool {
        if !self.active || self.input.closed || self.input.pushback.is_some() {
            return false;
        }
        self.input.pushback = Some(byte);
        true
    }

    /// Switches the input to FCGI_DATA (`FCGX_StartFilterData`): only for a
    /// FILTER request whose FCGI_STDIN has been read to the end.
    pub fn start_filter_data(&mut self) -> Result<(), StreamError> {
        let at_stdin_end = self.input.kind == kind::STDIN
            && self.input.closed
            && self.input.error.is_none()
            && self.input.stdin_done
            && self.input.pushback.is_none();
        if !self.active || self.role != role::FILTER || !at_stdin_end {
            self.input.fail(StreamError::CallSeq);
            return Err(StreamError::CallSeq);
        }
        self.input.kind = kind::DATA;
        self.input.closed = false;
        Ok(())
    }

    /// Closes the input stream (`FCGX_FClose` on `in`).
    pub fn close_input(&mut self) {
        self.input.closed = true;
        self.input.pending = 0..0;
        self.input.pushback = None;
    }

    // ---- output ----------------------------------------------------------

    fn stream_mut(&mut self, which: Output) -> &mut OutputStream {
        match which {
            Output::Stdout => &mut self.stdout,
            Output::Stderr => &mut self.stderr,
        }
    }

    /// Writes to STDOUT or STDERR (buffered; large writes go out at once).
    pub fn write(&mut self, which: Output, data: &[u8]) -> Result<(), StreamError> {
        if !self.active {
            return Err(StreamError::CallSeq);
        }
        let id = self.id;
        let Some(conn) = self.conn.as_ref() else {
            return Err(StreamError::Os(sys::code::EBADF));
        };
        let stream = match which {
            Output::Stdout => &mut self.stdout,
            Output::Stderr => &mut self.stderr,
        };
        stream.write(conn.fd.as_fd(), id, data)
    }

    /// Sets how many bytes a stream of the current request buffers (0:
    /// each write is sent at once), until the request ends; the next
    /// request starts with the process's setting again. What is buffered
    /// beyond the new size is sent now.
    pub fn set_buffer(&mut self, which: Output, bytes: usize) -> Result<(), StreamError> {
        if !self.active {
            return Err(StreamError::CallSeq);
        }
        let stream = self.stream_mut(which);
        stream.set_capacity(bytes);
        if stream.pending() > stream.capacity() {
            return self.flush(which);
        }
        Ok(())
    }

    /// Sends what is buffered on a stream as a record now (`FCGX_FFlush`).
    pub fn flush(&mut self, which: Output) -> Result<(), StreamError> {
        if !self.active {
            return Ok(());
        }
        let id = self.id;
        let Some(conn) = self.conn.as_ref() else {
            return Err(StreamError::Os(sys::code::EBADF));
        };
        let stream = match which {
            Output::Stdout => &mut self.stdout,
            Output::Stderr => &mut self.stderr,
        };
        stream.flush(conn.fd.as_fd(), id)
    }

    /// Closes an output stream (`FCGX_FClose`): sends what is buffered and
    /// the end-of-stream record; when it is the last open writer, also
    /// FCGI_END_REQUEST.
    pub fn close_output(&mut self, which: Output) -> Result<(), StreamError> {
        if !self.active {
            return self.stream_mut(which).error.map_or(Ok(()), Err);
        }
        self.close_writers(which == Output::Stderr, which == Output::Stdout);
        self.stream_mut(which).error.map_or(Ok(()), Err)
    }

    /// Closes the named open writers with one gathered write: STDERR's rest,
    /// STDOUT's rest, then FCGI_END_REQUEST if no writer is left open.
    fn close_writers(&mut self, err: bool, out: bool) {
        let close_err = err && !self.stderr.closed;
        let close_out = out && !self.stdout.closed;
        let last = (self.stderr.closed || close_err)
            && (self.stdout.closed || close_out)
            && !self.end_sent;
        let id = self.id;
        let end = EndRequest {
            app_status: self.app_status as u32,
            protocol_status: status::REQUEST_COMPLETE,
        }
        .record(id);
        let Some(conn) = self.conn.as_ref() else {
            let e = io::Error::from_raw_os_error(sys::code::EBADF);
            self.stderr.sent(close_err.then_some(&e));
            self.stdout.sent(close_out.then_some(&e));
            return;
        };
        let tail: &[u8] = if last { &end } else { &[] };
        let e: &[u8] = if close_err {
            self.stderr.frame_final(id, true, &[])
        } else {
            &[]
        };
        // END_REQUEST rides in STDOUT's buffer when STDOUT closes now.
        let (o, tail): (&[u8], &[u8]) = if close_out {
            (self.stdout.frame_final(id, true, tail), &[])
        } else {
            (&[], tail)
        };
        let result = watch::send_vectored(
            conn.fd.as_fd(),
            &[IoSlice::new(e), IoSlice::new(o), IoSlice::new(tail)],
        );
        let err_ref = result.as_ref().err();
        if close_err {
            self.stderr.sent(err_ref);
        }
        if close_out {
            self.stdout.sent(err_ref);
        }
        if last {
            self.end_sent = true;
        }
    }

    /// Ends the request (`FCGX_Finish_r`): closes STDERR and STDOUT, sends
    /// FCGI_END_REQUEST with the exit status, and keeps the connection only
    /// if the peer asked for it and nothing went wrong. The exit status is
    /// reset for the next request.
    pub fn finish(&mut self) {
        if !self.active {
            return;
        }
        self.close_writers(true, true);
        self.active = false;
        self.app_status = 0;
        let healthy = self.stdout.error.is_none()
            && self.stderr.error.is_none()
            && !matches!(self.input.error, Some(e) if e != StreamError::CallSeq);
        self.close_input();
        if !(self.keep_conn && healthy) {
            self.close_connection();
        }
    }

    /// Drops the request without sending anything more (`FCGX_Free`), and
    /// the connection too if `close`.
    pub fn release(&mut self, close: bool) {
        self.active = false;
        self.close_input();
        self.stdout.sent(None);
        self.stderr.sent(None);
        if close {
            self.close_connection();
        }
    }

    /// Whether the peer is done sending, reading whatever has arrived
    /// without waiting for more.
    fn peer_finished(&mut self) -> bool {
        // Bounded: a peer that keeps sending is drained by the linger thread.
        for _ in 0..64 {
            if self.input_complete() || self.conn.as_ref().is_none_or(|c| c.peer_eof) {
                return true;
            }
            match self.next_record(Wait::NoWait) {
                Ok((h, _)) => self.note_end_of_input(&h),
                Err(ReadError::Closed) => return true,
                Err(_) => return false,
            }
        }
        false
    }

    /// Closes the connection. If the peer may still be sending, the close is
    /// graceful (half-close, drain in the background) so that no reset can
    /// destroy the response.
    fn close_connection(&mut self) {
        let done = self.peer_finished();
        self.input_buf.clear();
        let Some(conn) = self.conn.take() else { return };
        if conn.token != 0 {
            if let Some(room) = &self.room {
                room.forget(&conn.fd, conn.token);
            }
        }
        if conn.detached || done {
            drop(conn.fd);
        } else {
            linger::close_gracefully(conn.fd);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.finish();
        self.close_connection();
    }
}

/// `std::io::Read` over the request's input stream.
pub struct Stdin<'a>(pub &'a mut Session);

impl io::Read for Stdin<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read_some(buf);
        match (n, self.0.input.error) {
            (0, Some(e)) if !buf.is_empty() => Err(io::Error::other(e)),
            _ => Ok(n),
        }
    }
}

/// `std::io::Write` over STDOUT or STDERR.
pub struct Writer<'a>(pub &'a mut Session, pub Output);

impl io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(self.1, buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush(self.1).map_err(io::Error::other)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    /// BEGIN_REQUEST (responder, no keep-alive) and the empty PARAMS record.
    const REQUEST_HEAD: [u8; 24] = [
        1, 1, 0, 1, 0, 8, 0, 0, /* */ 0, 1, 0, 0, 0, 0, 0, 0, /* */ 1, 4, 0, 1, 0, 0, 0,
        0,
    ];

    fn serve_one(session: &mut Session, listener: &TcpListener) -> bool {
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(&REQUEST_HEAD).unwrap();
        session.accept(listener.as_fd(), false).unwrap();
        let nodelay = sys::nodelay(session.conn_fd().unwrap()).unwrap();
        session.finish();
        nodelay
    }

    #[test]
    fn connections_from_a_listener_made_elsewhere_get_no_nagle_delay() {
        // A listening socket the library did not create has Nagle's
        // algorithm on: the first connection gets TCP_NODELAY set, the
        // listener too, so later connections inherit it.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!sys::nodelay(listener.as_fd()).unwrap());
        let mut session = Session::new();
        assert!(serve_one(&mut session, &listener));
        assert!(sys::nodelay(listener.as_fd()).unwrap());
        assert!(serve_one(&mut session, &listener));
        // Another request object on a new listener checks again.
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(serve_one(&mut Session::new(), &other));
    }

    #[test]
    fn a_connection_the_caller_accepted_serves_a_keep_alive_series() {
        use std::io::Read;
        use std::os::unix::net::UnixStream;
        let (mut peer, ours) = UnixStream::pair().unwrap();
        let mut wire = Vec::new();
        for id in [1u8, 2] {
            // BEGIN_REQUEST (responder, keep-alive), a parameter, STDIN "hi".
            wire.extend_from_slice(&[1, 1, 0, id, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]);
            wire.extend_from_slice(&[1, 4, 0, id, 0, 5, 0, 0, 1, 2, b'X', b'y', b'=']);
            wire.extend_from_slice(&[1, 4, 0, id, 0, 0, 0, 0]);
            wire.extend_from_slice(&[1, 5, 0, id, 0, 2, 0, 0, b'h', b'i']);
            wire.extend_from_slice(&[1, 5, 0, id, 0, 0, 0, 0]);
        }
        peer.write_all(&wire).unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let mut session = Session::new();
        assert!(session.accept_connection(OwnedFd::from(ours)).unwrap());
        for id in [1u16, 2] {
            assert_eq!(session.request_id(), id);
            assert_eq!(session.param(b"X"), Some(&b"y="[..]));
            let mut body = Vec::new();
            Stdin(&mut session).read_to_end(&mut body).unwrap();
            assert_eq!(body, b"hi");
            Writer(&mut session, Output::Stdout)
                .write_all(b"ok")
                .unwrap();
            let more = session.next_on_connection().unwrap();
            assert_eq!(more, id == 1);
        }
        let mut answer = Vec::new();
        peer.read_to_end(&mut answer).unwrap();
        // Each request: STDOUT "ok" (no padding), the empty STDOUT, END_REQUEST.
        assert_eq!(answer.len(), 2 * (8 + 2 + 8 + 16), "{answer:?}");
        assert!(!session.next_on_connection().unwrap());
    }

    #[test]
    fn listeners_the_library_opens_have_nodelay_already() {
        // A free port (":0" would be read as a Unix socket path).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let fd = listen::BindAddr::parse(&format!("127.0.0.1:{port}"))
            .listen(8)
            .unwrap();
        assert!(sys::nodelay(fd.as_fd()).unwrap());
    }

    #[test]
    fn params_of_a_request_that_failed_half_way_are_gone() {
        // Request 1 (kept alive) has a long parameter; request 2 on the same
        // connection breaks off inside FCGI_PARAMS (STDIN comes first), so
        // the connection is dropped, and accept then fails. The parameters
        // must not point into the environment block request 2 rewrote.
        use crate::protocol::{BeginRequest, push_pair};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let begin = |id| {
            let mut out = Vec::new();
            let b = BeginRequest { role: 1, flags: 1 }.encode();
            push_record(&mut out, kind::BEGIN_REQUEST, id, &b);
            out
        };
        let mut out = begin(1);
        let mut p = Vec::new();
        push_pair(&mut p, b"LONG", &[b'v'; 1000]);
        push_record(&mut out, kind::PARAMS, 1, &p);
        push_record(&mut out, kind::PARAMS, 1, &[]);
        push_record(&mut out, kind::STDIN, 1, &[]);
        client.write_all(&out).unwrap();
        let mut s = Session::new();
        s.accept(listener.as_fd(), false).unwrap();
        assert_eq!(s.param(b"LONG").map(<[u8]>::len), Some(1000));
        let mut out = begin(2);
        push_record(&mut out, kind::PARAMS, 2, &[1, 1]);
        push_record(&mut out, kind::STDIN, 2, b"x");
        client.write_all(&out).unwrap();
        // A connected socket is not a listener: accept fails at once.
        let (not_listening, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(s.accept(not_listening.as_fd(), false).is_err());
        assert_eq!(s.params().count(), 0);
        assert_eq!(s.param(b"LONG"), None);
    }
}
