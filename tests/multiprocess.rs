//! Growing past one process (issue #14, item 5): several processes on one
//! listening socket, several instances behind one nginx upstream, and
//! restarts that lose no request. Every application here is
//! `examples/prefork.c` on the library under test; each answer names the
//! process that served it (`pid=`) and echoes its query string, so every
//! response is checked against its request and counted per process.
//!
//! * pre-fork: `prefork ADDRESS 4` (one socket, four forked workers) and
//!   `spawn-fcgi -F 3` (the socket on fd 0 of three processes) under
//!   concurrent FastCGI load: every request answered, by every worker;
//! * `SIGKILL` of one of three instances behind one nginx upstream
//!   (`fastcgi_next_upstream error timeout`, upstream keep-alive) under
//!   HTTP load: no failed GET;
//! * graceful restart through nginx (upstream keep-alive) under HTTP load,
//!   with a slow request in flight at the restart: a second instance on
//!   the same socket, then `SIGTERM` to the first; and `SIGHUP` to the
//!   pre-fork parent (new workers first, then the old ones drain). No
//!   failed request, and the slow one is answered by the old process.
//!
//! Missing nginx or spawn-fcgi: the test prints `SKIPPED` and passes,
//! except under CI (env `CI` set), where it fails. The figures (requests,
//! failures, requests per process) are printed; run with `--nocapture`.

mod common;

use common::nginx::{
    FASTCGI_PARAMS, HttpConn, Killed, Nginx, Scratch, find_program, free_port, nginx_binary,
    read_lossy,
};
use common::{Lib, secs};
use fcgi::client::{Client, Request};
use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The tests put load on a 2-CPU machine: one at a time.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// examples/prefork.c for the library under test, and how to run it.
fn prefork() -> Command {
    let bin = common::compile("prefork", Lib::headers_under_test());
    let mut cmd = Command::new(bin);
    cmd.env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD")
        .env_remove("FCGI_WEB_SERVER_ADDRS")
        .stdout(Stdio::null());
    if Lib::under_test() == Lib::Ours {
        cmd.env("LD_LIBRARY_PATH", common::our_lib_dir());
    }
    cmd
}

/// Starts one prefork worker serving `listener` as its fd 0.
fn instance(listener: &TcpListener, dir: &Path, name: &str) -> Killed {
    let fd = OwnedFd::from(listener.try_clone().expect("dup listening socket"));
    instance_on(fd, dir, name)
}

/// Starts one prefork worker serving the listening socket `fd` as its fd 0.
fn instance_on(fd: OwnedFd, dir: &Path, name: &str) -> Killed {
    let child = prefork()
        .stdin(Stdio::from(fd))
        .stderr(std::fs::File::create(dir.join(format!("{name}.stderr"))).unwrap())
        .spawn()
        .expect("start examples/prefork.c");
    Killed(child)
}

/// A prefork parent: on drop, asked to stop (SIGTERM, its workers drain),
/// and after 5 s killed with any worker left.
struct Parent(Killed);

impl Parent {
    fn start(addr: &str, workers: &str, dir: &Path) -> Parent {
        let child = prefork()
            .args([addr, workers])
            .stderr(std::fs::File::create(dir.join("prefork.stderr")).unwrap())
            .spawn()
            .expect("start examples/prefork.c");
        Parent(Killed(child))
    }

    fn pid(&self) -> u32 {
        self.0.pid()
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        let pid = self.pid();
        let workers = children_of(pid);
        if self.0.running() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.0.running() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
        }
        for w in workers {
            if !ended(w) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(w.to_string())
                    .status();
            }
        }
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// Whether `pid` has ended (gone, or a zombie).
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

fn children_of(pid: u32) -> BTreeSet<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits until every process of `pids` (single-threaded) is blocked in
/// `accept()`: started and serving, so a load spreads over all of them.
/// Where the kernel hides wait channels (`/proc/PID/wchan` reads "0"), a
/// pause stands in.
fn wait_accepting(pids: &BTreeSet<u32>) {
    let wchan = |p: &u32| std::fs::read_to_string(format!("/proc/{p}/wchan")).unwrap_or_default();
    if pids.iter().any(|p| matches!(wchan(p).as_str(), "" | "0")) {
        thread::sleep(Duration::from_millis(500));
        return;
    }
    wait_until(secs(10), "every worker to wait in accept()", || {
        pids.iter().all(|p| wchan(p) == "inet_csk_accept")
    });
}

/// Waits up to `limit` for `what`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// What prefork answered: the serving process and the echoed query (the
/// size of the request body it read in `body=`).
fn answer(body: &[u8]) -> Result<(u32, String), String> {
    let text = String::from_utf8_lossy(body);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::to_string)
    };
    let pid = field("pid=")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no pid in {text:?}"))?;
    let query = field("query=").ok_or_else(|| format!("no query in {text:?}"))?;
    Ok((pid, query))
}

/// What a load saw: answers per process, failures, and when each process
/// answered last.
#[derive(Default)]
struct Tally {
    ok: u64,
    by_pid: BTreeMap<u32, u64>,
    last_answer: BTreeMap<u32, Instant>,
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.ok += other.ok;
        for (pid, n) in other.by_pid {
            *self.by_pid.entry(pid).or_default() += n;
        }
        for (pid, t) in other.last_answer {
            let e = self.last_answer.entry(pid).or_insert(t);
            *e = (*e).max(t);
        }
        self.failures.extend(other.failures);
    }

    /// Checks an answer to the request with `want_query` and a body of
    /// `want_body` bytes.
    fn record(&mut self, body: &[u8], want_query: &str, want_body: usize) {
        let read = String::from_utf8_lossy(body)
            .lines()
            .find_map(|l| l.strip_prefix("body=").map(str::to_string));
        if read.as_deref() != Some(want_body.to_string().as_str()) {
            self.failures.push(format!(
                "{want_query}: body of {want_body} bytes read as {read:?}"
            ));
            return;
        }
        match answer(body) {
            Ok((pid, q)) if q == want_query => {
                self.ok += 1;
                *self.by_pid.entry(pid).or_default() += 1;
                self.last_answer.insert(pid, Instant::now());
            }
            Ok((_, q)) => self
                .failures
                .push(format!("{want_query}: answer for {q:?}")),
            Err(e) => self.failures.push(format!("{want_query}: {e}")),
        }
    }

    fn summary(&self) -> String {
        let spread: Vec<String> = self
            .by_pid
            .iter()
            .map(|(p, n)| format!("pid {p}: {n}"))
            .collect();
        format!(
            "{} answered, {} failed; {}",
            self.ok,
            self.failures.len(),
            spread.join(", ")
        )
    }

    fn assert_no_failure(&self, what: &str) {
        let shown: Vec<&String> = self.failures.iter().take(10).collect();
        assert!(
            self.failures.is_empty(),
            "{what}: {} failed requests ({}); first: {shown:#?}",
            self.failures.len(),
            self.summary()
        );
    }
}

/// `threads` FastCGI clients, each sending `per_thread` requests on a new
/// connection each to `addr`.
fn fastcgi_load(addr: &str, threads: usize, per_thread: usize, ms: u32) -> Tally {
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let addr = addr.to_string();
            thread::spawn(move || {
                let mut tally = Tally::default();
                for n in 0..per_thread {
                    let query = format!("t={t}&n={n}&ms={ms}");
                    let req = Request::responder().param("QUERY_STRING", &query);
                    let resp = Client::connect(&addr)
                        .and_then(|c| c.with_timeout(secs(10)))
                        .map_err(|e| e.to_string())
                        .and_then(|mut c| c.request(&req).map_err(|e| e.to_string()));
                    match resp {
                        Ok(r) if r.protocol_status == 0 => tally.record(r.body(), &query, 0),
                        Ok(r) => tally
                            .failures
                            .push(format!("{query}: protocol status {}", r.protocol_status)),
                        Err(e) => tally.failures.push(format!("{query}: {e}")),
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for h in handles {
        all.add(h.join().unwrap());
    }
    all
}

/// HTTP clients on keep-alive connections to nginx, sending GETs (or
/// POSTs with a small body) back to back until stopped; every 10th request
/// of a client takes `slow_ms` in the application (requests in flight when
/// a process goes).
struct HttpLoad {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<Tally>>,
}

impl HttpLoad {
    fn start(port: u16, clients: usize, slow_ms: u32, post: bool) -> HttpLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|c| {
                let (stop, sent) = (stop.clone(), sent.clone());
                thread::spawn(move || {
                    let mut tally = Tally::default();
                    let mut conn: Option<HttpConn> = None;
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if conn.as_ref().is_none_or(|c| c.closed) {
                            match HttpConn::connect(port, secs(20)) {
                                Ok(c) => conn = Some(c),
                                Err(e) => {
                                    tally.failures.push(format!("client {c}: {e}"));
                                    thread::sleep(Duration::from_millis(20));
                                    continue;
                                }
                            }
                        }
                        n += 1;
                        let ms = if n % 10 == 0 { slow_ms } else { 0 };
                        let query = format!("c={c}&n={n}&ms={ms}");
                        sent.fetch_add(1, Ordering::Relaxed);
                        let target = format!("/?{query}");
                        let body = if post { query.as_bytes() } else { b"" };
                        let conn = conn.as_mut().unwrap();
                        let result = if post {
                            conn.post(&target, body)
                        } else {
                            conn.get(&target)
                        };
                        match result {
                            Ok(r) if r.status == 200 => tally.record(&r.body, &query, body.len()),
                            Ok(r) => tally.failures.push(format!("{query}: HTTP {}", r.status)),
                            Err(e) => {
                                tally.failures.push(format!("{query}: {e}"));
                                conn.closed = true;
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        HttpLoad {
            stop,
            sent,
            threads,
        }
    }

    /// Requests sent so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.threads {
            all.add(t.join().unwrap());
        }
        all
    }
}

/// An nginx in front of `servers` (loopback TCP ports), with
/// `fastcgi_next_upstream error timeout` and, if `keepalive`, upstream
/// keep-alive (else a new FastCGI connection per request).
fn start_nginx(bin: &Path, dir: &Path, servers: &[u16], keepalive: bool) -> Nginx {
    let servers: Vec<String> = servers.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    start_nginx_for(bin, dir, &servers, keepalive)
}

/// [`start_nginx`] for upstream addresses in nginx's syntax (`unix:PATH`).
fn start_nginx_for(bin: &Path, dir: &Path, servers: &[String], keepalive: bool) -> Nginx {
    let upstream: String = servers
        .iter()
        .map(|a| format!("        server {a};\n"))
        .collect();
    let (pool, keep_conn) = if keepalive {
        ("        keepalive 16;\n", "on")
    } else {
        ("", "off")
    };
    Nginx::start(bin, dir, |port| {
        format!(
            r#"{preamble}    access_log off;
    keepalive_requests 1000000;
    upstream app {{
{upstream}{pool}    }}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location / {{
            fastcgi_pass app;
            fastcgi_keep_conn {keep_conn};
            fastcgi_next_upstream error timeout;
            fastcgi_connect_timeout 2s;
            fastcgi_read_timeout 20s;{FASTCGI_PARAMS}        }}
    }}
}}
"#,
            preamble = common::nginx::preamble_with_workers(dir, "1m", 1, 1024),
        )
    })
}

/// The upstream errors nginx logged (each made nginx try the request
/// again elsewhere, or fail it), up to 5 of them shown.
fn upstream_errors(nginx: &Nginx) -> (usize, Vec<String>) {
    let log = nginx.error_log();
    let errors: Vec<String> = log
        .lines()
        .filter(|l| l.contains("upstream") && (l.contains("[error]") || l.contains("[warn]")))
        .map(str::to_string)
        .collect();
    (errors.len(), errors.into_iter().take(5).collect())
}

/// Waits until `load` has sent `more` requests beyond what it had sent.
fn let_run(load: &HttpLoad, more: u64) {
    let target = load.sent() + more;
    wait_until(secs(20), "the load to go on", || load.sent() >= target);
}

// ---------------------------------------------------------------- pre-fork

#[test]
fn prefork_workers_share_one_socket_and_lose_nothing() {
    let _serial = one_at_a_time();
    let dir = Scratch::new("multiprocess-test", "prefork");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut parent = Parent::start(&addr, "4", dir.path());
    let parent_pid = parent.pid();
    wait_until(secs(10), "4 workers", || children_of(parent_pid).len() == 4);
    wait_until(secs(10), "the socket", || Client::connect(&addr).is_ok());
    let workers = children_of(parent_pid);
    wait_accepting(&workers);

    let started = Instant::now();
    // 1 ms per request: the load lasts long enough (0.5 s) for a worker the
    // scheduler left aside for a while to get its share.
    let tally = fastcgi_load(&addr, 8, 250, 1);
    let took = started.elapsed();
    eprintln!(
        "prefork 4 workers, 8 clients x 250 requests of 1 ms (new connection each) in {took:?}: {}",
        tally.summary()
    );
    tally.assert_no_failure("prefork");
    assert_eq!(tally.ok, 2000);
    let served: BTreeSet<u32> = tally.by_pid.keys().copied().collect();
    assert_eq!(served, workers, "every worker serves, and only workers");
    for (pid, n) in &tally.by_pid {
        // Whichever process is back in accept() first gets the next
        // connection: not even, but each serves (10% of a fair share at
        // least, on a machine other jobs share).
        assert!(*n >= 2000 / 4 / 10, "worker {pid} served only {n} of 2000");
    }

    // SIGTERM to the parent: every worker drains and exits, then the parent.
    signal(parent_pid, "TERM");
    let deadline = Instant::now() + secs(5);
    let status = loop {
        if let Some(s) = parent.0.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "prefork did not exit on SIGTERM");
        thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "prefork exited with {status}");
    assert!(
        workers.iter().all(|&w| ended(w)),
        "a worker outlived its parent"
    );
}

#[test]
fn spawn_fcgi_forks_workers_on_one_socket() {
    let _serial = one_at_a_time();
    let test = "spawn_fcgi_forks_workers_on_one_socket";
    let Some(spawn_fcgi) = find_program(test, "spawn-fcgi", "spawn-fcgi") else {
        return;
    };
    let dir = Scratch::new("multiprocess-test", "spawn-fcgi");
    let bin = common::compile("prefork", Lib::headers_under_test());
    let port = free_port();
    let pid_file = dir.path().join("pids");
    let mut cmd = Command::new(&spawn_fcgi);
    cmd.env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD")
        .env_remove("FCGI_WEB_SERVER_ADDRS");
    if Lib::under_test() == Lib::Ours {
        cmd.env("LD_LIBRARY_PATH", common::our_lib_dir());
    }
    let out = cmd
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-F", "3", "-P"])
        .arg(&pid_file)
        .arg("--")
        .arg(&bin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run spawn-fcgi");
    assert!(
        out.status.success(),
        "spawn-fcgi failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: BTreeSet<u32> = read_lossy(&pid_file)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    // spawn-fcgi has exited; the workers are not our children: stop them
    // at the end however the test ends.
    struct Reap(BTreeSet<u32>);
    impl Drop for Reap {
        fn drop(&mut self) {
            for &p in &self.0 {
                if !ended(p) {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg(p.to_string())
                        .status();
                }
            }
        }
    }
    let reap = Reap(pids.clone());
    assert_eq!(pids.len(), 3, "spawn-fcgi -F 3 wrote {pids:?}");

    let addr = format!("127.0.0.1:{port}");
    wait_accepting(&pids);
    let tally = fastcgi_load(&addr, 6, 250, 1);
    eprintln!(
        "spawn-fcgi -F 3, 6 clients x 250 requests of 1 ms (new connection each): {}",
        tally.summary()
    );
    tally.assert_no_failure("spawn-fcgi -F 3");
    assert_eq!(tally.ok, 1500);
    let served: BTreeSet<u32> = tally.by_pid.keys().copied().collect();
    assert_eq!(served, pids, "every process serves, and only they");
    for (pid, n) in &tally.by_pid {
        assert!(*n >= 1500 / 3 / 10, "process {pid} served only {n} of 1500");
    }

    // No handler of the program's own: the library's SIGTERM handler ends
    // each accept loop and the process exits.
    for &p in &pids {
        signal(p, "TERM");
    }
    wait_until(secs(5), "the workers to exit on SIGTERM", || {
        pids.iter().all(|&p| ended(p))
    });
    drop(reap);
}

// ---------------------------------------------------------------- nginx

/// `n` instances, each a prefork worker on its own loopback socket (fd 0).
fn instances(dir: &Path, n: usize) -> (Vec<TcpListener>, Vec<Killed>) {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let apps = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| instance(l, dir, &format!("app{i}")))
        .collect();
    (listeners, apps)
}

#[test]
fn sigkill_of_one_instance_behind_nginx_fails_no_get() {
    let _serial = one_at_a_time();
    let test = "sigkill_of_one_instance_behind_nginx";
    let Some(nginx_bin) = nginx_binary(test) else {
        return;
    };
    let dir = Scratch::new("multiprocess-test", "sigkill");
    let (listeners, mut apps) = instances(dir.path(), 3);
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    // Only the instances hold their sockets: a killed one's port refuses.
    drop(listeners);
    let nginx = start_nginx(&nginx_bin, dir.path(), &ports, true);

    let load = HttpLoad::start(nginx.port, 8, 20, false);
    let_run(&load, 1500);
    let victim = apps[1].pid();
    let _ = apps[1].0.kill(); // SIGKILL
    let _ = apps[1].0.wait();
    let killed_at = Instant::now();
    let_run(&load, 3000);
    let tally = load.finish();
    let retried = upstream_errors(&nginx);
    eprintln!(
        "3 instances behind nginx, 8 keep-alive HTTP clients, SIGKILL of pid {victim}: {}; nginx logged {} upstream errors (requests it tried again) {:#?}",
        tally.summary(),
        retried.0,
        retried.1
    );
    tally.assert_no_failure("SIGKILL of one instance");
    assert_eq!(
        tally.by_pid.len(),
        3,
        "every instance served before the kill"
    );
    for (i, app) in apps.iter_mut().enumerate() {
        if i != 1 {
            assert!(app.running(), "instance {i} died");
            assert!(tally.last_answer[&app.pid()] > killed_at);
        }
    }
    drop(nginx);
}

/// A GET that takes `ms` in the application, sent now on its own
/// connection; the thread returns what it answered.
fn slow_request(port: u16, ms: u32) -> thread::JoinHandle<Result<(u32, String), String>> {
    thread::spawn(move || {
        let mut conn = HttpConn::connect(port, secs(30))?;
        let r = conn.get(&format!("/?slow=1&ms={ms}"))?;
        if r.status != 200 {
            return Err(format!("HTTP {}", r.status));
        }
        answer(&r.body)
    })
}

/// A restart on one socket through nginx under load (`post`: POSTs, else
/// GETs): a second process is started on the socket while the first
/// serves a 700 ms request, then SIGTERM to the first. No request fails,
/// the slow one is answered by the old process, the new one serves on.
/// `unix`: on a Unix socket, else on loopback TCP.
fn restart_on_a_shared_socket(test: &str, keepalive: bool, post: bool, unix: bool) {
    let _serial = one_at_a_time();
    let Some(nginx_bin) = nginx_binary(test) else {
        return;
    };
    let dir = Scratch::new("multiprocess-test", test);
    // The socket's holder (systemd, a supervisor, the old process that
    // execs the new one) keeps it open across the restart.
    let path = std::env::temp_dir().join(format!("fcgi-{test}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(path.clone());
    let (listener, upstream): (OwnedFd, String) = if unix {
        let l = UnixListener::bind(&path).expect("bind Unix socket");
        (l.into(), format!("unix:{}", path.display()))
    } else {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().unwrap().port();
        (l.into(), format!("127.0.0.1:{port}"))
    };
    let mut old = instance_on(listener.try_clone().unwrap(), dir.path(), "old");
    let nginx = start_nginx_for(&nginx_bin, dir.path(), &[upstream], keepalive);

    let load = HttpLoad::start(nginx.port, 8, 5, post);
    let_run(&load, 1000);
    // In flight in the old process when it is told to stop.
    let slow = slow_request(nginx.port, 700);
    thread::sleep(Duration::from_millis(100));
    let mut new = instance_on(listener.try_clone().unwrap(), dir.path(), "new");
    let new_pid = new.pid();
    wait_until(secs(10), "the new process to listen", || {
        std::fs::read_link(format!("/proc/{new_pid}/fd/0")).is_ok()
    });
    thread::sleep(Duration::from_millis(100));
    signal(old.pid(), "TERM");
    let stopped_at = Instant::now();
    let status = loop {
        if let Some(s) = old.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped_at.elapsed() < secs(10),
            "the old process did not exit after SIGTERM"
        );
        thread::sleep(Duration::from_millis(5));
    };
    let drained_in = stopped_at.elapsed();
    let_run(&load, 2000);
    let tally = load.finish();
    let slow = slow.join().unwrap();
    let retried = upstream_errors(&nginx);
    eprintln!(
        "restart on a shared socket (Unix: {unix}) behind nginx (upstream keep-alive: {keepalive}, POST: {post}), 8 HTTP clients: {}; old process exited {drained_in:?} after SIGTERM; nginx logged {} upstream errors (requests it tried again) {:#?}",
        tally.summary(),
        retried.0,
        retried.1
    );
    assert!(status.success(), "the old process exited with {status}");
    tally.assert_no_failure("graceful restart");
    let (slow_pid, _) = slow.expect("the request in flight at the restart");
    assert_eq!(
        slow_pid,
        old.pid(),
        "the slow request is answered by the old process"
    );
    assert!(new.running(), "the new process died");
    assert!(tally.by_pid.get(&new_pid).is_some_and(|&n| n >= 1000));
}

#[test]
fn graceful_restart_on_a_shared_socket_behind_nginx() {
    // Upstream keep-alive, GETs: nginx may send a request on a cached
    // connection in the instant the old process closes it; it sends a
    // GET again, elsewhere.
    restart_on_a_shared_socket("restart_keepalive_get", true, false, false);
}

#[test]
fn graceful_restart_on_a_shared_unix_socket_behind_nginx() {
    restart_on_a_shared_socket("restart_unix", true, false, true);
}

#[test]
fn graceful_restart_without_upstream_keepalive_fails_no_post() {
    // A new FastCGI connection per request: the old process accepts none
    // after SIGTERM and answers every one it accepted, so even requests
    // nginx never sends twice (POST) all succeed.
    restart_on_a_shared_socket("restart_post", false, true, false);
}

#[test]
fn prefork_sighup_replaces_workers_without_failing_a_request() {
    let _serial = one_at_a_time();
    let test = "prefork_sighup_replaces_workers";
    let Some(nginx_bin) = nginx_binary(test) else {
        return;
    };
    let dir = Scratch::new("multiprocess-test", "sighup");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let parent = Parent::start(&addr, "2", dir.path());
    let parent_pid = parent.pid();
    wait_until(secs(10), "2 workers", || children_of(parent_pid).len() == 2);
    let before = children_of(parent_pid);
    let nginx = start_nginx(&nginx_bin, dir.path(), &[port], true);

    let load = HttpLoad::start(nginx.port, 8, 5, false);
    let_run(&load, 1000);
    let slow = slow_request(nginx.port, 700);
    thread::sleep(Duration::from_millis(100));
    signal(parent_pid, "HUP");
    wait_until(secs(10), "the old workers to drain", || {
        let now = children_of(parent_pid);
        now.len() == 2 && now.is_disjoint(&before)
    });
    let after = children_of(parent_pid);
    let_run(&load, 2000);
    let tally = load.finish();
    let retried = upstream_errors(&nginx);
    eprintln!(
        "prefork 2 workers behind nginx, SIGHUP under load (8 HTTP clients): {}; nginx logged {} upstream errors (requests it tried again) {:#?}",
        tally.summary(),
        retried.0,
        retried.1
    );
    tally.assert_no_failure("SIGHUP rolling restart");
    let (slow_pid, _) = slow
        .join()
        .unwrap()
        .expect("the request in flight at SIGHUP");
    assert!(
        before.contains(&slow_pid),
        "the slow request is answered by an old worker"
    );
    for w in &after {
        assert!(tally.by_pid.contains_key(w), "new worker {w} never served");
    }
    drop(nginx);
    drop(parent);
}
