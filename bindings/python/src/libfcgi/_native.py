"""Finding and loading the FastCGI library, and its C declarations.

The library is the one this package ships with (``fcgi``, a Rust
implementation of libfcgi 2.4 with the same C ABI), loaded with
:mod:`ctypes`. It is looked for, in this order:

1. ``LIBFCGI_PATH``: a file, or a directory holding ``libfcgi.so.0`` /
   ``libfcgi.so`` (``libfcgi.0.dylib`` on macOS, ``libfcgi.dll`` /
   ``fcgi.dll`` on Windows); when set, nothing else is tried;
2. the copy bundled in the package (``libfcgi/_lib/``, where the wheel
   puts it);
3. when the package is used from a checkout of the repository, the
   library built there (``target/release``, then ``target/debug``);
4. the system: ``ctypes.util.find_library`` (``"fcgi"``; on Windows first
   ``"libfcgi"``, the original's DLL name, searched on ``PATH``), then the
   plain names, resolved by the dynamic loader (``LD_LIBRARY_PATH``,
   ldconfig; on Windows the application's directory, System32 and the
   directories added with :func:`os.add_dll_directory`).

On Windows (Python 3.8 and later) the directory of a DLL loaded from a path
is also added with :func:`os.add_dll_directory` for as long as the process
runs, so that DLLs placed beside it (its own dependencies) are found: since
3.8 Windows no longer searches ``PATH`` or the current directory for them.

A library found on the system may be the original C libfcgi; it has the
same API, but see the README for the differences (the original calls
``exit()`` when ``FCGX_OpenSocket`` fails).

:class:`ctypes.CDLL` releases the GIL around every call, so a thread
blocked in ``FCGX_Accept_r`` or in a read lets the other threads run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from ctypes import (
    POINTER,
    Structure,
    c_char_p,
    c_int,
    c_void_p,
)
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "FCGX_Request",
    "FCGX_Stream",
    "LibraryNotFoundError",
    "library",
    "library_info",
    "library_path",
    "load",
]

#: Environment variable naming the library file (or its directory).
ENV_VAR = "LIBFCGI_PATH"


class LibraryNotFoundError(OSError):
    """The FastCGI shared library could not be found or loaded.

    ``tried`` lists every place that was looked at, with what happened.
    """

    def __init__(self, tried: list[tuple[str, str]]):
        self.tried = tried
        lines = "\n".join(f"  - {where}: {why}" for where, why in tried)
        super().__init__(
            "libfcgi: could not load the FastCGI library "
            f"({' / '.join(_file_names())}). Looked for:\n{lines}\n"
            "Install a wheel of this package for this platform (it bundles the "
            "library), or build it with `cargo build --release` in the fcgi "
            f"repository and set {ENV_VAR} to the file."
        )


# ---------------------------------------------------------------------------
# C declarations (fcgiapp.h), field by field.


class FCGX_Stream(Structure):
    """``FCGX_Stream`` (72 bytes on x86-64). Only ``isReader``, ``isClosed``,
    ``wasFCloseCalled`` and ``FCGI_errno`` are meaningful to callers."""

    _fields_ = [
        ("rdNext", c_void_p),
        ("wrNext", c_void_p),
        ("stop", c_void_p),
        ("stopUnget", c_void_p),
        ("isReader", c_int),
        ("isClosed", c_int),
        ("wasFCloseCalled", c_int),
        ("FCGI_errno", c_int),
        ("fillBuffProc", c_void_p),
        ("emptyBuffProc", c_void_p),
        ("data", c_void_p),
    ]


class FCGX_Request(Structure):
    """``FCGX_Request`` (80 bytes on x86-64, 60 on 32-bit platforms),
    allocated by Python and set up by ``FCGX_InitRequest``.

    The C field ``in`` is spelled ``in_`` here (``in`` is a Python keyword).
    The streams are declared as plain pointers (``c_void_p``): they are only
    handed back to the library.
    """

    _fields_ = [
        ("requestId", c_int),
        ("role", c_int),
        ("in_", c_void_p),  # FCGX_Stream *in
        ("out", c_void_p),  # FCGX_Stream *out
        ("err", c_void_p),  # FCGX_Stream *err
        ("envp", POINTER(c_char_p)),  # char **envp, NULL-terminated
        ("paramsPtr", c_void_p),  # struct Params * (private)
        ("ipcFd", c_int),
        ("isBeginProcessed", c_int),
        ("keepConnection", c_int),
        ("appStatus", c_int),
        ("nWriters", c_int),
        ("flags", c_int),
        ("listen_sock", c_int),
        ("detached", c_int),
    ]


_POINTER_SIZE = ctypes.sizeof(c_void_p)
_EXPECTED_SIZE = {8: 80, 4: 60}.get(_POINTER_SIZE)
if _EXPECTED_SIZE is not None and ctypes.sizeof(FCGX_Request) != _EXPECTED_SIZE:
    raise ImportError(
        f"libfcgi: FCGX_Request is {ctypes.sizeof(FCGX_Request)} bytes, "
        f"expected {_EXPECTED_SIZE}"
    )

# (name, restype, argtypes)
_PROTOTYPES = [
    ("FCGX_Init", c_int, []),
    ("FCGX_IsCGI", c_int, []),
    ("FCGX_OpenSocket", c_int, [c_char_p, c_int]),
    ("FCGX_InitRequest", c_int, [c_void_p, c_int, c_int]),
    ("FCGX_Accept_r", c_int, [c_void_p]),
    ("FCGX_Finish_r", None, [c_void_p]),
    ("FCGX_Free", None, [c_void_p, c_int]),
    ("FCGX_ShutdownPending", None, []),
    ("FCGX_GetParam", c_char_p, [c_char_p, c_void_p]),
    ("FCGX_GetChar", c_int, [c_void_p]),
    ("FCGX_UnGetChar", c_int, [c_int, c_void_p]),
    ("FCGX_GetStr", c_int, [c_void_p, c_int, c_void_p]),
    ("FCGX_GetLine", c_void_p, [c_void_p, c_int, c_void_p]),
    ("FCGX_HasSeenEOF", c_int, [c_void_p]),
    ("FCGX_PutStr", c_int, [c_void_p, c_int, c_void_p]),
    ("FCGX_FFlush", c_int, [c_void_p]),
    ("FCGX_FClose", c_int, [c_void_p]),
    ("FCGX_GetError", c_int, [c_void_p]),
    ("FCGX_ClearError", None, [c_void_p]),
    ("FCGX_SetExitStatus", None, [c_int, c_void_p]),
    ("FCGX_StartFilterData", c_int, [c_void_p]),
    ("FCGX_Detach", c_int, [c_void_p]),
    ("FCGX_Attach", c_int, [c_void_p]),
]

_PROTO_BY_NAME = {name: (restype, argtypes) for name, restype, argtypes in _PROTOTYPES}

#: Functions that do no I/O: called without releasing the GIL.
_NEVER_BLOCK = ("FCGX_GetError", "FCGX_ClearError", "FCGX_SetExitStatus", "FCGX_GetParam",
                "FCGX_InitRequest", "FCGX_HasSeenEOF")

#: Bytes a write may add to STDOUT since the last flush and still fit in
#: libfcgi's 8 KiB buffer (this library's is 64 KiB): such a write only
#: copies, so it is made without releasing the GIL.
BUFFERED_WRITE_LIMIT = 8000


def _proto(fn, name):
    restype, argtypes = _PROTO_BY_NAME[name]
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


# ---------------------------------------------------------------------------
# Finding the file.


def _is_windows() -> bool:
    return sys.platform == "win32"


def _file_names() -> list[str]:
    if _is_windows():
        return ["libfcgi.dll", "fcgi.dll"]
    if sys.platform == "darwin":
        return ["libfcgi.0.dylib", "libfcgi.dylib"]
    return ["libfcgi.so.0", "libfcgi.so"]


def _system_names() -> list[str]:
    """Names given to ``ctypes.util.find_library``: on Windows it searches
    ``PATH`` for NAME.dll, and the original libfcgi's DLL is libfcgi.dll."""
    return ["libfcgi", "fcgi"] if _is_windows() else ["fcgi"]


def _package_dir() -> Path:
    return Path(__file__).resolve().parent


def _bundled_dir() -> Path:
    """Where a wheel puts the library (setup.py: ``libfcgi/_lib/``)."""
    return _package_dir() / "_lib"


def _repo_candidates() -> list[Path]:
    """Libraries built in the repository this package sits in, if any
    (``bindings/python/src/libfcgi`` -> the repository root)."""
    here = _package_dir()
    out = []
    for root in (here.parents[3] if len(here.parents) > 3 else None,):
        if root is None or not (root / "Cargo.toml").is_file():
            continue
        for profile in ("release", "debug"):
            for name in _file_names():
                out.append(root / "target" / profile / name)
    return out


def _candidates() -> Iterator[tuple[str, str | None]]:
    """(description, path or loader name), in search order; a None path
    means: not set / nothing found. Lazy: the system search (which may run
    ldconfig) happens only when everything before it failed."""
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env)
        if p.is_dir():
            for name in _file_names():
                yield (f"{ENV_VAR} directory", str(p / name))
        else:
            yield (ENV_VAR, str(p))
        return  # an explicit choice is never second-guessed
    yield (f"{ENV_VAR} (environment variable)", None)
    for name in _file_names():
        yield ("bundled", str(_bundled_dir() / name))
    for p in _repo_candidates():
        yield ("repository build", str(p))
    for name in _system_names():
        yield (f"ctypes.util.find_library({name!r})", ctypes.util.find_library(name))
    for name in _file_names():
        yield ("system loader", name)


def _is_file_path(path: str) -> bool:
    return os.sep in path or (os.altsep is not None and os.altsep in path)


#: Directories added with os.add_dll_directory (Windows): path -> the
#: handle, kept so that they stay added for the life of the process.
_dll_directories: dict = {}


def _allow_dll_directory(directory: str):
    """Windows, Python 3.8+: adds ``directory`` to the DLL search path (for
    the DLLs a library loaded from there depends on). Returns the new
    handle, or None when nothing was added (another platform, an older
    Python, already added, or refused)."""
    if not _is_windows():
        return None
    add = getattr(os, "add_dll_directory", None)
    if add is None or directory in _dll_directories:
        return None
    try:
        handle = add(directory)
    except OSError:
        return None
    _dll_directories[directory] = handle
    return handle


def _forget_dll_directory(directory: str) -> None:
    handle = _dll_directories.pop(directory, None)
    if handle is not None:
        handle.close()


def _open_library(path: str):
    """The three handles :class:`Library` needs on one file: calls that
    release the GIL, calls that save errno, calls that keep the GIL."""
    return (ctypes.CDLL(path), ctypes.CDLL(path, use_errno=True), ctypes.PyDLL(path))


class Library:
    """The loaded library: ``path``, the :class:`ctypes.CDLL` as ``dll``, and
    each ``FCGX_*`` function as an attribute with its prototype set."""

    def __init__(self, path: str, dll: ctypes.CDLL, dll_errno: ctypes.CDLL,
                 held: ctypes.PyDLL):
        self.path = path
        self.dll = dll
        for name, restype, argtypes in _PROTOTYPES:
            fn = getattr(dll, name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        # Calls that never block are made without releasing the GIL (a
        # PyDLL handle): releasing and taking it back costs more than the
        # call, and with several busy threads every release is a hand-over.
        for name in _NEVER_BLOCK:
            fn = getattr(held, name)
            restype, argtypes = _PROTO_BY_NAME[name]
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        #: ``FCGX_PutStr`` holding the GIL: only for writes that fit in the
        #: stream's buffer (so the library does not write to the socket).
        #: libfcgi's STDOUT buffer holds 8184 bytes, this library's 65528.
        self.FCGX_PutStr_buffered = _proto(held.FCGX_PutStr, "FCGX_PutStr")
        # FCGX_OpenSocket reports failures in errno: call it through a
        # handle that saves errno (ctypes.get_errno()).
        fn = dll_errno.FCGX_OpenSocket
        fn.restype = c_int
        fn.argtypes = [c_char_p, c_int]
        self.FCGX_OpenSocket = fn

        # This library says its version (an extension of the C API); the
        # original libfcgi has no such function.
        try:
            ver = dll.fcgi_rs_version
            ver.restype = c_char_p
            ver.argtypes = []
            self.version: str | None = ver().decode()
            self.implementation = "fcgi"
        except AttributeError:
            self.version = None
            self.implementation = "libfcgi"

    def __repr__(self) -> str:
        return f"<libfcgi.Library {self.implementation} {self.version or ''} {self.path!r}>"


_lock = threading.Lock()
_library: Library | None = None


def _windows_module_path(dll: ctypes.CDLL) -> str | None:
    """Windows: the file a DLL was loaded from (``GetModuleFileNameW`` on
    its handle); None elsewhere or on failure."""
    try:
        get_name = ctypes.WinDLL("kernel32").GetModuleFileNameW  # type: ignore[attr-defined]
        get_name.restype = ctypes.c_uint32
        get_name.argtypes = [c_void_p, ctypes.c_wchar_p, ctypes.c_uint32]
        buf = ctypes.create_unicode_buffer(32768)
        n = get_name(dll._handle, buf, len(buf))
    except (AttributeError, OSError):
        return None
    return buf.value if n else None


def _resolved_path(dll: ctypes.CDLL, fallback: str) -> str:
    """The file the loader actually opened (Linux: from /proc/self/maps;
    Windows: from the DLL's handle)."""
    if os.path.isabs(fallback):
        return os.path.realpath(fallback)
    if _is_windows():
        return _windows_module_path(dll) or fallback
    try:
        addr = ctypes.cast(dll.FCGX_Init, c_void_p).value or 0
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split()
                if len(parts) >= 6 and "-" in parts[0]:
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    if lo <= addr < hi:
                        return parts[5]
    except (OSError, ValueError):
        pass
    return fallback


def load() -> Library:
    """Loads the library (once) and returns it; raises
    :class:`LibraryNotFoundError` naming everything it tried."""
    global _library
    lib = _library
    if lib is not None:
        return lib
    with _lock:
        if _library is not None:
            return _library
        tried: list[tuple[str, str]] = []
        for what, path in _candidates():
            if path is None:
                tried.append((what, "not set" if "environment" in what else "nothing found"))
                continue
            is_file_path = _is_file_path(path)
            if is_file_path and not os.path.exists(path):
                tried.append((f"{what} {path}", "no such file"))
                continue
            directory = os.path.dirname(os.path.abspath(path)) if is_file_path else None
            added = directory is not None and _allow_dll_directory(directory) is not None
            try:
                dll, dll_errno, held = _open_library(path)
                # Every FCGX_* function is looked up here: a library
                # without one is not taken.
                lib = Library(_resolved_path(dll, path), dll, dll_errno, held)
            except (OSError, AttributeError) as e:
                if added:
                    _forget_dll_directory(directory)
                tried.append((f"{what} {path}", f"failed: {e}"))
                continue
            _library = lib
            return lib
        raise LibraryNotFoundError(tried)


def library() -> Library:
    """The loaded library (loading it on first use)."""
    return load()


def library_path() -> str:
    """Path of the library file in use (loading it on first use)."""
    return load().path


def library_info() -> dict:
    """Which library is in use: ``path``, ``implementation`` (``"fcgi"``:
    this project's Rust library; ``"libfcgi"``: the original C library,
    found on the system) and ``version`` (None for the original)."""
    lib = load()
    return {"path": lib.path, "implementation": lib.implementation, "version": lib.version}


#: ``errno`` as saved by the last call through an errno-saving handle.
get_errno = ctypes.get_errno
