//! The OS layer (`fcgios.h`, src/capi/os.rs), tested through its real
//! user and directly:
//!
//! * (a) Debian's `cgi-fcgi` (package libfcgi-bin), unchanged, runs on our
//!   `libfcgi.so` (checked with `LD_DEBUG=libs`) as the client of a C echo
//!   application that runs on our library too (checked in
//!   `/proc/<pid>/maps`): small and 1 MiB POST bodies, more than 8 KB of
//!   parameters, the exit status, TCP and Unix sockets;
//! * (b) `cgi-fcgi` as a launcher (`-start`, and connect-or-start), which
//!   uses `OS_CreateLocalIpcFd` and `OS_SpawnChild`;
//! * (c) `tests/c/os_unit.c`: direct checks of every `OS_*` function, one
//!   test per group (see that file).
//!
//! The C programs are compiled with the system headers and linked with
//! `-lfcgi` against the library cargo built next to this test binary
//! (`target/<profile>/libfcgi.so`).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const CGI_FCGI: &str = "/usr/bin/cgi-fcgi";

// ---- where things are --------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: this test binary lives in its `deps/` folder.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

use common::our_library;

fn work_dir() -> PathBuf {
    profile_dir().join("os-layer")
}

/// A folder with `libfcgi.so` and `libfcgi.so.0` pointing at our library,
/// for `-L` at link time and `LD_LIBRARY_PATH` at run time.
fn lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let lib = our_library();
        let dir = work_dir().join("lib");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["libfcgi.so", "libfcgi.so.0"] {
            let tmp = dir.join(format!(".{name}.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&lib, &tmp).unwrap();
            std::fs::rename(&tmp, dir.join(name)).unwrap();
        }
        dir
    })
    .clone()
}

/// Compiles `tests/c/<name>.c` (system headers, our library) once per run.
fn compile(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = work_dir().join("bin");
    let out = dir.join(name);
    if built.iter().any(|n| n == name) {
        return out;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let src = repo().join("tests/c").join(format!("{name}.c"));
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let result = Command::new(cc)
        .args(["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .arg("-L")
        .arg(lib_dir())
        .arg("-lfcgi")
        .output()
        .expect("run the C compiler");
    assert!(
        result.status.success(),
        "compiling {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    built.push(name.to_string());
    out
}

/// A fresh scratch folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fcgi-os-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cgi_fcgi() -> &'static str {
    assert!(
        Path::new(CGI_FCGI).is_file(),
        "{CGI_FCGI} is missing: install Debian's libfcgi-bin"
    );
    CGI_FCGI
}

// ---- processes ---------------------------------------------------------------

/// Waits for `child` at most `limit`; kills it and panics on timeout.
fn wait_for(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An application process we started (directly or through cgi-fcgi);
/// killed on drop.
enum AppProc {
    Child(Child),
    Pid(u32),
}

struct App {
    proc_: AppProc,
    log: PathBuf,
}

impl App {
    fn pid(&self) -> u32 {
        match &self.proc_ {
            AppProc::Child(c) => c.id(),
            AppProc::Pid(p) => *p,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asserts that the process has our library mapped, not the original.
    fn assert_runs_on_our_library(&self) {
        let want = std::fs::canonicalize(our_library()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let maps =
                std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).unwrap_or_default();
            let mut libs: Vec<PathBuf> = maps
                .lines()
                .filter_map(|l| l.split_whitespace().nth(5))
                .filter(|p| p.contains("libfcgi"))
                .map(PathBuf::from)
                .collect();
            libs.dedup();
            if !libs.is_empty() {
                assert_eq!(libs, vec![want], "application {} mapped these", self.pid());
                return;
            }
            assert!(
                Instant::now() < deadline,
                "application {} never mapped a libfcgi; stderr:\n{}",
                self.pid(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What `/proc/<pid>/fd/<n>` points to, if the descriptor is open.
    fn fd_target(&self, n: i32) -> Option<String> {
        std::fs::read_link(format!("/proc/{}/fd/{n}", self.pid()))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        match &mut self.proc_ {
            AppProc::Child(c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            // Started by a cgi-fcgi we ran, then orphaned: not our child, so
            // it is stopped by pid (and reaped by init).
            AppProc::Pid(pid) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}

/// Starts the echo application on our library with a TCP listening socket
/// on 127.0.0.1 as its fd 0 (the web-server convention); returns it and
/// the port.
fn start_echo_tcp(scratch: &Scratch) -> (App, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = scratch.path("app.stderr");
    let child = Command::new(compile("os_echo"))
        .env_clear()
        .env("LD_LIBRARY_PATH", lib_dir())
        .current_dir(&scratch.0)
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start os_echo");
    let app = App {
        proc_: AppProc::Child(child),
        log,
    };
    app.assert_runs_on_our_library();
    (app, port)
}

/// Starts the echo application on our library, listening on the Unix
/// socket `path` it creates itself (`FCGX_OpenSocket`).
fn start_echo_unix(scratch: &Scratch, path: &Path) -> App {
    let log = scratch.path("app.stderr");
    let child = Command::new(compile("os_echo"))
        .arg(path)
        .env_clear()
        .env("LD_LIBRARY_PATH", lib_dir())
        .current_dir(&scratch.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start os_echo");
    let app = App {
        proc_: AppProc::Child(child),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "os_echo never listened on {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    app.assert_runs_on_our_library();
    app
}

/// The result of one cgi-fcgi run.
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
    /// The `LD_DEBUG=libs` log of the cgi-fcgi process itself.
    ld_debug: String,
}

impl Run {
    /// Asserts that cgi-fcgi loaded our library and not the original.
    fn assert_loaded_our_library(&self) {
        let want = std::fs::canonicalize(our_library()).unwrap();
        let inits: Vec<PathBuf> = self
            .ld_debug
            .lines()
            .filter_map(|l| l.split_once("calling init: ").map(|(_, p)| p.trim()))
            .filter(|p| p.contains("libfcgi"))
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p)))
            .collect();
        assert_eq!(
            inits,
            vec![want],
            "cgi-fcgi initialised these libfcgi copies; LD_DEBUG log:\n{}",
            self.ld_debug
        );
    }

    /// Splits the CGI response into headers and body.
    fn response(&self) -> (HashMap<String, String>, &[u8]) {
        let out = &self.stdout;
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "no end of headers in {:?}; stderr: {}",
                    String::from_utf8_lossy(&out[..out.len().min(500)]),
                    self.stderr
                )
            });
        let headers = String::from_utf8_lossy(&out[..end])
            .split("\r\n")
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (headers, &out[end + 4..])
    }
}

/// Runs cgi-fcgi on our library with exactly the environment `env` (plus
/// the loader settings), `body` on its standard input, in `scratch`.
fn run_cgi_fcgi(scratch: &Scratch, args: &[&str], env: &[(String, String)], body: &[u8]) -> Run {
    let ld_prefix = scratch.path("ld");
    let mut cmd = Command::new(cgi_fcgi());
    cmd.args(args)
        .env_clear()
        .env("LD_LIBRARY_PATH", lib_dir())
        .env("LD_DEBUG", "libs")
        .env("LD_DEBUG_OUTPUT", &ld_prefix)
        .current_dir(&scratch.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start cgi-fcgi");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let body = body.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut stdout = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status = wait_for(&mut child, Duration::from_secs(20), "cgi-fcgi");
    let _ = writer.join();
    let stdout = out_reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    let ld_debug =
        std::fs::read_to_string(format!("{}.{pid}", ld_prefix.display())).unwrap_or_default();
    Run {
        status,
        stdout,
        stderr,
        ld_debug,
    }
}

/// Deterministic bytes of every value.
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491 ^ n as u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn post_env(len: usize) -> Vec<(String, String)> {
    vec![
        ("REQUEST_METHOD".into(), "POST".into()),
        ("CONTENT_LENGTH".into(), len.to_string()),
        ("CONTENT_TYPE".into(), "application/octet-stream".into()),
        ("SCRIPT_NAME".into(), "/echo".into()),
    ]
}

/// Number of parameters and their `NAME=value` bytes as the application
/// sees them: cgi-fcgi sends its whole environment (ours plus the loader
/// variables), and libfcgi adds FCGI_ROLE=RESPONDER.
fn expected_params(run_env: &[(String, String)], scratch: &Scratch) -> (usize, usize) {
    let mut all: Vec<(String, String)> = run_env.to_vec();
    all.push(("LD_LIBRARY_PATH".into(), lib_dir().to_string_lossy().into()));
    all.push(("LD_DEBUG".into(), "libs".into()));
    all.push((
        "LD_DEBUG_OUTPUT".into(),
        scratch.path("ld").to_string_lossy().into(),
    ));
    all.push(("FCGI_ROLE".into(), "RESPONDER".into()));
    let bytes = all.iter().map(|(k, v)| k.len() + 1 + v.len()).sum();
    (all.len(), bytes)
}

/// Checks one echoed request: headers, body, parameters, the error stream.
fn assert_echo(run: &Run, scratch: &Scratch, env: &[(String, String)], body: &[u8]) {
    assert!(
        run.status.success(),
        "cgi-fcgi failed: {}; stderr: {}",
        run.status,
        run.stderr
    );
    run.assert_loaded_our_library();
    let (headers, echoed) = run.response();
    assert_eq!(headers["X-Body-Len"], body.len().to_string());
    assert_eq!(echoed.len(), body.len(), "echoed body length");
    assert!(echoed == body, "echoed body differs");
    let (n, bytes) = expected_params(env, scratch);
    assert_eq!(headers["X-Params"], n.to_string(), "parameter count");
    assert_eq!(
        headers["X-Params-Bytes"],
        bytes.to_string(),
        "parameter bytes"
    );
    assert!(
        run.stderr.contains("os_echo: a line on the error stream"),
        "FCGI_STDERR not relayed to cgi-fcgi's stderr: {:?}",
        run.stderr
    );
}

// ---- (a) cgi-fcgi as a client ------------------------------------------------------

#[test]
fn cgi_fcgi_posts_a_small_body_over_tcp() {
    let scratch = Scratch::new("small");
    let (app, port) = start_echo_tcp(&scratch);
    let body = b"name=value&other=%20x\n".to_vec();
    let env = post_env(body.len());
    let connect = format!("127.0.0.1:{port}");
    let run = run_cgi_fcgi(&scratch, &["-bind", "-connect", &connect], &env, &body);
    assert_echo(&run, &scratch, &env, &body);
    let (headers, _) = run.response();
    assert_eq!(headers["X-Method"], "POST");
    assert_eq!(headers["X-Big-Len"], "-1");
    drop(app);
}

#[test]
fn cgi_fcgi_posts_one_mebibyte() {
    let scratch = Scratch::new("mib");
    let (_app, port) = start_echo_tcp(&scratch);
    let body = pattern(1 << 20);
    let env = post_env(body.len());
    let connect = format!("127.0.0.1:{port}");
    let run = run_cgi_fcgi(&scratch, &["-bind", "-connect", &connect], &env, &body);
    assert_echo(&run, &scratch, &env, &body);
}

#[test]
fn cgi_fcgi_sends_more_than_8_kib_of_params() {
    // libfcgi's cgi-fcgi once produced malformed requests past 8 KB of
    // parameters (fcgi2#13); here: one 20 000-byte value and 300 more
    // variables, about 33 KB in all, through FCGX_CreateWriter/FCGX_PutStr.
    let scratch = Scratch::new("params");
    let (_app, port) = start_echo_tcp(&scratch);
    let body = pattern(5000);
    let mut env = post_env(body.len());
    env.push(("X_BIG".into(), "b".repeat(20_000)));
    for i in 0..300 {
        env.push((format!("HTTP_X_FILLER_{i:03}"), format!("{i:0>30}")));
    }
    let total: usize = env.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(total > 8 * 1024);
    let connect = format!("127.0.0.1:{port}");
    let run = run_cgi_fcgi(&scratch, &["-bind", "-connect", &connect], &env, &body);
    assert_echo(&run, &scratch, &env, &body);
    assert_eq!(run.response().0["X-Big-Len"], "20000");
}

#[test]
fn cgi_fcgi_exits_with_the_application_status() {
    let scratch = Scratch::new("status");
    let (_app, port) = start_echo_tcp(&scratch);
    let env = vec![
        ("REQUEST_METHOD".to_string(), "GET".to_string()),
        ("X_EXIT".to_string(), "3".to_string()),
    ];
    let connect = format!("127.0.0.1:{port}");
    // No CONTENT_LENGTH: cgi-fcgi sends an empty input at once.
    let run = run_cgi_fcgi(&scratch, &["-bind", "-connect", &connect], &env, b"");
    run.assert_loaded_our_library();
    assert_eq!(run.status.code(), Some(3), "stderr: {}", run.stderr);
    let (headers, body) = run.response();
    assert_eq!(headers["X-Method"], "GET");
    assert_eq!(headers["X-Body-Len"], "0");
    assert!(body.is_empty());
}

#[test]
fn cgi_fcgi_posts_over_a_unix_socket() {
    let scratch = Scratch::new("unix");
    let sock = scratch.path("app.sock");
    let _app = start_echo_unix(&scratch, &sock);
    let body = pattern(100_000);
    let env = post_env(body.len());
    let run = run_cgi_fcgi(
        &scratch,
        &["-bind", "-connect", sock.to_str().unwrap()],
        &env,
        &body,
    );
    assert_echo(&run, &scratch, &env, &body);
}

#[test]
fn cgi_fcgi_reports_a_missing_application() {
    // OS_FcgiConnect fails with -1: cgi-fcgi says so and exits non-zero
    // (with libfcgi, an unknown host ended the process inside the library).
    let scratch = Scratch::new("missing");
    let sock = scratch.path("nobody.sock");
    let env = post_env(0);
    let run = run_cgi_fcgi(
        &scratch,
        &["-bind", "-connect", sock.to_str().unwrap()],
        &env,
        b"",
    );
    run.assert_loaded_our_library();
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("Could not connect to"),
        "{}",
        run.stderr
    );
    let run = run_cgi_fcgi(
        &scratch,
        &["-bind", "-connect", "no-such-host.invalid:9000"],
        &env,
        b"",
    );
    assert!(!run.status.success());
    assert!(
        run.stderr.contains("Could not connect to"),
        "{}",
        run.stderr
    );
}

// ---- (b) cgi-fcgi as a launcher ----------------------------------------------------

/// Reads the pid the echo application writes to OS_ECHO_PIDFILE.
fn wait_pidfile(path: &Path) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn cgi_fcgi_start_launches_the_application() {
    let scratch = Scratch::new("start");
    let sock = scratch.path("app.sock");
    let pidfile = scratch.path("app.pid");
    let echo = compile("os_echo");
    let env = vec![(
        "OS_ECHO_PIDFILE".to_string(),
        pidfile.to_string_lossy().into_owned(),
    )];
    // OS_CreateLocalIpcFd + OS_SpawnChild + OS_Close; cgi-fcgi then exits.
    let run = run_cgi_fcgi(
        &scratch,
        &[
            "-start",
            "-connect",
            sock.to_str().unwrap(),
            echo.to_str().unwrap(),
        ],
        &env,
        b"",
    );
    let app = App {
        proc_: AppProc::Pid(wait_pidfile(&pidfile)),
        log: scratch.path("none"),
    };
    assert!(run.status.success(), "{}; {}", run.status, run.stderr);
    run.assert_loaded_our_library();
    app.assert_runs_on_our_library();
    // The FastCGI conventions of OS_SpawnChild: the listening socket on
    // fd 0, fds 1 and 2 closed, so cgi-fcgi's output pipes are not kept
    // open. (The loader's LD_DEBUG_OUTPUT file may take a freed number;
    // os_unit's "spawn" group checks the closed descriptors exactly.)
    let fd0 = app.fd_target(0).unwrap_or_default();
    assert!(fd0.starts_with("socket:"), "fd 0 of the application: {fd0}");
    let ld_log = format!("{}.{}", scratch.path("ld").display(), app.pid());
    for fd in [1, 2] {
        if let Some(target) = app.fd_target(fd) {
            assert_eq!(target, ld_log, "fd {fd} of the application");
        }
    }

    for size in [0, 70_000] {
        let body = pattern(size);
        let req_env = post_env(body.len());
        let run = run_cgi_fcgi(
            &scratch,
            &["-bind", "-connect", sock.to_str().unwrap()],
            &req_env,
            &body,
        );
        assert!(run.status.success(), "{}; {}", run.status, run.stderr);
        run.assert_loaded_our_library();
        let (headers, echoed) = run.response();
        assert_eq!(headers["X-Body-Len"], size.to_string());
        assert!(echoed == body.as_slice(), "echo differs");
    }
}

#[test]
fn cgi_fcgi_starts_the_application_on_demand() {
    // Without -start/-bind: OS_FcgiConnect fails (no socket yet), so
    // cgi-fcgi starts the application, connects again and sends the request.
    let scratch = Scratch::new("ondemand");
    let sock = scratch.path("app.sock");
    let pidfile = scratch.path("app.pid");
    let echo = compile("os_echo");
    let body = pattern(30_000);
    let mut env = post_env(body.len());
    env.push((
        "OS_ECHO_PIDFILE".to_string(),
        pidfile.to_string_lossy().into_owned(),
    ));
    let run = run_cgi_fcgi(
        &scratch,
        &["-connect", sock.to_str().unwrap(), echo.to_str().unwrap()],
        &env,
        &body,
    );
    let app = App {
        proc_: AppProc::Pid(wait_pidfile(&pidfile)),
        log: scratch.path("none"),
    };
    app.assert_runs_on_our_library();
    assert_echo(&run, &scratch, &env, &body);
}

// ---- (c) direct tests of the OS_* functions ----------------------------------------

/// Runs one group of tests/c/os_unit.c on our library.
fn os_unit(group: &str) {
    let scratch = Scratch::new(group);
    let bin = compile("os_unit");
    let mut child = Command::new(&bin)
        .arg(group)
        .env_clear()
        .env("LD_LIBRARY_PATH", lib_dir())
        .env("OS_UNIT_DIR", &scratch.0)
        .env("LIBFCGI_OS_CLOSE_POLL_TIMEOUT", "300")
        .env("LIBFCGI_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start os_unit");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_for(
        &mut child,
        Duration::from_secs(20),
        &format!("os_unit {group}"),
    );
    let out = reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(
        status.success() && out.contains("0 failure(s)"),
        "os_unit {group}: {status}\n{out}\nstderr:\n{err}"
    );
}

#[test]
fn os_lib_init() {
    os_unit("init");
}

#[test]
fn os_is_fcgi() {
    os_unit("isfcgi");
}

#[test]
fn os_fcgi_connect_errors_return_minus_one() {
    os_unit("connect");
}

#[test]
fn os_create_local_ipc_fd_errors_return_minus_one() {
    os_unit("listen");
}

#[test]
fn os_accept_allowlist() {
    os_unit("accept");
}

#[test]
fn os_shutdown_pending_ends_accept() {
    os_unit("shutdown");
}

#[test]
fn os_read_write_retry_after_signals() {
    os_unit("io");
}

#[test]
fn os_async_io_and_do_io() {
    os_unit("async");
}

#[test]
fn os_do_io_handles_descriptors_above_fd_setsize() {
    os_unit("bigfd");
}

#[test]
fn os_close_drains_for_a_bounded_time() {
    os_unit("close");
}

#[test]
fn os_spawn_child() {
    os_unit("spawn");
}
