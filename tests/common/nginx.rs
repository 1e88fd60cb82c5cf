//! nginx plumbing for the end-to-end tests (`tests/nginx.rs`,
//! `tests/real_programs.rs`): finding the binary, a scratch folder, child
//! processes killed on drop, a counting TCP relay, nginx started on a free
//! loopback port with a configuration written by the test, a small
//! HTTP/1.1 client, and the check that a process mapped our library.
//!
//! Every configuration keeps nginx inside its scratch folder: `daemon off`,
//! `master_process off`, pid, logs and temp paths in the folder (see
//! [`preamble`]), loopback only. Nothing here installs anything (`.ci/run`
//! does); a missing program makes the test print a message and pass, except
//! under CI (env `CI` set), where it fails.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::profile_dir;

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// `name` on PATH or in the sbin folders, or None (after a `SKIPPED`
/// message naming `package`) when it is not installed outside CI. Panics
/// in CI.
pub fn find_program(test: &str, name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([
            "/usr/sbin".into(),
            "/usr/local/sbin".into(),
            "/usr/bin".into(),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !in_ci(),
            "{test}: {name} is not installed (.ci/run installs {package})"
        );
        eprintln!("SKIPPED {test}: {name} is not installed (apt-get install {package})");
    }
    found
}

/// The nginx binary, or None (after a message) when it is not installed
/// outside CI. Panics in CI.
pub fn nginx_binary(test: &str) -> Option<PathBuf> {
    find_program(test, "nginx", "nginx-light")
}

/// A scratch folder `target/<profile>/<area>/<test>-<pid>`, emptied first
/// and removed on drop (kept when the test fails, to look at the logs).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(area: &str, test: &str) -> Scratch {
        let dir = profile_dir()
            .join(area)
            .join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Killed {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP relay on a loopback port that forwards every connection to
/// `127.0.0.1:target` and counts them.
pub struct Relay {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    pub fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopping) = (connections.clone(), stop.clone());
        thread::spawn(move || {
            for incoming in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(front) = incoming else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(back) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (front2, back2) = (front.try_clone().unwrap(), back.try_clone().unwrap());
                thread::spawn(move || pump(front, back));
                thread::spawn(move || pump(back2, front2));
            }
        });
        Relay {
            port,
            connections,
            stop,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until EOF or an error, then passes the EOF on.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 65536];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The top of an nginx.conf that keeps nginx in the foreground, in one
/// process, with its pid file, logs and temp folders inside `dir`; it opens
/// the `http {` block, which the caller's text must close. `max_body` is
/// nginx's `client_max_body_size` (e.g. "16m").
pub fn preamble(dir: &Path, max_body: &str) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{
    worker_connections 64;
}}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size {max_body};
"#
    )
}

/// The usual CGI parameters, as `fastcgi_param` lines (nginx's
/// `fastcgi_params` file, written out so the test does not depend on it).
pub const FASTCGI_PARAMS: &str = r#"
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param SERVER_SOFTWARE nginx;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param REMOTE_PORT $remote_port;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
"#;

/// A running nginx (killed on drop) listening on `127.0.0.1:port`.
pub struct Nginx {
    child: Killed,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Writes `dir/nginx.conf` from `conf(port)` for a free loopback port
    /// and starts `binary` with it; waits until it listens. A port taken
    /// between choosing and binding is retried with another.
    pub fn start(binary: &Path, dir: &Path, conf: impl Fn(u16) -> String) -> Nginx {
        for _attempt in 0..5 {
            let port = free_port();
            let conf_path = dir.join("nginx.conf");
            std::fs::write(&conf_path, conf(port)).unwrap();
            let child = Command::new(binary)
                .arg("-p")
                .arg(dir)
                .arg("-c")
                .arg(&conf_path)
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("nginx.stderr")).unwrap())
                .spawn()
                .expect("start nginx");
            let mut child = Killed(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx {
                        child,
                        port,
                        dir: dir.to_path_buf(),
                    };
                }
                if let Some(status) = child.0.try_wait().unwrap() {
                    let log =
                        read_lossy(&dir.join("error.log")) + &read_lossy(&dir.join("nginx.stderr"));
                    if log.contains("Address already in use") {
                        break;
                    }
                    panic!("nginx exited ({status}) at start:\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen within 10 s:\n{}",
                    read_lossy(&dir.join("error.log"))
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx found no free port in 5 attempts");
    }

    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.join("error.log"))
    }

    /// Sends one request and returns the response; panics with nginx's
    /// error log on failure.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> Response {
        match http(self.port, method, target, body) {
            Ok(r) => r,
            Err(e) => panic!(
                "{method} {target}: {e}\nnginx error log:\n{}",
                self.error_log()
            ),
        }
    }

    /// Waits up to `timeout` for `text` to appear in the error log.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.error_log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} not in the error log:\n{}",
                self.error_log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn assert_running(&mut self) {
        assert!(self.child.running(), "nginx exited:\n{}", self.error_log());
    }
}

pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The libfcgi files mapped into process `pid` (from /proc/<pid>/maps).
pub fn mapped_libfcgi(pid: u32) -> Vec<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/maps: {e}"));
    let mut libs: Vec<PathBuf> = Vec::new();
    for path in maps.lines().filter_map(|l| l.split_whitespace().nth(5)) {
        let is_fcgi = Path::new(path)
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with("libfcgi."));
        if is_fcgi && !libs.iter().any(|l| l == Path::new(path)) {
            libs.push(PathBuf::from(path));
        }
    }
    libs
}

/// Asserts that process `pid` (`what`) mapped our `libfcgi.so` (the one
/// cargo built in `target/<profile>/`) and no other libfcgi.
pub fn assert_maps_our_library(pid: u32, what: &str) {
    let ours = std::fs::canonicalize(profile_dir().join("libfcgi.so")).unwrap();
    assert_maps_library(pid, what, &ours);
}

/// Asserts that process `pid` (`what`) mapped the libfcgi file `lib` and
/// no other libfcgi.
pub fn assert_maps_library(pid: u32, what: &str, lib: &Path) {
    let fcgi = mapped_libfcgi(pid);
    assert_eq!(
        fcgi,
        vec![lib.to_path_buf()],
        "{what} (pid {pid}) must map {} and no other libfcgi",
        lib.display()
    );
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), read
/// to the end; handles chunked and Content-Length bodies.
pub fn http(port: u16, method: &str, target: &str, body: &[u8]) -> Result<Response, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nUser-Agent: fcgi-nginx-test\r\n"
    );
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .map_err(|e| format!("send head: {e}"))?;
    s.write_all(body).map_err(|e| format!("send body: {e}"))?;
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        if e.kind() != ErrorKind::ConnectionReset || raw.is_empty() {
            return Err(format!("read response: {e} (after {} bytes)", raw.len()));
        }
    }
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("Transfer-Encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
    {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        if rest.len() < len {
            return Err(format!("body cut short: {} of {len} bytes", rest.len()));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line not terminated")?;
        let size_text = String::from_utf8_lossy(&data[..eol]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 || &data[size..size + 2] != b"\r\n" {
            return Err(format!("chunk of {size} bytes cut short"));
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}
