//! The C ABI of libfcgi 2.4 (`fcgiapp.h`): `#[repr(C)]` types and
//! `extern "C"` functions that check their pointers, convert, and call the
//! safe engine in [`crate::server`].
//!
//! Every exported body runs inside [`ffi_guard!`], so no panic ever unwinds
//! into C: a panic becomes the function's error value.

/// Runs an exported function's body, turning a panic into `$err`.
macro_rules! ffi_guard {
    ($err:expr, $body:block) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(v) => v,
            Err(_) => $err,
        }
    };
}

pub mod ext;
pub mod fastcgi;
mod handle;
pub mod init;
pub mod os;
pub mod request;
pub mod stdio;
pub mod stream;
pub mod types;

pub use types::*;
