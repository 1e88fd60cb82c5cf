//! `fcgi-client`, the command-line client, against the echo example.

mod common;

use common::App;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn client_binary() -> PathBuf {
    let bin = common::profile_dir().join("fcgi-client");
    let release = common::profile_dir().ends_with("release");
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "-p", "fcgi-cli"]);
    if release {
        build.arg("--release");
    }
    assert!(
        build.status().unwrap().success(),
        "building fcgi-client failed"
    );
    bin
}

fn run(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(client_binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn get_post_keep_alive_and_exit_status() {
    let app = App::under_test("echo");
    let out = run(
        &[
            &app.addr,
            "/path?a=1&exit=3",
            "-p",
            "HTTP_X_TEST=yes",
            "-p",
            "STDERR_TEXT=warn",
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the app's exit status is the client's"
    );
    for want in [
        "REQUEST_METHOD=GET",
        "QUERY_STRING=a=1&exit=3",
        "REQUEST_URI=/path?a=1&exit=3",
        "HTTP_X_TEST=yes",
    ] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
    assert_eq!(String::from_utf8_lossy(&out.stderr), "warn");

    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = run(
        &[&app.addr, "/upload", "--data-file", "-", "--body-only"],
        &body,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("REQUEST_METHOD=POST"));
    assert!(out.stdout.ends_with(&body), "body not echoed byte for byte");

    let out = run(
        &[&app.addr, "/", "--repeat", "3", "--keep-conn", "--verbose"],
        b"",
    );
    assert_eq!(out.status.code(), Some(0));
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("app_status=0 protocol_status=0").count(),
        3,
        "{log}"
    );
}

#[test]
fn unreachable_app_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("fcgi-cli-{}", std::process::id()));
    let out = run(&[dir.join("nobody.sock").to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    let out = run(&["127.0.0.1:1", "/", "--param", "no-equals-sign"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=VALUE"));
}
