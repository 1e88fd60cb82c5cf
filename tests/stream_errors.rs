//! Output streams after a write error, compared with Debian's libfcgi: the
//! same binary (tests/c/flush_after_error.c, built against the original
//! headers) runs on both libraries and must report the same return codes.

mod common;

use common::{App, Lib, Options, ours_available, secs};
use fcgi::client::{Client, Request};
use std::time::{Duration, Instant};

/// Sends one request on a connection closed right after it, and returns
/// the line the application reported for it.
fn report_after_peer_close(lib: Lib) -> String {
    let app = App::start_with("flush_after_error", Lib::Original, lib, Options::default());
    let mut c = Client::connect(&app.addr).unwrap();
    c.send(&Request::responder().param("QUERY_STRING", "gone=1"))
        .unwrap();
    drop(c);
    let deadline = Instant::now() + secs(10);
    loop {
        let err = app.stderr();
        if let Some(line) = err.lines().find(|l| l.starts_with("put=")) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{lib:?}: no report from flush_after_error; stderr:\n{err}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// libfcgi closes an output stream at its first error: the flush that
/// fails returns -1, every later flush of the closed stream returns 0, and
/// FCGX_GetError keeps the first error (EPIPE).
const WANT: &str = "put=11 failed=-1 again=0 third=0 error=32 eof=-1 closed=1 in=0 err=0";

#[test]
fn fflush_of_a_stream_that_already_failed_returns_0() {
    assert_eq!(report_after_peer_close(Lib::under_test()), WANT);
}

#[test]
fn fflush_after_an_error_matches_the_original() {
    if !ours_available() {
        return;
    }
    let original = report_after_peer_close(Lib::Original);
    let ours = report_after_peer_close(Lib::Ours);
    assert_eq!(ours, original, "ours vs the original");
}
