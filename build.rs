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
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    if target_os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfcgi.so.0");
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/fcgi.map");
        link_soname_alias();
    }
    if target_os == "windows" && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        windows_dll_name();
    }
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
