//! The C types of `fcgiapp.h`, field for field as libfcgi 2.4 lays them out
//! (x86-64: `FCGX_Stream` 72 bytes, `FCGX_Request` 80 bytes). Callers
//! allocate `FCGX_Request` themselves and read fields directly, so both the
//! size and every field's meaning are ABI.
#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_char, c_int, c_uchar, c_void};

/// `FCGX_UNSUPPORTED_VERSION`: the peer spoke another protocol version.
pub const FCGX_UNSUPPORTED_VERSION: c_int = -2;
/// `FCGX_PROTOCOL_ERROR`: the peer broke the protocol, aborted, or closed early.
pub const FCGX_PROTOCOL_ERROR: c_int = -3;
/// `FCGX_PARAMS_ERROR`: malformed request parameters.
pub const FCGX_PARAMS_ERROR: c_int = -4;
/// `FCGX_CALL_SEQ_ERROR`: a call out of sequence (e.g. FCGX_StartFilterData too early).
pub const FCGX_CALL_SEQ_ERROR: c_int = -5;
/// `FCGX_InitRequest` flag: `FCGX_Accept_r` returns when a signal interrupts accept().
pub const FCGI_FAIL_ACCEPT_ON_INTR: c_int = 1;

/// A request's input or output stream. The buffer pointers are not used
/// by this implementation (they stay NULL); `isReader`, `isClosed`,
/// `wasFCloseCalled` and `FCGI_errno` are kept up to date after every call,
/// since bindings read them directly.
#[repr(C)]
pub struct FCGX_Stream {
    /// reader: first valid byte; writer: equals stop
    pub rdNext: *mut c_uchar,
    /// writer: first free byte; reader: equals stop
    pub wrNext: *mut c_uchar,
    /// reader: last valid byte + 1; writer: last free byte + 1
    pub stop: *mut c_uchar,
    /// reader: first byte of current buffer fragment, for ungetc
    pub stopUnget: *mut c_uchar,
    pub isReader: c_int,
    pub isClosed: c_int,
    pub wasFCloseCalled: c_int,
    /// error status: 0, an errno value (> 0) or an FCGX_* code (< 0)
    pub FCGI_errno: c_int,
    pub fillBuffProc: Option<unsafe extern "C" fn(stream: *mut FCGX_Stream)>,
    pub emptyBuffProc: Option<unsafe extern "C" fn(stream: *mut FCGX_Stream, doClose: c_int)>,
    pub data: *mut c_void,
}

/// Opaque: the library's private request state.
pub struct Params {
    _private: [u8; 0],
}

/// An environment: NULL-terminated array of `NAME=value` strings.
pub type FCGX_ParamArray = *mut *mut c_char;

/// State of one request, allocated by the caller and set up with
/// `FCGX_InitRequest`.
/// cbindgen:field-names=[requestId, role, in, out, err, envp, paramsPtr, ipcFd, isBeginProcessed, keepConnection, appStatus, nWriters, flags, listen_sock, detached]
#[repr(C)]
pub struct FCGX_Request {
    /// valid if isBeginProcessed
    pub requestId: c_int,
    pub role: c_int,
    pub in_: *mut FCGX_Stream,
    pub out: *mut FCGX_Stream,
    pub err: *mut FCGX_Stream,
    pub envp: *mut *mut c_char,
    /// Don't use anything below here
    pub paramsPtr: *mut Params,
    /// < 0 means no connection
    pub ipcFd: c_int,
    /// FCGI_BEGIN_REQUEST seen
    pub isBeginProcessed: c_int,
    /// don't close ipcFd at end of request
    pub keepConnection: c_int,
    pub appStatus: c_int,
    /// number of open writers (0..2)
    pub nWriters: c_int,
    pub flags: c_int,
    pub listen_sock: c_int,
    pub detached: c_int,
}

impl FCGX_Request {
    /// The state `FCGX_InitRequest` leaves: everything zero but the
    /// listening socket, the flags and `ipcFd` (-1: no connection).
    pub const fn new(listen_sock: c_int, flags: c_int) -> FCGX_Request {
        FCGX_Request {
            requestId: 0,
            role: 0,
            in_: std::ptr::null_mut(),
            out: std::ptr::null_mut(),
            err: std::ptr::null_mut(),
            envp: std::ptr::null_mut(),
            paramsPtr: std::ptr::null_mut(),
            ipcFd: -1,
            isBeginProcessed: 0,
            keepConnection: 0,
            appStatus: 0,
            nWriters: 0,
            flags,
            listen_sock,
            detached: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_libfcgi_on_lp64() {
        if size_of::<usize>() != 8 {
            return;
        }
        assert_eq!(size_of::<FCGX_Stream>(), 72);
        assert_eq!(offset_of!(FCGX_Stream, isReader), 32);
        assert_eq!(offset_of!(FCGX_Stream, FCGI_errno), 44);
        assert_eq!(offset_of!(FCGX_Stream, data), 64);
        assert_eq!(size_of::<FCGX_Request>(), 80);
        assert_eq!(offset_of!(FCGX_Request, in_), 8);
        assert_eq!(offset_of!(FCGX_Request, envp), 32);
        assert_eq!(offset_of!(FCGX_Request, ipcFd), 48);
        assert_eq!(offset_of!(FCGX_Request, appStatus), 60);
        assert_eq!(offset_of!(FCGX_Request, listen_sock), 72);
        assert_eq!(offset_of!(FCGX_Request, detached), 76);
    }
}
