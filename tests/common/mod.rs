//! Test harness: compiles the C examples in `examples/`, runs them on a
//! fresh Unix socket or loopback port, and checks which `libfcgi.so` each
//! process really loaded.
//!
//! * [`Lib::Original`]: the system headers and Debian's `libfcgi.so.0`.
//! * [`Lib::Ours`]: `include/` of this repository and the `libfcgi.so` that
//!   cargo built next to the test binary (`target/<profile>/`).
//!
//! Environment:
//! * `FCGI_TEST_LIB=original` runs the tests meant for our library against
//!   the original instead (to see which of them the original fails).
//! * `FCGI_TEST_HEADERS=original` compiles those tests' applications against
//!   the system headers (while they still run on the library under test).
//! * `FCGI_TEST_WRAPPER="valgrind --error-exitcode=99 -q"` prefixes every
//!   application command line; timeouts are then scaled by
//!   `FCGI_TEST_TIMEOUT_SCALE` (default 10 with a wrapper, else 1). With a
//!   wrapper, an application that exits with a non-zero status (other than
//!   by our SIGKILL at the end) fails the test.
//! * `FCGI_TEST_LIB_DIR=DIR` runs "ours" on `DIR/libfcgi.so` (with its
//!   `libfcgi.so.0` link beside it) instead of building one in
//!   `target/<profile>/`: a library built with a sanitizer, for example.
//! * `FCGI_TEST_CFLAGS="-fsanitize=address"` adds flags to every C compile
//!   and link (the binaries are then cached apart). Applications are then
//!   checked as under a wrapper: stopped with SIGTERM, so LeakSanitizer and
//!   ThreadSanitizer report at exit, and failed on a sanitizer report or a
//!   non-zero exit status. `scripts/sanitizers.sh` uses both variables.

#![allow(dead_code)]

pub mod nginx;

use fcgi::client::{Client, Request, Response};
use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Which libfcgi: headers to compile against, or library to run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lib {
    Original,
    Ours,
}

impl Lib {
    fn name(self) -> &'static str {
        match self {
            Lib::Original => "original",
            Lib::Ours => "ours",
        }
    }

    /// The library the tests "for ours" run against: ours, unless
    /// `FCGI_TEST_LIB=original`.
    pub fn under_test() -> Lib {
        match std::env::var("FCGI_TEST_LIB").as_deref() {
            Ok("original") => Lib::Original,
            _ => Lib::Ours,
        }
    }

    /// The headers the tests "for ours" compile against: those of the
    /// library under test, unless `FCGI_TEST_HEADERS=original`.
    pub fn headers_under_test() -> Lib {
        match std::env::var("FCGI_TEST_HEADERS").as_deref() {
            Ok("original") => Lib::Original,
            _ => Lib::under_test(),
        }
    }
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>`: the test binary lives in its `deps/` folder.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The original library's location, as the dynamic loader resolves it.
pub const ORIGINAL_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/libfcgi.so.0.0.0";

/// `target/<profile>/libfcgi.so`, built first: `cargo test` compiles the
/// library into `deps/` but copies it up to `target/<profile>/` only on
/// `cargo build`, so this runs `cargo build --lib` once for the same
/// profile (quick when nothing changed; cargo holds no lock while tests run).
pub fn our_library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        if let Some(dir) = lib_dir_override() {
            let lib = dir.join("libfcgi.so");
            assert!(lib.is_file(), "FCGI_TEST_LIB_DIR: no {}", lib.display());
            return lib;
        }
        let profile = profile_dir();
        let name = profile.file_name().unwrap().to_string_lossy().into_owned();
        let parent = profile.parent().unwrap().to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(repo())
            .args(["build", "--lib", "-p", "fcgi", "--quiet"]);
        // target/<profile>, or target/<triple>/<profile> with --target.
        if parent.join("CACHEDIR.TAG").is_file() {
            cmd.env("CARGO_TARGET_DIR", &parent);
        } else {
            let triple = parent.file_name().unwrap().to_string_lossy().into_owned();
            cmd.env("CARGO_TARGET_DIR", parent.parent().unwrap());
            cmd.args(["--target", &triple]);
        }
        match name.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build --lib failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = profile.join("libfcgi.so");
        assert!(lib.is_file(), "{} was not built", lib.display());
        lib
    })
    .clone()
}

/// `FCGI_TEST_LIB_DIR`, if set: where our library is, already built.
fn lib_dir_override() -> Option<PathBuf> {
    std::env::var_os("FCGI_TEST_LIB_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
}

pub fn ours_available() -> bool {
    our_library().is_file() && repo().join("include/fcgiapp.h").is_file()
}

/// A folder holding `libfcgi.so` and `libfcgi.so.0` links to our library,
/// for `-L` and `LD_LIBRARY_PATH` (executables ask for the SONAME).
pub fn our_lib_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let lib = our_library();
        if let Some(dir) = lib_dir_override() {
            let soname = dir.join("libfcgi.so.0");
            assert!(
                soname.exists(),
                "FCGI_TEST_LIB_DIR: no {}",
                soname.display()
            );
            return dir;
        }
        assert!(
            lib.is_file(),
            "{} does not exist: our C ABI is not built (run `cargo build`)",
            lib.display()
        );
        let dir = profile_dir().join("c-examples").join("ourlib");
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["libfcgi.so", "libfcgi.so.0"] {
            let link = dir.join(name);
            let tmp = dir.join(format!(".{name}.{}", std::process::id()));
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&lib, &tmp).unwrap();
            std::fs::rename(&tmp, &link).unwrap();
        }
        dir
    })
    .clone()
}

/// Compiles `examples/<name>.c` (or `tests/c/<name>.c`) against `headers` and returns the binary.
/// Binaries are cached in `target/<profile>/c-examples/<headers>/` (with
/// `FCGI_TEST_CFLAGS`, in `<headers>-<flags>/`) and rebuilt when the source,
/// the headers or our library are newer.
pub fn compile(name: &str, headers: Lib) -> PathBuf {
    static BUILT: Mutex<Option<HashSet<(String, Lib)>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    // An example, or else a probe program of the tests (tests/c/).
    let example = repo().join("examples").join(format!("{name}.c"));
    let src = if example.exists() {
        example
    } else {
        repo().join("tests").join("c").join(format!("{name}.c"))
    };
    let flags = cflags();
    let mut variant = headers.name().to_string();
    for f in &flags {
        variant.push('-');
        variant.extend(
            f.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    let dir = profile_dir().join("c-examples").join(variant);
    let out = dir.join(name);
    if built
        .get_or_insert_with(HashSet::new)
        .contains(&(name.to_string(), headers))
    {
        return out;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let include = match headers {
        Lib::Original => PathBuf::from("/usr/include"),
        Lib::Ours => repo().join("include"),
    };
    assert!(
        include.join("fcgiapp.h").is_file(),
        "{} is missing (FCGI_TEST_HEADERS=original compiles against the system headers instead)",
        include.join("fcgiapp.h").display()
    );
    let mut inputs = vec![
        src.clone(),
        include.join("fcgiapp.h"),
        include.join("fcgi_stdio.h"),
    ];
    if headers == Lib::Ours {
        inputs.push(our_library());
    }
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh =
        mtime(&out).is_some_and(|t| inputs.iter().all(|i| mtime(i).is_some_and(|s| s <= t)));
    if !fresh {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let mut cmd = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()));
        cmd.args(["-Wall", "-Wextra", "-Werror", "-O1", "-g", "-pthread"]);
        cmd.args(&flags);
        if headers == Lib::Ours {
            cmd.arg("-I").arg(&include).arg("-L").arg(our_lib_dir());
        }
        cmd.arg("-o")
            .arg(&tmp)
            .arg(&src)
            .args(["-lfcgi", "-lpthread"]);
        let result = cmd.output().expect("run the C compiler");
        assert!(
            result.status.success(),
            "compiling {} against {} headers failed:\n{}",
            src.display(),
            headers.name(),
            String::from_utf8_lossy(&result.stderr)
        );
        std::fs::rename(&tmp, &out).unwrap();
    }
    built
        .get_or_insert_with(HashSet::new)
        .insert((name.to_string(), headers));
    out
}

/// Multiplier for every timeout (slow under valgrind or a sanitizer).
pub fn scale() -> u32 {
    let default = if instrumented() { 10 } else { 1 };
    std::env::var("FCGI_TEST_TIMEOUT_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A timeout of `secs` seconds, scaled.
pub fn secs(secs: u64) -> Duration {
    Duration::from_secs(secs) * scale()
}

pub fn wrapper() -> Vec<String> {
    std::env::var("FCGI_TEST_WRAPPER")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// `FCGI_TEST_CFLAGS`: extra C compiler and linker flags (a sanitizer).
pub fn cflags() -> Vec<String> {
    std::env::var("FCGI_TEST_CFLAGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Whether applications run under a wrapper or with sanitizer flags: then
/// they are stopped gracefully and their exit status and reports checked,
/// and timeouts scaled (memory bounds do not hold there either).
pub fn instrumented() -> bool {
    !wrapper().is_empty() || !cflags().is_empty()
}

/// How the application listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Unix,
    Tcp,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A running example application; killed (and its folder removed) on drop.
pub struct App {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    pub name: String,
    pub lib: Lib,
    stderr_file: PathBuf,
}

/// Builder options for [`App::start_with`].
pub struct Options<'a> {
    pub transport: Transport,
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            transport: Transport::Unix,
            args: &[],
            env: &[],
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether someone listens on the Unix socket `path` (from /proc/net/unix:
/// flag `__SO_ACCEPTCON` = 0x10000), without connecting to it.
pub fn unix_listening(path: &Path) -> bool {
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

/// Whether someone listens on 127.0.0.1:`port` or 0.0.0.0:`port` (state 0A).
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

impl App {
    /// Starts example `name` compiled against `headers`, running with the
    /// library `runtime`, listening on a fresh Unix socket.
    pub fn start(name: &str, headers: Lib, runtime: Lib) -> App {
        App::start_with(name, headers, runtime, Options::default())
    }

    /// Starts the example for the library under test (headers and runtime).
    pub fn under_test(name: &str) -> App {
        App::under_test_with(name, Options::default())
    }

    pub fn under_test_with(name: &str, opts: Options<'_>) -> App {
        App::start_with(name, Lib::headers_under_test(), Lib::under_test(), opts)
    }

    pub fn start_with(name: &str, headers: Lib, runtime: Lib, opts: Options<'_>) -> App {
        let bin = compile(name, headers);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("fcgi-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (addr, port) = match opts.transport {
            Transport::Unix => (dir.join("app.sock").to_string_lossy().into_owned(), None),
            Transport::Tcp => {
                let p = free_port();
                (format!("127.0.0.1:{p}"), Some(p))
            }
        };
        let wrap = wrapper();
        let mut cmd = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.arg(&addr).args(opts.args).current_dir(&dir);
        cmd.env_remove("LD_LIBRARY_PATH").env_remove("LD_PRELOAD");
        if runtime == Lib::Ours {
            cmd.env("LD_LIBRARY_PATH", our_lib_dir());
        }
        for (k, v) in opts.env {
            cmd.env(k, v);
        }
        let stderr_file = dir.join("stderr.txt");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_file).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut app = App {
            child,
            addr,
            dir,
            name: name.to_string(),
            lib: runtime,
            stderr_file,
        };
        let deadline = Instant::now() + secs(10);
        loop {
            let up = match port {
                None => unix_listening(Path::new(&app.addr)),
                Some(p) => tcp_listening(p),
            };
            if up {
                break;
            }
            if let Ok(Some(status)) = app.child.try_wait() {
                panic!(
                    "{name} exited before listening: {status}; stderr:\n{}",
                    app.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {} in time",
                app.addr
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        app.check_library();
        app
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the application wrote to its standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_file).unwrap_or_default()
    }

    /// The libfcgi files mapped into the process (from /proc/<pid>/maps).
    pub fn loaded_libfcgi(&self) -> Vec<PathBuf> {
        let maps =
            std::fs::read_to_string(format!("/proc/{}/maps", self.pid())).unwrap_or_default();
        let mut libs: Vec<PathBuf> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| {
                Path::new(p)
                    .file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with("libfcgi"))
            })
            .map(PathBuf::from)
            .collect();
        libs.dedup();
        libs
    }

    /// Asserts that the process runs on the library it was started for.
    pub fn check_library(&self) {
        let want = match self.lib {
            Lib::Original => PathBuf::from(ORIGINAL_LIBRARY),
            Lib::Ours => std::fs::canonicalize(our_library()).unwrap(),
        };
        let got = self.loaded_libfcgi();
        assert_eq!(
            got,
            vec![want],
            "{} (pid {}) loaded the wrong libfcgi",
            self.name,
            self.pid()
        );
    }

    /// A connected client with the default timeout.
    pub fn client(&self) -> Client {
        let c =
            Client::connect(&self.addr).unwrap_or_else(|e| panic!("connect to {}: {e}", self.addr));
        c.with_timeout(secs(10)).unwrap()
    }

    /// Waits up to `timeout` for the process to end; its status, or None
    /// if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Panics (with the application's stderr) if the process has ended.
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} died: {status}; stderr:\n{}", self.name, self.stderr());
        }
    }

    /// Number of open file descriptors of the process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Waits (up to 3 s, scaled) until the process has at most `limit`
    /// descriptors open; returns the last count.
    pub fn settle_fds(&self, limit: usize) -> usize {
        let deadline = Instant::now() + secs(3);
        loop {
            let n = self.fd_count();
            if n <= limit || Instant::now() > deadline {
                return n;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the process in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Sends one ordinary request on a new connection and checks the echo.
    /// (For `echo` and `threaded`.)
    pub fn assert_serves(&mut self) {
        self.assert_alive();
        let body = pattern(1000 + COUNTER.fetch_add(1, Ordering::Relaxed));
        let req = Request::responder()
            .param("QUERY_STRING", "health=1")
            .stdin(body.clone());
        let resp = self.client().request(&req).unwrap_or_else(|e| {
            panic!(
                "{} no longer serves a normal request: {e}; stderr:\n{}",
                self.name,
                self.stderr()
            )
        });
        assert_eq!(resp.protocol_status, 0);
        assert_eq!(
            echoed_body(&resp),
            body.as_slice(),
            "health check echo differs"
        );
        self.assert_alive();
    }

    /// Stops the process and returns its stderr.
    pub fn stop(mut self) -> String {
        self.kill();
        self.stderr()
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Under a wrapper (valgrind) or a sanitizer: asks the application to
    /// stop with SIGTERM (libfcgi's handler makes the accept loop end, so
    /// `main` returns and valgrind or LeakSanitizer reports), waking blocked
    /// accepts with empty connections; then checks the exit status and the
    /// tool's messages.
    /// Returns a complaint, if any.
    fn stop_under_wrapper(&mut self) -> Option<String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return (!status.success()).then(|| format!("exited early with {status}"));
        }
        unsafe_free_kill(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + secs(3);
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            let _ = Client::connect(&self.addr);
            std::thread::sleep(Duration::from_millis(20));
        };
        self.kill();
        // valgrind's, AddressSanitizer's and LeakSanitizer's lines start
        // with ==<pid>==; ThreadSanitizer's say "WARNING: ThreadSanitizer:".
        let marker = format!("=={}==", self.pid());
        let err = self.stderr();
        match status {
            _ if err.contains(&marker) => Some("valgrind or a sanitizer reported errors".into()),
            _ if err.contains("ThreadSanitizer:") => Some("ThreadSanitizer reported".into()),
            Some(s) if s.code().is_some_and(|c| c != 0) => Some(format!("exited with {s}")),
            _ => None,
        }
    }
}

/// `kill(2)` through the `kill` command (keeps the tests free of unsafe).
fn unsafe_free_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for App {
    fn drop(&mut self) {
        if instrumented() {
            if let Some(complaint) = self.stop_under_wrapper() {
                if !std::thread::panicking() {
                    let err = self.stderr();
                    let _ = std::fs::remove_dir_all(&self.dir);
                    panic!(
                        "{} under {:?} {:?}: {complaint}; stderr:\n{err}",
                        self.name,
                        wrapper(),
                        cflags()
                    );
                }
            }
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Deterministic non-text bytes of length `n` (all 256 values occur).
pub fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ n as u32;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Where the request body starts in the body of an `echo` or `threaded`
/// response, and where its environment lines end: `echo` says how many
/// bytes its environment lines take (X-Env-Bytes), `threaded` prints one
/// line; an empty line follows them.
fn echo_split(resp: &Response) -> (usize, usize) {
    let body = resp.body();
    let env_end = match resp.cgi_header("X-Env-Bytes") {
        Some(n) => n.parse().expect("X-Env-Bytes"),
        None => body.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1),
    };
    assert!(
        body.len() > env_end && body[env_end] == b'\n',
        "no empty line after the environment: {:?}",
        String::from_utf8_lossy(&resp.stdout[..resp.stdout.len().min(2000)])
    );
    (env_end, env_end + 1)
}

/// The request body as echoed by `echo` or `threaded`.
pub fn echoed_body(resp: &Response) -> &[u8] {
    &resp.body()[echo_split(resp).1..]
}

/// The environment lines `echo` printed (FCGI_ROLE first).
pub fn echoed_env(resp: &Response) -> Vec<String> {
    let end = echo_split(resp).0;
    String::from_utf8_lossy(&resp.body()[..end])
        .lines()
        .map(String::from)
        .collect()
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// The soft and hard RLIMIT_NOFILE of this process (from /proc/self/limits;
/// `u64::MAX` for unlimited).
pub fn nofile_limits() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("no 'Max open files' in /proc/self/limits");
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok().or((w == "unlimited").then_some(u64::MAX)))
        .collect();
    assert!(v.len() >= 2, "cannot parse {line:?}");
    (v[0], v[1])
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (with
/// prlimit(1), which keeps the tests free of unsafe code) when it is below
/// `need`; applications started afterwards inherit it. Returns the soft
/// limit in force afterwards (the caller decides whether it is enough).
pub fn raise_nofile_limit(need: u64) -> u64 {
    let (soft, hard) = nofile_limits();
    if soft < need && hard > soft {
        let hard_text = if hard == u64::MAX {
            "unlimited".to_string()
        } else {
            hard.to_string()
        };
        let _ = Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={hard_text}:{hard_text}"))
            .status();
    }
    nofile_limits().0
}
