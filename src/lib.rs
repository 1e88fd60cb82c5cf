//! fcgi: a memory-safe, drop-in replacement of libfcgi 2.4.
//!
//! * [`protocol`]: the FastCGI codec, pure functions (no I/O, fuzzable).
//! * [`server`]: the connection and request engine, a Rust API of its own.
//! * `capi`: the C ABI of libfcgi (`fcgiapp.h`), a thin layer over the engine.
//!
//! `unsafe` code lives only in `capi` (the C boundary) and `sys` (the
//! system calls); the codec and the engine are safe Rust.

pub mod capi;
// The client speaks to Unix-socket applications too; it is not built for
// Windows (the Windows build is the C library: README, Windows).
#[cfg(unix)]
pub mod client;
pub mod protocol;
pub mod server;
mod sys;
