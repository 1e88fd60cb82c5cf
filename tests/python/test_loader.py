"""Finding the library, the ctypes declarations, and installing the package."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import pytest

from conftest import REPO, child_env

import libfcgi
from libfcgi import _native


def test_the_library_under_test_is_this_projects():
    info = libfcgi.library_info()
    assert info["implementation"] == "fcgi", info
    assert info["version"]
    assert os.path.exists(info["path"])


def test_request_struct_layout():
    """FCGX_Request field by field, as in fcgiapp.h (x86-64: 80 bytes)."""
    R = libfcgi.FCGX_Request
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("offsets below are for 64-bit platforms")
    assert ctypes.sizeof(R) == 80
    offsets = {name: getattr(R, name).offset for name, *_ in R._fields_}
    assert offsets == {
        "requestId": 0, "role": 4, "in_": 8, "out": 16, "err": 24, "envp": 32,
        "paramsPtr": 40, "ipcFd": 48, "isBeginProcessed": 52, "keepConnection": 56,
        "appStatus": 60, "nWriters": 64, "flags": 68, "listen_sock": 72, "detached": 76,
    }
    S = libfcgi.FCGX_Stream
    assert ctypes.sizeof(S) == 72
    assert S.isClosed.offset == 36 and S.FCGI_errno.offset == 44 and S.data.offset == 64


def test_init_request_fills_the_struct():
    r = libfcgi.FCGX_Request()
    ctypes.memset(ctypes.addressof(r), 0xAB, ctypes.sizeof(r))
    lib = _native.load()
    assert lib.FCGX_InitRequest(ctypes.addressof(r), 7, 1) == 0
    assert (r.listen_sock, r.flags, r.ipcFd, r.requestId) == (7, 1, -1, 0)
    assert not r.envp and r.in_ is None


def test_library_path_env_var(tmp):
    lib = libfcgi.library_path()
    code = "import libfcgi, json; print(json.dumps(libfcgi.library_info()))"
    # A directory holding the library.
    d = os.path.dirname(lib)
    out = subprocess.run([sys.executable, "-c", code], env=child_env(LIBFCGI_PATH=d),
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert os.path.realpath(d) in os.path.realpath(__import__("json").loads(out.stdout)["path"])
    # A file that is not there: a clear error that names it.
    bogus = str(tmp / "nowhere" / "libfcgi.so.0")
    out = subprocess.run([sys.executable, "-c", "import libfcgi; libfcgi.Request()"],
                         env=child_env(LIBFCGI_PATH=bogus), capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0
    assert "LibraryNotFoundError" in out.stderr
    assert bogus in out.stderr and "no such file" in out.stderr
    # Importing the package works without the library (it loads on use).
    out = subprocess.run([sys.executable, "-c", "import libfcgi, libfcgi.wsgi; print('ok')"],
                         env=child_env(LIBFCGI_PATH=bogus), capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip() == "ok", out.stderr


def test_search_order_and_error_message(monkeypatch):
    monkeypatch.delenv("LIBFCGI_PATH", raising=False)
    cands = list(_native._candidates())
    kinds = [k for k, _ in cands]
    assert kinds[0].startswith("LIBFCGI_PATH")
    first_bundled = kinds.index("bundled")
    assert first_bundled == 1
    assert kinds[-1] == "system loader"
    err = _native.LibraryNotFoundError([("bundled /x/libfcgi.so.0", "no such file"),
                                        ("system loader libfcgi.so.0", "failed: not found")])
    text = str(err)
    assert "/x/libfcgi.so.0: no such file" in text and "LIBFCGI_PATH" in text


def test_windows_and_macos_names(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    assert _native._file_names()[0] == "libfcgi.dll"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _native._file_names()[0].endswith(".dylib")


def test_pip_install_bundles_the_library(tmp):
    """`pip install ./bindings/python` gives a package that carries the
    library: it works with no LIBFCGI_PATH and outside the repository."""
    if not (REPO / "target" / "release" / "libfcgi.so").exists():
        pytest.skip("the library is not built (cargo build --release)")
    site = tmp / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--target", str(site), str(REPO / "bindings" / "python")],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0 and ("Failed to establish" in r.stderr or "No matching distribution" in r.stderr):
        pytest.skip("no package index to fetch the build backend from")
    assert r.returncode == 0, r.stderr
    bundled = site / "libfcgi" / "_lib" / "libfcgi.so.0"
    assert bundled.exists()
    env = {k: v for k, v in os.environ.items() if k not in ("LIBFCGI_PATH", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    code = ("import libfcgi, json; libfcgi.init(); "
            "print(json.dumps(libfcgi.library_info()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = __import__("json").loads(out.stdout)
    assert info["path"] == str(bundled)
    assert info["implementation"] == "fcgi"
