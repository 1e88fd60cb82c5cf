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
    /// A new handle, boxed so the streams' back-pointers stay valid.
    pub fn new_boxed() -> Box<Handle> {
        let dangling = null_mut();
        let mut h = Box::new(Handle {
            session: Session::new(),
            streams: [
                StreamBox::new(
                    Owner::Request {
                        handle: dangling,
                        which: Which::In,
                    },
                    true,
                ),
                StreamBox::new(
                    Owner::Request {
                        handle: dangling,
                        which: Which::Out,
                    },
                    false,
                ),
                StreamBox::new(
                    Owner::Request {
                        handle: dangling,
                        which: Which::Err,
                    },
                    false,
                ),
            ],
            envp: Vec::new(),
        });
        let me: *mut Handle = &mut *h;
        for s in h.streams.iter_mut() {
            if let Owner::Request { handle, .. } = &mut s.owner {
                *handle = me;
            }
        }
        h
    }

    pub fn stream_ptr(&mut self, which: Which) -> *mut FCGX_Stream {
        let i = which as usize;
        &mut self.streams[i].c
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

    /// Copies the engine's state into the caller's `FCGX_Request`.
    pub fn sync_request(&mut self, r: &mut FCGX_Request) {
        for w in [Which::In, Which::Out, Which::Err] {
            self.sync_stream(w);
        }
        let active = self.session.is_active();
        r.requestId = i32::from(self.session.request_id());
        r.role = i32::from(self.session.role());
        r.ipcFd = self.session.connection_fd().unwrap_or(-1);
        r.keepConnection = self.session.keep_conn() as i32;
        r.isBeginProcessed = active as i32;
        r.appStatus = self.session.exit_status();
        if active {
            r.in_ = self.stream_ptr(Which::In);
            r.out = self.stream_ptr(Which::Out);
            r.err = self.stream_ptr(Which::Err);
            r.envp = self.envp.as_mut_ptr();
            r.nWriters = 2;
        } else {
            r.in_ = null_mut();
            r.out = null_mut();
            r.err = null_mut();
            r.nWriters = 0;
        }
    }
}

/// The request's handle, created on first use. The handle lives in its own
/// heap block, so its borrow is independent of the borrow of `r`.
pub fn handle_of<'a>(r: &mut FCGX_Request) -> &'a mut Handle {
    if r.paramsPtr.is_null() {
        r.paramsPtr = Box::into_raw(Handle::new_boxed()).cast::<Params>();
    }
    // SAFETY: paramsPtr is NULL after FCGX_InitRequest and otherwise only
    // ever set (just above) to a Box<Handle> leaked by this module; the
    // handle stays alive until drop_handle, which callers do not call while
    // holding this borrow, and a request is used by one thread at a time.
    unsafe { &mut *r.paramsPtr.cast::<Handle>() }
}

/// Frees the request's handle, if any, and clears `paramsPtr`.
pub fn drop_handle(r: &mut FCGX_Request) {
    if let Some(p) = NonNull::new(r.paramsPtr.cast::<Handle>()) {
        r.paramsPtr = null_mut();
        // SAFETY: p came from Box::into_raw in handle_of and is dropped once,
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
    let sb = NonNull::new(stream.cast::<StreamBox>())?;
    // SAFETY: the caller promises a live stream from this library; every
    // such stream is the first field of a repr(C) StreamBox.
    let sb = unsafe { &mut *sb.as_ptr() };
    match &mut sb.owner {
        Owner::Request { handle, which } => {
            let (h, w) = (*handle, *which);
            // SAFETY: a request stream's handle owns the stream and is alive
            // as long as the stream is; no other reference to it is live.
            Some(Target::Request(unsafe { &mut *h }, w))
        }
        Owner::Writer(w) => {
            let w: *mut StandaloneWriter = &mut **w;
            // SAFETY: the writer is owned by this StreamBox; the two borrows
            // cover disjoint data (the box's C struct and the boxed writer).
            Some(Target::Writer(unsafe { &mut *w }, &mut sb.c))
        }
    }
}

/// Borrowed fd of a standalone writer.
pub fn writer_fd<'a>(w: &StandaloneWriter) -> Option<sys::BorrowedFd<'a>> {
    (w.fd >= 0).then(|| sys::borrow_fd(w.fd))
}
