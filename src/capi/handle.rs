//! What hangs off the C structs: a request's [`Handle`] (pointed to by
//! `FCGX_Request.paramsPtr`) owns the engine session and the three
//! `FCGX_Stream`s; a stream created by `FCGX_CreateWriter` owns its own
//! writer. Each `FCGX_Stream` is the first field of a [`StreamBox`], so a
//! stream pointer leads back to its owner.

use super::types::{FCGX_Request, FCGX_Stream, Params};
use crate::server::output::OutputStream;
use crate::server::{Output, Session, StreamError};
use crate::sys;
use std::ffi::c_char;
use std::ptr::{NonNull, null_mut};

/// Which stream of a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Which {
    In,
    Out,
    Err,
}

impl Which {
    pub fn output(self) -> Option<Output> {
        match self {
            Which::In => None,
            Which::Out => Some(Output::Stdout),
            Which::Err => Some(Output::Stderr),
        }
    }
}

/// A writer made by `FCGX_CreateWriter`: records on a descriptor it does
/// not own, never an FCGI_END_REQUEST.
pub struct StandaloneWriter {
    pub fd: i32,
    pub request_id: u16,
    pub stream: OutputStream,
}

pub enum Owner {
    Request { handle: *mut Handle, which: Which },
    Writer(Box<StandaloneWriter>),
}

/// An `FCGX_Stream` and what it belongs to.
#[repr(C)]
pub struct StreamBox {
    pub c: FCGX_Stream,
    pub owner: Owner,
}

fn blank_stream(is_reader: bool) -> FCGX_Stream {
    FCGX_Stream {
        rdNext: null_mut(),
        wrNext: null_mut(),
        stop: null_mut(),
        stopUnget: null_mut(),
        isReader: is_reader as i32,
        isClosed: 1,
        wasFCloseCalled: 0,
        FCGI_errno: 0,
        fillBuffProc: None,
        emptyBuffProc: None,
        data: null_mut(),
    }
}

impl StreamBox {
    pub fn new(owner: Owner, is_reader: bool) -> StreamBox {
        StreamBox {
            c: blank_stream(is_reader),
            owner,
        }
    }

    /// Mirrors the engine's view of a stream into the C-visible fields.
    pub fn sync(&mut self, closed: bool, error: Option<StreamError>) {
        self.c.isClosed = closed as i32;
        self.c.FCGI_errno = error.map_or(0, StreamError::code);
    }
}

/// The private state of an `FCGX_Request`.
pub struct Handle {
    pub session: Session,
    pub streams: [StreamBox; 3],
    /// `envp`: pointers into the session's environment block, NULL-terminated.
    pub envp: Vec<*mut c_char>,
}

impl Handle {
    /// A new handle on the heap, as the raw pointer that becomes
    /// `paramsPtr`: the root from which every pointer into the handle is
    /// derived (the streams' back-pointers and the stream pointers handed
    /// to C), so that none of them is invalidated when a later call makes
    /// a short-lived `&mut Handle` from the same root. The back-pointers
    /// are written after the box is leaked, through the root itself.
    fn new_raw() -> NonNull<Handle> {
        let blank = |which| {
            let owner = Owner::Request {
                handle: null_mut(),
                which,
            };
            StreamBox::new(owner, which == Which::In)
        };
        let boxed = Box::new(Handle {
            session: Session::new(),
            streams: [blank(Which::In), blank(Which::Out), blank(Which::Err)],
            envp: Vec::new(),
        });
        let root = NonNull::from(Box::leak(boxed));
        for i in 0..3 {
            // SAFETY: root points at the handle just leaked, which nothing
            // else refers to yet; the borrow of the owner ends at once.
            let owner = unsafe { &mut (*root.as_ptr()).streams[i].owner };
            if let Owner::Request { handle, .. } = owner {
                *handle = root.as_ptr();
            }
        }
        root
    }

    /// Mirrors one stream's state into its C fields.
    pub fn sync_stream(&mut self, which: Which) {
        let s = &self.session;
        let (closed, error) = match which {
            Which::In => (s.input.closed, s.input.error),
            Which::Out => (s.stdout.closed || !s.is_active(), s.stdout.error),
            Which::Err => (s.stderr.closed || !s.is_active(), s.stderr.error),
        };
        let closed = closed || !s.is_active();
        self.streams[which as usize].sync(closed, error);
    }

    /// Rebuilds `envp` from the session's environment block.
    pub fn build_envp(&mut self) {
        self.envp.clear();
        let (block, entries) = self.session.env_block();
        let base = block.as_mut_ptr();
        // FCGI_ROLE=... first, at the start of the block; then each
        // parameter, whose offsets come from the engine and lie inside it.
        self.envp.push(base.cast());
        for e in entries {
            self.envp.push(base.wrapping_add(e.start).cast());
        }
        self.envp.push(null_mut());
    }

    /// Makes `envp` an empty environment (one NULL), without freeing its
    /// memory.
    pub fn clear_envp(&mut self) {
        self.envp.clear();
        self.envp.push(null_mut());
    }

    /// Copies the engine's state into the caller's `FCGX_Request`.
    ///
    /// # Safety
    /// `root` is a live handle of this module and no reference to it is
    /// live during the call.
    pub unsafe fn sync_request(root: NonNull<Handle>, r: &mut FCGX_Request) {
        let active = {
            // SAFETY: per the contract; the borrow ends with this block,
            // before the stream pointers are derived from the root.
            let h = unsafe { &mut *root.as_ptr() };
            for w in [Which::In, Which::Out, Which::Err] {
                h.sync_stream(w);
            }
            let active = h.session.is_active();
            r.requestId = i32::from(h.session.request_id());
            r.role = i32::from(h.session.role());
            r.ipcFd = h.session.connection_fd().unwrap_or(-1);
            r.keepConnection = h.session.keep_conn() as i32;
            r.isBeginProcessed = active as i32;
            r.appStatus = h.session.exit_status();
            if active {
                // Vec::as_mut_ptr makes no reference to the elements: the
                // pointer stays valid until envp is rebuilt.
                r.envp = h.envp.as_mut_ptr();
            }
            active
        };
        if active {
            r.in_ = stream_ptr(root, Which::In);
            r.out = stream_ptr(root, Which::Out);
            r.err = stream_ptr(root, Which::Err);
            r.nWriters = 2;
        } else {
            r.in_ = null_mut();
            r.out = null_mut();
            r.err = null_mut();
            r.nWriters = 0;
        }
    }
}

/// The C stream of `which`, derived from the root pointer without making a
/// reference, so it has the root's provenance (see [`Handle::new_raw`]).
fn stream_ptr(root: NonNull<Handle>, which: Which) -> *mut FCGX_Stream {
    let offset = std::mem::offset_of!(Handle, streams)
        + which as usize * std::mem::size_of::<StreamBox>()
        + std::mem::offset_of!(StreamBox, c);
    root.as_ptr()
        .wrapping_byte_add(offset)
        .cast::<FCGX_Stream>()
}

/// The request's handle, created on first use: the root pointer of
/// [`Handle::new_raw`]. Reads only `paramsPtr` and dereferences nothing;
/// each caller makes a `&mut Handle` from it for the length of one call,
/// in an `unsafe` block whose justification is the C caller's contract (a
/// request set up by `FCGX_InitRequest`, used by one thread at a time).
pub fn handle_root(r: &mut FCGX_Request) -> NonNull<Handle> {
    match NonNull::new(r.paramsPtr.cast::<Handle>()) {
        Some(root) => root,
        None => {
            let root = Handle::new_raw();
            r.paramsPtr = root.as_ptr().cast::<Params>();
            root
        }
    }
}

/// Frees the request's handle, if any, and clears `paramsPtr`.
pub fn drop_handle(r: &mut FCGX_Request) {
    if let Some(p) = NonNull::new(r.paramsPtr.cast::<Handle>()) {
        r.paramsPtr = null_mut();
        // SAFETY: p came from Box::leak in Handle::new_raw and is dropped once,
        // here, after which paramsPtr is NULL.
        drop(unsafe { Box::from_raw(p.as_ptr()) });
    }
}

/// What a stream pointer leads to.
pub enum Target<'a> {
    Request(&'a mut Handle, Which),
    Writer(&'a mut StandaloneWriter, &'a mut FCGX_Stream),
}

/// Resolves a stream pointer from C. `None` for NULL.
///
/// # Safety
/// `stream` is NULL or a stream this library handed out that is still alive.
pub unsafe fn target<'a>(stream: *mut FCGX_Stream) -> Option<Target<'a>> {
    let sb = NonNull::new(stream.cast::<StreamBox>())?.as_ptr();
    // SAFETY: the caller promises a live stream from this library; every
    // such stream is the first field of a repr(C) StreamBox. The shared
    // borrow of the owner ends before any other reference is made.
    let request = match unsafe { &(*sb).owner } {
        Owner::Request { handle, which } => Some((*handle, *which)),
        Owner::Writer(_) => None,
    };
    match request {
        Some((h, w)) => {
            // SAFETY: a request stream's back-pointer is its handle's root
            // pointer (Handle::new_raw); the handle owns the stream and
            // lives as long as it does, and no other reference to it is
            // live while a library call runs (one thread at a time).
            Some(Target::Request(unsafe { &mut *h }, w))
        }
        None => {
            // SAFETY: as above, a live StreamBox; the writer owns its own
            // box, and the two borrows below cover disjoint fields.
            let StreamBox { c, owner } = unsafe { &mut *sb };
            match owner {
                Owner::Writer(w) => Some(Target::Writer(w, c)),
                Owner::Request { .. } => None,
            }
        }
    }
}

/// The descriptor of a standalone writer, borrowed for one library call;
/// None for a negative number (a `BorrowedFd` cannot hold -1).
///
/// # Safety
/// The descriptor given to `FCGX_CreateWriter` is still open (that
/// function's contract), and the borrow ends with the current call.
pub unsafe fn writer_fd<'a>(w: &StandaloneWriter) -> Option<sys::BorrowedFd<'a>> {
    // SAFETY: per the contract.
    (w.fd >= 0).then(|| unsafe { sys::borrow_fd(w.fd) })
}
