//! The C ABI of libfcgi 2.4 (`fcgiapp.h`): `#[repr(C)]` types and
//! `extern "C"` functions that check their pointers, convert, and call the
//! safe engine in [`crate::server`].
//!
//! Every exported body runs inside [`ffi_guard!`], so no panic ever unwinds
//! into C: a panic becomes the function's error value.
//!
//! The boundary: this module and `sys/` are the only places with `unsafe`.
//! Here it is for what the C caller hands over: each `extern "C"` function
//! lists the caller's obligations in a `# Safety` section, turns its
//! pointers into references, slices or `&CStr` (NULL into `None` or an
//! error code) under `// SAFETY:` comments that cite those obligations,
//! calls the safe core (`server/`, `protocol/`, `sys/`), and turns the
//! result into the C convention (a count, -1 with `errno`, EOF): a few
//! lines each, no system calls of its own (`fcgi_stdio.h` passing a
//! plain `FILE *` on to the C library's stdio aside) and no logic the
//! core could hold. Pointers kept past a call (a request's streams, `OS_AsyncRead`'s
//! buffer and callback) live in types whose invariant says how long they
//! are valid, and only this module dereferences them.

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
#[cfg(all(test, unix))]
mod tests;
pub mod types;

pub use types::*;
