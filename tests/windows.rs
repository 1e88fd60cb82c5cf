//! The Windows build (README, Windows): `make windows` cross-builds
//! libfcgi.dll with mingw-w64; C programs are cross-compiled against
//! `include/` and the import library, run under wine, and answer
//! requests from this (Linux) process on loopback.
//!
//! * `dll_exports`: the DLL calls itself libfcgi.dll, the import library
//!   imports from that name, and the exports are fcgi.map's less the OS_*
//!   functions left out on Windows (README, Windows).
//! * `programs_under_wine`: examples/echo.c on `FCGX_OpenSocket` (GET with
//!   parameters, POST bodies echoed byte for byte, keep-alive series, new
//!   connections, STDERR and exit status, a large response);
//!   examples/stdio-hello.c (fcgi_stdio.h: `_fcgi_sF`, `environ`, printf)
//!   as CGI and started by tests/c/win_spawn.c with a listening socket as
//!   its stdin; tests/c/win_shutdown.c: `FCGX_ShutdownPending` ends a
//!   thread's wait in `FCGX_Accept_r`.
//!
//! Needs the Rust target x86_64-pc-windows-gnu (`rustup target add
//! x86_64-pc-windows-gnu`), mingw-w64's gcc (gcc-mingw-w64-x86-64) and
//! wine (wine64). If one is missing the tests print `SKIPPED ...` and
//! pass, except under CI (env `CI` set), where they fail unless
//! `FCGI_SKIP_WINDOWS=1` says the target could not be installed.
//!
//! Wine 8 lacks bcryptprimitives.dll, whose `ProcessPrng` the standard
//! library of current Rust imports: tests/c/win_prng.c is a stand-in put
//! next to the programs. Wine's first start in a new prefix takes several
//! seconds (a temporary prefix, removed at the end, with `wineserver -k`).

mod common;

use fcgi::client::{Client, Request, Response};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TARGET: &str = "x86_64-pc-windows-gnu";
const MINGW_CC: &str = "x86_64-w64-mingw32-gcc";
const MINGW_OBJDUMP: &str = "x86_64-w64-mingw32-objdump";
const MINGW_DLLTOOL: &str = "x86_64-w64-mingw32-dlltool";

/// The OS_* functions of fcgios.h that the Windows build leaves out.
const LEFT_OUT: &[&str] = &[
    "OS_SetFlags",
    "OS_SpawnChild",
    "OS_AsyncReadStdin",
    "OS_AsyncRead",
    "OS_AsyncWrite",
    "OS_DoIo",
];

/// A line on the real standard error (not captured by the test harness),
/// so skips and timings show in every run.
fn note(msg: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "windows: {msg}");
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Reports a missing tool: SKIPPED outside CI or with FCGI_SKIP_WINDOWS=1,
/// else a failure.
fn missing(test: &str, what: &str) {
    if !in_ci() {
        note(format_args!("SKIPPED {test}: {what}"));
    } else if std::env::var("FCGI_SKIP_WINDOWS").as_deref() == Ok("1") {
        note(format_args!(
            "SKIPPED {test}: {what} (FCGI_SKIP_WINDOWS=1 under CI)"
        ));
    } else {
        panic!(
            "{test}: {what}; under CI the Windows build must be tested \
             (set FCGI_SKIP_WINDOWS=1 only when the target cannot be installed)"
        );
    }
}

fn runs(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// wine64 and wineserver: `FCGI_WINE`/`FCGI_WINESERVER` (when set, only
/// there), else on PATH, else where Debian's wine64 package puts them.
fn wine_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, names: &[&str], fixed: &[&str]| -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(var) {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        names
            .iter()
            .find_map(|n| on_path(n))
            .or_else(|| fixed.iter().map(PathBuf::from).find(|p| p.is_file()))
    };
    let wine = find("FCGI_WINE", &["wine64"], &["/usr/lib/wine/wine64"])?;
    let server = find(
        "FCGI_WINESERVER",
        &["wineserver"],
        &["/usr/lib/wine/wineserver64", "/usr/lib/wine/wineserver"],
    )?;
    Some((wine, server))
}

/// What is missing to build and run the Windows programs, if anything.
fn missing_tools(need_wine: bool) -> Option<String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let std_dir = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .join("lib");
    let has_std = std::fs::read_dir(&std_dir).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    });
    if !has_std {
        return Some(format!(
            "the Rust target {TARGET} is not installed (rustup target add {TARGET})"
        ));
    }
    if !runs(MINGW_CC, "--version") || !runs(MINGW_OBJDUMP, "--version") {
        return Some(format!(
            "{MINGW_CC} is missing (apt-get install gcc-mingw-w64-x86-64)"
        ));
    }
    if need_wine && wine_tools().is_none() {
        return Some("wine64 is missing (apt-get install wine64)".into());
    }
    None
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Windows build and the programs, made once per test process.
struct Built {
    /// target/windows: libfcgi.dll, libfcgi.dll.a, libfcgi.def.
    lib_dir: PathBuf,
    /// The .exe files with libfcgi.dll and the bcryptprimitives.dll
    /// stand-in beside them.
    bin_dir: PathBuf,
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = common::repo();
        let started = Instant::now();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new("make")
            .current_dir(&repo)
            .arg("--no-print-directory")
            .arg("windows")
            .arg(format!("CARGO={cargo}")));
        let lib_dir = repo.join("target/windows");
        note(format_args!(
            "make windows (libfcgi.dll): {:.1} s",
            started.elapsed().as_secs_f64()
        ));

        let started = Instant::now();
        let bin_dir = std::env::temp_dir().join(format!("fcgi-windows-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&bin_dir);
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::copy(lib_dir.join("libfcgi.dll"), bin_dir.join("libfcgi.dll")).unwrap();
        let cc = |out: &str, src: &str, libs: &[&str]| {
            run(Command::new(MINGW_CC)
                .args(["-Wall", "-Wextra", "-Werror", "-O2", "-I"])
                .arg(repo.join("include"))
                .arg("-o")
                .arg(bin_dir.join(out))
                .arg(repo.join(src))
                .arg("-L")
                .arg(&lib_dir)
                .args(libs));
        };
        cc("echo.exe", "examples/echo.c", &["-lfcgi"]);
        cc("stdio-hello.exe", "examples/stdio-hello.c", &["-lfcgi"]);
        cc("win_shutdown.exe", "tests/c/win_shutdown.c", &["-lfcgi"]);
        cc("win_spawn.exe", "tests/c/win_spawn.c", &["-lws2_32"]);
        run(Command::new(MINGW_CC)
            .args(["-Wall", "-Wextra", "-Werror", "-shared", "-o"])
            .arg(bin_dir.join("bcryptprimitives.dll"))
            .arg(repo.join("tests/c/win_prng.c"))
            .arg("-lbcrypt"));
        note(format_args!(
            "mingw-w64 gcc (4 programs, ProcessPrng stand-in): {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Built { lib_dir, bin_dir }
    })
}

/// The names in fcgi.map's `global:` section.
fn linux_exports() -> Vec<String> {
    let text = std::fs::read_to_string(common::repo().join("fcgi.map")).unwrap();
    // Without the /* comments */.
    let mut map = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("/*") {
        map.push_str(&rest[..start]);
        rest = rest[start..]
            .split_once("*/")
            .map_or("", |(_, after)| after);
    }
    map.push_str(rest);
    let global = map.split("global:").nth(1).unwrap();
    let global = global.split("local:").next().unwrap();
    let mut names: Vec<String> = global
        .split(';')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// The export table of a DLL: its own name and the exported symbols.
fn export_table(dll: &Path) -> (String, Vec<String>) {
    let dump = run(Command::new(MINGW_OBJDUMP).arg("-p").arg(dll));
    let name = dump
        .lines()
        .find_map(|l| l.strip_prefix("Name "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let table = dump
        .split("[Ordinal/Name Pointer] Table")
        .nth(1)
        .expect("no export table");
    let mut names: Vec<String> = table
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split(']').nth(1).map(|n| n.trim().to_string()))
        .collect();
    names.sort();
    (name, names)
}

#[test]
fn dll_exports() {
    if let Some(what) = missing_tools(false) {
        return missing("dll_exports", &what);
    }
    let b = built();
    let dll = b.lib_dir.join("libfcgi.dll");
    let (name, exports) = export_table(&dll);
    assert_eq!(name, "libfcgi.dll", "the DLL's own name");
    let want: Vec<String> = linux_exports()
        .into_iter()
        .filter(|n| !LEFT_OUT.contains(&n.as_str()))
        .collect();
    assert_eq!(exports, want, "exports of {}", dll.display());
    note(format_args!(
        "libfcgi.dll exports {} symbols (fcgi.map's {} less {} OS_* functions)",
        exports.len(),
        exports.len() + LEFT_OUT.len(),
        LEFT_OUT.len()
    ));

    let implib = b.lib_dir.join("libfcgi.dll.a");
    if runs(MINGW_DLLTOOL, "--version") {
        let imported = run(Command::new(MINGW_DLLTOOL).arg("-I").arg(&implib));
        assert_eq!(imported.trim(), "libfcgi.dll", "DLL named by {implib:?}");
    }
    let def = std::fs::read_to_string(b.lib_dir.join("libfcgi.def")).unwrap();
    assert!(def.starts_with("LIBRARY libfcgi.dll\nEXPORTS\n"), "{def}");
    assert!(def.lines().any(|l| l == "_fcgi_sF DATA"), "{def}");
    assert_eq!(def.lines().count(), 2 + want.len(), "{def}");
}

/// Removes a folder when dropped.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A private wine prefix, and the wineserver to stop at the end.
struct Wine {
    wine: PathBuf,
    server: PathBuf,
    prefix: PathBuf,
}

impl Wine {
    fn new() -> Wine {
        let (wine, server) = wine_tools().expect("checked before");
        let prefix = std::env::temp_dir().join(format!("fcgi-wineprefix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&prefix);
        Wine {
            wine,
            server,
            prefix,
        }
    }

    fn command(&self, dir: &Path, exe: &str) -> Command {
        let mut cmd = Command::new(&self.wine);
        cmd.arg(exe)
            .current_dir(dir)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINELOADER", &self.wine)
            // No Mono or Gecko installer dialogs on the first start.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY")
            .stdin(Stdio::null());
        cmd
    }

    /// Starts `exe ARGS` with standard output and error in files.
    fn start(&self, dir: &Path, exe: &str, args: &[&str]) -> App {
        let out = dir.join(format!("{exe}.out"));
        let err = dir.join(format!("{exe}.err"));
        let child = self
            .command(dir, exe)
            .args(args)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.wine.display()));
        App {
            child,
            out,
            err,
            name: exe.to_string(),
        }
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = Command::new(&self.server)
            .arg("-k")
            .env("WINEPREFIX", &self.prefix)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// A program running under wine.
struct App {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    name: String,
}

impl App {
    fn output(&self) -> String {
        format!(
            "{} stdout: {}\nstderr: {}",
            self.name,
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Waits until `port` accepts connections (wine's first start in a
    /// new prefix takes seconds); fails if the program exits first.
    fn wait_for_port(&mut self, port: u16, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return started.elapsed();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{} exited ({status}) before listening\n{}",
                    self.name,
                    self.output()
                );
            }
            assert!(
                started.elapsed() < limit,
                "{} not listening on {port} after {limit:?}\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the program to exit by itself; its exit status.
    fn wait_exit(&mut self, limit: Duration) -> i32 {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                started.elapsed() < limit,
                "{} still running after {limit:?}\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(port: u16) -> Client {
    Client::connect(&format!("127.0.0.1:{port}"))
        .unwrap()
        .with_timeout(Duration::from_secs(30))
        .unwrap()
}

fn get(uri: &str, query: &str) -> Request {
    Request::responder()
        .param("REQUEST_METHOD", "GET")
        .param("REQUEST_URI", uri)
        .param("QUERY_STRING", query)
        .param("SERVER_NAME", "windows.test")
}

fn post(body: &[u8]) -> Request {
    Request::responder()
        .param("REQUEST_METHOD", "POST")
        .param("CONTENT_LENGTH", body.len().to_string())
        .stdin(body.to_vec())
}

fn ok(resp: &Response) {
    assert_eq!(resp.protocol_status, 0, "protocol status");
    assert!(resp.stdout_ended, "STDOUT not ended");
}

#[test]
fn programs_under_wine() {
    if let Some(what) = missing_tools(true) {
        return missing("programs_under_wine", &what);
    }
    let b = built();
    let dir = &b.bin_dir;
    // Dropped last: after wine has stopped.
    let _remove = RemoveDir(b.bin_dir.clone());
    let wine = Wine::new();

    // ---- examples/echo.c on FCGX_OpenSocket("127.0.0.1:PORT") ----------
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut echo = wine.start(dir, "echo.exe", &[&addr]);
    let first_start = echo.wait_for_port(port, Duration::from_secs(120));
    note(format_args!(
        "wine: new prefix, echo.exe listening after {:.1} s",
        first_start.as_secs_f64()
    ));

    let started = Instant::now();
    // GET with parameters.
    let resp = client(port)
        .request(&get("/windows/get", "a=1&b=two").param("X_CUSTOM", "h\u{e9}llo w\u{f6}rld"))
        .unwrap_or_else(|e| panic!("GET: {e}\n{}", echo.output()));
    ok(&resp);
    assert_eq!(resp.app_status, 0);
    let env = common::echoed_env(&resp);
    assert_eq!(env.first().map(String::as_str), Some("FCGI_ROLE=RESPONDER"));
    for want in [
        "REQUEST_METHOD=GET",
        "REQUEST_URI=/windows/get",
        "QUERY_STRING=a=1&b=two",
        "SERVER_NAME=windows.test",
        "X_CUSTOM=h\u{e9}llo w\u{f6}rld",
    ] {
        assert!(env.iter().any(|l| l == want), "{want} missing: {env:?}");
    }
    assert_eq!(
        resp.cgi_header("Content-Type").as_deref(),
        Some("text/plain"),
        "header from FCGX_FPrintF (the C shim, exported from the DLL)"
    );
    assert!(common::echoed_body(&resp).is_empty());

    // POST bodies echoed byte for byte (every byte value; sizes around the
    // record and buffer limits).
    for size in [1, 8, 65_535, 65_536, 300_001] {
        let body = common::pattern(size);
        let resp = client(port)
            .request(&post(&body))
            .unwrap_or_else(|e| panic!("POST {size}: {e}\n{}", echo.output()));
        ok(&resp);
        assert!(
            common::echoed_body(&resp) == body.as_slice(),
            "POST of {size} bytes not echoed exactly ({} bytes back)",
            common::echoed_body(&resp).len()
        );
    }

    // A keep-alive series on one connection.
    let mut c = client(port);
    for i in 0..20u16 {
        let body = common::pattern(100 + usize::from(i) * 997);
        let req = post(&body)
            .id(i + 1)
            .keep_conn(true)
            .param("QUERY_STRING", format!("n={i}"));
        let resp = c
            .request(&req)
            .unwrap_or_else(|e| panic!("keep-alive request {i}: {e}\n{}", echo.output()));
        ok(&resp);
        assert_eq!(resp.request_id, i + 1);
        assert!(common::echoed_env(&resp).contains(&format!("QUERY_STRING=n={i}")));
        assert!(
            common::echoed_body(&resp) == body.as_slice(),
            "keep-alive {i}"
        );
    }
    drop(c);

    // New connections one after another (each closed by the application).
    for i in 0..10 {
        let resp = client(port)
            .request(&get("/windows/conn", &format!("conn={i}")))
            .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", echo.output()));
        ok(&resp);
    }

    // STDERR, the exit status, and a response of 1 MiB more.
    let resp = client(port)
        .request(
            &get("/windows/err", "")
                .param("STDERR_TEXT", "to stderr")
                .param("EXIT_STATUS", "7")
                .param("RESPONSE_SIZE", "1048576"),
        )
        .unwrap();
    ok(&resp);
    assert_eq!(resp.app_status, 7);
    assert!(
        common::contains(&resp.stderr, b"to stderr"),
        "{:?}",
        resp.stderr
    );
    assert!(resp.stdout.len() > 1_048_576, "{} bytes", resp.stdout.len());
    note(format_args!(
        "echo.exe: GET, 5 POSTs (to 300 KB), 20 keep-alive, 10 connections, \
         1 MiB response: {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    drop(echo);

    // ---- examples/stdio-hello.c (fcgi_stdio.h) -------------------------
    // As a CGI program: stdin is no socket.
    let out = wine
        .command(dir, "stdio-hello.exe")
        .env("QUERY_STRING", "as=cgi")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdio-hello.exe as CGI: {out:?}");
    assert!(text.contains("Hello #1 from CGI, query=as=cgi"), "{text:?}");

    // As a FastCGI application started with a listening socket as stdin.
    let port = free_port();
    let started = Instant::now();
    let mut spawn = wine.start(
        dir,
        "win_spawn.exe",
        &[&port.to_string(), "stdio-hello.exe"],
    );
    spawn.wait_for_port(port, Duration::from_secs(60));
    let mut c = client(port);
    for i in 1..=3u16 {
        let body = format!("body {i}\n").into_bytes();
        let resp = c
            .request(
                &post(&body)
                    .id(i)
                    .keep_conn(true)
                    .param("QUERY_STRING", format!("q={i}")),
            )
            .unwrap_or_else(|e| panic!("stdio-hello request {i}: {e}\n{}", spawn.output()));
        ok(&resp);
        let want = format!("Hello #{i} from FastCGI, query=q={i}\nbody {i}\n");
        assert_eq!(String::from_utf8_lossy(resp.body()), want);
    }
    drop(c);
    note(format_args!(
        "stdio-hello.exe with a socket as stdin: 3 requests in {:.2} s",
        started.elapsed().as_secs_f64()
    ));
    drop(spawn);

    // ---- FCGX_ShutdownPending ends a waiting FCGX_Accept_r --------------
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut shut = wine.start(dir, "win_shutdown.exe", &[&addr]);
    shut.wait_for_port(port, Duration::from_secs(60));
    let resp = client(port).request(&get("/bye", "")).unwrap();
    ok(&resp);
    assert_eq!(
        String::from_utf8_lossy(resp.body()),
        "bye, is_cgi=1 123456789012 -9000000000 2.50 (null)\n"
    );
    let started = Instant::now();
    let status = shut.wait_exit(Duration::from_secs(20));
    let output = shut.output();
    assert_eq!(status, 0, "{output}");
    // WSAEINTR: what a shutdown makes FCGX_Accept_r return on Windows.
    assert!(output.contains("accept after shutdown: -10004"), "{output}");
    note(format_args!(
        "win_shutdown.exe: accept returned after the shutdown request, \
         process gone {:.2} s after the request",
        started.elapsed().as_secs_f64()
    ));
}
