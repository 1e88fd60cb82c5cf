"""Build script: the FastCGI library, compiled by cargo, inside the package.

The metadata is in pyproject.toml; this file only says what setuptools-rust
builds and how the result is named and tagged:

* the crate is the repository's root (``../../Cargo.toml``) in a checkout,
  or the copy an sdist carries in ``rust/`` (this script puts it there);
* setuptools-rust runs ``cargo rustc --lib --release --crate-type cdylib``
  for the target (``CARGO_BUILD_TARGET``, or the one that bdist_wheel's
  ``--plat-name`` implies: ``win_amd64`` -> ``x86_64-pc-windows-gnu`` on a
  Linux host) and the file goes to ``libfcgi/_lib/`` under the name the
  loader looks for: ``libfcgi.so.0``, ``libfcgi.dll`` or ``libfcgi.0.dylib``;
* the library is not a CPython extension module (no PyO3: a C ABI that
  :mod:`ctypes` loads), so the wheel is ``py3-none-<platform>``: one wheel
  per platform for every Python 3 version.

Why setuptools-rust rather than maturin: maturin builds a cdylib without
PyO3 only as cffi bindings (it runs cbindgen and generates a cffi module,
which would make cffi a run-time dependency and replace the ctypes loader);
setuptools-rust's ``Binding.NoBinding`` builds the plain cdylib and leaves
the binding to us, inside the setuptools configuration the package already
had.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.sdist import sdist
from setuptools_rust import Binding, RustExtension
from setuptools_rust.build import build_rust

HERE = Path(__file__).resolve().parent
#: Where an sdist carries the crate.
SDIST_CRATE = "rust"
#: What of the repository the crate needs to build (paths from its root).
CRATE_FILES = ["Cargo.toml", "Cargo.lock", "build.rs", "fcgi.map", "src", "c", "include"]


def crate_root() -> Path:
    """The crate's directory: an sdist's copy, else the repository root."""
    for root in (HERE / SDIST_CRATE, HERE.parent.parent):
        if (root / "Cargo.toml").is_file() and (root / "build.rs").is_file():
            return root
    raise SystemExit(
        "libfcgi: the Rust crate is missing: build from the fcgi repository "
        "(bindings/python) or from its sdist, which carries the crate in rust/"
    )


def library_file_name(target: str | None) -> str:
    """The library's name in the package, as the loader (_native.py) looks
    for it, for a cargo target triple (None: this machine)."""
    if target is None:
        platform = sys.platform
    elif "windows" in target:
        platform = "win32"
    elif "apple" in target:
        platform = "darwin"
    else:
        platform = "linux"
    if platform == "win32":
        return "libfcgi.dll"
    if platform == "darwin":
        return "libfcgi.0.dylib"
    return "libfcgi.so.0"


class BuildRust(build_rust):
    """setuptools-rust's build, with the library named as the loader wants
    it rather than as a CPython extension module (``*.cpython-311-*.so``)."""

    def get_dylib_ext_path(self, ext, target_fname):
        default = super().get_dylib_ext_path(ext, target_fname)
        target = self.target if isinstance(self.target, str) else None
        return os.path.join(os.path.dirname(default), library_file_name(target))

    def install_extension(self, ext, dylib_paths, build_artifact_dir):
        # The build directory is named after the host, not the target: a
        # library left there by a build for another platform (the Windows
        # DLL, say) must not end up in this wheel beside this one.
        dest = Path(self.get_dylib_ext_path(ext, ext.name))
        for other in ("libfcgi.so.0", "libfcgi.dll", "libfcgi.0.dylib"):
            if other != dest.name and (dest.parent / other).exists():
                (dest.parent / other).unlink()
        super().install_extension(ext, dylib_paths, build_artifact_dir)


class BdistWheel(bdist_wheel):
    """``py3-none-<platform>``: the library is loaded by ctypes, so the
    wheel depends on the platform but not on the Python version or ABI."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


def workspace_free_manifest(text: str) -> str:
    """Cargo.toml without the repository's ``[workspace]`` table (whose
    members, cli/ and bench/, an sdist does not carry), with an empty one
    instead, so that the copy is a workspace of its own wherever it is
    unpacked."""
    out, skipping = [], False
    for line in text.splitlines():
        header = re.match(r"\s*\[\[?([^\]]+)\]\]?\s*(#.*)?$", line)
        if header:
            skipping = header.group(1).strip() == "workspace" or header.group(
                1
            ).strip().startswith("workspace.")
            if skipping:
                continue
        if not skipping:
            out.append(line)
    if any(re.match(r"\s*\[workspace", line) for line in out):
        raise SystemExit("libfcgi: could not strip [workspace] from Cargo.toml")
    out += ["", "# The Python sdist carries only this crate: a workspace of its own.", "[workspace]", ""]
    return "\n".join(out)


class Sdist(sdist):
    """The sdist carries the crate (in rust/), which lives two levels up in
    the repository, out of reach of MANIFEST.in."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        src = crate_root()
        dest = Path(base_dir) / SDIST_CRATE
        if src.resolve() == dest.resolve():
            return
        dest.mkdir(exist_ok=True)
        for name in CRATE_FILES:
            path = src / name
            if path.is_dir():
                shutil.copytree(path, dest / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif name == "Cargo.toml":
                (dest / name).write_text(workspace_free_manifest(path.read_text()))
            else:
                shutil.copy2(path, dest / name)


setup(
    rust_extensions=[
        RustExtension(
            "libfcgi._lib.libfcgi",
            path=str(crate_root() / "Cargo.toml"),
            binding=Binding.NoBinding,
            py_limited_api=False,
            debug=False,
        )
    ],
    cmdclass={"build_rust": BuildRust, "bdist_wheel": BdistWheel, "sdist": Sdist},
    zip_safe=False,
)
