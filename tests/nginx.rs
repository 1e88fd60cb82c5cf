//! End to end through a real web server: nginx → FastCGI → `examples/echo.c`
//! compiled against our `include/` and running on our `libfcgi.so` (the one
//! cargo built next to this test, in `target/<profile>/`).
//!
//! Each test writes its own nginx.conf in a scratch folder (loopback only,
//! free ports, pid/log/temp paths inside the folder, `daemon off` and
//! `master_process off`), with `fastcgi_keep_conn on` and an upstream
//! `keepalive` pool, and sends hand-written HTTP/1.1 requests. Between
//! nginx and the application sits a small TCP relay that counts the
//! connections nginx opens, so keep-alive is measured from outside the
//! application. The application gets its listening socket as fd 0, the
//! classic FastCGI way. `/proc/<pid>/maps` of the application must show our
//! library and not Debian's.
//!
//! This test installs nothing: `.ci/run` installs nginx. Without `nginx`
//! (on PATH or in /usr/sbin) the tests print a message and pass, except under
//! CI (env `CI` set), where a missing nginx fails them. Every process
//! started here is killed when the test ends, also when it fails.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`, where cargo put both this test and `libfcgi.so`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The nginx binary, or None (after a message) when it is not installed
/// outside CI. Panics in CI.
fn nginx_binary(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !in_ci(),
            "{test}: nginx is not installed (.ci/run installs nginx-light)"
        );
        eprintln!("SKIPPED {test}: nginx is not installed (apt-get install nginx-light)");
    }
    found
}

/// A scratch folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = profile_dir()
            .join("nginx-test")
            .join(format!("{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
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
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Compiles examples/echo.c against our headers, linked with our library
/// through `dir/lib/libfcgi.so.0`, with that folder as its run path.
fn build_echo(dir: &Path) -> PathBuf {
    let lib = profile_dir().join("libfcgi.so");
    assert!(lib.is_file(), "{} was not built by cargo", lib.display());
    let libdir = dir.join("lib");
    std::fs::create_dir_all(&libdir).unwrap();
    std::os::unix::fs::symlink(&lib, libdir.join("libfcgi.so.0")).unwrap();
    let exe = dir.join("echo");
    let out = Command::new("gcc")
        .env("LC_ALL", "C")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(repo().join("include"))
        .arg(repo().join("examples/echo.c"))
        .arg(&lib)
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "compiling examples/echo.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// A TCP relay on a loopback port that forwards every connection to
/// `target` and counts them.
struct Relay {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    fn start(target: u16) -> Relay {
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

    fn connections(&self) -> usize {
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

/// nginx in front of examples/echo.c, everything on loopback.
struct Stack {
    // Fields drop in order: nginx first, then the application, the relay
    // and last the folder.
    nginx: Killed,
    app: Killed,
    relay: Relay,
    port: u16,
    dir: Scratch,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nginx_conf(dir: &Path, port: u16, upstream: u16) -> String {
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
    client_max_body_size 16m;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            fastcgi_pass app;
            fastcgi_keep_conn on;
            fastcgi_read_timeout 30s;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param SERVER_ADDR $server_addr;
            fastcgi_param SERVER_PORT $server_port;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param STDERR_TEXT $arg_stderr if_not_empty;
        }}
    }}
}}
"#
    )
}

impl Stack {
    /// Starts the application, the relay and nginx; None if nginx is not
    /// installed (outside CI).
    fn start(test: &str) -> Option<Stack> {
        let nginx = nginx_binary(test)?;
        let dir = Scratch::new(test);
        let echo = build_echo(&dir.0);

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind application socket");
        let app_port = listener.local_addr().unwrap().port();
        let app = Command::new(&echo)
            .stdin(Stdio::from(OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("app.stderr")).unwrap())
            .env_remove("FCGI_WEB_SERVER_ADDRS")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("LD_PRELOAD")
            .spawn()
            .expect("start examples/echo.c");
        let app = Killed(app);
        let relay = Relay::start(app_port);

        // The port is free when chosen but may be taken before nginx binds
        // it; then try another.
        for _attempt in 0..5 {
            let port = free_port();
            let conf = dir.0.join("nginx.conf");
            std::fs::write(&conf, nginx_conf(&dir.0, port, relay.port)).unwrap();
            let child = Command::new(&nginx)
                .arg("-p")
                .arg(&dir.0)
                .arg("-c")
                .arg(&conf)
                .arg("-e")
                .arg(dir.0.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.0.join("nginx.stderr")).unwrap())
                .spawn()
                .expect("start nginx");
            let mut nginx = Killed(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Stack {
                        nginx,
                        app,
                        relay,
                        port,
                        dir,
                    });
                }
                if let Some(status) = nginx.0.try_wait().unwrap() {
                    let log = read_lossy(&dir.0.join("error.log"))
                        + &read_lossy(&dir.0.join("nginx.stderr"));
                    if log.contains("Address already in use") {
                        break;
                    }
                    panic!("nginx exited ({status}) at start:\n{log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "nginx did not listen within 10 s:\n{}",
                    read_lossy(&dir.0.join("error.log"))
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("nginx found no free port in 5 attempts");
    }

    fn error_log(&self) -> String {
        read_lossy(&self.dir.0.join("error.log"))
    }

    /// Sends one request and returns the response; panics with nginx's
    /// error log on failure.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> Response {
        match http(self.port, method, target, body) {
            Ok(r) => r,
            Err(e) => panic!(
                "{method} {target}: {e}\nnginx error log:\n{}",
                self.error_log()
            ),
        }
    }

    /// The application is alive and its memory maps show our library.
    fn assert_app_runs_our_library(&mut self) {
        assert!(
            self.app.0.try_wait().unwrap().is_none(),
            "the application exited; its stderr:\n{}",
            read_lossy(&self.dir.0.join("app.stderr"))
        );
        let maps =
            std::fs::read_to_string(format!("/proc/{}/maps", self.app.0.id())).expect("read maps");
        let ours = std::fs::canonicalize(profile_dir().join("libfcgi.so")).unwrap();
        let fcgi: Vec<&str> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| p.contains("libfcgi"))
            .collect();
        assert!(
            fcgi.iter().any(|p| Path::new(p) == ours),
            "the application did not map {}; libfcgi mappings: {fcgi:?}",
            ours.display()
        );
        assert!(
            fcgi.iter().all(|p| Path::new(p) == ours),
            "the application also mapped another libfcgi: {fcgi:?}"
        );
    }

    fn assert_nginx_running(&mut self) {
        assert!(
            self.nginx.0.try_wait().unwrap().is_none(),
            "nginx exited:\n{}",
            self.error_log()
        );
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// echo.c's body: the environment lines (X-Env-Bytes long), an empty
    /// line, then the request body.
    fn env_and_echo(&self) -> (String, &[u8]) {
        let env_bytes: usize = self
            .header("X-Env-Bytes")
            .unwrap_or_else(|| panic!("no X-Env-Bytes header: {:?}", self.headers))
            .parse()
            .expect("X-Env-Bytes is a number");
        assert!(
            self.body.len() > env_bytes,
            "body shorter than the environment"
        );
        assert_eq!(
            self.body[env_bytes], b'\n',
            "no empty line after the environment"
        );
        let env = String::from_utf8_lossy(&self.body[..env_bytes]).into_owned();
        (env, &self.body[env_bytes + 1..])
    }

    fn env_lines(&self) -> Vec<String> {
        self.env_and_echo().0.lines().map(String::from).collect()
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), read
/// to the end; handles chunked and Content-Length bodies.
fn http(port: u16, method: &str, target: &str, body: &[u8]) -> Result<Response, String> {
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

fn parse_response(raw: &[u8]) -> Result<Response, String> {
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

/// `n` bytes of a fixed pseudo-random sequence (every byte value occurs).
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn get_with_a_query_string() {
    let Some(mut stack) = Stack::start("get") else {
        return;
    };
    let r = stack.request("GET", "/app/info?x=1&y=two%20words&z=%C3%A9", b"");
    assert_eq!(r.status, 200, "{r:?}\n{}", stack.error_log());
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    let env = r.env_lines();
    assert_eq!(
        env.first().map(String::as_str),
        Some("FCGI_ROLE=RESPONDER"),
        "{env:?}"
    );
    for want in [
        "QUERY_STRING=x=1&y=two%20words&z=%C3%A9",
        "REQUEST_METHOD=GET",
        "REQUEST_URI=/app/info?x=1&y=two%20words&z=%C3%A9",
        "SCRIPT_NAME=/app/info",
        "SERVER_PROTOCOL=HTTP/1.1",
        "GATEWAY_INTERFACE=CGI/1.1",
        "REMOTE_ADDR=127.0.0.1",
        "HTTP_USER_AGENT=fcgi-nginx-test",
        "HTTP_HOST=localhost",
        "CONTENT_LENGTH=",
    ] {
        assert!(env.iter().any(|l| l == want), "no {want:?} in {env:?}");
    }
    assert!(
        !env.iter().any(|l| l.starts_with("STDERR_TEXT=")),
        "{env:?}"
    );
    let (_, echoed) = r.env_and_echo();
    assert!(echoed.is_empty(), "a GET has no body to echo: {echoed:?}");
    stack.assert_app_runs_our_library();
    stack.assert_nginx_running();
}

#[test]
fn a_one_mebibyte_post_is_echoed_byte_for_byte() {
    let Some(mut stack) = Stack::start("post") else {
        return;
    };
    let body = pattern(1 << 20);
    let r = stack.request("POST", "/upload?big=1", &body);
    assert_eq!(r.status, 200, "{}", stack.error_log());
    let (env, echoed) = r.env_and_echo();
    assert!(env.lines().any(|l| l == "CONTENT_LENGTH=1048576"), "{env}");
    assert!(env.lines().any(|l| l == "REQUEST_METHOD=POST"), "{env}");
    assert!(
        env.lines()
            .any(|l| l == "CONTENT_TYPE=application/octet-stream"),
        "{env}"
    );
    assert_eq!(echoed.len(), body.len(), "echoed length");
    if let Some(at) = echoed.iter().zip(&body).position(|(a, b)| a != b) {
        panic!("echoed body differs from byte {at} on");
    }
    // A second large request on the same (kept-alive) upstream connection.
    let body2 = pattern(300_001);
    let r = stack.request("POST", "/upload?big=2", &body2);
    assert_eq!(r.status, 200);
    assert!(
        r.env_and_echo().1 == &body2[..],
        "second POST not echoed exactly"
    );
    assert_eq!(
        stack.relay.connections(),
        1,
        "nginx had to reconnect between two requests"
    );
    stack.assert_app_runs_our_library();
}

#[test]
fn fifty_sequential_requests_share_kept_alive_connections() {
    let Some(mut stack) = Stack::start("keepalive") else {
        return;
    };
    for i in 0..50 {
        let (method, body) = if i % 10 == 9 {
            ("POST", format!("body of request {i}").into_bytes())
        } else {
            ("GET", Vec::new())
        };
        let r = stack.request(method, &format!("/k?i={i}"), &body);
        assert_eq!(r.status, 200, "request {i}: {}", stack.error_log());
        let (env, echoed) = r.env_and_echo();
        assert!(
            env.lines().any(|l| l == format!("QUERY_STRING=i={i}")),
            "request {i}: {env}"
        );
        assert_eq!(echoed, &body[..], "request {i}");
    }
    let connections = stack.relay.connections();
    assert!(
        (1..=2).contains(&connections),
        "50 sequential requests used {connections} FastCGI connections; with \
         fastcgi_keep_conn the application must keep them open"
    );
    stack.assert_app_runs_our_library();
    stack.assert_nginx_running();
}

#[test]
fn stderr_output_reaches_the_nginx_error_log() {
    let Some(mut stack) = Stack::start("stderr") else {
        return;
    };
    let marker = format!("stderr-marker-{}", std::process::id());
    let r = stack.request("GET", &format!("/e?stderr={marker}"), b"");
    assert_eq!(r.status, 200, "{}", stack.error_log());
    let env = r.env_lines();
    assert!(
        env.iter().any(|l| *l == format!("STDERR_TEXT={marker}")),
        "{env:?}"
    );
    // nginx logs FCGI_STDERR data as it arrives.
    let deadline = Instant::now() + Duration::from_secs(5);
    let wanted = format!("FastCGI sent in stderr: \"{marker}\"");
    while !stack.error_log().contains(&wanted) {
        assert!(
            Instant::now() < deadline,
            "{wanted:?} not in the error log:\n{}",
            stack.error_log()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // The connection survives a request with stderr output.
    let r = stack.request("GET", "/e?after=1", b"");
    assert_eq!(r.status, 200);
    assert_eq!(stack.relay.connections(), 1);
    stack.assert_app_runs_our_library();
}

#[test]
fn http_helpers_parse_what_nginx_sends() {
    // The client above is hand-written: make sure its parsing is right.
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n5\r\nhello\r\n1;ext=x\r\n!\r\n0\r\n\r\n";
    let r = parse_response(chunked).unwrap();
    assert_eq!(
        (r.status, r.header("x-a"), &r.body[..]),
        (200, Some("1"), &b"hello!"[..])
    );
    let sized = b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nabcdef";
    let r = parse_response(sized).unwrap();
    assert_eq!((r.status, &r.body[..]), (404, &b"abc"[..]));
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel").is_err()
    );
    let p = pattern(4096);
    assert!(
        (0..=255u8).all(|b| p.contains(&b)),
        "pattern covers every byte value"
    );
}
