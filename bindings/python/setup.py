"""Build hook: bundles the FastCGI shared library into the package.

The library comes from, in this order: the file named by
LIBFCGI_BUILD_LIBRARY; the repository this directory belongs to
(target/release, built here with `cargo build --release` when cargo is
available and LIBFCGI_NO_CARGO is not set). Without one, the package is
built without a bundled library and finds one at run time (LIBFCGI_PATH,
the system), printing a warning now.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _names():
    if sys.platform == "win32":
        return ["libfcgi.dll", "fcgi.dll"]
    if sys.platform == "darwin":
        return ["libfcgi.0.dylib", "libfcgi.dylib"]
    return ["libfcgi.so.0", "libfcgi.so"]


def _built():
    for name in _names():
        p = REPO / "target" / "release" / name
        if p.exists():
            return p
    return None


def find_library():
    explicit = os.environ.get("LIBFCGI_BUILD_LIBRARY")
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise SystemExit(f"LIBFCGI_BUILD_LIBRARY={explicit}: no such file")
        return p
    if not (REPO / "Cargo.toml").is_file():
        return None
    lib = _built()
    if lib is None and not os.environ.get("LIBFCGI_NO_CARGO") and shutil.which("cargo"):
        print("libfcgi: building the library: cargo build --release --lib -p fcgi", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--lib", "-p", "fcgi"], cwd=REPO, check=True)
        lib = _built()
    return lib


class BuildPy(build_py):
    def run(self):
        super().run()
        lib = find_library()
        if lib is None:
            print(
                "libfcgi: WARNING: no FastCGI library bundled (none built in the repository); "
                "the package will look for one at run time (LIBFCGI_PATH, the system)",
                file=sys.stderr,
            )
            return
        dest = Path(self.build_lib) / "libfcgi" / "_lib"
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / _names()[0]
        shutil.copyfile(os.path.realpath(lib), target)
        os.chmod(target, 0o755)
        print(f"libfcgi: bundled {lib} as {target.name}", file=sys.stderr)


cmdclass = {"build_py": BuildPy}

try:  # the wheel holds a native library: tag it for this platform
    try:
        from setuptools.command.bdist_wheel import bdist_wheel
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel

    class BdistWheel(bdist_wheel):
        def finalize_options(self):
            super().finalize_options()
            self.root_is_pure = False

        def get_tag(self):
            _, _, plat = super().get_tag()
            return "py3", "none", plat

    cmdclass["bdist_wheel"] = BdistWheel
except ImportError:
    pass

setup(cmdclass=cmdclass)
