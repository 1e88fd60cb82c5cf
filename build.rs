//! Compiles the C shim (the variadic printf family, which stable Rust
//! cannot define), and links the shared library as libfcgi.so.0 exporting
//! exactly the symbols listed in fcgi.map (Linux), or as a DLL that calls
//! itself libfcgi.dll (Windows, mingw-w64).

fn main() {
    println!("cargo:rerun-if-changed=c/printf.c");
    println!("cargo:rerun-if-changed=c/stdio_printf.c");
    println!("cargo:rerun-if-changed=fcgi.map");
    cc::Build::new()
        .file("c/printf.c")
        .file("c/stdio_printf.c")
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Werror")
        .link_lib_modifier("+whole-archive")
        .compile("fcgi_shim");

    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfcgi.so.0");
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            version_script().display()
        );
        link_soname_alias();
    }
    if target_os == "windows" && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        windows_dll_name();
    }
}

/// fcgi.map, copied into OUT_DIR: the link line must not name the source
/// tree. Cargo gives a path crate the same build directory wherever its
/// source lies (the hash is of the path relative to the workspace), and
/// does not rerun this script when only the location changed, so a link
/// argument naming CARGO_MANIFEST_DIR would, after a build of another copy
/// of the crate in the same CARGO_TARGET_DIR (the Python sdist, unpacked in
/// a temporary directory by pip), point at a directory that no longer
/// exists.
fn version_script() -> std::path::PathBuf {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let copy = std::path::Path::new(&out).join("fcgi.map");
    std::fs::copy(std::path::Path::new(&dir).join("fcgi.map"), &copy).expect("copy fcgi.map");
    copy
}

/// Windows (mingw): cargo names the DLL `fcgi.dll` after the crate; the
/// original is `libfcgi.dll`. A module-definition file that only says
/// `LIBRARY libfcgi.dll`, given to the linker beside rustc's own export
/// list, makes the DLL call itself libfcgi.dll and the import library
/// cargo writes (`libfcgi.dll.a`) import from libfcgi.dll; `make windows`
/// then copies fcgi.dll to that name. The exports are rustc's (every
/// `#[no_mangle]` function and `_fcgi_sF`) plus the C shim's, marked
/// `__declspec(dllexport)` in c/*.c.
fn windows_dll_name() {
    let Ok(out) = std::env::var("OUT_DIR") else {
        return;
    };
    let def = std::path::Path::new(&out).join("libfcgi-name.def");
    std::fs::write(&def, "LIBRARY libfcgi.dll\n").expect("write libfcgi-name.def");
    println!("cargo:rustc-cdylib-link-arg={}", def.display());
}

/// Puts a `libfcgi.so.0 -> libfcgi.so` link next to the library being
/// built, so `LD_LIBRARY_PATH=target/release` runs programs linked against
/// libfcgi.so.0 on this build. (OUT_DIR is target/<profile>/build/<pkg>/out.)
fn link_soname_alias() {
    let Ok(out) = std::env::var("OUT_DIR") else {
        return;
    };
    let Some(profile_dir) = std::path::Path::new(&out).ancestors().nth(3) else {
        return;
    };
    let alias = profile_dir.join("libfcgi.so.0");
    if std::fs::symlink_metadata(&alias).is_err() {
        let _ = std::os::unix::fs::symlink("libfcgi.so", &alias);
    }
}
