//! ABI compatibility with libfcgi 2.4 (Debian's libfcgi-dev / libfcgi0ldbl):
//!
//! * `tests/c/abi_probe.c` prints the size, alignment and every field's
//!   offset and size of `FCGX_Stream`, `FCGX_Request` and the `fastcgi.h`
//!   records, and the value and size of every constant;
//!   `tests/c/abi_types.cc` prints the C++ type of every function, field
//!   and constant. Each is compiled against our `include/` and against the
//!   original headers in /usr/include, and the outputs must be identical.
//! * `tests/c/abi_stdio_probe.c` does the same for `fcgi_stdio.h`: the
//!   layout of `FCGI_FILE`, the sizes of `_fcgi_sF`'s elements and of the
//!   wrappers' results, and what every macro (FILE, stdin, printf, ...,
//!   FCGI_stdin, FCGI_ToFILE) expands to; `tests/c/abi_stdio_types.cc`
//!   prints the C++ type of every `FCGI_*` function (fgetpos/fsetpos with
//!   HAVE_FPOS), of `FCGI_FILE`'s fields and of `_fcgi_sF`.
//! * The dynamic symbols of our `libfcgi.so` (the one cargo built next to
//!   this test, in `target/<profile>/`) are a subset of the original's, with
//!   every `FCGX_*`, `FCGI_*` and `_fcgi_sF` present, of the same kind, and
//!   data objects of the same size; the `OS_*` layer is listed when missing.
//! * The SONAME is `libfcgi.so.0` and, like the original, the library has
//!   no symbol versions.
//!
//! Needs gcc, g++ and binutils; the comparisons need libfcgi-dev and
//! libfcgi0ldbl. Without the original they are skipped with a message,
//! except under CI (env `CI` set), where that fails.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ORIGINAL_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/libfcgi.so.0";

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

use common::our_library;

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// False (with a message) when `path` of the original is missing outside
/// CI; panics in CI.
fn original_present(path: &str, what: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    assert!(
        !in_ci(),
        "{what}: {path} of the original libfcgi is missing in CI"
    );
    eprintln!("SKIPPED {what}: {path} is missing (install libfcgi-dev)");
    false
}

fn scratch(name: &str) -> PathBuf {
    let dir = profile_dir().join("abi-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Compiles `source` with `compiler` against our headers (`ours`) or the
/// system's, runs it, and returns its output. Checks, with the dependency
/// file, which fcgiapp.h/fastcgi.h the compiler really read.
fn probe(compiler: &str, std: &str, source: &str, ours: bool, dir: &Path) -> String {
    probe_reading(
        compiler,
        std,
        source,
        ours,
        dir,
        &["fcgiapp.h", "fastcgi.h"],
    )
}

/// [`probe`], checking that the compiler read `headers` from the chosen
/// include folder.
fn probe_reading(
    compiler: &str,
    std: &str,
    source: &str,
    ours: bool,
    dir: &Path,
    headers: &[&str],
) -> String {
    let tag = if ours { "ours" } else { "original" };
    let exe = dir.join(format!("probe-{tag}"));
    let deps = dir.join(format!("probe-{tag}.d"));
    let mut cmd = Command::new(compiler);
    cmd.env("LC_ALL", "C")
        .args([std, "-Wall", "-Wextra", "-Werror"]);
    if ours {
        cmd.arg("-I").arg(repo().join("include"));
    }
    cmd.arg("-MD")
        .arg("-MF")
        .arg(&deps)
        .arg(repo().join(source))
        .arg("-o")
        .arg(&exe);
    run(&mut cmd);
    let read = std::fs::read_to_string(&deps).expect("dependency file");
    for header in headers {
        let want = if ours {
            repo().join("include").join(header)
        } else {
            Path::new("/usr/include").join(header)
        };
        assert!(
            read.contains(&want.display().to_string()),
            "{source} ({tag}) did not read {}",
            want.display()
        );
    }
    let out = run(&mut Command::new(&exe));
    String::from_utf8(out.stdout).expect("probe prints text")
}

/// Panics with the lines that differ.
fn assert_same_lines(what: &str, ours: &str, original: &str) {
    if ours == original {
        return;
    }
    let mut report = String::new();
    for (o, x) in ours.lines().zip(original.lines()) {
        if o != x {
            report.push_str(&format!("  ours:     {o}\n  original: {x}\n"));
        }
    }
    let (no, nx) = (ours.lines().count(), original.lines().count());
    if no != nx {
        report.push_str(&format!("  ours has {no} lines, the original {nx}\n"));
    }
    panic!("{what} differs from libfcgi 2.4:\n{report}");
}

#[test]
fn layouts_and_constants_are_the_originals() {
    let dir = scratch("layout");
    let ours = probe("gcc", "-std=c11", "tests/c/abi_probe.c", true, &dir);
    // Facts that hold whatever the original says (x86-64 / LP64).
    if cfg!(target_pointer_width = "64") {
        for line in [
            "FCGX_Stream size=72 align=8",
            "FCGX_Request size=80 align=8",
            "  FCGX_Request.in offset=8 size=8",
            "  FCGX_Request.listen_sock offset=72 size=4",
            "FCGI_EndRequestRecord size=16 align=1",
            "FCGI_MAX_LENGTH = 65535 (size 4)",
            "FCGI_MAX_CONNS = \"FCGI_MAX_CONNS\" (size 15)",
        ] {
            assert!(
                ours.lines().any(|l| l == line),
                "probe lacks {line:?}:\n{ours}"
            );
        }
    }
    if !original_present("/usr/include/fcgiapp.h", "layout comparison") {
        return;
    }
    let original = probe("gcc", "-std=c11", "tests/c/abi_probe.c", false, &dir);
    assert!(
        original.lines().count() > 90,
        "probe printed too little:\n{original}"
    );
    assert_same_lines("layout or a constant", &ours, &original);
}

#[test]
fn prototypes_and_field_types_are_the_originals() {
    let dir = scratch("types");
    let ours = probe("g++", "-std=c++11", "tests/c/abi_types.cc", true, &dir);
    if !original_present("/usr/include/fcgiapp.h", "type comparison") {
        return;
    }
    let original = probe("g++", "-std=c++11", "tests/c/abi_types.cc", false, &dir);
    assert!(
        original.lines().count() > 90,
        "probe printed too little:\n{original}"
    );
    assert_same_lines("a prototype or type", &ours, &original);
}

#[test]
fn fcgi_file_layout_and_stdio_macros_are_the_originals() {
    let dir = scratch("stdio-layout");
    let headers = ["fcgi_stdio.h", "fcgiapp.h"];
    let ours = probe_reading(
        "gcc",
        "-std=c11",
        "tests/c/abi_stdio_probe.c",
        true,
        &dir,
        &headers,
    );
    if cfg!(target_pointer_width = "64") {
        for line in [
            "FCGI_FILE size=16 align=8",
            "  FCGI_FILE.stdio_stream offset=0 size=8",
            "  FCGI_FILE.fcgx_stream offset=8 size=8",
            "sizeof(_fcgi_sF[0]) = 16",
            "sizeof(*FCGI_stderr) = 16",
            "sizeof(FCGI_ftell(FCGI_stdin)) = 4",
            "FCGI_stdin -> (&_fcgi_sF[0])",
            "stderr -> (&_fcgi_sF[2])",
            "getc -> FCGI_fgetc",
            "putc -> FCGI_fputc",
            "FCGI_ToFILE(fp) -> (fp->stdio_stream)",
            "scanf -> scanf",
        ] {
            assert!(
                ours.lines().any(|l| l == line),
                "probe lacks {line:?}:\n{ours}"
            );
        }
    }
    if !original_present(
        "/usr/include/fcgi_stdio.h",
        "fcgi_stdio.h layout comparison",
    ) {
        return;
    }
    let original = probe_reading(
        "gcc",
        "-std=c11",
        "tests/c/abi_stdio_probe.c",
        false,
        &dir,
        &headers,
    );
    assert!(
        original.lines().count() > 60,
        "probe printed too little:\n{original}"
    );
    assert_same_lines(
        "an FCGI_FILE layout or an fcgi_stdio.h macro",
        &ours,
        &original,
    );
}

#[test]
fn stdio_prototypes_are_the_originals() {
    let dir = scratch("stdio-types");
    let headers = ["fcgi_stdio.h", "fcgiapp.h"];
    let ours = probe_reading(
        "g++",
        "-std=c++11",
        "tests/c/abi_stdio_types.cc",
        true,
        &dir,
        &headers,
    );
    assert_eq!(
        ours.lines().filter(|l| l.starts_with("fn FCGI_")).count(),
        39,
        "all 39 FCGI_* functions:\n{ours}"
    );
    if !original_present("/usr/include/fcgi_stdio.h", "fcgi_stdio.h type comparison") {
        return;
    }
    let original = probe_reading(
        "g++",
        "-std=c++11",
        "tests/c/abi_stdio_types.cc",
        false,
        &dir,
        &headers,
    );
    assert_same_lines("an fcgi_stdio.h prototype or type", &ours, &original);
}

#[test]
fn fcgi_sf_is_three_fcgi_files_of_data() {
    // Programs copy-relocate _fcgi_sF with the size the library's symbol
    // has: it must be three FCGI_FILEs (48 bytes on LP64), data, exported.
    let ours = dynamic_symbols(&our_library());
    let sym = ours.get("_fcgi_sF").expect("our library exports _fcgi_sF");
    assert!(!is_function(sym.kind), "_fcgi_sF is not data: {sym:?}");
    let file = 2 * std::mem::size_of::<usize>() as u64;
    assert_eq!(sym.size, Some(3 * file), "_fcgi_sF size");
    let fcgi = ours.keys().filter(|k| k.starts_with("FCGI_")).count();
    assert_eq!(fcgi, 39, "all 39 FCGI_* functions are exported");
}

/// A defined dynamic symbol: its `nm` type letter and size.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Symbol {
    kind: char,
    size: Option<u64>,
}

/// `nm -D --defined-only -S` of a shared object.
fn dynamic_symbols(lib: &Path) -> BTreeMap<String, Symbol> {
    let out = run(Command::new("nm")
        .env("LC_ALL", "C")
        .args(["-D", "--defined-only", "-S"])
        .arg(lib));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut symbols = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (size, kind, name) = match fields[..] {
            [_addr, size, kind, name] => (u64::from_str_radix(size, 16).ok(), kind, name),
            [_addr, kind, name] => (None, kind, name),
            _ => panic!("unexpected nm line {line:?}"),
        };
        let kind = kind.chars().next().unwrap();
        // Absolute symbols naming version nodes are not exports.
        if kind == 'A' {
            continue;
        }
        symbols.insert(name.to_string(), Symbol { kind, size });
    }
    symbols
}

/// Function (text) or data, whatever the section.
fn is_function(kind: char) -> bool {
    matches!(kind, 'T' | 't' | 'W' | 'i')
}

#[test]
fn exports_are_the_originals() {
    let ours = dynamic_symbols(&our_library());
    assert!(ours.len() >= 31, "our library exports only {ours:?}");
    if !original_present(ORIGINAL_LIBRARY, "export comparison") {
        return;
    }
    let original = dynamic_symbols(Path::new(ORIGINAL_LIBRARY));
    assert_eq!(
        original.len(),
        89,
        "Debian's libfcgi.so.0 exports 89 symbols: {original:?}"
    );

    // Our extensions: the library's version (declared in fcgiapp.h) and
    // the limits of fcgi_ext.h.
    const EXTENSIONS: &[&str] = &[
        "fcgi_rs_version",
        "FCGX_SetHeadTimeout",
        "FCGX_SetStdinTimeout",
        "FCGX_SetWriteTimeout",
        "FCGX_SetMaxWaitingConnections",
        "FCGX_SetMaxParams",
        "FCGX_SetOutputBufferSize",
        "FCGX_SetStreamBufferSize",
        "FCGX_AcceptTimeout_r",
        "FCGX_GetReadyFd",
        "FCGX_OpenSocketMode",
    ];
    let extra: Vec<&String> = ours
        .keys()
        .filter(|k| !original.contains_key(*k) && !EXTENSIONS.contains(&k.as_str()))
        .collect();
    for e in EXTENSIONS {
        assert!(ours.contains_key(*e), "{e} is not exported");
    }
    assert!(
        ours.contains_key("fcgi_rs_version"),
        "fcgi_rs_version is not exported"
    );
    assert!(
        extra.is_empty(),
        "our library exports symbols the original does not: {extra:?}"
    );

    let mut missing_required = Vec::new();
    let mut missing_os = Vec::new();
    for (name, sym) in &original {
        match ours.get(name) {
            None if name.starts_with("OS_") => missing_os.push(name.as_str()),
            None => missing_required.push(name.as_str()),
            Some(mine) => {
                assert_eq!(
                    is_function(mine.kind),
                    is_function(sym.kind),
                    "{name} is a function in one library and data in the other ({mine:?} vs {sym:?})"
                );
                if !is_function(sym.kind) {
                    assert_eq!(mine.size, sym.size, "data object {name} has another size");
                }
            }
        }
    }
    assert!(
        missing_required.is_empty(),
        "our library lacks {missing_required:?}"
    );
    let fcgx = ours
        .keys()
        .filter(|k| k.starts_with("FCGX_") && original.contains_key(*k))
        .count();
    assert_eq!(fcgx, 31, "all 31 FCGX_* functions");
    assert!(missing_os.is_empty(), "our library lacks {missing_os:?}");
    assert_eq!(
        ours.len(),
        89 + EXTENSIONS.len(),
        "the original's 89 symbols and our extensions"
    );
}

#[test]
fn soname_is_libfcgi_so_0_without_symbol_versions() {
    let lib = our_library();
    let out = run(Command::new("readelf")
        .env("LC_ALL", "C")
        .arg("-d")
        .arg(&lib));
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let sonames: Vec<&str> = dynamic.lines().filter(|l| l.contains("(SONAME)")).collect();
    assert_eq!(sonames.len(), 1, "one SONAME entry:\n{dynamic}");
    assert!(
        sonames[0].contains("[libfcgi.so.0]"),
        "SONAME is not libfcgi.so.0: {}",
        sonames[0]
    );
    assert!(
        !dynamic.contains("(VERDEF)"),
        "our library defines symbol versions:\n{dynamic}"
    );

    // The build also leaves the SONAME link beside the library.
    let alias = profile_dir().join("libfcgi.so.0");
    assert_eq!(
        std::fs::canonicalize(&alias).ok(),
        std::fs::canonicalize(&lib).ok(),
        "{} does not lead to libfcgi.so",
        alias.display()
    );
}
