//! exit() ends the process promptly while threads wait for a request, as
//! in libfcgi: from a signal handler during FCGI_Accept (whose atexit
//! FCGI_Finish then runs on the waiting thread itself), and from another
//! thread during FCGX_Accept (with an atexit FCGX_Finish) or FCGX_Accept_r.
//! No lock that exit's handlers need may be held across the wait. Each case
//! runs on an idle program and after one request was served; a hang fails
//! after 2 s. `FCGI_TEST_LIB=original` runs them on Debian's libfcgi.

mod common;
mod spawned;

use common::secs;
use fcgi::client::{Client, Request};
use spawned::{Running, Scratch};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

struct Case {
    /// tests/c/<program>.c and its arguments.
    program: &'static str,
    args: &'static [&'static str],
    /// Threads that say "waiting" at start.
    waiters: usize,
    /// The signal that makes the program call exit().
    trigger: &'static str,
    status: i32,
}

fn exits_promptly(case: &Case, serve_first: bool) {
    let scratch = Scratch::new("exit");
    let sock = scratch.path("app.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut cmd = spawned::command(case.program);
    cmd.args(case.args)
        .stdin(Stdio::from(OwnedFd::from(listener)));
    let mut app = Running::start(cmd);
    let mut waiting = case.waiters;
    app.wait_for_line("waiting", waiting, secs(10));
    if serve_first {
        let r = Client::connect(sock.to_str().unwrap())
            .and_then(|c| c.with_timeout(secs(10)))
            .unwrap()
            .request(&Request::responder().param("QUERY_STRING", "first=1"))
            .unwrap_or_else(|e| panic!("{}: {e}; stderr:\n{}", case.program, app.stderr()));
        assert_eq!(r.body(), b"served\n");
        waiting += 1;
        app.wait_for_line("waiting", waiting, secs(10));
    }
    // Long enough for every thread to block in accept.
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    app.signal(case.trigger);
    let status = spawned::wait_timeout(&mut app.child, secs(2));
    let what = format!(
        "{} {:?} (served a request first: {serve_first})",
        case.program, case.args
    );
    let Some(status) = status else {
        panic!(
            "{what}: still running 2 s after exit() was called; stderr:\n{}",
            app.stderr()
        );
    };
    assert_eq!(
        status.code(),
        Some(case.status),
        "{what}: {status} after {:?}; stderr:\n{}",
        sent.elapsed(),
        app.stderr()
    );
}

#[test]
fn exit_from_a_signal_handler_while_fcgi_accept_waits() {
    let case = Case {
        program: "exit_stdio",
        args: &[],
        waiters: 1,
        trigger: "ALRM",
        status: 7,
    };
    exits_promptly(&case, false);
    exits_promptly(&case, true);
}

#[test]
fn exit_from_another_thread_while_fcgx_accept_waits() {
    let case = Case {
        program: "exit_threads",
        args: &["accept"],
        waiters: 1,
        trigger: "USR2",
        status: 5,
    };
    exits_promptly(&case, false);
    exits_promptly(&case, true);
}

#[test]
fn exit_from_another_thread_while_fcgx_accept_r_waits() {
    let case = Case {
        program: "exit_threads",
        args: &["accept_r"],
        waiters: 3,
        trigger: "USR2",
        status: 6,
    };
    exits_promptly(&case, false);
    exits_promptly(&case, true);
}
