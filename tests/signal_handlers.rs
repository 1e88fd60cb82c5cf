//! The library's signal handlers (SIGPIPE, and SIGUSR1/SIGTERM for a
//! shutdown request) leave `errno` as they found it: the code they
//! interrupt may be about to read it (tests/c/signal_errno.c).

mod common;
mod spawned;

use common::secs;

#[test]
fn signal_handlers_leave_errno_unchanged() {
    let scratch = spawned::Scratch::new("errno");
    let mut child = spawned::command("signal_errno")
        .arg(scratch.path("app.sock"))
        .spawn()
        .expect("start signal_errno");
    let status = spawned::wait_timeout(&mut child, secs(10));
    let err = spawned::stderr_of(&mut child);
    assert!(
        status.is_some_and(|s| s.success()),
        "signal_errno: {status:?}; stderr:\n{err}"
    );
    // forked_sigusr1: the handler's wake-up of a thread that exists only
    // in the parent fails with ESRCH (3) inside the handler.
    let (errnos, accept) = err.trim_end().rsplit_once(' ').unwrap_or_default();
    assert_eq!(errnos, "sigpipe=4321 forked_sigusr1=4321 sigusr1=4321");
    // The SIGUSR1 handler did its work: the other thread's FCGX_Accept_r
    // ended with -EINTR (libfcgi 2.4 only set a flag: accept=1).
    assert_eq!(accept, "accept=-4");
}
