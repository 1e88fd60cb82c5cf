//! The fcgi_stdio.h layer: FCGI_Accept in FastCGI mode (a listening socket
//! on fd 0, as web servers and spawn-fcgi start applications) and in CGI
//! mode, `_fcgi_sF` in binaries built against the ORIGINAL headers (copy
//! relocation), the environment, and the original's use-after-free bugs.

mod common;

use common::{Lib, compile, our_lib_dir, secs};
use fcgi::client::{Client, Request};
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An application started with a listening Unix socket on fd 0.
struct Spawned {
    child: Child,
    sock: PathBuf,
    dir: PathBuf,
}

impl Spawned {
    fn start(name: &str, headers: Lib, args: &[&str]) -> Spawned {
        let bin = compile(name, headers);
        let dir = std::env::temp_dir().join(format!(
            "fcgi-stdio-{}-{name}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() + rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("app.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let fd: OwnedFd = listener.into();
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(&dir)
            .stdin(Stdio::from(fd))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("LD_LIBRARY_PATH", lib_dir(Lib::under_test()));
        let child = cmd.spawn().unwrap();
        Spawned { child, sock, dir }
    }

    fn client(&self) -> Client {
        Client::connect(self.sock.to_str().unwrap())
            .unwrap()
            .with_timeout(secs(10))
            .unwrap()
    }

    fn request(&self, req: &Request) -> fcgi::client::Response {
        self.client().request(req).expect("response")
    }

    fn loaded_ours(&self) -> bool {
        let maps =
            std::fs::read_to_string(format!("/proc/{}/maps", self.child.id())).unwrap_or_default();
        let ours = std::fs::canonicalize(common::our_library()).unwrap();
        maps.contains(&*ours.to_string_lossy())
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> (i32, String) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + secs(5);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .ok();
                return (st.code().unwrap_or(-1), err);
            }
            assert!(Instant::now() < deadline, "did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u128 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u128
}

fn lib_dir(lib: Lib) -> PathBuf {
    match lib {
        Lib::Ours => our_lib_dir(),
        Lib::Original => PathBuf::from("/usr/lib/x86_64-linux-gnu"),
    }
}

#[test]
fn stdio_hello_as_fastcgi() {
    let app = Spawned::start("stdio-hello", Lib::under_test(), &[]);
    for i in 1..=3 {
        let body = format!("body number {i}").into_bytes();
        let r = app.request(
            &Request::responder()
                .param("QUERY_STRING", format!("n={i}"))
                .stdin(body.clone()),
        );
        let text = String::from_utf8_lossy(r.body()).into_owned();
        assert!(
            text.starts_with(&format!("Hello #{i} from FastCGI, query=n={i}\n")),
            "{text}"
        );
        assert!(r.body().ends_with(&body));
    }
    if Lib::under_test() == Lib::Ours {
        assert!(app.loaded_ours());
    }
    let (code, _) = app.terminate();
    assert_eq!(code, 0);
}

#[test]
fn stdio_hello_as_cgi() {
    let bin = compile("stdio-hello", Lib::under_test());
    let mut child = Command::new(bin)
        .env("QUERY_STRING", "cgi=1")
        .env("LD_LIBRARY_PATH", lib_dir(Lib::under_test()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"posted").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Content-type: text/plain\r\n\r\nHello #1 from CGI, query=cgi=1\nposted"
    );
}

#[test]
fn binary_built_against_original_headers_uses_its_copy_of_fcgi_sf() {
    // The executable owns a 48-byte copy of _fcgi_sF (R_X86_64_COPY); the
    // library must work on that copy, and ld.so must not complain about
    // the size.
    let bin = compile("stdio_probe", Lib::Original);
    let relocs = Command::new("readelf")
        .arg("-rW")
        .arg(&bin)
        .output()
        .unwrap();
    let relocs = String::from_utf8_lossy(&relocs.stdout);
    assert!(
        relocs
            .lines()
            .any(|l| l.contains("R_X86_64_COPY") && l.contains("_fcgi_sF")),
        "{relocs}"
    );

    let report = std::env::temp_dir().join(format!("fcgi-stdio-report-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let app = Spawned::start("stdio_probe", Lib::Original, &[report.to_str().unwrap()]);
    let r = app.request(
        &Request::responder()
            .param("SCENARIO", "stdio")
            .stdin(b"xyz\nrest".to_vec()),
    );
    assert_eq!(
        String::from_utf8_lossy(r.body()),
        "c=x line=xyz\n|feof=0 ftell=-1 fileno=-1 seek=-1\nputs-line\nfputs-text\n!"
    );
    assert_eq!(String::from_utf8_lossy(&r.stderr), "\nto-stderr 5");
    assert_eq!(r.app_status, 9);
    let r = app.request(
        &Request::responder()
            .param("SCENARIO", "env")
            .param("QUERY_STRING", "q=1"),
    );
    assert_eq!(
        String::from_utf8_lossy(r.body()),
        "QUERY_STRING=q=1 FCGI_ROLE=RESPONDER PATH=unset\n"
    );

    let (code, stderr) = app.terminate();
    assert!(!stderr.contains("different size"), "{stderr}");
    assert_eq!(code, 0, "stderr: {stderr}");
    // After the loop: the process environment is back, nothing crashed,
    // and output to the finished request fails cleanly.
    let text = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    assert!(
        text.contains("after rc=-4 PATH=set QUERY_STRING=(none) printf=-1"),
        "{text}"
    );
}

#[test]
fn fwrite_to_a_vanished_peer_returns_a_short_count() {
    // libfcgi returned (size_t)-1 / size: a huge count.
    let report = std::env::temp_dir().join(format!("fcgi-stdio-fwrite-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let app = Spawned::start(
        "stdio_probe",
        Lib::under_test(),
        &[report.to_str().unwrap()],
    );
    let mut c = app.client();
    c.send(&Request::responder().param("SCENARIO", "fwrite_gone"))
        .unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(1500));
    // The app survived (SIGPIPE did not kill it) and serves the next request.
    let r = app.request(&Request::responder().param("SCENARIO", "env"));
    assert!(String::from_utf8_lossy(r.body()).starts_with("QUERY_STRING="));
    let (code, _) = app.terminate();
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    assert!(text.contains("fwrite_gone a<=1 b<=1"), "{text}");
}

#[test]
fn exit_inside_a_request_still_finishes_it() {
    // FCGI_Accept registers FCGI_Finish with atexit: a program that exits
    // in the middle of a request still sends its output and END_REQUEST.
    let report = std::env::temp_dir().join(format!("fcgi-stdio-exit-{}", std::process::id()));
    let mut app = Spawned::start(
        "stdio_probe",
        Lib::under_test(),
        &[report.to_str().unwrap()],
    );
    let r = app.request(&Request::responder().param("SCENARIO", "exit_in_request"));
    assert_eq!(r.body(), b"leaving from inside a request");
    assert!(r.stdout_ended);
    assert_eq!(r.app_status, 5);
    let deadline = Instant::now() + secs(5);
    while app.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the app did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&report);
}
