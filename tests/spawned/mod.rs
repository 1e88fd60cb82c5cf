//! Test programs of `tests/c/` run as plain child processes (not servers
//! started by `common::App`): on the library under test, each wait bounded
//! so that a hang fails the test instead of hanging the run.

#![allow(dead_code)]

use crate::common::{Lib, compile, our_lib_dir};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A command running `tests/c/<name>.c`, built for the library under test
/// (`FCGI_TEST_LIB=original`: Debian's libfcgi), stdin and stdout null,
/// stderr piped.
pub fn command(name: &str) -> Command {
    let bin = compile(name, Lib::headers_under_test());
    let mut cmd = Command::new(bin);
    cmd.env_remove("LD_LIBRARY_PATH").env_remove("LD_PRELOAD");
    if Lib::under_test() == Lib::Ours {
        cmd.env("LD_LIBRARY_PATH", our_lib_dir());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Waits up to `limit` for `child` to end; kills it and returns None if it
/// does not.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the child wrote on stderr (after it ended).
pub fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

/// A fresh folder for sockets, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fcgi-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child whose stderr is collected as it comes (by a thread), so a test
/// can wait for what it says.
pub struct Running {
    pub child: Child,
    err: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Running {
    /// Starts `cmd` (its stderr must be piped, as [`command`] sets it).
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd.spawn().expect("start the test program");
        let err = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = err.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push_str(&text);
                }
            });
        }
        Running { child, err }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits up to `limit` until `line` has been written `count` times.
    pub fn wait_for_line(&mut self, line: &str, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let err = self.stderr();
            if err.lines().filter(|l| *l == line).count() >= count {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the program ended ({status}) before saying {line:?} {count} times; stderr:\n{err}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "the program did not say {line:?} {count} times; stderr:\n{err}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends signal `name` (e.g. "ALRM") with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{name} {}", self.pid());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
