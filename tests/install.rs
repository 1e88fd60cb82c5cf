//! `make install` puts libfcgi's layout into a prefix, and a C program
//! builds against it with `cc app.c $(pkg-config --cflags --libs fcgi)`
//! alone, then serves a request; `make uninstall` removes it all again.

mod common;

use fcgi::client::{Client, Request};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn make_install_and_pkg_config() {
    let repo = common::repo();
    let prefix = std::env::temp_dir().join(format!("fcgi-prefix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&prefix);
    let prefix_arg = format!("PREFIX={}", prefix.display());
    run(Command::new("make").current_dir(&repo).args([
        "--no-print-directory",
        "install",
        &prefix_arg,
    ]));

    let files = files_under(&prefix);
    for want in [
        "lib/libfcgi.so.0.0.0",
        "lib/libfcgi.so.0",
        "lib/libfcgi.so",
        "lib/libfcgi.a",
        "lib/pkgconfig/fcgi.pc",
        "include/fcgiapp.h",
        "include/fastcgi.h",
        "bin/fcgi-client",
    ] {
        assert!(
            files.iter().any(|f| f == want),
            "{want} not installed: {files:?}"
        );
    }
    assert_eq!(
        std::fs::read_link(prefix.join("lib/libfcgi.so.0")).unwrap(),
        Path::new("libfcgi.so.0.0.0")
    );
    assert_eq!(
        std::fs::read_link(prefix.join("lib/libfcgi.so")).unwrap(),
        Path::new("libfcgi.so.0")
    );

    // Build a program with pkg-config's flags only.
    let pc = prefix.join("lib/pkgconfig");
    let flags = run(Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", &pc)
        .args(["--cflags", "--libs", "fcgi"]));
    let version = run(Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", &pc)
        .args(["--modversion", "fcgi"]));
    assert!(version.trim().starts_with("2.4"), "{version}");
    let app = prefix.join("echo");
    let mut cc = Command::new("cc");
    cc.arg("-o")
        .arg(&app)
        .arg(repo.join("examples/echo.c"))
        .args(flags.split_whitespace());
    run(&mut cc);

    // The library reports its version (an extension declared in fcgiapp.h).
    let src = prefix.join("version.c");
    std::fs::write(&src, "#include <fcgiapp.h>\n#include <stdio.h>\nint main(void) { puts(fcgi_rs_version()); return 0; }\n").unwrap();
    let version_bin = prefix.join("version");
    let mut cc = Command::new("cc");
    cc.arg("-o")
        .arg(&version_bin)
        .arg(&src)
        .args(flags.split_whitespace());
    run(&mut cc);
    let reported = run(Command::new(&version_bin).env("LD_LIBRARY_PATH", prefix.join("lib")));
    assert_eq!(reported.trim(), env!("CARGO_PKG_VERSION"));
    std::fs::remove_file(&src).unwrap();
    std::fs::remove_file(&version_bin).unwrap();

    let sock = prefix.join("app.sock");
    let mut child = Command::new(&app)
        .arg(&sock)
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::unix_listening(&sock) {
        assert!(Instant::now() < deadline, "app did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", child.id())).unwrap();
    let mut c = Client::connect(sock.to_str().unwrap()).unwrap();
    let r = c.request(
        &Request::responder()
            .param("QUERY_STRING", "installed=1")
            .stdin(b"body".to_vec()),
    );
    let _ = child.kill();
    let _ = child.wait();
    let r = r.unwrap();
    assert!(r.stdout.ends_with(b"body"));
    assert!(
        maps.contains(&*prefix.join("lib/libfcgi.so.0.0.0").to_string_lossy()),
        "installed library not loaded"
    );

    std::fs::remove_file(&app).unwrap();
    std::fs::remove_file(&sock).unwrap();
    run(Command::new("make").current_dir(&repo).args([
        "--no-print-directory",
        "uninstall",
        &prefix_arg,
    ]));
    assert_eq!(
        files_under(&prefix),
        Vec::<String>::new(),
        "uninstall left files"
    );
    std::fs::remove_dir_all(&prefix).unwrap();
}
