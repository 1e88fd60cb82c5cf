//! The stdio layer of `fcgi_stdio.h`: `FCGI_Accept` and the `FCGI_*`
//! replacements of stdio, each working on an `FCGI_FILE` that wraps either
//! a real C `FILE *` or a FastCGI stream. The printf family is in
//! `c/stdio_printf.c` (C-variadic functions).
//!
//! Single-threaded by contract, like the original: these functions use the
//! process-wide request, `_fcgi_sF` and `environ`.
#![allow(non_upper_case_globals)]

use super::init::FCGX_IsCGI;
use super::request::{FCGX_Accept, FCGX_Finish};
use super::stream::*;
use super::types::FCGX_Stream;
use crate::sys;
use std::ffi::{c_char, c_int, c_long, c_void};
use std::ptr::null_mut;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

const EOF: c_int = -1;

/// A stdio stream: exactly one of the two fields is set (or neither, before
/// the first `FCGI_Accept` and after the last request).
#[repr(C)]
pub struct FCGI_FILE {
    pub stdio_stream: *mut libc::FILE,
    pub fcgx_stream: *mut FCGX_Stream,
}

/// `FCGI_stdin`, `FCGI_stdout`, `FCGI_stderr`. A data object of exactly
/// 48 bytes (x86-64): programs built against libfcgi copy-relocate it, and
/// every access from this library goes through the GOT to their copy.
#[unsafe(no_mangle)]
pub static mut _fcgi_sF: [FCGI_FILE; 3] = [
    FCGI_FILE {
        stdio_stream: null_mut(),
        fcgx_stream: null_mut(),
    },
    FCGI_FILE {
        stdio_stream: null_mut(),
        fcgx_stream: null_mut(),
    },
    FCGI_FILE {
        stdio_stream: null_mut(),
        fcgx_stream: null_mut(),
    },
];

#[cfg(unix)]
unsafe extern "C" {
    static mut environ: *mut *mut c_char;
    static mut stdin: *mut libc::FILE;
    static mut stdout: *mut libc::FILE;
    static mut stderr: *mut libc::FILE;
}
#[cfg(unix)]
use libc::clearerr;

// Windows (msvcrt, the C runtime of mingw-w64 programs and of this DLL):
// `environ` is the DLL's data export `_environ`, the standard streams come
// from `__acrt_iob_func`, and libc lacks `clearerr`.
#[cfg(windows)]
#[link(name = "msvcrt", kind = "dylib")]
unsafe extern "C" {
    #[link_name = "_environ"]
    static mut environ: *mut *mut c_char;
}
#[cfg(windows)]
unsafe extern "C" {
    fn __acrt_iob_func(index: std::ffi::c_uint) -> *mut libc::FILE;
    fn clearerr(f: *mut libc::FILE);
}

/// 0: FCGI_Accept never called; 1: CGI, first call done; 2: CGI, over;
/// 3: FastCGI.
static STATE: AtomicI32 = AtomicI32::new(0);

/// The process's own environment, as it was at the first `FCGI_Accept`.
static SAVED_ENVIRON: AtomicPtr<*mut c_char> = AtomicPtr::new(null_mut());

fn std_file(i: usize) -> *mut FCGI_FILE {
    // SAFETY: taking the address of the static (through the GOT) creates no reference.
    unsafe { (&raw mut _fcgi_sF).cast::<FCGI_FILE>().add(i) }
}

fn set_std_streams(streams: [*mut FCGX_Stream; 3]) {
    for (i, s) in streams.into_iter().enumerate() {
        // SAFETY: std_file(i) is one of the three elements; single-threaded layer.
        unsafe {
            (*std_file(i)).stdio_stream = null_mut();
            (*std_file(i)).fcgx_stream = s;
        }
    }
}

extern "C" fn finish_at_exit() {
    FCGI_Finish();
}

/// Accepts the next request. As a FastCGI application (fd 0 a listening
/// socket): finishes the previous request, waits for the next, points
/// `FCGI_stdin/stdout/stderr` at its streams and `environ` at its
/// parameters; returns 0, or a negative code when accepting fails (then
/// the streams are unset and `environ` is the process's own again). As a
/// plain CGI program: the first call returns 0 with the real stdio and
/// environment, later calls -1. `FCGI_Finish` runs at exit.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_Accept() -> c_int {
    ffi_guard!(-1, {
        let mut state = STATE.load(Ordering::SeqCst);
        if state == 0 {
            // SAFETY: reading the libc global; single-threaded layer.
            SAVED_ENVIRON.store(unsafe { environ }, Ordering::SeqCst);
            // SAFETY: registering a function that lives as long as the library.
            unsafe { libc::atexit(finish_at_exit) };
            state = if FCGX_IsCGI() != 0 { 1 } else { 3 };
            STATE.store(state, Ordering::SeqCst);
            if state == 1 {
                for (i, f) in [0, 1, 2].into_iter().zip(real_stdio()) {
                    // SAFETY: one of the three elements; single-threaded layer.
                    unsafe {
                        (*std_file(i)).stdio_stream = f;
                        (*std_file(i)).fcgx_stream = null_mut();
                    }
                }
                return 0;
            }
        }
        if state != 3 {
            STATE.store(2, Ordering::SeqCst);
            return -1;
        }
        let (mut i, mut o, mut e) = (null_mut(), null_mut(), null_mut());
        let mut envp = null_mut();
        // While the next request is read, its parameters overwrite the last
        // one's strings: the process's own environment meanwhile.
        restore_environ();
        // SAFETY: four valid out-pointers to locals.
        let rc = unsafe { FCGX_Accept(&mut i, &mut o, &mut e, &mut envp) };
        if rc < 0 {
            set_std_streams([null_mut(); 3]);
            restore_environ();
            return rc;
        }
        set_std_streams([i, o, e]);
        // SAFETY: envp stays valid until the next accept or finish, when it
        // is replaced here or in FCGI_Finish.
        unsafe { environ = envp };
        0
    })
}

#[cfg(unix)]
fn real_stdio() -> [*mut libc::FILE; 3] {
    // SAFETY: reading libc's standard stream pointers.
    unsafe { [stdin, stdout, stderr] }
}

#[cfg(windows)]
fn real_stdio() -> [*mut libc::FILE; 3] {
    // SAFETY: the C runtime's accessor of its three standard streams.
    unsafe { [__acrt_iob_func(0), __acrt_iob_func(1), __acrt_iob_func(2)] }
}

fn restore_environ() {
    // SAFETY: single-threaded layer; SAVED_ENVIRON holds the process's
    // environment as it was at the first FCGI_Accept.
    unsafe { environ = SAVED_ENVIRON.load(Ordering::SeqCst) };
}

/// Finishes the current request (a no-op in CGI mode or with no request):
/// unsets the three streams and gives the process its own environment back
/// (libfcgi set `environ` to NULL). Runs at exit; if `FCGI_Accept` is
/// waiting for the next request then (exit() called from a signal handler
/// or another thread), there is no request to finish and it does not wait
/// for one.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_Finish() {
    ffi_guard!((), {
        if STATE.load(Ordering::SeqCst) != 3 {
            return;
        }
        FCGX_Finish();
        set_std_streams([null_mut(); 3]);
        restore_environ();
    })
}

/// `FCGX_StartFilterData` on `FCGI_stdin`; -1 in CGI mode.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_StartFilterData() -> c_int {
    ffi_guard!(-1, {
        // SAFETY: element 0 of the static; single-threaded layer.
        let s = unsafe { (*std_file(0)).fcgx_stream };
        if s.is_null() {
            return -1;
        }
        // SAFETY: a live stream of the global request.
        unsafe { FCGX_StartFilterData(s) }
    })
}

/// Sets the request's exit status (no-op in CGI mode).
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_SetExitStatus(status: c_int) {
    ffi_guard!((), {
        // SAFETY: element 0 of the static; single-threaded layer.
        let s = unsafe { (*std_file(0)).fcgx_stream };
        // SAFETY: NULL or a live stream of the global request.
        unsafe { FCGX_SetExitStatus(status, s) }
    })
}

/// What an `FCGI_FILE` holds.
enum File {
    Stdio(*mut libc::FILE),
    Fcgx(*mut FCGX_Stream),
    Unset,
    Null,
}

/// # Safety
/// `fp` is NULL or a valid `FCGI_FILE`.
unsafe fn file(fp: *mut FCGI_FILE) -> File {
    // SAFETY: per the contract.
    match unsafe { fp.as_ref() } {
        None => File::Null,
        Some(f) if !f.stdio_stream.is_null() => File::Stdio(f.stdio_stream),
        Some(f) if !f.fcgx_stream.is_null() => File::Fcgx(f.fcgx_stream),
        Some(_) => File::Unset,
    }
}

fn is_std_file(fp: *mut FCGI_FILE) -> bool {
    (0..3).any(|i| std_file(i) == fp)
}

fn wrap(f: *mut libc::FILE) -> *mut FCGI_FILE {
    if f.is_null() {
        return null_mut();
    }
    Box::into_raw(Box::new(FCGI_FILE {
        stdio_stream: f,
        fcgx_stream: null_mut(),
    }))
}

/// Frees a wrapper made by [`wrap`] (never one of `_fcgi_sF`).
///
/// # Safety
/// `fp` came from [`wrap`] and is not used afterwards.
unsafe fn unwrap_free(fp: *mut FCGI_FILE) {
    if !fp.is_null() && !is_std_file(fp) {
        // SAFETY: per the contract: allocated by wrap with Box.
        drop(unsafe { Box::from_raw(fp) });
    }
}

/// Writes `str: strerror(errno)` and a newline to `FCGI_stderr`.
///
/// # Safety
/// `str` is NULL or NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_perror(str: *const c_char) {
    ffi_guard!((), {
        let err = sys::errno();
        // SAFETY: element 2 of the static; single-threaded layer.
        match unsafe { file(std_file(2)) } {
            File::Stdio(_) | File::Unset | File::Null => {
                // SAFETY: NULL or NUL-terminated per the contract.
                unsafe { libc::perror(str) }
            }
            File::Fcgx(s) => {
                let mut line = Vec::new();
                if !str.is_null() {
                    // SAFETY: NUL-terminated per the contract.
                    let prefix = unsafe { std::ffi::CStr::from_ptr(str) }.to_bytes();
                    if !prefix.is_empty() {
                        line.extend_from_slice(prefix);
                        line.extend_from_slice(b": ");
                    }
                }
                // SAFETY: strerror returns a NUL-terminated message (a static
                // or thread-local buffer), read at once.
                line.extend_from_slice(
                    unsafe { std::ffi::CStr::from_ptr(libc::strerror(err)) }.to_bytes(),
                );
                line.push(b'\n');
                // SAFETY: a live stream; line is readable for its length.
                unsafe { FCGX_PutStr(line.as_ptr().cast(), line.len() as c_int, s) };
            }
        }
    })
}

/// Opens a file with the C library's `fopen`, wrapped as an `FCGI_FILE`.
///
/// # Safety
/// `path` and `mode` are NUL-terminated strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fopen(path: *const c_char, mode: *const c_char) -> *mut FCGI_FILE {
    ffi_guard!(null_mut(), {
        if path.is_null() || mode.is_null() {
            sys::set_errno(libc::EINVAL);
            return null_mut();
        }
        // SAFETY: valid strings per the contract.
        wrap(unsafe { libc::fopen(path, mode) })
    })
}

/// Closes a file: `fclose` for a C file, `FCGX_FClose` for a FastCGI
/// stream. Frees the wrapper unless it is one of the standard three.
///
/// # Safety
/// `fp` is NULL or a valid `FCGI_FILE`, not used after this unless standard.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fclose(fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: per the contract.
        let r = match unsafe { file(fp) } {
            File::Null => return EOF,
            // SAFETY: a valid C file, closed once (the field is cleared).
            File::Stdio(f) => unsafe {
                (*fp).stdio_stream = null_mut();
                libc::fclose(f)
            },
            // SAFETY: a live stream.
            File::Fcgx(s) => unsafe {
                (*fp).fcgx_stream = null_mut();
                FCGX_FClose(s)
            },
            File::Unset => EOF,
        };
        // SAFETY: fp is a wrapper we made or a standard file (kept).
        unsafe { unwrap_free(fp) };
        r
    })
}

/// Flushes a file; `FCGI_fflush(NULL)` flushes every C file.
///
/// # Safety
/// `fp` is NULL or a valid `FCGI_FILE`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fflush(fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: per the contract; each branch gets a valid stream.
        match unsafe { file(fp) } {
            // SAFETY: fflush(NULL) flushes every C stream; no pointer is passed.
            File::Null => unsafe { libc::fflush(null_mut()) },
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::fflush(f) },
            // SAFETY: s is a live stream of this library (the FCGI_FILE's contract).
            File::Fcgx(s) => unsafe { FCGX_FFlush(s) },
            File::Unset => EOF,
        }
    })
}

/// Reopens `fp` on `path`: a FastCGI stream is closed and `fp` becomes a
/// C file. Returns `fp`, or NULL if the file could not be opened.
///
/// # Safety
/// `path`, `mode` NUL-terminated; `fp` NULL or a valid `FCGI_FILE`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_freopen(
    path: *const c_char,
    mode: *const c_char,
    fp: *mut FCGI_FILE,
) -> *mut FCGI_FILE {
    ffi_guard!(null_mut(), {
        if mode.is_null() {
            sys::set_errno(libc::EINVAL);
            return null_mut();
        }
        // SAFETY: per the contract; fp is valid in every non-Null branch.
        let f = match unsafe { file(fp) } {
            File::Null => return null_mut(),
            // SAFETY: f is the C file this FCGI_FILE wraps (open, per the contract); path and
            // mode are NULL or NUL-terminated, as freopen accepts.
            File::Stdio(f) => unsafe { libc::freopen(path, mode, f) },
            // SAFETY: s is a live stream of this library (the FCGI_FILE's contract), closed
            // once; fp is a valid FCGI_FILE; path and mode are NUL-terminated.
            File::Fcgx(s) => unsafe {
                FCGX_FClose(s);
                (*fp).fcgx_stream = null_mut();
                if path.is_null() {
                    null_mut()
                } else {
                    libc::fopen(path, mode)
                }
            },
            File::Unset => {
                if path.is_null() {
                    null_mut()
                } else {
                    // SAFETY: valid strings.
                    unsafe { libc::fopen(path, mode) }
                }
            }
        };
        // SAFETY: fp is valid (not Null).
        unsafe { (*fp).stdio_stream = f };
        if f.is_null() { null_mut() } else { fp }
    })
}

/// `setvbuf` on a C file; -1 on a FastCGI stream.
///
/// # Safety
/// As `setvbuf`; `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_setvbuf(
    fp: *mut FCGI_FILE,
    buf: *mut c_char,
    bufmode: c_int,
    size: usize,
) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps; buf, bufmode and size are the
            // caller's, under setvbuf's own contract.
            File::Stdio(f) => unsafe { libc::setvbuf(f, buf, bufmode, size) },
            _ => -1,
        }
    })
}

/// `setbuf` on a C file; nothing on a FastCGI stream.
///
/// # Safety
/// As `setbuf`; `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_setbuf(fp: *mut FCGI_FILE, buf: *mut c_char) {
    ffi_guard!((), {
        // SAFETY: per the contract.
        if let File::Stdio(f) = unsafe { file(fp) } {
            let mode = if buf.is_null() {
                libc::_IONBF
            } else {
                libc::_IOFBF
            };
            // SAFETY: setbuf(f, buf) is setvbuf with BUFSIZ.
            unsafe { libc::setvbuf(f, buf, mode, libc::BUFSIZ as usize) };
        }
    })
}

fn espipe<T>(v: T) -> T {
    sys::set_errno(libc::ESPIPE);
    v
}

/// `fseek` on a C file; -1 (ESPIPE) on a FastCGI stream.
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fseek(fp: *mut FCGI_FILE, offset: c_long, whence: c_int) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::fseek(f, offset, whence) },
            _ => espipe(-1),
        }
    })
}

/// `ftell` on a C file (as `int`, like libfcgi); -1 (ESPIPE) otherwise.
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_ftell(fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::ftell(f) as c_int },
            _ => espipe(-1),
        }
    })
}

/// `rewind` on a C file; sets errno to ESPIPE otherwise.
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_rewind(fp: *mut FCGI_FILE) {
    ffi_guard!((), {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::rewind(f) },
            _ => espipe(()),
        }
    })
}

/// `fgetpos` on a C file; -1 (ESPIPE) otherwise.
///
/// # Safety
/// `fp` NULL or valid; `pos` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fgetpos(fp: *mut FCGI_FILE, pos: *mut libc::fpos_t) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps; pos is writable per the contract.
            File::Stdio(f) => unsafe { libc::fgetpos(f, pos) },
            _ => espipe(-1),
        }
    })
}

/// `fsetpos` on a C file; -1 (ESPIPE) otherwise.
///
/// # Safety
/// `fp` NULL or valid; `pos` readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fsetpos(fp: *mut FCGI_FILE, pos: *const libc::fpos_t) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps; pos is readable per the contract.
            File::Stdio(f) => unsafe { libc::fsetpos(f, pos) },
            _ => espipe(-1),
        }
    })
}

/// Reads a byte (0..255) or EOF.
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fgetc(fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::fgetc(f) },
            // SAFETY: s is a live stream of this library (the FCGI_FILE's contract).
            File::Fcgx(s) => unsafe { FCGX_GetChar(s) },
            _ => EOF,
        }
    })
}

/// `FCGI_fgetc(FCGI_stdin)`.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_getchar() -> c_int {
    // SAFETY: the standard input file is always valid.
    unsafe { FCGI_fgetc(std_file(0)) }
}

/// Pushes a byte back.
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_ungetc(c: c_int, fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::ungetc(c, f) },
            // SAFETY: s is a live stream of this library (the FCGI_FILE's contract).
            File::Fcgx(s) => unsafe { FCGX_UnGetChar(c, s) },
            _ => EOF,
        }
    })
}

/// Reads a line of at most `size - 1` bytes (newline kept).
///
/// # Safety
/// `str` writable for `size` bytes; `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fgets(
    str: *mut c_char,
    size: c_int,
    fp: *mut FCGI_FILE,
) -> *mut c_char {
    ffi_guard!(null_mut(), {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps; str is writable for size bytes per
            // the contract.
            File::Stdio(f) => unsafe { libc::fgets(str, size, f) },
            // SAFETY: s is a live stream of this library; str is writable for size bytes per
            // the contract.
            File::Fcgx(s) => unsafe { FCGX_GetLine(str, size, s) },
            _ => null_mut(),
        }
    })
}

/// Reads a line from `FCGI_stdin` without its newline, like `gets`:
/// unbounded, so `str` must be large enough for any line.
///
/// # Safety
/// `str` is writable for the longest line the input may contain, plus one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_gets(str: *mut c_char) -> *mut c_char {
    ffi_guard!(null_mut(), {
        if str.is_null() {
            return null_mut();
        }
        let mut n = 0usize;
        loop {
            let c = FCGI_getchar();
            if c == EOF {
                if n == 0 {
                    return null_mut();
                }
                break;
            }
            if c == c_int::from(b'\n') {
                break;
            }
            // SAFETY: the caller promises room for the whole line.
            unsafe { *str.add(n) = c as c_char };
            n += 1;
        }
        // SAFETY: as above, room for the terminating NUL.
        unsafe { *str.add(n) = 0 };
        str
    })
}

/// Writes a byte; returns it or EOF.
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fputc(c: c_int, fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::fputc(c, f) },
            // SAFETY: s is a live stream of this library (the FCGI_FILE's contract).
            File::Fcgx(s) => unsafe { FCGX_PutChar(c, s) },
            _ => EOF,
        }
    })
}

/// `FCGI_fputc(c, FCGI_stdout)`.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_putchar(c: c_int) -> c_int {
    // SAFETY: the standard output file is always valid.
    unsafe { FCGI_fputc(c, std_file(1)) }
}

/// Writes a string; a non-negative count, or EOF.
///
/// # Safety
/// `str` NUL-terminated; `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fputs(str: *const c_char, fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        if str.is_null() {
            return EOF;
        }
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps; str is NUL-terminated per the
            // contract.
            File::Stdio(f) => unsafe { libc::fputs(str, f) },
            // SAFETY: s is a live stream of this library; str is NUL-terminated per the
            // contract.
            File::Fcgx(s) => unsafe { FCGX_PutS(str, s) },
            _ => EOF,
        }
    })
}

/// Writes a string and a newline to `FCGI_stdout`.
///
/// # Safety
/// `str` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_puts(str: *const c_char) -> c_int {
    ffi_guard!(EOF, {
        if str.is_null() {
            return EOF;
        }
        // SAFETY: per the contract; the standard output file is valid.
        match unsafe { file(std_file(1)) } {
            // SAFETY: a valid C file; str NUL-terminated.
            File::Stdio(f) => unsafe {
                if libc::fputs(str, f) == EOF || libc::fputc(c_int::from(b'\n'), f) == EOF {
                    EOF
                } else {
                    1
                }
            },
            File::Fcgx(s) => {
                // SAFETY: a live stream; str NUL-terminated.
                let n = unsafe { FCGX_PutS(str, s) };
                if n < 0 {
                    return EOF;
                }
                // SAFETY: the same live stream.
                if unsafe { FCGX_PutChar(c_int::from(b'\n'), s) } == EOF {
                    EOF
                } else {
                    n + 1
                }
            }
            _ => EOF,
        }
    })
}

/// Moves `total` bytes with an `int`-sized call (`FCGX_GetStr`/`PutStr`)
/// per chunk of at most `INT_MAX` bytes: `io(offset, chunk)` returns how
/// many bytes it moved. Stops at the first short or failed call; returns
/// the bytes moved.
fn in_int_chunks(total: usize, mut io: impl FnMut(usize, c_int) -> c_int) -> usize {
    let mut done = 0usize;
    while done < total {
        let chunk = (total - done).min(c_int::MAX as usize) as c_int;
        let moved = io(done, chunk);
        done += moved.max(0) as usize;
        if moved < chunk {
            break;
        }
    }
    done
}

/// Reads up to `nmemb` items of `size` bytes; returns whole items read.
///
/// # Safety
/// `ptr` writable for `size * nmemb` bytes; `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fread(
    ptr: *mut c_void,
    size: usize,
    nmemb: usize,
    fp: *mut FCGI_FILE,
) -> usize {
    ffi_guard!(0, {
        let Some(total) = size.checked_mul(nmemb) else {
            return 0;
        };
        if total == 0 || ptr.is_null() {
            return 0;
        }
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps; ptr is writable for size * nmemb
            // bytes per the contract.
            File::Stdio(f) => unsafe { libc::fread(ptr, size, nmemb, f) },
            File::Fcgx(s) => {
                let done = in_int_chunks(total, |offset, chunk| {
                    // SAFETY: ptr is writable for total bytes and
                    // offset + chunk <= total.
                    unsafe { FCGX_GetStr(ptr.cast::<c_char>().add(offset), chunk, s) }
                });
                done / size
            }
            _ => 0,
        }
    })
}

/// Writes `nmemb` items of `size` bytes; returns the items written (fewer
/// on error, never more).
///
/// # Safety
/// `ptr` readable for `size * nmemb` bytes; `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fwrite(
    ptr: *mut c_void,
    size: usize,
    nmemb: usize,
    fp: *mut FCGI_FILE,
) -> usize {
    ffi_guard!(0, {
        let Some(total) = size.checked_mul(nmemb) else {
            return 0;
        };
        if total == 0 || ptr.is_null() {
            return 0;
        }
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps; ptr is readable for size * nmemb
            // bytes per the contract.
            File::Stdio(f) => unsafe { libc::fwrite(ptr, size, nmemb, f) },
            File::Fcgx(s) => {
                let done = in_int_chunks(total, |offset, chunk| {
                    // SAFETY: ptr is readable for total bytes and
                    // offset + chunk <= total.
                    unsafe { FCGX_PutStr(ptr.cast::<c_char>().add(offset), chunk, s) }
                });
                done / size
            }
            _ => 0,
        }
    })
}

/// Non-zero at end of file (-1 for a FastCGI stream, as libfcgi).
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_feof(fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::feof(f) },
            // SAFETY: s is a live stream of this library (the FCGI_FILE's contract).
            File::Fcgx(s) => unsafe { FCGX_HasSeenEOF(s) },
            _ => EOF,
        }
    })
}

/// Non-zero after an error (for a FastCGI stream: its error code).
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_ferror(fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::ferror(f) },
            // SAFETY: s is a live stream of this library (the FCGI_FILE's contract).
            File::Fcgx(s) => unsafe { FCGX_GetError(s) },
            _ => EOF,
        }
    })
}

/// Clears the error indicator.
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_clearerr(fp: *mut FCGI_FILE) {
    ffi_guard!((), {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { clearerr(f) },
            // SAFETY: s is a live stream of this library (the FCGI_FILE's contract).
            File::Fcgx(s) => unsafe { FCGX_ClearError(s) },
            _ => {}
        }
    })
}

/// `tmpfile()`, wrapped.
#[unsafe(no_mangle)]
pub extern "C" fn FCGI_tmpfile() -> *mut FCGI_FILE {
    // SAFETY: plain libc call.
    ffi_guard!(null_mut(), { wrap(unsafe { libc::tmpfile() }) })
}

/// The descriptor of a C file; -1 for a FastCGI stream.
///
/// # Safety
/// `fp` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fileno(fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(-1, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file this FCGI_FILE wraps, open per the contract.
            File::Stdio(f) => unsafe { libc::fileno(f) },
            _ => -1,
        }
    })
}

/// `fdopen()`, wrapped.
///
/// # Safety
/// `mode` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_fdopen(fd: c_int, mode: *const c_char) -> *mut FCGI_FILE {
    ffi_guard!(null_mut(), {
        if mode.is_null() {
            return null_mut();
        }
        // SAFETY: valid mode string.
        wrap(unsafe { libc::fdopen(fd, mode) })
    })
}

/// `popen()`, wrapped.
///
/// # Safety
/// `cmd` and `type` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_popen(cmd: *const c_char, r#type: *const c_char) -> *mut FCGI_FILE {
    ffi_guard!(null_mut(), {
        if cmd.is_null() || r#type.is_null() {
            return null_mut();
        }
        // SAFETY: valid strings.
        wrap(unsafe { libc::popen(cmd, r#type) })
    })
}

/// `pclose()` of a file from `FCGI_popen` (frees the wrapper); EOF for
/// anything else.
///
/// # Safety
/// `fp` NULL or valid, not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn FCGI_pclose(fp: *mut FCGI_FILE) -> c_int {
    ffi_guard!(EOF, {
        // SAFETY: per the contract.
        match unsafe { file(fp) } {
            // SAFETY: f is the C file of a wrapper made by FCGI_popen (not a standard file),
            // closed once; the wrapper is freed once and not used after (the
            // contract).
            File::Stdio(f) if !is_std_file(fp) => unsafe {
                let r = libc::pclose(f);
                unwrap_free(fp);
                r
            },
            _ => EOF,
        }
    })
}
