//! The C boundary audits itself (issue #13): every function exported to C
//! runs its body inside `ffi_guard!` (no panic unwinds into C), or is one
//! call to another export that does; `unsafe` appears only in `src/capi`
//! and `src/sys` (the compiler also enforces it: `forbid(unsafe_code)` on
//! the other modules); every `unsafe` block in those two has a `SAFETY:`
//! comment (clippy's `undocumented_unsafe_blocks`, denied in lib.rs, checks
//! the same; this test keeps the rule visible without clippy).

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// One exported function: its name and its body's text.
struct Export {
    file: PathBuf,
    name: String,
    body: String,
}

/// The `#[unsafe(no_mangle)]` functions of a file, with their bodies (the
/// text between the signature's `{` and the matching `}`).
fn exports(file: &Path) -> Vec<Export> {
    let text = fs::read_to_string(file).unwrap();
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("#[unsafe(no_mangle)]") {
        rest = &rest[at + 1..];
        let Some(fn_at) = rest.find("extern \"C\" fn ") else {
            break;
        };
        // An exported static (`_fcgi_sF`) ends before any function.
        if rest[..fn_at].contains([';', '{']) {
            continue;
        }
        let after = &rest[fn_at + "extern \"C\" fn ".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // The body: from the first `{` after the signature to its match.
        let open = after.find('{').unwrap();
        let mut depth = 0usize;
        let mut end = open;
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        found.push(Export {
            file: file.to_path_buf(),
            name,
            body: after[open + 1..end].to_string(),
        });
    }
    found
}

#[test]
fn every_export_runs_inside_the_panic_guard() {
    let mut files = Vec::new();
    rust_files(&src().join("capi"), &mut files);
    let all: Vec<Export> = files.iter().flat_map(|f| exports(f)).collect();
    assert!(all.len() >= 89, "found only {} exports", all.len());
    let guarded: Vec<&str> = all
        .iter()
        .filter(|e| e.body.contains("ffi_guard!"))
        .map(|e| e.name.as_str())
        .collect();
    let mut unguarded = Vec::new();
    for e in &all {
        if e.body.contains("ffi_guard!") {
            continue;
        }
        // A body that only forwards to a guarded export, e.g.
        // `unsafe { FCGI_fgetc(std_file(0)) }`, is covered by its guard.
        let code: Vec<&str> = e
            .body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .collect();
        let forwards = code.len() == 1
            && guarded.iter().any(|g| {
                code[0].contains(&format!("{g}(")) && code[0].ends_with(')')
                    || code[0].contains(&format!("{g}(")) && code[0].ends_with(") }")
            });
        if !forwards {
            unguarded.push(format!("{} ({})", e.name, e.file.display()));
        }
    }
    assert!(
        unguarded.is_empty(),
        "exports whose body is not inside ffi_guard!: {unguarded:#?}"
    );
}

#[test]
fn unsafe_only_in_capi_and_sys() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut offenders = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(src()).unwrap();
        let first = rel.components().next().unwrap().as_os_str();
        if first == "capi" || first == "sys" {
            continue;
        }
        let text = fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap();
            if code.contains("unsafe {")
                || code.contains("unsafe fn")
                || code.contains("unsafe impl")
                || code.contains("unsafe extern")
            {
                offenders.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "unsafe outside src/capi and src/sys: {offenders:#?}"
    );
}

#[test]
fn every_unsafe_block_says_why() {
    let mut files = Vec::new();
    rust_files(&src().join("capi"), &mut files);
    rust_files(&src().join("sys"), &mut files);
    let mut missing = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap();
            if !code.contains("unsafe {") {
                continue;
            }
            // The comment sits on the lines just above (a statement may
            // span a few lines before its unsafe block), or on the same line.
            let from = n.saturating_sub(6);
            let said = lines[from..=n].iter().any(|l| l.contains("SAFETY:"));
            if !said {
                missing.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "unsafe blocks without a SAFETY: comment: {missing:#?}"
    );
}
