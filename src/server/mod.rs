//! The connection and request engine: listening, accepting, the request's
//! streams and keep-alive, on top of the pure codec in [`crate::protocol`].
//! This is also the crate's Rust API:
//!
//! ```no_run
//! use std::io::Write;
//! use std::os::fd::AsFd;
//! let listener = fcgi::server::BindAddr::parse("127.0.0.1:9000").listen(128).unwrap();
//! let mut session = fcgi::server::Session::new();
//! while session.accept(listener.as_fd(), false).is_ok() {
//!     let uri = String::from_utf8_lossy(session.param(b"REQUEST_URI").unwrap_or(b"")).into_owned();
//!     let mut out = fcgi::server::Writer(&mut session, fcgi::server::Output::Stdout);
//!     write!(out, "Content-Type: text/plain\r\n\r\nHello from {uri}\n").unwrap();
//! }
//! ```

pub mod activation;
#[cfg(unix)]
pub mod asyncio;
pub mod config;
pub mod error;
pub mod linger;
pub mod listen;
pub mod output;
pub mod reader;
pub mod session;
pub mod socket_file;
pub mod waiting;
pub mod watch;

pub use error::StreamError;
pub use listen::{BindAddr, request_shutdown, shutdown_pending};
pub use session::{Output, Session, Stdin, Writer};
