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
    preamble_with_workers(dir, max_body, 1, 64)
}

/// [`preamble`] for `workers` worker processes with `connections` each.
/// More than one worker needs nginx's master process (`master_process
/// on`, still in the foreground); as root, `user root` keeps the workers
/// able to write the scratch folder. [`Nginx`] stops the workers with their
/// master on drop.
pub fn preamble_with_workers(dir: &Path, max_body: &str, workers: u32, connections: u32) -> String {
    let d = dir.display();
    let processes = if workers <= 1 {
        "master_process off;\n".to_string()
    } else {
        let user = if running_as_root() {
            "user root;\n"
        } else {
            ""
        };
        format!("master_process on;\nworker_processes {workers};\n{user}")
    };
    format!(
        r#"daemon off;
{processes}pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{
    worker_connections {connections};
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

/// Whether this process runs as root (the owner of /proc/self is the
/// effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// A running nginx (killed on drop) listening on `127.0.0.1:port`.
pub struct Nginx {
    child: Killed,
    pub port: u16,
    dir: PathBuf,
}

/// The children of process `pid` (from /proc; its worker processes for an
/// nginx master).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether `pid` is still an nginx process (not reaped, not reused).
fn is_nginx(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.contains("(nginx)") && !s.contains(") Z "))
}

fn send_signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Nginx {
    /// With worker processes (`master_process on`), a SIGKILL of the master
    /// would leave them running: the master is asked to stop them
    /// (SIGTERM, fast shutdown) and given 5 s, and any worker still there
    /// afterwards is killed. Without workers, `Killed` does it all.
    fn drop(&mut self) {
        let workers = children_of(self.child.pid());
        if workers.is_empty() {
            return;
        }
        send_signal(self.child.pid(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.running() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        for w in workers {
            if is_nginx(w) {
                send_signal(w, "KILL");
            }
        }
    }
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
///
/// A program started through a launcher that binds the socket and then
/// execs it (`spawn-fcgi -n`) is seen listening before the dynamic loader
/// has mapped its libraries, so this waits (up to 10 s) for a libfcgi to
/// appear in the maps before it compares.
pub fn assert_maps_library(pid: u32, what: &str, lib: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut fcgi = mapped_libfcgi(pid);
    while fcgi.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        fcgi = mapped_libfcgi(pid);
    }
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

/// A keep-alive HTTP/1.1 connection: one GET after another on the same
/// TCP connection, each response read exactly to its end (Content-Length
/// or chunked), nothing read ahead.
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server said `Connection: close` (or closed): open a new one.
    pub closed: bool,
}

impl HttpConn {
    /// Connects to `127.0.0.1:port`; `timeout` bounds the connect and every
    /// later read and write.
    pub fn connect(port: u16, timeout: Duration) -> Result<HttpConn, String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        let _ = stream.set_nodelay(true);
        Ok(HttpConn {
            stream,
            buf: Vec::new(),
            closed: false,
        })
    }

    /// Sends `GET target` and reads its whole response.
    pub fn get(&mut self, target: &str) -> Result<Response, String> {
        self.send("GET", target, None)
    }

    /// Sends `POST target` with `body` and reads its whole response.
    pub fn post(&mut self, target: &str, body: &[u8]) -> Result<Response, String> {
        self.send("POST", target, Some(body))
    }

    fn send(
        &mut self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, String> {
        if self.closed {
            return Err("connection already closed by the server".into());
        }
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fcgi-nginx-test\r\n"
        );
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/octet-stream\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(body.unwrap_or_default());
        self.stream
            .write_all(&out)
            .map_err(|e| format!("send: {e}"))?;
        let mut chunk = [0u8; 16384];
        let len = loop {
            if let Some(n) = response_len(&self.buf)? {
                break n;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.closed = true;
                    return Err(format!(
                        "closed by the server after {} bytes of a response",
                        self.buf.len()
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closed = true;
                    let what = if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                        "timed out".to_string()
                    } else {
                        e.to_string()
                    };
                    return Err(format!(
                        "read: {what} (after {} bytes of a response)",
                        self.buf.len()
                    ));
                }
            }
        };
        let resp = parse_response(&self.buf[..len])?;
        self.buf.drain(..len);
        if resp
            .header("Connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.closed = true;
        }
        Ok(resp)
    }
}

/// The length of the complete HTTP response at the start of `raw`, or None
/// while it is incomplete. Knows Content-Length and chunked bodies (a
/// response with neither must not come on a kept-alive connection).
pub fn response_len(raw: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let mut at = end + 4;
    let header = |name: &str| {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    if header("transfer-encoding").is_some_and(|v| v == "chunked") {
        loop {
            let Some(eol) = raw[at..].windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let line = String::from_utf8_lossy(&raw[at..at + eol]).into_owned();
            let size_hex = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size {line:?}"))?;
            at += eol + 2;
            if size == 0 {
                // No trailers from nginx: the empty line ends the body.
                return Ok((raw.len() >= at + 2).then_some(at + 2));
            }
            if raw.len() < at + size + 2 {
                return Ok(None);
            }
            at += size + 2;
        }
    }
    match header("content-length") {
        Some(n) => {
            let n: usize = n.parse().map_err(|_| format!("bad Content-Length {n:?}"))?;
            Ok((raw.len() >= at + n).then_some(at + n))
        }
        None => Err(format!(
            "a response with neither Content-Length nor chunked body on a kept-alive connection: {:?}",
            String::from_utf8_lossy(&raw[..end])
        )),
    }
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
