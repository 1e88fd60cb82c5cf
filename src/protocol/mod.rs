//! The FastCGI wire format as pure functions: records, name-value pairs
//! and the management replies. No I/O; every input is untrusted bytes.

pub mod params;
pub mod record;

pub use params::{
    Capabilities, EnvEntry, PairError, get_values_reply, pairs, pairs_to_env, push_pair,
};
pub use record::{
    BeginRequest, EndRequest, HEADER_LEN, Header, MAX_CONTENT_LEN, kind, role, status,
};
