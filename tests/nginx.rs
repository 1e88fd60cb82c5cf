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

mod common;

use common::nginx::{
    FASTCGI_PARAMS, Killed, Nginx, Relay, Response, Scratch, assert_maps_our_library, nginx_binary,
    parse_response, read_lossy,
};
use common::repo;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Compiles examples/echo.c against our headers, linked with our library
/// through `dir/lib/libfcgi.so.0`, with that folder as its run path.
fn build_echo(dir: &Path) -> PathBuf {
    let lib = common::our_library();
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

/// nginx in front of examples/echo.c, everything on loopback.
struct Stack {
    // Fields drop in order: nginx first, then the application, the relay
    // and last the folder.
    nginx: Nginx,
    app: Killed,
    relay: Relay,
    dir: Scratch,
}

fn nginx_conf(dir: &Path, port: u16, upstream: u16) -> String {
    format!(
        r#"{preamble}    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            fastcgi_pass app;
            fastcgi_keep_conn on;
            fastcgi_read_timeout 30s;{FASTCGI_PARAMS}            fastcgi_param STDERR_TEXT $arg_stderr if_not_empty;
        }}
    }}
}}
"#,
        preamble = common::nginx::preamble(dir, "16m"),
    )
}

impl Stack {
    /// Starts the application, the relay and nginx; None if nginx is not
    /// installed (outside CI).
    fn start(test: &str) -> Option<Stack> {
        let nginx = nginx_binary(test)?;
        let dir = Scratch::new("nginx-test", test);
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
        let nginx = Nginx::start(&nginx, &dir.0, |port| nginx_conf(&dir.0, port, relay.port));
        Some(Stack {
            nginx,
            app,
            relay,
            dir,
        })
    }

    fn error_log(&self) -> String {
        self.nginx.error_log()
    }

    /// Sends one request and returns the response; panics with nginx's
    /// error log on failure.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> Response {
        self.nginx.request(method, target, body)
    }

    /// The application is alive and its memory maps show our library.
    fn assert_app_runs_our_library(&mut self) {
        assert!(
            self.app.running(),
            "the application exited; its stderr:\n{}",
            read_lossy(&self.dir.0.join("app.stderr"))
        );
        assert_maps_our_library(self.app.pid(), "examples/echo.c");
    }

    fn assert_nginx_running(&mut self) {
        self.nginx.assert_running();
    }
}

impl Response {
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
