"""cffi in ABI mode, declared from the project's generated include/fcgiapp.h
(cdef cannot read preprocessor lines, the DLLAPI macro or va_list: this
test preprocesses them away), serving a request with the library."""

from __future__ import annotations

import os
import re
import threading

import pytest

import fcgiclient as fc
from conftest import REPO

cffi = pytest.importorskip("cffi")

import libfcgi  # noqa: E402

HEADER = REPO / "include" / "fcgiapp.h"


def _eval_condition(expr: str, defined: set[str]) -> bool:
    expr = re.sub(r"defined\s*\(?\s*(\w+)\s*\)?", lambda m: str(m.group(1) in defined), expr)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    expr = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: m.group(0) if m.group(0) in
                  ("True", "False", "and", "or", "not") else "False", expr)
    return bool(eval(expr, {"__builtins__": {}}))  # noqa: S307 - a header's #if


def cdef_source(text: str) -> str:
    """What cffi's cdef can take from a C header: conditional blocks
    resolved (nothing is defined but what the header defines; not C++, not
    Windows), #include and function-like or empty #defines dropped, integer
    #defines kept, DLLAPI removed, va_list declared as an opaque pointer."""
    defined: set[str] = set()
    stack: list[tuple[bool, bool]] = []  # (active, a branch was taken)
    active = True
    out = ["typedef void *va_list;"]
    lines = text.replace("\\\n", " ").splitlines()
    for line in lines:
        s = line.strip()
        if s.startswith("#"):
            d = s[1:].strip()
            word, _, rest = d.partition(" ")
            rest = rest.strip()
            if word in ("ifdef", "ifndef", "if"):
                if word == "ifdef":
                    cond = rest in defined
                elif word == "ifndef":
                    cond = rest not in defined
                else:
                    cond = _eval_condition(rest, defined)
                stack.append((active, active and cond))
                active = active and cond
            elif word == "elif":
                parent, taken = stack[-1]
                cond = parent and not taken and _eval_condition(rest, defined)
                stack[-1] = (parent, taken or cond)
                active = cond
            elif word == "else":
                parent, taken = stack[-1]
                active = parent and not taken
                stack[-1] = (parent, True)
            elif word == "endif":
                active, _ = stack.pop()
            elif word == "define" and active:
                name, _, value = rest.partition(" ")
                defined.add(name)
                if re.fullmatch(r"-?\d+", value.strip()):
                    out.append(f"#define {name} {value.strip()}")
            continue
        if active:
            out.append(line)
    src = "\n".join(out)
    src = re.sub(r"\bDLLAPI\b", "", src)
    return src


@pytest.fixture(scope="module")
def ffi_lib():
    if not HEADER.exists():
        pytest.skip(f"{HEADER} not generated yet")
    ffi = cffi.FFI()
    ffi.cdef(cdef_source(HEADER.read_text()))
    lib = ffi.dlopen(libfcgi.library_path())
    return ffi, lib


def test_header_declares_the_abi(ffi_lib):
    ffi, lib = ffi_lib
    assert ffi.sizeof("FCGX_Request") == 80
    assert ffi.sizeof("FCGX_Stream") == 72
    assert ffi.offsetof("FCGX_Request", "envp") == 32
    assert ffi.offsetof("FCGX_Request", "listen_sock") == 72
    assert lib.FCGI_FAIL_ACCEPT_ON_INTR == 1
    assert lib.FCGX_CALL_SEQ_ERROR == -5
    # The same layout as the ctypes Structure of the package.

    for name, *_ in libfcgi.FCGX_Request._fields_:
        cname = "in" if name == "in_" else name
        assert ffi.offsetof("FCGX_Request", cname) == getattr(libfcgi.FCGX_Request, name).offset


def test_serve_a_request_with_cffi(ffi_lib, tmp):
    ffi, lib = ffi_lib
    path = str(tmp / "cffi.sock")
    assert lib.FCGX_Init() == 0
    fd = lib.FCGX_OpenSocket(path.encode(), 5)
    assert fd >= 0
    req = ffi.new("FCGX_Request *")
    assert lib.FCGX_InitRequest(req, fd, 0) == 0
    seen = {}

    def serve():
        # cffi releases the GIL around the call, like ctypes.
        assert lib.FCGX_Accept_r(req) == 0
        uri = lib.FCGX_GetParam(b"REQUEST_URI", req.envp)
        seen["uri"] = ffi.string(uri)
        buf = ffi.new("char[]", 100)
        n = lib.FCGX_GetStr(buf, 100, req.__getattribute__("in"))
        seen["body"] = ffi.buffer(buf, n)[:]
        envp, i = req.envp, 0
        names = []
        while envp[i] != ffi.NULL:
            names.append(ffi.string(envp[i]).split(b"=", 1)[0])
            i += 1
        seen["names"] = names
        out = b"Content-Type: text/plain\r\n\r\nserved through cffi: " + seen["uri"]
        assert lib.FCGX_PutStr(out, len(out), req.out) == len(out)
        lib.FCGX_PutS(b"to stderr\n", req.err)
        lib.FCGX_SetExitStatus(9, req.out)
        lib.FCGX_Finish_r(req)
        lib.FCGX_Free(req, 1)

    t = threading.Thread(target=serve)
    t.start()
    r = fc.request(path, fc.cgi_params("/via/cffi", "POST", b"payload"), b"payload")
    t.join(5)
    os.close(fd)
    assert r.body == b"served through cffi: /via/cffi"
    assert r.stderr == b"to stderr\n"
    assert r.app_status == 9
    assert seen["body"] == b"payload"
    assert seen["names"][0] == b"FCGI_ROLE" and b"REQUEST_URI" in seen["names"]
