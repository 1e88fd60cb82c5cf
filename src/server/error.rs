//! Stream errors, with the numeric codes libfcgi's `FCGX_GetError` reports.

use thiserror::Error;

/// `FCGX_UNSUPPORTED_VERSION`.
pub const UNSUPPORTED_VERSION: i32 = -2;
/// `FCGX_PROTOCOL_ERROR`.
pub const PROTOCOL_ERROR: i32 = -3;
/// `FCGX_PARAMS_ERROR`.
pub const PARAMS_ERROR: i32 = -4;
/// `FCGX_CALL_SEQ_ERROR`.
pub const CALL_SEQ_ERROR: i32 = -5;

/// The first error a stream met. It sticks until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum StreamError {
    /// A system call failed with this errno (EPIPE when the peer went away).
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Os(i32),
    /// The peer spoke a protocol version other than 1.
    #[error("unsupported FastCGI protocol version")]
    UnsupportedVersion,
    /// The peer broke the protocol (or aborted the request, or closed early).
    #[error("FastCGI protocol error")]
    Protocol,
    /// The request parameters were malformed or too large.
    #[error("malformed FastCGI parameters")]
    Params,
    /// The call is not valid in the stream's state.
    #[error("call out of sequence")]
    CallSeq,
}

impl StreamError {
    /// The value `FCGX_GetError` returns: errno (> 0) or an FCGX code (< 0).
    pub fn code(self) -> i32 {
        match self {
            StreamError::Os(e) => e,
            StreamError::UnsupportedVersion => UNSUPPORTED_VERSION,
            StreamError::Protocol => PROTOCOL_ERROR,
            StreamError::Params => PARAMS_ERROR,
            StreamError::CallSeq => CALL_SEQ_ERROR,
        }
    }

    pub fn from_io(e: &std::io::Error) -> StreamError {
        StreamError::Os(e.raw_os_error().unwrap_or(crate::sys::code::EIO))
    }
}
