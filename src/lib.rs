//! fcgi: a memory-safe, drop-in replacement of libfcgi 2.4.
//!
//! * [`protocol`]: the FastCGI codec, pure functions (no I/O, fuzzable).
//! * [`server`]: the connection and request engine, a Rust API of its own.
//! * `capi`: the C ABI of libfcgi (`fcgiapp.h`), a thin layer over the engine.
//!
//! `unsafe` code lives only in `capi` (the C boundary) and `sys` (the
//! system calls); the codec, the engine and the client are safe Rust, and
//! the compiler holds them to it (`forbid(unsafe_code)` on their modules
//! below). Where `unsafe` is allowed, each operation inside an `unsafe fn`
//! needs its own `unsafe` block (`unsafe_op_in_unsafe_fn`), and each block
//! a `// SAFETY:` comment saying why it is sound
//! (`clippy::undocumented_unsafe_blocks`; CI runs clippy with
//! `-D warnings`).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod capi;
// The client speaks to Unix-socket applications too; it is not built for
// Windows (the Windows build is the C library: README, Windows).
#[cfg(unix)]
#[forbid(unsafe_code)]
pub mod client;
#[forbid(unsafe_code)]
pub mod protocol;
#[forbid(unsafe_code)]
pub mod server;
mod sys;
