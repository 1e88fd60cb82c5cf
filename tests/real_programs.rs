//! Real programs, unchanged binaries, on our library: Debian's packaged
//! programs and bindings that link `libfcgi.so.0` are started with
//! `LD_LIBRARY_PATH` pointing at a folder whose `libfcgi.so.0` is our
//! `target/<profile>/libfcgi.so`, and `/proc/<pid>/maps` must show that
//! library and no other libfcgi.
//!
//! * **fcgiwrap** (a `fcgi_stdio.h` program: `FCGI_Accept`, `_fcgi_sF`
//!   copy-relocated into the executable, `environ` per request) behind
//!   **nginx**, both on loopback with their own configuration in a scratch
//!   folder. A shell CGI script written by the test answers a GET with its
//!   environment and echoes a 5 MiB POST body byte for byte; its stderr
//!   (fcgiwrap `-f`) reaches nginx's error log.
//! * **libfcgi++** (Debian's `libfcgi++.so.0`, `fcgio.h`): a small C++
//!   program (`tests/real_programs/fcgio_echo.cc`, `fcgi_streambuf` under
//!   `std::cin/cout/cerr`) compiled with g++ against /usr/include, linked
//!   with `-lfcgi++ -lfcgi`, started by **spawn-fcgi** with the socket on
//!   fd 0, and driven by our client (`fcgi::client`).
//! * **Perl's FCGI module** (Debian's libfcgi-perl, whose `FCGI.so` links
//!   `libfcgi.so.0`): `tests/real_programs/echo.pl` opens its socket with
//!   `FCGI::OpenSocket` and serves with `FCGI::Request`/`Accept`, driven
//!   by our client: several requests, kept-alive connections, a POST body,
//!   stderr.
//!
//! `FCGI_TEST_LIB=original` runs the same tests on Debian's library (no
//! LD_LIBRARY_PATH), to check the tests themselves.
//!
//! This test installs nothing (`.ci/run` does). A sub-test whose program is
//! missing prints `SKIPPED ...` and passes, except under CI (env `CI` set),
//! where a missing program fails it. Every process started here is killed
//! when its test ends, also when it fails.

mod common;

use common::nginx::{
    FASTCGI_PARAMS, Killed, Nginx, Scratch, assert_maps_library, find_program, free_port,
    mapped_libfcgi, nginx_binary, preamble, read_lossy,
};
use common::{Lib, ORIGINAL_LIBRARY, our_lib_dir, our_library, pattern, repo, secs};
use fcgi::client::{Client, Request, Response};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the test's scratch folders go (`target/<profile>/real-programs`).
const AREA: &str = "real-programs";

/// Environment for a process that must load our library: our folder on
/// LD_LIBRARY_PATH, nothing preloaded, no address allowlist. (With
/// `FCGI_TEST_LIB=original`, no LD_LIBRARY_PATH: the programs then run on
/// Debian's library, to check the tests themselves.)
fn on_our_library(cmd: &mut Command) -> &mut Command {
    match Lib::under_test() {
        Lib::Ours => cmd.env("LD_LIBRARY_PATH", our_lib_dir()),
        Lib::Original => cmd.env_remove("LD_LIBRARY_PATH"),
    };
    cmd.env_remove("LD_PRELOAD")
        .env_remove("FCGI_WEB_SERVER_ADDRS")
}

/// The libfcgi file the programs must map: ours, or with
/// `FCGI_TEST_LIB=original` Debian's.
fn library_under_test() -> PathBuf {
    match Lib::under_test() {
        Lib::Ours => std::fs::canonicalize(our_library()).unwrap(),
        Lib::Original => PathBuf::from(ORIGINAL_LIBRARY),
    }
}

/// Starts `cmd` with stdin/stdout on /dev/null and stderr into
/// `dir/<name>.stderr`.
fn spawn(cmd: &mut Command, dir: &Path, name: &str) -> Killed {
    let stderr = std::fs::File::create(dir.join(format!("{name}.stderr"))).unwrap();
    let child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
    Killed(child)
}

/// Whether someone listens on 127.0.0.1:`port` or 0.0.0.0:`port`
/// (state 0A in /proc/net/tcp), without connecting to it.
fn tcp_listening(port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3
            && f[3] == "0A"
            && f[1]
                .rsplit_once(':')
                .is_some_and(|(_, p)| u16::from_str_radix(p, 16) == Ok(port))
    })
}

/// Whether someone listens on the Unix socket `path` (flag
/// `__SO_ACCEPTCON` in /proc/net/unix), without connecting to it.
fn unix_listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let want = path.to_string_lossy();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 8
            && f[7] == want
            && u32::from_str_radix(f[3], 16).is_ok_and(|fl| fl & 0x10000 != 0)
    })
}

/// Waits until `listening()` holds; panics with the program's stderr if it
/// exits first or takes longer than 10 s. Returns false when it exited
/// with "Address already in use" (the caller retries on another port).
fn wait_listening(
    child: &mut Killed,
    dir: &Path,
    name: &str,
    listening: impl Fn() -> bool,
) -> bool {
    let deadline = Instant::now() + secs(10);
    loop {
        if listening() {
            return true;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            let err = read_lossy(&dir.join(format!("{name}.stderr")));
            if err.contains("Address already in use") || err.contains("EADDRINUSE") {
                return false;
            }
            panic!("{name} exited before listening ({status}); stderr:\n{err}");
        }
        assert!(Instant::now() < deadline, "{name} did not listen in time");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that `child` still runs and maps our library, and that the
/// dynamic loader did not complain about it (e.g. a `_fcgi_sF` of another
/// size than the executable's copy).
fn assert_runs_on_our_library(child: &mut Killed, dir: &Path, name: &str) {
    let err = read_lossy(&dir.join(format!("{name}.stderr")));
    assert!(child.running(), "{name} exited; stderr:\n{err}");
    assert_maps_library(child.pid(), name, &library_under_test());
    assert!(
        !err.contains("different size") && !err.contains("symbol lookup error"),
        "the dynamic loader complained about {name}:\n{err}"
    );
}

/// Splits a body of NAME=value lines, an empty line and the echoed bytes.
fn env_and_echo(body: &[u8]) -> (Vec<String>, &[u8]) {
    let end = body
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or_else(|| panic!("no empty line after the environment in {body:?}"));
    let env = String::from_utf8_lossy(&body[..end])
        .lines()
        .map(String::from)
        .collect();
    (env, &body[end + 2..])
}

fn assert_has(env: &[String], want: &str) {
    assert!(env.iter().any(|l| l == want), "no {want:?} in {env:#?}");
}

fn assert_same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: {} bytes instead of {}, first difference at byte {at}",
        got.len(),
        want.len()
    );
}

// ---------------------------------------------------------------------
// fcgiwrap behind nginx
// ---------------------------------------------------------------------

/// The marker between the environment and the echoed body in env.cgi's
/// output.
const END_OF_ENV: &str = "--- end of environment ---";

/// The CGI script fcgiwrap runs. fcgiwrap writes the whole request body to
/// the script before it reads the script's output, so the script stores the
/// body first (in its folder) and only then writes.
fn cgi_script(dir: &Path) -> String {
    format!(
        r#"#!/bin/sh
body="{dir}/body.$$"
cat > "$body" || exit 1
printf 'Content-Type: application/octet-stream\r\n'
printf 'X-Script: env.cgi\r\n'
printf '\r\n'
env
printf '%s\n' '{END_OF_ENV}'
cat "$body"
rm -f "$body"
if [ -n "$STDERR_TEXT" ]; then
    printf 'cgi-stderr: %s\n' "$STDERR_TEXT" >&2
fi
exit 0
"#,
        dir = dir.display()
    )
}

fn fcgiwrap_conf(dir: &Path, port: u16, upstream: u16) -> String {
    format!(
        r#"{preamble}    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            fastcgi_pass 127.0.0.1:{upstream};
            fastcgi_read_timeout 60s;
            fastcgi_send_timeout 60s;{FASTCGI_PARAMS}            fastcgi_param SCRIPT_FILENAME {script};
            fastcgi_param DOCUMENT_ROOT {dir};
            fastcgi_param STDERR_TEXT $arg_stderr if_not_empty;
        }}
    }}
}}
"#,
        preamble = preamble(dir, "10m"),
        script = dir.join("env.cgi").display(),
        dir = dir.display(),
    )
}

/// nginx → fcgiwrap (on our library) → env.cgi, on loopback.
struct FcgiwrapStack {
    // Drop order: nginx, fcgiwrap, then the folder.
    nginx: Nginx,
    fcgiwrap: Killed,
    dir: Scratch,
}

impl FcgiwrapStack {
    /// None (after a message) when nginx or fcgiwrap is not installed,
    /// outside CI.
    fn start(test: &str) -> Option<FcgiwrapStack> {
        let nginx = nginx_binary(test)?;
        let fcgiwrap = find_program(test, "fcgiwrap", "fcgiwrap")?;
        let dir = Scratch::new(AREA, test);
        let script = dir.path().join("env.cgi");
        std::fs::write(&script, cgi_script(dir.path())).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

        // fcgiwrap binds the socket itself (-s), then serves it with
        // FCGI_Accept; -f passes the script's stderr on as FCGI_STDERR.
        // TCP rather than a Unix socket: nginx started as root serves as
        // nobody, who could not connect to a socket file made by root.
        let (wrap, upstream) = (0..5)
            .find_map(|_| {
                let port = free_port();
                let mut cmd = Command::new(&fcgiwrap);
                cmd.args(["-f", "-c", "1", "-s"])
                    .arg(format!("tcp:127.0.0.1:{port}"));
                on_our_library(&mut cmd);
                let mut child = spawn(&mut cmd, dir.path(), "fcgiwrap");
                wait_listening(&mut child, dir.path(), "fcgiwrap", || tcp_listening(port))
                    .then_some((child, port))
            })
            .expect("fcgiwrap found no free port in 5 attempts");
        let nginx = Nginx::start(&nginx, dir.path(), |port| {
            fcgiwrap_conf(dir.path(), port, upstream)
        });
        Some(FcgiwrapStack {
            nginx,
            fcgiwrap: wrap,
            dir,
        })
    }

    /// A request through nginx; the script's environment lines and the
    /// echoed body.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> (Vec<String>, Vec<u8>) {
        let r = self.nginx.request(method, target, body);
        assert_eq!(
            r.status,
            200,
            "{method} {target}: {r:?}\nnginx error log:\n{}\nfcgiwrap stderr:\n{}",
            self.nginx.error_log(),
            read_lossy(&self.dir.path().join("fcgiwrap.stderr"))
        );
        assert_eq!(r.header("X-Script"), Some("env.cgi"), "{:?}", r.headers);
        let marker = format!("\n{END_OF_ENV}\n");
        let at = r
            .body
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
            .unwrap_or_else(|| panic!("no {END_OF_ENV:?} in the script's output"));
        let env = String::from_utf8_lossy(&r.body[..at])
            .lines()
            .map(String::from)
            .collect();
        (env, r.body[at + marker.len()..].to_vec())
    }

    fn assert_on_our_library(&mut self) {
        assert_runs_on_our_library(&mut self.fcgiwrap, self.dir.path(), "fcgiwrap");
        self.nginx.assert_running();
    }
}

#[test]
fn fcgiwrap_answers_a_get_with_the_cgi_environment() {
    let Some(mut stack) = FcgiwrapStack::start("fcgiwrap-get") else {
        return;
    };
    stack.assert_on_our_library();
    // fcgiwrap owns a copy of _fcgi_sF (R_X86_64_COPY): our library must
    // use that copy (through its GOT), or FCGI_stdout would stay unset.
    if let Ok(out) = Command::new("readelf")
        .env("LC_ALL", "C")
        .args(["-rW", "/usr/sbin/fcgiwrap"])
        .output()
    {
        let relocs = String::from_utf8_lossy(&out.stdout);
        assert!(
            relocs
                .lines()
                .any(|l| l.contains("R_X86_64_COPY") && l.contains("_fcgi_sF")),
            "fcgiwrap no longer copy-relocates _fcgi_sF:\n{relocs}"
        );
    }
    let (env, echoed) = stack.request("GET", "/cgi/info?x=1&y=two%20words", b"");
    for want in [
        "QUERY_STRING=x=1&y=two%20words".to_string(),
        "REQUEST_METHOD=GET".into(),
        "REQUEST_URI=/cgi/info?x=1&y=two%20words".into(),
        "SCRIPT_NAME=/cgi/info".into(),
        "GATEWAY_INTERFACE=CGI/1.1".into(),
        "SERVER_PROTOCOL=HTTP/1.1".into(),
        "REMOTE_ADDR=127.0.0.1".into(),
        "HTTP_USER_AGENT=fcgi-nginx-test".into(),
        "HTTP_HOST=localhost".into(),
        format!(
            "SCRIPT_FILENAME={}",
            stack.dir.path().join("env.cgi").display()
        ),
        format!("DOCUMENT_ROOT={}", stack.dir.path().display()),
    ] {
        assert_has(&env, &want);
    }
    // FCGI_Accept pointed environ at the request's parameters (fcgiwrap
    // adds its own start-up environment for the script, with the original
    // library too, so that is not checked).
    assert_has(&env, "FCGI_ROLE=RESPONDER");
    assert!(echoed.is_empty(), "a GET has no body: {echoed:?}");

    // Ten more, each answered with its own query string.
    for i in 0..10 {
        let (env, _) = stack.request("GET", &format!("/cgi/n?i={i}"), b"");
        assert_has(&env, &format!("QUERY_STRING=i={i}"));
    }
    stack.assert_on_our_library();
}

#[test]
fn fcgiwrap_echoes_a_5_mib_post_byte_for_byte() {
    let Some(mut stack) = FcgiwrapStack::start("fcgiwrap-post") else {
        return;
    };
    let body = pattern(5 << 20);
    let (env, echoed) = stack.request("POST", "/cgi/upload?big=1", &body);
    assert_has(&env, "REQUEST_METHOD=POST");
    assert_has(&env, "CONTENT_LENGTH=5242880");
    assert_has(&env, "CONTENT_TYPE=application/octet-stream");
    assert_same_bytes("the echoed 5 MiB body", &echoed, &body);

    // A small one after it, on the same fcgiwrap.
    let (_, echoed) = stack.request("POST", "/cgi/upload?small=1", b"small body\n");
    assert_eq!(echoed, b"small body\n");
    stack.assert_on_our_library();
}

#[test]
fn fcgiwrap_passes_the_scripts_stderr_to_nginx() {
    let Some(mut stack) = FcgiwrapStack::start("fcgiwrap-stderr") else {
        return;
    };
    let marker = format!("marker-{}", std::process::id());
    let (env, _) = stack.request("GET", &format!("/cgi/e?stderr={marker}"), b"");
    assert_has(&env, &format!("STDERR_TEXT={marker}"));
    stack.nginx.wait_for_log(
        &format!("FastCGI sent in stderr: \"cgi-stderr: {marker}"),
        secs(5),
    );
    let (env, _) = stack.request("GET", "/cgi/e?after=1", b"");
    assert_has(&env, "QUERY_STRING=after=1");
    stack.assert_on_our_library();
}

// ---------------------------------------------------------------------
// libfcgi++ (fcgio.h)
// ---------------------------------------------------------------------

/// Compiles tests/real_programs/fcgio_echo.cc with g++ against the system
/// headers, linked with Debian's -lfcgi++ and -lfcgi (run time: ours).
fn build_fcgio_echo(test: &str, dir: &Path) -> Option<PathBuf> {
    let gxx = find_program(test, "g++", "g++")?;
    for (file, package) in [
        ("/usr/include/fcgio.h", "libfcgi-dev"),
        ("/usr/lib/x86_64-linux-gnu/libfcgi++.so.0", "libfcgi0ldbl"),
    ] {
        if !Path::new(file).exists() {
            assert!(
                !common::nginx::in_ci(),
                "{test}: {file} is missing in CI (.ci/run installs {package})"
            );
            eprintln!("SKIPPED {test}: {file} is missing (apt-get install {package})");
            return None;
        }
    }
    let exe = dir.join("fcgio_echo");
    let out = Command::new(gxx)
        .env("LC_ALL", "C")
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg(repo().join("tests/real_programs/fcgio_echo.cc"))
        .args(["-lfcgi++", "-lfcgi", "-o"])
        .arg(&exe)
        .output()
        .expect("run g++");
    assert!(
        out.status.success(),
        "compiling fcgio_echo.cc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(exe)
}

/// A program started by `spawn-fcgi -n` on a Unix socket (fd 0 of the
/// program; -n: spawn-fcgi execs it in its own process).
struct Spawned {
    child: Killed,
    sock: PathBuf,
    name: &'static str,
    dir: Scratch,
}

impl Spawned {
    fn client(&self) -> Client {
        Client::connect(&self.sock.to_string_lossy())
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.sock.display()))
            .with_timeout(secs(20))
            .unwrap()
    }

    fn request(&self, client: &mut Client, req: &Request) -> Response {
        let r = client.request(req).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; stderr:\n{}",
                self.name,
                read_lossy(&self.dir.path().join(format!("{}.stderr", self.name)))
            )
        });
        assert_eq!(r.protocol_status, 0, "{r:?}");
        assert_eq!(r.app_status, 0, "{r:?}");
        r
    }

    fn assert_on_our_library(&mut self) {
        assert_runs_on_our_library(&mut self.child, self.dir.path(), self.name);
    }
}

fn start_fcgio(test: &str) -> Option<Spawned> {
    let spawn_fcgi = find_program(test, "spawn-fcgi", "spawn-fcgi")?;
    let dir = Scratch::new(AREA, test);
    let exe = build_fcgio_echo(test, dir.path())?;
    let sock = dir.path().join("fcgio.sock");
    let mut cmd = Command::new(spawn_fcgi);
    cmd.arg("-n").arg("-s").arg(&sock).arg("--").arg(&exe);
    on_our_library(&mut cmd);
    let mut child = spawn(&mut cmd, dir.path(), "fcgio_echo");
    assert!(wait_listening(&mut child, dir.path(), "fcgio_echo", || {
        unix_listening(&sock)
    }));
    Some(Spawned {
        child,
        sock,
        name: "fcgio_echo",
        dir,
    })
}

#[test]
fn libfcgipp_fcgio_program_runs_on_our_library() {
    let Some(mut app) = start_fcgio("fcgio") else {
        return;
    };
    // The libraries are checked once the program has answered: spawn-fcgi
    // listens before it execs the program, so until then the process may
    // still be spawn-fcgi, or the loader mid-way through its libraries.

    // GET: the parameters through std::cout.
    let mut c = app.client();
    let r = app.request(
        &mut c,
        &Request::responder()
            .param("QUERY_STRING", "a=1&b=2")
            .param("REQUEST_METHOD", "GET")
            .param("UTF8_VALUE", "grüße"),
    );
    assert_eq!(r.cgi_header("Content-Type").as_deref(), Some("text/plain"));
    assert_eq!(r.cgi_header("X-Count").as_deref(), Some("1"));
    let (env, echoed) = env_and_echo(r.body());
    assert_eq!(env.first().map(String::as_str), Some("FCGI_ROLE=RESPONDER"));
    assert_has(&env, "QUERY_STRING=a=1&b=2");
    assert_has(&env, "UTF8_VALUE=grüße");
    assert!(echoed.is_empty());
    assert!(r.stderr.is_empty(), "{:?}", r.stderr);

    // POST: a 1 MiB body through std::cin.read / std::cout.write, and
    // stderr through std::cerr; on kept-alive connections.
    let mut c = app.client();
    for (i, size) in [(2, 1 << 20), (3, 65_537), (4, 1)] {
        let body = pattern(size);
        let r = app.request(
            &mut c,
            &Request::responder()
                .keep_conn(true)
                .param("REQUEST_METHOD", "POST")
                .param("CONTENT_LENGTH", size.to_string())
                .param("STDERR_TEXT", format!("post {i}"))
                .stdin(body.clone()),
        );
        assert_eq!(r.cgi_header("X-Count"), Some(i.to_string()));
        let (env, echoed) = env_and_echo(r.body());
        assert_has(&env, &format!("CONTENT_LENGTH={size}"));
        assert_same_bytes(&format!("POST {i} echoed"), echoed, &body);
        assert_eq!(
            String::from_utf8_lossy(&r.stderr),
            format!("fcgio-stderr: post {i}\n")
        );
    }

    // The application serves a kept-alive connection until it closes.
    drop(c);

    // Formatted input: operator>>, std::getline, peek() at the end (the
    // unbuffered fcgi_streambuf uses FCGX_GetChar and FCGX_UnGetChar).
    let r = app.request(
        &mut app.client(),
        &Request::responder()
            .param("MODE", "lines")
            .stdin(&b"3 and the rest\nalpha beta\n\ngamma\n"[..]),
    );
    assert_eq!(
        String::from_utf8_lossy(r.body()),
        "n=3\n[alpha beta]\n[]\n[gamma]\neof\n"
    );
    app.assert_on_our_library();
    // The C++ wrapper is Debian's, calling into ours.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", app.child.pid())).unwrap();
    assert!(
        maps.contains("/libfcgi++.so.0"),
        "fcgio_echo did not map libfcgi++.so.0"
    );
}

// ---------------------------------------------------------------------
// Perl's FCGI module
// ---------------------------------------------------------------------

/// Perl with Debian's FCGI module, or None (after a message) outside CI.
fn perl_with_fcgi(test: &str) -> Option<PathBuf> {
    let perl = find_program(test, "perl", "perl")?;
    let ok = Command::new(&perl)
        .args(["-MFCGI", "-e", "exit 0"])
        .env_remove("PERL5LIB")
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !common::nginx::in_ci(),
            "{test}: Perl's FCGI module is missing in CI (.ci/run installs libfcgi-perl)"
        );
        eprintln!("SKIPPED {test}: Perl's FCGI module is missing (apt-get install libfcgi-perl)");
        return None;
    }
    Some(perl)
}

struct PerlApp {
    child: Killed,
    addr: String,
    dir: Scratch,
}

impl PerlApp {
    fn start(test: &str) -> Option<PerlApp> {
        let perl = perl_with_fcgi(test)?;
        let dir = Scratch::new(AREA, test);
        for _attempt in 0..5 {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let mut cmd = Command::new(&perl);
            cmd.arg(repo().join("tests/real_programs/echo.pl"))
                .arg(&addr)
                .env_remove("PERL5LIB");
            on_our_library(&mut cmd);
            let mut child = spawn(&mut cmd, dir.path(), "echo.pl");
            if wait_listening(&mut child, dir.path(), "echo.pl", || tcp_listening(port)) {
                return Some(PerlApp { child, addr, dir });
            }
        }
        panic!("echo.pl found no free port in 5 attempts");
    }

    fn client(&self) -> Client {
        Client::connect(&self.addr)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr))
            .with_timeout(secs(20))
            .unwrap()
    }

    fn request(&self, client: &mut Client, req: &Request) -> Response {
        let r = client.request(req).unwrap_or_else(|e| {
            panic!(
                "echo.pl: {e}; stderr:\n{}",
                read_lossy(&self.dir.path().join("echo.pl.stderr"))
            )
        });
        assert_eq!(r.protocol_status, 0, "{r:?}");
        r
    }

    fn assert_on_our_library(&mut self) {
        assert_runs_on_our_library(&mut self.child, self.dir.path(), "echo.pl");
        let fcgi = mapped_libfcgi(self.child.pid());
        assert_eq!(fcgi.len(), 1, "{fcgi:?}");
    }
}

#[test]
fn perl_fcgi_module_runs_on_our_library() {
    let Some(mut app) = PerlApp::start("perl") else {
        return;
    };
    app.assert_on_our_library();

    // Several requests, each on its own connection.
    for i in 1..=5 {
        let r = app.request(
            &mut app.client(),
            &Request::responder()
                .param("QUERY_STRING", format!("i={i}"))
                .param("REQUEST_METHOD", "GET"),
        );
        assert_eq!(r.cgi_header("X-Count"), Some(i.to_string()));
        let (env, echoed) = env_and_echo(r.body());
        assert_has(&env, "FCGI_ROLE=RESPONDER");
        assert_has(&env, &format!("QUERY_STRING=i={i}"));
        assert_has(&env, "REQUEST_METHOD=GET");
        assert!(echoed.is_empty());
        assert!(r.stderr.is_empty(), "{:?}", r.stderr);
    }

    // POST bodies (every byte value) and stderr, on one kept-alive
    // connection.
    let mut c = app.client();
    for (n, size) in [(6, 1 << 20), (7, 8192), (8, 0)] {
        let body = pattern(size);
        let marker = format!("request {n}");
        let r = app.request(
            &mut c,
            &Request::responder()
                .keep_conn(true)
                .param("REQUEST_METHOD", "POST")
                .param("CONTENT_LENGTH", size.to_string())
                .param("STDERR_TEXT", &marker)
                .stdin(body.clone()),
        );
        assert_eq!(r.cgi_header("X-Count"), Some(n.to_string()));
        let (env, echoed) = env_and_echo(r.body());
        assert_has(&env, &format!("CONTENT_LENGTH={size}"));
        assert_same_bytes(&format!("Perl POST {n}"), echoed, &body);
        assert_eq!(
            String::from_utf8_lossy(&r.stderr),
            format!("perl-stderr: {marker}\n")
        );
    }
    app.assert_on_our_library();
}
