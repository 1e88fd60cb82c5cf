"""The loader's Windows code paths, run on Linux with the platform
simulated: ``sys.platform`` is ``"win32"``, ``os.add_dll_directory`` is a
recorder, and ctypes is replaced by a fake loader that says which file
would have been opened. No Windows DLL is executed here (tests/windows.rs
runs the DLL itself under wine; tests/python/test_wheels.py checks the
Windows wheel's contents).

``os.name`` is left alone: the loader decides on ``sys.platform`` only, and
pathlib picks its Windows flavour from ``os.name``, which cannot work on
Linux.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from libfcgi import _native


class FakeFunction:
    """A C function of the fake DLL: takes restype/argtypes, and calling
    it answers like fcgi_rs_version."""

    restype = None
    argtypes = None

    def __call__(self, *args):
        return b"0.0.0-fake"


class FakeDLL:
    def __init__(self, path):
        self._name = path
        self._handle = id(self)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        fn = FakeFunction()
        object.__setattr__(self, name, fn)
        return fn


class Recorder:
    """What the loader did, in order: ("add_dll_directory", dir),
    ("close_dll_directory", dir), ("open", path), ("find_library", name)."""

    def __init__(self):
        self.events: list[tuple[str, str]] = []
        self.loadable: set[str] = set()  # paths or names the fake loader opens
        self.found: dict[str, str] = {}  # find_library answers
        self.module_paths: dict[str, str] = {}  # bare name -> file (GetModuleFileNameW)

    def kinds(self, kind):
        return [what for k, what in self.events if k == kind]

    # os.add_dll_directory
    def add_dll_directory(self, directory):
        self.events.append(("add_dll_directory", directory))
        recorder = self

        class Handle:
            def close(self):
                recorder.events.append(("close_dll_directory", directory))

        return Handle()

    # _native._open_library
    def open_library(self, path):
        self.events.append(("open", path))
        if path not in self.loadable:
            raise OSError(f"[WinError 126] The specified module could not be found: {path!r}")
        return FakeDLL(path), FakeDLL(path), FakeDLL(path)

    # ctypes.util.find_library
    def find_library(self, name):
        self.events.append(("find_library", name))
        return self.found.get(name)

    # _native._windows_module_path
    def module_path(self, dll):
        return self.module_paths.get(dll._name)


@pytest.fixture
def windows(monkeypatch, tmp):
    """A simulated Windows: the package installed in tmp/site/libfcgi (no
    repository around it), LIBFCGI_PATH unset."""
    rec = Recorder()
    package = tmp / "site" / "libfcgi"
    (package / "_lib").mkdir(parents=True)
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(os, "add_dll_directory", rec.add_dll_directory, raising=False)
    monkeypatch.setattr(_native, "_open_library", rec.open_library)
    monkeypatch.setattr(_native.ctypes.util, "find_library", rec.find_library)
    monkeypatch.setattr(_native, "_windows_module_path", rec.module_path)
    monkeypatch.setattr(_native, "_package_dir", lambda: package)
    monkeypatch.setattr(_native, "_library", None)
    monkeypatch.setattr(_native, "_dll_directories", {})
    monkeypatch.delenv(_native.ENV_VAR, raising=False)
    rec.package = package
    rec.bundled = package / "_lib"
    return rec


def touch(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"MZ")
    return str(path)


def test_bundled_dll_is_loaded_from_the_package_with_its_directory_added(windows):
    dll = touch(windows.bundled / "libfcgi.dll")
    windows.loadable.add(dll)
    lib = _native.load()
    assert lib.path == os.path.realpath(dll)
    assert lib.implementation == "fcgi" and lib.version == "0.0.0-fake"
    # The package's _lib directory is added before the DLL is opened, and
    # stays added; nothing else is looked at (the system search is lazy).
    assert windows.events == [("add_dll_directory", str(windows.bundled)), ("open", dll)]
    assert list(_native._dll_directories) == [str(windows.bundled)]


def test_windows_file_names_in_order(windows):
    """libfcgi.dll (the original's name) before fcgi.dll (cargo's)."""
    assert _native._file_names() == ["libfcgi.dll", "fcgi.dll"]
    cargo_named = touch(windows.bundled / "fcgi.dll")
    windows.loadable.add(cargo_named)
    assert _native.load().path == os.path.realpath(cargo_named)
    assert windows.kinds("open") == [cargo_named]


def test_fallback_order_package_then_path_then_loader(windows, tmp):
    """Nothing bundled: find_library('libfcgi') (PATH), then
    find_library('fcgi'), then the bare names through the Windows loader."""
    on_path = touch(tmp / "Program Files" / "fcgi" / "fcgi.dll")
    windows.found["fcgi"] = on_path
    windows.loadable.add("fcgi.dll")  # would load, but comes later
    windows.loadable.add(on_path)
    assert _native.load().path == os.path.realpath(on_path)
    assert windows.kinds("find_library") == ["libfcgi", "fcgi"]
    assert windows.kinds("open") == [on_path]
    assert windows.kinds("add_dll_directory") == [str(Path(on_path).parent)]


def test_bare_names_through_the_loader_last(windows):
    """Nothing bundled or on PATH: the loader's own search with the bare
    names; no directory is added for them, and the file reported is the one
    Windows says it loaded."""
    windows.loadable.add("fcgi.dll")
    windows.module_paths["fcgi.dll"] = r"C:\Windows\System32\fcgi.dll"
    lib = _native.load()
    assert lib.path == r"C:\Windows\System32\fcgi.dll"
    assert windows.kinds("open") == ["libfcgi.dll", "fcgi.dll"]
    assert windows.kinds("add_dll_directory") == []
    kinds = [what for what, _ in _native._candidates()]
    assert kinds == [
        "LIBFCGI_PATH (environment variable)",
        "bundled", "bundled",
        "ctypes.util.find_library('libfcgi')", "ctypes.util.find_library('fcgi')",
        "system loader", "system loader",
    ]


def test_env_override_wins_and_excludes_the_rest(windows, tmp, monkeypatch):
    """LIBFCGI_PATH naming a directory: its DLL is taken even though the
    package bundles one, and nothing else is tried when it fails."""
    touch(windows.bundled / "libfcgi.dll")
    windows.loadable.add(str(windows.bundled / "libfcgi.dll"))
    override = tmp / "custom"
    chosen = touch(override / "fcgi.dll")
    windows.loadable.add(chosen)
    monkeypatch.setenv(_native.ENV_VAR, str(override))
    assert _native.load().path == os.path.realpath(chosen)
    assert windows.kinds("open") == [chosen]
    assert windows.kinds("add_dll_directory") == [str(override)]

    # The same variable naming a file that does not load: an error, and
    # neither the bundled DLL nor the system is tried.
    monkeypatch.setattr(_native, "_library", None)
    windows.events.clear()
    broken = touch(tmp / "broken" / "libfcgi.dll")
    monkeypatch.setenv(_native.ENV_VAR, broken)
    with pytest.raises(_native.LibraryNotFoundError) as e:
        _native.load()
    assert windows.kinds("open") == [broken]
    assert windows.kinds("find_library") == []
    assert broken in str(e.value) and "WinError 126" in str(e.value)


def test_a_dll_that_fails_to_load_has_its_directory_removed(windows, tmp):
    """A bundled DLL that Windows refuses (say, another architecture): its
    directory is taken off the search path again, and the search goes on."""
    bad = touch(windows.bundled / "libfcgi.dll")  # not in loadable: fails
    on_path = touch(tmp / "bin" / "libfcgi.dll")
    windows.found["libfcgi"] = on_path
    windows.loadable.add(on_path)
    assert _native.load().path == os.path.realpath(on_path)
    assert windows.events == [
        ("add_dll_directory", str(windows.bundled)),
        ("open", bad),
        ("close_dll_directory", str(windows.bundled)),
        ("find_library", "libfcgi"),
        ("add_dll_directory", str(Path(on_path).parent)),
        ("open", on_path),
    ]
    assert list(_native._dll_directories) == [str(Path(on_path).parent)]


def test_nothing_found_names_every_place(windows):
    with pytest.raises(_native.LibraryNotFoundError) as e:
        _native.load()
    text = str(e.value)
    assert str(windows.bundled / "libfcgi.dll") + ": no such file" in text
    assert str(windows.bundled / "fcgi.dll") + ": no such file" in text
    assert "find_library('libfcgi'): nothing found" in text
    assert "system loader libfcgi.dll: failed" in text
    assert "libfcgi.dll / fcgi.dll" in text


def test_python_before_3_8_has_no_add_dll_directory(windows, monkeypatch):
    """Without os.add_dll_directory the DLL still loads by its full path."""
    monkeypatch.delattr(os, "add_dll_directory")
    dll = touch(windows.bundled / "libfcgi.dll")
    windows.loadable.add(dll)
    assert _native.load().path == os.path.realpath(dll)
    assert windows.kinds("add_dll_directory") == []


def test_linux_never_adds_dll_directories(windows, monkeypatch):
    """The same search on Linux: .so names, no DLL directories."""
    monkeypatch.setattr(sys, "platform", "linux")
    so = touch(windows.bundled / "libfcgi.so.0")
    windows.loadable.add(so)
    assert _native.load().path == os.path.realpath(so)
    assert windows.kinds("add_dll_directory") == []
    assert _native._system_names() == ["fcgi"]
