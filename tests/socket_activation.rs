//! systemd socket activation (issue #14 item 2): a program started with
//! `LISTEN_PID`/`LISTEN_FDS` (and `LISTEN_FDNAMES`) serves the passed
//! socket with no code change, as it serves a socket on fd 0: started
//! here by `systemd-socket-activate` (Debian's systemd package; it needs
//! no systemd running) and, for the pair, by `spawn-fcgi` (fd 0).
//!
//! The programs: tests/c/activation_probe.c (`FCGX_IsCGI`, then
//! `FCGX_Accept`; it reports what the process sees), examples/echo.c
//! without an address (`FCGX_InitRequest(&r, 0, 0)`, `FCGX_Accept_r`) and
//! examples/stdio-hello.c (`FCGI_Accept`).

mod common;

use common::nginx::{Killed, Scratch, find_program};
use common::{Lib, compile, our_lib_dir, secs};
use fcgi::client::{Client, ClientError, Request, Response};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The behaviour is this library's (libfcgi ignores LISTEN_FDS).
fn ours(test: &str) -> bool {
    let ok = Lib::under_test() == Lib::Ours;
    if !ok {
        eprintln!("SKIPPED {test}: socket activation is this library's");
    }
    ok
}

/// Starts `program` under systemd-socket-activate, listening on each of
/// `socks` (named `names`, if any), with `env` passed on.
fn activate(
    tool: &Path,
    program: &Path,
    socks: &[PathBuf],
    names: Option<&str>,
    env: &[(&str, &str)],
) -> Killed {
    activate_logged(tool, program, socks, names, env, Stdio::null(), None)
}

/// [`activate`] with the program's standard input `stdin` and its
/// standard error into `log` (if any).
fn activate_logged(
    tool: &Path,
    program: &Path,
    socks: &[PathBuf],
    names: Option<&str>,
    env: &[(&str, &str)],
    stdin: Stdio,
    log: Option<&Path>,
) -> Killed {
    let mut cmd = Command::new(tool);
    for s in socks {
        cmd.arg("-l").arg(s);
    }
    if let Some(n) = names {
        cmd.arg(format!("--fdname={n}"));
    }
    // systemd-socket-activate passes on only the variables given with -E.
    cmd.arg("-E")
        .arg(format!("LD_LIBRARY_PATH={}", our_lib_dir().display()));
    for (k, v) in env {
        cmd.arg("-E").arg(format!("{k}={v}"));
    }
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("create the log")),
        None => Stdio::null(),
    };
    cmd.arg(program)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(stderr);
    let child = Killed(cmd.spawn().expect("start systemd-socket-activate"));
    wait_for_sockets(socks);
    child
}

fn wait_for_sockets(socks: &[PathBuf]) {
    let deadline = Instant::now() + secs(10);
    while !socks.iter().all(|s| s.exists()) {
        assert!(Instant::now() < deadline, "{socks:?} never appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One request on a new connection to `sock` (the first one also makes
/// systemd-socket-activate start the program).
///
/// The socket file appears at bind(), a moment before listen(): a refused
/// connection is tried again for up to 5 s.
fn ask(sock: &Path, timeout: Duration) -> Result<Response, ClientError> {
    let deadline = Instant::now() + secs(5);
    let c = loop {
        match Client::connect(&sock.to_string_lossy()) {
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => break other?,
        }
    };
    let mut c = c.with_timeout(timeout)?;
    c.request(&Request::responder().param("QUERY_STRING", "probe=1"))
}

fn body(resp: &Response) -> String {
    String::from_utf8_lossy(resp.body()).into_owned()
}

#[test]
fn systemd_socket_activate_serves_unchanged_programs() {
    if !ours("systemd_socket_activate") {
        return;
    }
    let Some(tool) = find_program("socket_activation", "systemd-socket-activate", "systemd") else {
        return;
    };
    let dir = Scratch::new("socket-activation", "unchanged");
    let sock = dir.path().join("app.sock");

    // FCGX_IsCGI says FastCGI, FCGX_Accept serves; the variables are gone
    // (children do not inherit them) and the passed descriptor is closed
    // on exec, fd 0 being the socket now.
    let probe = compile("activation_probe", Lib::headers_under_test());
    let mut p = activate(&tool, &probe, std::slice::from_ref(&sock), None, &[]);
    let resp = ask(&sock, secs(10)).expect("the probe answers");
    let text = body(&resp);
    for want in [
        "is_cgi=0 ",
        "listen_fds=(unset) ",
        "listen_pid=(unset) ",
        "listen_fdnames=(unset) ",
        "fd0_listening=1 ",
        "cloexec=3:1,",
    ] {
        assert!(text.contains(want), "{want:?} not in {text:?}");
    }
    let again = ask(&sock, secs(10)).expect("a second request");
    assert!(body(&again).contains("is_cgi=0"));
    assert!(p.running());
    drop(p);

    // FCGX_InitRequest(&r, 0, 0) + FCGX_Accept_r (echo with no address).
    let _ = std::fs::remove_file(&sock);
    let echo = compile("echo", Lib::headers_under_test());
    let _e = activate(&tool, &echo, std::slice::from_ref(&sock), None, &[]);
    let resp = ask(&sock, secs(10)).expect("echo answers");
    assert!(
        body(&resp).contains("QUERY_STRING=probe=1"),
        "{}",
        body(&resp)
    );

    // FCGI_Accept (fcgi_stdio.h).
    let _ = std::fs::remove_file(&sock);
    let hello = compile("stdio-hello", Lib::headers_under_test());
    let _h = activate(&tool, &hello, std::slice::from_ref(&sock), None, &[]);
    let resp = ask(&sock, secs(10)).expect("stdio-hello answers");
    assert!(body(&resp).contains("query=probe=1"), "{}", body(&resp));
}

#[test]
fn a_standard_input_in_use_is_replaced_with_a_log_line() {
    if !ours("stdin_replaced") {
        return;
    }
    let Some(tool) = find_program("socket_activation", "systemd-socket-activate", "systemd") else {
        return;
    };
    // fd 0 must become the socket for libfcgi programs to find it; a
    // standard input that was something (here a pipe) is not replaced
    // silently. /dev/null (systemd's default) is replaced without a word.
    let dir = Scratch::new("socket-activation", "stdin");
    let echo = compile("echo", Lib::headers_under_test());
    for (what, stdin, expect) in [
        ("pipe", Stdio::piped(), true),
        ("null", Stdio::null(), false),
    ] {
        let sock = dir.path().join(format!("{what}.sock"));
        let log = dir.path().join(format!("{what}.log"));
        let p = activate_logged(
            &tool,
            &echo,
            std::slice::from_ref(&sock),
            None,
            &[],
            stdin,
            Some(&log),
        );
        let resp = ask(&sock, secs(10)).expect("echo answers");
        assert!(body(&resp).contains("QUERY_STRING=probe=1"));
        drop(p);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            text.contains("standard input (fd 0, a pipe) replaced by the passed socket (fd 3)"),
            expect,
            "{what}: {text:?}"
        );
    }
}

#[test]
fn several_sockets_the_first_or_the_one_named() {
    if !ours("several_sockets") {
        return;
    }
    let Some(tool) = find_program("socket_activation", "systemd-socket-activate", "systemd") else {
        return;
    };
    let probe = compile("activation_probe", Lib::headers_under_test());
    let short = Duration::from_millis(700);
    for (wanted, served, unserved) in [(None, 0, 1), (Some("admin"), 1, 0)] {
        let dir = Scratch::new("socket-activation", &format!("several-{served}"));
        let socks = [dir.path().join("web.sock"), dir.path().join("admin.sock")];
        let env: Vec<(&str, &str)> = wanted
            .map(|w| ("LIBFCGI_LISTEN_FDNAME", w))
            .into_iter()
            .collect();
        let _p = activate(&tool, &probe, &socks, Some("web:admin"), &env);
        let resp = ask(&socks[served], secs(10))
            .unwrap_or_else(|e| panic!("{wanted:?}: {} not served: {e}", socks[served].display()));
        let text = body(&resp);
        assert!(text.contains("is_cgi=0"), "{text}");
        // The other socket stays open (closed on exec), unserved.
        assert!(text.contains("cloexec=3:1,4:1,"), "{text}");
        match ask(&socks[unserved], short) {
            Err(ClientError::Timeout) => {}
            other => panic!(
                "{wanted:?}: {} answered: {other:?}",
                socks[unserved].display()
            ),
        }
    }
}

#[test]
fn spawn_fcgi_passes_the_socket_on_fd_0() {
    if !ours("spawn_fcgi") {
        return;
    }
    let Some(tool) = find_program("spawn_fcgi", "spawn-fcgi", "spawn-fcgi") else {
        return;
    };
    let dir = Scratch::new("socket-activation", "spawn-fcgi");
    let sock = dir.path().join("app.sock");
    let probe = compile("activation_probe", Lib::headers_under_test());
    let child = Command::new(tool)
        .arg("-n")
        .arg("-s")
        .arg(&sock)
        .arg("--")
        .arg(&probe)
        .env("LD_LIBRARY_PATH", our_lib_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start spawn-fcgi");
    let _child = Killed(child);
    wait_for_sockets(std::slice::from_ref(&sock));
    let resp = ask(&sock, secs(10)).expect("the probe answers");
    let text = body(&resp);
    assert!(text.contains("is_cgi=0 "), "{text}");
    assert!(text.contains("fd0_listening=1 "), "{text}");
}
