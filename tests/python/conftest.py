"""Shared fixtures for the Python binding tests.

The package under test is the installed ``libfcgi`` if there is one, else
the source in bindings/python/src. The library under test is the
repository's build (target/release) unless LIBFCGI_PATH names another.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SRC = REPO / "bindings" / "python" / "src"
EXAMPLES = REPO / "examples" / "python"

sys.path.insert(0, str(HERE))

for name in ("libfcgi.so.0", "libfcgi.so"):
    built = REPO / "target" / "release" / name
    if built.exists():
        os.environ.setdefault("LIBFCGI_PATH", str(built))
        break

try:
    import libfcgi  # noqa: F401
except ImportError:
    sys.path.insert(0, str(SRC))
    import libfcgi  # noqa: F401

# Where the package imported from: subprocesses get the same one.
PACKAGE_ROOT = str(Path(libfcgi.__file__).resolve().parent.parent)


def child_env(**extra) -> dict:
    env = dict(os.environ)
    paths = [PACKAGE_ROOT, str(HERE)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tmp(tmp_path_factory):
    # Short paths: a Unix socket path must fit in 108 bytes.
    d = tempfile.mkdtemp(prefix="fcgipy-")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _default_sigint():
    # A shell starts background jobs with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored: the Ctrl-C tests need the child to start with
    # the default disposition, whatever the test run inherited.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A child process running a FastCGI application."""

    def __init__(self, args, address=None, cwd=None, env=None, stdin=None, wait=True):
        self.address = address
        self.p = subprocess.Popen(
            args, cwd=cwd, env=env or child_env(), stdin=stdin,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_default_sigint,
        )
        if wait and address is not None:
            self.wait_ready()

    def wait_ready(self, timeout: float = 15.0):
        import fcgiclient

        deadline = time.monotonic() + timeout
        while True:
            if self.p.poll() is not None:
                out, err = self.p.communicate()
                raise RuntimeError(f"application exited ({self.p.returncode}):\n{err.decode()}")
            try:
                fcgiclient.wait_for(self.address, timeout=0.2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise

    @property
    def pid(self) -> int:
        return self.p.pid

    def signal(self, sig) -> None:
        self.p.send_signal(sig)

    def finish(self, timeout: float = 10.0):
        """Waits for the exit; returns (code, stdout, stderr)."""
        try:
            out, err = self.p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
            raise AssertionError(f"did not exit within {timeout} s; stderr:\n{err.decode()}")
        return self.p.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        try:
            self.p.communicate(timeout=5)
        except Exception:
            pass

    def rss_kib(self) -> int:
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")


@pytest.fixture
def spawn():
    procs = []

    def start(*args, **kw) -> Proc:
        p = Proc(*args, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


def write_module(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path
