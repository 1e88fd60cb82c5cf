//! The mode and owner of Unix sockets (issue #14 item 3):
//! `FCGX_OpenSocketMode` (examples/owned_socket.c) and, for unchanged
//! programs, `LIBFCGI_SOCKET_MODE`, `LIBFCGI_SOCKET_USER` and
//! `LIBFCGI_SOCKET_GROUP` with `FCGX_OpenSocket` (examples/echo.c), like
//! spawn-fcgi's `-M`, `-U`, `-G`; the file removed when the process exits
//! after SIGTERM, left after SIGKILL (and replaced, being stale, by the
//! next start), never removed when it is not the library's any more.
//!
//! Owners need root: the test creates a user and a group of its own
//! (`useradd`, `groupadd`). Not root: the owner checks are skipped with a
//! message, and fail under CI (`CI` set), where they must run.

mod common;

use common::nginx::{Killed, Scratch, in_ci, running_as_root};
use common::{App, Lib, Options, compile, our_lib_dir, secs};
use fcgi::client::{Client, Request};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const USER: &str = "fcgi-sock-user";
const GROUP: &str = "fcgi-sock-group";

fn ours(test: &str) -> bool {
    let ok = Lib::under_test() == Lib::Ours && Lib::headers_under_test() == Lib::Ours;
    if !ok {
        eprintln!("SKIPPED {test}: socket modes and owners are this library's");
    }
    ok
}

/// The test user's and group's ids, created once if missing; None (after
/// a SKIPPED message) when not root, a failure then under CI.
fn test_ids(test: &str) -> Option<(u32, u32)> {
    if !running_as_root() {
        assert!(
            !in_ci(),
            "{test}: socket owners need root to create {USER}/{GROUP} and chown (CI runs as root)"
        );
        eprintln!("SKIPPED {test} (owner part): not root; the mode is still checked");
        return None;
    }
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    Some(*IDS.get_or_init(|| {
        let run = |args: &[&str]| {
            let out = Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap_or_else(|e| panic!("{args:?}: {e} (apt-get install passwd)"));
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            )
        };
        let (ok, _) = run(&["groupadd", "-f", GROUP]);
        assert!(ok, "groupadd {GROUP}");
        if !run(&["id", "-u", USER]).0 {
            let (ok, _) = run(&[
                "useradd",
                "-M",
                "-N",
                "-g",
                GROUP,
                "-s",
                "/usr/sbin/nologin",
                USER,
            ]);
            assert!(ok || run(&["id", "-u", USER]).0, "useradd {USER}");
        }
        let uid = run(&["id", "-u", USER]).1.parse().expect("uid");
        let gid = run(&["getent", "group", GROUP])
            .1
            .split(':')
            .nth(2)
            .and_then(|g| g.parse().ok())
            .expect("gid");
        (uid, gid)
    }))
}

fn stat(path: &str) -> std::fs::Metadata {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(m.file_type().is_socket(), "{path} is not a socket");
    m
}

fn serves(addr: &str) {
    let resp = Client::connect(addr)
        .and_then(|c| c.with_timeout(secs(10)))
        .expect("connect")
        .request(&Request::responder())
        .expect("a response");
    assert_eq!(resp.protocol_status, 0);
}

/// Sends `sig` to `pid` and waits for the process to end.
fn signal_and_wait(app: &mut App, sig: &str) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(app.pid().to_string())
        .status();
    app.wait_exit(secs(5))
        .unwrap_or_else(|| panic!("{} still runs after SIG{sig}", app.name))
}

#[test]
fn mode_and_owner_from_the_function() {
    if !ours("function") {
        return;
    }
    let ids = test_ids("mode_and_owner_from_the_function");
    let (user, group) = match ids {
        Some(_) => (USER, GROUP),
        None => ("-", "-"),
    };
    let mut app = App::under_test_with(
        "owned_socket",
        Options {
            args: &["0660", user, group],
            ..Options::default()
        },
    );
    let m = stat(&app.addr);
    assert_eq!(m.mode() & 0o7777, 0o660, "mode {:o}", m.mode());
    if let Some((uid, gid)) = ids {
        assert_eq!((m.uid(), m.gid()), (uid, gid), "owner");
    }
    serves(&app.addr);
    // A clean shutdown removes the file the library created.
    let status = signal_and_wait(&mut app, "TERM");
    assert!(status.success(), "exit status {status}");
    assert!(
        !Path::new(&app.addr).exists(),
        "{} left after a clean shutdown",
        app.addr
    );
}

/// Starts `bin args` under `umask 077`, waits for `sock`.
fn start_with_umask(bin: &Path, sock: &Path, args: &[&str], env: &[(&str, &str)]) -> Killed {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 077; exec \"$0\" \"$@\"")
        .arg(bin)
        .arg(sock)
        .args(args)
        .env("LD_LIBRARY_PATH", our_lib_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = Killed(cmd.spawn().expect("start"));
    let deadline = Instant::now() + secs(10);
    while Client::connect(&sock.to_string_lossy()).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} never listened",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[test]
fn the_mode_is_exact_whatever_the_umask() {
    if !ours("umask") {
        return;
    }
    let dir = Scratch::new("socket-owner", "umask");
    // umask 077 would give 0600: the bits it removes are set back.
    let sock = dir.path().join("fn.sock");
    let bin = compile("owned_socket", Lib::Ours);
    let _a = start_with_umask(&bin, &sock, &["0666"], &[]);
    let m = stat(&sock.to_string_lossy());
    assert_eq!(m.mode() & 0o7777, 0o666, "mode {:o}", m.mode());
    // Without a mode, bind's own: 0777 less the umask (nothing added).
    let plain = dir.path().join("plain.sock");
    let echo = compile("echo", Lib::Ours);
    let _b = start_with_umask(&echo, &plain, &[], &[]);
    assert_eq!(stat(&plain.to_string_lossy()).mode() & 0o7777, 0o700);
    // The variable, for an unchanged program.
    let env_sock = dir.path().join("env.sock");
    let _c = start_with_umask(&echo, &env_sock, &[], &[("LIBFCGI_SOCKET_MODE", "0660")]);
    assert_eq!(stat(&env_sock.to_string_lossy()).mode() & 0o7777, 0o660);
}

#[test]
fn environment_variables_for_unchanged_programs() {
    if !ours("environment") {
        return;
    }
    let ids = test_ids("environment_variables_for_unchanged_programs");
    let mut env = vec![("LIBFCGI_SOCKET_MODE", "0640")];
    let gid_text;
    if let Some((_, gid)) = ids {
        // The user by name, the group by number.
        gid_text = gid.to_string();
        env.push(("LIBFCGI_SOCKET_USER", USER));
        env.push(("LIBFCGI_SOCKET_GROUP", &gid_text));
    }
    let mut app = App::under_test_with(
        "echo",
        Options {
            env: &env,
            ..Options::default()
        },
    );
    let m = stat(&app.addr);
    assert_eq!(m.mode() & 0o7777, 0o640, "mode {:o}", m.mode());
    if let Some((uid, gid)) = ids {
        assert_eq!((m.uid(), m.gid()), (uid, gid), "owner");
    }
    app.assert_serves();
    assert!(signal_and_wait(&mut app, "TERM").success());
    assert!(!Path::new(&app.addr).exists(), "left after SIGTERM");

    // Bad values: the program cannot listen (echo exits 1), no file is
    // left, and the log says why.
    let bin = compile("echo", Lib::Ours);
    for (var, value, why) in [
        ("LIBFCGI_SOCKET_MODE", "0999", "socket mode"),
        ("LIBFCGI_SOCKET_USER", "no-such-user-fcgi", "no user named"),
        (
            "LIBFCGI_SOCKET_GROUP",
            "no-such-group-fcgi",
            "no group named",
        ),
    ] {
        let dir = Scratch::new("socket-owner", &format!("bad-{var}"));
        let sock = dir.path().join("bad.sock");
        let out = Command::new(&bin)
            .arg(&sock)
            .env("LD_LIBRARY_PATH", our_lib_dir())
            .env(var, value)
            .stdin(Stdio::null())
            .output()
            .expect("run echo");
        assert_eq!(out.status.code(), Some(1), "{var}={value}: {}", out.status);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var) && err.contains(why), "{var}: {err}");
        assert!(!sock.exists(), "{var}={value}: a file was left");
    }
}

/// Starts `bin SOCK` directly (no wrapper: it is killed with SIGKILL),
/// and waits until it serves.
fn start_plain(bin: &Path, sock: &Path) -> Killed {
    let mut child = Killed(
        Command::new(bin)
            .arg(sock)
            .env("LD_LIBRARY_PATH", our_lib_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start echo"),
    );
    let deadline = Instant::now() + secs(10);
    while Client::connect(&sock.to_string_lossy()).is_err() {
        assert!(child.running(), "{} exited", bin.display());
        assert!(
            Instant::now() < deadline,
            "{} never listened",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// Sends `sig` to `child` and waits for it to end.
fn signal_child(child: &mut Killed, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.pid().to_string())
        .status();
    let deadline = Instant::now() + secs(5);
    while child.running() {
        assert!(Instant::now() < deadline, "still running after SIG{sig}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kept_after_sigkill_replaced_at_the_next_start_never_removed_if_not_ours() {
    if !ours("sigkill") {
        return;
    }
    let dir = Scratch::new("socket-owner", "sigkill");
    let sock: PathBuf = dir.path().join("app.sock");
    let addr = sock.to_string_lossy().into_owned();
    let bin = compile("echo", Lib::Ours);
    let mut first = start_plain(&bin, &sock);
    signal_child(&mut first, "KILL");
    assert!(
        std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()),
        "SIGKILL: the socket file stays (documented)"
    );
    // The next start at the same path replaces the stale socket.
    let mut next = start_plain(&bin, &sock);
    serves(&addr);
    // Someone else's file at the path by the time of the shutdown: kept.
    let other = dir.path().join("other");
    std::fs::write(&other, b"not the library's").unwrap();
    std::fs::rename(&other, &sock).unwrap();
    signal_child(&mut next, "TERM");
    assert_eq!(
        std::fs::read(&sock).expect("the other file is still there"),
        b"not the library's"
    );
}

#[test]
fn a_new_socket_at_the_path_is_never_taken_for_ours_even_with_our_inode_number() {
    if !ours("inode reuse") {
        return;
    }
    // The first instance's file is removed by hand and a second instance
    // makes a new socket at the path; the first instance's clean exit
    // must leave it alone. A file system may give the new file the freed
    // inode's number (ext4 reuses numbers; not at once on the machines
    // this was written on): the library keeps its own file open, so the
    // number stays taken until it has exited.
    let dir = Scratch::new("socket-owner", "inode-reuse");
    let sock: PathBuf = dir.path().join("app.sock");
    let addr = sock.to_string_lossy().into_owned();
    let bin = compile("echo", Lib::Ours);
    let mut first = start_plain(&bin, &sock);
    let first_ino = stat(&addr).ino();
    std::fs::remove_file(&sock).unwrap();
    let mut second = start_plain(&bin, &sock);
    assert_ne!(stat(&addr).ino(), first_ino, "the new file has our number");
    signal_child(&mut first, "TERM");
    assert!(
        std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()),
        "the first instance's exit removed the second's socket"
    );
    serves(&addr);
    signal_child(&mut second, "TERM");
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "the second instance's own file stays after its clean exit"
    );
}
