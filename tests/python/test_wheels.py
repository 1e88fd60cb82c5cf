"""The built distributions: the Linux wheel (manylinux), the Windows wheel
(cross-built, win_amd64) and the sdist, as scripts/ci-wheels.sh makes
them, and the Linux wheel installed in a fresh virtual environment with no
repository around, serving a WSGI application behind nginx.

The distributions are read from LIBFCGI_WHEEL_DIR; without it these tests
skip (scripts/ci-wheels.sh builds them and sets it). With
LIBFCGI_WHEEL_TESTS_REQUIRED=1 (the script sets it) a missing distribution
or tool fails them instead; FCGI_SKIP_WINDOWS=1 (as in .ci/run when the
Windows target cannot be added) skips the Windows wheel's test.
"""

from __future__ import annotations

import configparser
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, SRC, Proc

WHEEL_DIR = os.environ.get("LIBFCGI_WHEEL_DIR")
REQUIRED = os.environ.get("LIBFCGI_WHEEL_TESTS_REQUIRED") == "1"
pytestmark = pytest.mark.skipif(
    not WHEEL_DIR, reason="LIBFCGI_WHEEL_DIR not set (scripts/ci-wheels.sh builds the wheels)")

VERSION = re.search(r'^version = "([^"]+)"', (REPO / "bindings/python/pyproject.toml").read_text(),
                    re.M).group(1)
#: The six fcgios.h functions the Windows build does not export (POSIX-only
#: in this library; tests/windows.rs, LEFT_OUT).
WINDOWS_LEFT_OUT = {"OS_SetFlags", "OS_SpawnChild", "OS_AsyncReadStdin", "OS_AsyncRead",
                    "OS_AsyncWrite", "OS_DoIo"}
#: DLLs every Windows 10 has: all the Windows library may import.
WINDOWS_SYSTEM_DLLS = {"kernel32.dll", "ntdll.dll", "msvcrt.dll", "ws2_32.dll", "userenv.dll",
                       "bcrypt.dll", "bcryptprimitives.dll", "advapi32.dll"}


def unavailable(what: str):
    if REQUIRED:
        pytest.fail(what)
    pytest.skip(what)


def tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    unavailable(f"none of {names} is installed")


def dist(pattern: str) -> Path:
    found = sorted(Path(WHEEL_DIR).glob(pattern))
    if len(found) != 1:
        unavailable(f"expected one {pattern} in {WHEEL_DIR}, found {[p.name for p in found]}")
    return found[0]


def fcgi_map_exports() -> set[str]:
    """The names of fcgi.map's global: section."""
    text = re.sub(r"/\*.*?\*/", "", (REPO / "fcgi.map").read_text(), flags=re.S)
    section = text.split("global:")[1].split("local:")[0]
    return {n.strip() for n in section.split(";") if n.strip()}


def python_sources() -> set[str]:
    return {f"libfcgi/{p.name}" for p in (SRC / "libfcgi").iterdir()
            if p.suffix == ".py" or p.name == "py.typed"}


def wheel_metadata(whl: zipfile.ZipFile) -> tuple[dict, list[str]]:
    """(WHEEL fields, its Tag lines)."""
    text = whl.read(f"libfcgi-{VERSION}.dist-info/WHEEL").decode()
    msg = email.parser.Parser().parsestr(text)
    return dict(msg.items()), msg.get_all("Tag")


def check_wheel_layout(path: Path, native: str) -> zipfile.ZipFile:
    """The files of a wheel: the Python package, one native library (native),
    the dist-info; RECORD lists each file."""
    whl = zipfile.ZipFile(path)
    names = {n for n in whl.namelist() if not n.endswith("/")}
    package = {n for n in names if not n.startswith(f"libfcgi-{VERSION}.dist-info/")}
    assert package == python_sources() | {f"libfcgi/_lib/{native}"}, sorted(package)
    info = {n.split("/", 1)[1] for n in names - package}
    assert {"METADATA", "WHEEL", "RECORD", "entry_points.txt"} <= info, info
    record = whl.read(f"libfcgi-{VERSION}.dist-info/RECORD").decode()
    assert {line.split(",")[0] for line in record.splitlines() if line} == names
    entry_points = configparser.ConfigParser()
    entry_points.read_string(whl.read(f"libfcgi-{VERSION}.dist-info/entry_points.txt").decode())
    assert entry_points["console_scripts"]["libfcgi-wsgi"] == "libfcgi.wsgi:main"
    fields, tags = wheel_metadata(whl)
    assert fields["Root-Is-Purelib"] == "false"  # platlib: it carries a native library
    return whl


def extract(whl: zipfile.ZipFile, member: str, tmp: Path) -> Path:
    whl.extract(member, tmp)
    return tmp / member


# ---------------------------------------------------------------------------
# Linux


#: The legacy manylinux names and the glibc they stand for (PEP 600).
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def dynamic_imports(so: Path) -> list[tuple[str, str | None, bool]]:
    """The symbols the library imports: (name, version or None, weak)."""
    out = subprocess.run([tool("objdump"), "-T", str(so)], capture_output=True, text=True,
                         check=True).stdout
    imports = []
    for line in out.splitlines():
        if "*UND*" not in line:
            continue
        flags = line.split("*UND*")[0].split(None, 1)[1] if " " in line else ""
        version = re.search(r"\((\S+)\)", line)
        imports.append((line.split()[-1], version.group(1) if version else None, "w" in flags))
    return imports


def glibc_versions(so: Path) -> list[tuple[int, ...]]:
    """The GLIBC_x.y versions of the symbols the library imports, sorted."""
    return sorted({tuple(int(x) for x in v[len("GLIBC_"):].split("."))
                   for _, v, _ in dynamic_imports(so) if v and re.fullmatch(r"GLIBC_[0-9.]+", v)})


def test_linux_wheel_is_manylinux_and_carries_the_library(tmp):
    path = dist("libfcgi-*-py3-none-manylinux*_x86_64.whl")
    whl = check_wheel_layout(path, "libfcgi.so.0")
    m = re.fullmatch(rf"libfcgi-{re.escape(VERSION)}-py3-none-([a-z0-9_.]+)\.whl", path.name)
    assert m, path.name
    platforms = m.group(1).split(".")
    _, tags = wheel_metadata(whl)
    # The file name's tags and WHEEL's are the same: py3, no ABI.
    assert sorted(tags) == sorted(f"py3-none-{p}" for p in platforms)
    # The glibc each manylinux tag stands for (a legacy alias must agree).
    glibcs = set()
    for plat in platforms:
        pep600 = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", plat)
        if pep600:
            glibcs.add((int(pep600.group(1)), int(pep600.group(2))))
        else:
            assert plat.endswith("_x86_64") and plat[:-len("_x86_64")] in LEGACY_MANYLINUX, plat
            glibcs.add(LEGACY_MANYLINUX[plat[:-len("_x86_64")]])
    assert len(glibcs) == 1, platforms

    so = extract(whl, "libfcgi/_lib/libfcgi.so.0", tmp)
    dyn = subprocess.run([tool("readelf"), "-d", "-h", str(so)], capture_output=True, text=True,
                         check=True).stdout
    assert "Advanced Micro Devices X86-64" in dyn and "DYN (Shared object file)" in dyn
    assert "Library soname: [libfcgi.so.0]" in dyn
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn))
    # Only what every glibc system has (manylinux's allowed libraries).
    assert needed <= {"libc.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2", "libm.so.6",
                      "libpthread.so.0", "libdl.so.2", "librt.so.1"}, needed

    # The tag is the newest glibc symbol version the library needs: no
    # older (it would not load there), no newer (it would refuse systems
    # that can run it).
    newest = glibc_versions(so)[-1]
    assert glibcs == {newest[:2]}, (newest, path.name)
    # A function imported without a version binds to whatever the running
    # glibc has, and fails to load where it has none: an older glibc that
    # lacks it would pass the tag's check and still not load the library.
    # Only weak ones (which the Rust standard library looks up and does
    # without: statx, getrandom...) may come unversioned.
    unversioned = [name for name, version, weak in dynamic_imports(so)
                   if version is None and not weak]
    assert not unversioned, unversioned

    # Every export of fcgi.map: libfcgi's 89 and this library's extensions.
    nm = subprocess.run([tool("nm"), "-D", "--defined-only", str(so)], capture_output=True,
                        text=True, check=True).stdout
    exported = {line.split()[-1] for line in nm.splitlines() if line.strip()}
    assert exported == fcgi_map_exports()


# ---------------------------------------------------------------------------
# Windows


def pe_dump(dll: Path) -> str:
    objdump = tool("x86_64-w64-mingw32-objdump")
    return subprocess.run([objdump, "-p", "-f", str(dll)], capture_output=True, text=True,
                          check=True).stdout


def pe_exports(dump: str) -> tuple[str, set[str]]:
    """(the DLL's own name, its exported names) from `objdump -p`."""
    name = re.search(r"^Name\s+[0-9a-f]+\s+(\S+)$", dump, re.M).group(1)
    table = dump.split("[Ordinal/Name Pointer] Table")[1]
    names = set()
    for line in table.splitlines()[1:]:
        if not line.strip():
            break
        names.add(line.split("]", 1)[1].strip())
    return name, names


def test_windows_wheel_carries_the_dll_with_its_exports(tmp):
    if os.environ.get("FCGI_SKIP_WINDOWS"):
        pytest.skip("FCGI_SKIP_WINDOWS is set: no Windows wheel was built")
    path = dist("libfcgi-*-py3-none-win_amd64.whl")
    assert path.name == f"libfcgi-{VERSION}-py3-none-win_amd64.whl"
    whl = check_wheel_layout(path, "libfcgi.dll")
    _, tags = wheel_metadata(whl)
    assert tags == ["py3-none-win_amd64"]

    dll = extract(whl, "libfcgi/_lib/libfcgi.dll", tmp)
    dump = pe_dump(dll)
    assert "file format pei-x86-64" in dump
    name, exports = pe_exports(dump)
    assert name == "libfcgi.dll"  # the original's name, which the loader tries first
    wanted = fcgi_map_exports() - WINDOWS_LEFT_OUT
    assert exports == wanted, (sorted(wanted - exports), sorted(exports - wanted))
    assert "_fcgi_sF" in exports and "FCGX_Accept_r" in exports and "FCGX_FPrintF" in exports

    # It needs nothing the wheel does not carry: only Windows' own DLLs (no
    # libgcc_s_seh-1.dll or libwinpthread-1.dll of mingw-w64).
    imports = {d.lower() for d in re.findall(r"DLL Name: (\S+)", dump)}
    foreign = {d for d in imports
               if d not in WINDOWS_SYSTEM_DLLS and not d.startswith("api-ms-win-")}
    assert not foreign, imports


# ---------------------------------------------------------------------------
# sdist


def test_sdist_carries_the_crate_as_a_workspace_of_its_own(tmp):
    path = dist(f"libfcgi-{VERSION}.tar.gz")
    root = f"libfcgi-{VERSION}"
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        tar.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(tmp)
    top = tmp / root
    for needed in ("setup.py", "pyproject.toml", "PKG-INFO", "README.md"):
        assert f"{root}/{needed}" in names
    assert {f"{root}/src/{p}" for p in python_sources()} <= names
    # The crate, byte for byte as in the repository...
    crate = top / "rust"
    for rel in ("build.rs", "fcgi.map", "Cargo.lock", "c/printf.c", "src/lib.rs",
                "src/capi/mod.rs", "include/fcgiapp.h"):
        assert (crate / rel).read_bytes() == (REPO / rel).read_bytes(), rel
    repo_sources = {p.relative_to(REPO).as_posix() for p in (REPO / "src").rglob("*.rs")}
    sdist_sources = {p.relative_to(crate).as_posix() for p in (crate / "src").rglob("*.rs")}
    assert sdist_sources == repo_sources
    # ...except Cargo.toml, whose workspace (cli/, bench/: not carried) is
    # replaced by an empty one.
    manifest = (crate / "Cargo.toml").read_text()
    assert "members" not in manifest and re.search(r"^\[workspace\]$", manifest, re.M)
    assert manifest.count("[workspace]") == 1
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo/bin/cargo")
    if not os.path.exists(cargo):
        unavailable("cargo is not installed")
    meta = subprocess.run([cargo, "metadata", "--no-deps", "--offline", "--format-version", "1",
                           "--manifest-path", str(crate / "Cargo.toml")],
                          capture_output=True, text=True, timeout=120)
    assert meta.returncode == 0, meta.stderr
    info = json.loads(meta.stdout)
    assert [p["name"] for p in info["packages"]] == ["fcgi"]
    assert Path(info["workspace_root"]).resolve() == crate.resolve()
    pkg_info = email.parser.Parser().parsestr((top / "PKG-INFO").read_text())
    assert (pkg_info["Name"], pkg_info["Version"]) == ("libfcgi", VERSION)


# ---------------------------------------------------------------------------
# Installed in a fresh virtual environment, served behind nginx


APP = '''
import json, os, sys
import libfcgi

def app(environ, start_response):
    body = environ["wsgi.input"].read()
    info = libfcgi.library_info()
    out = json.dumps({
        "library": info,
        "package": libfcgi.__file__,
        "prefix": sys.prefix,
        "cwd": os.getcwd(),
        "sys_path": sys.path,
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ.get("QUERY_STRING", ""),
        "body_len": len(body),
        "body_tail": body[-16:].decode("latin-1"),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out]
'''


def clean_env(**extra) -> dict:
    """The environment without anything that points at the repository."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "LIBFCGI_PATH", "LD_LIBRARY_PATH", "VIRTUAL_ENV",
                        "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")}
    env["PYTHONNOUSERSITE"] = "1"
    env.update(extra)
    return env


def test_linux_wheel_in_a_fresh_venv_serves_wsgi_behind_nginx(tmp):
    import test_nginx

    if test_nginx.NGINX is None:
        unavailable("nginx is not installed")
    wheel = dist("libfcgi-*-py3-none-manylinux*_x86_64.whl")
    # Only the wheel is copied: the venv, the application and the working
    # directory are all in a temporary directory with no repository above.
    assert not any((p / ".git").exists() or (p / "Cargo.toml").exists()
                   for p in [tmp, *tmp.parents])
    shutil.copy(wheel, tmp / wheel.name)
    venv = tmp / "venv"
    env = clean_env()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, cwd=tmp,
                   timeout=120)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-index", "--no-deps",
                        "--disable-pip-version-check", "--quiet", str(tmp / wheel.name)],
                       capture_output=True, text=True, env=env, cwd=tmp, timeout=300)
    assert r.returncode == 0, r.stderr

    app_dir = tmp / "app"
    app_dir.mkdir()
    (app_dir / "hello_app.py").write_text(textwrap.dedent(APP))
    sock = str(tmp / "app.sock")
    server = Proc([str(venv / "bin" / "libfcgi-wsgi"), "hello_app:app", "--bind", sock,
                   "--threads", "4"],
                  address=sock, cwd=str(app_dir), env=clean_env(PYTHONUNBUFFERED="1"))
    nginx = test_nginx.Nginx(tmp, f"unix:{sock}")
    try:
        resp, body = nginx.request("GET", "/hello/world?x=1")
        assert resp.status == 200, body
        info = json.loads(body)
        site = next(p for p in info["sys_path"] if p.endswith("site-packages"))
        assert Path(site).is_relative_to(venv.resolve()) or Path(site).is_relative_to(venv)
        assert info["package"] == os.path.join(site, "libfcgi", "__init__.py")
        assert info["library"]["path"] == os.path.join(site, "libfcgi", "_lib", "libfcgi.so.0")
        assert info["library"]["implementation"] == "fcgi"
        assert info["library"]["version"] == VERSION
        assert info["prefix"] == str(venv)
        assert info["cwd"] == str(app_dir)
        assert not any(str(REPO) in p for p in info["sys_path"]), info["sys_path"]
        assert (info["method"], info["path"], info["query"]) == ("GET", "/hello/world", "x=1")

        payload = b"0123456789" * 50_000 + b"the end"
        resp, body = nginx.request("POST", "/upload", body=payload,
                                   headers={"Content-Type": "application/octet-stream"})
        assert resp.status == 200, body
        info = json.loads(body)
        assert (info["body_len"], info["body_tail"]) == (len(payload), payload[-16:].decode())
    finally:
        nginx.stop()
        server.stop()
