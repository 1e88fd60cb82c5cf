"""libfcgi: FastCGI for Python on the ``fcgi`` library (a memory-safe
drop-in replacement of libfcgi 2.4), through its C API and ctypes.

Three layers on one core:

* the classic API of the original Python port::

      libfcgi.init_socket(9000, 10)
      req = libfcgi.fcgi_request()
      while req.accept():
          req.out.write("Content-Type: text/plain\\r\\n\\r\\n" + req.env["REQUEST_URI"])

* a Pythonic API: :class:`Server` (iteration, context managers, worker
  threads), :class:`Request` with binary file-like ``stdin``, ``stdout``,
  ``stderr`` and ``data`` streams and ``params`` as a mapping;
* WSGI: :mod:`libfcgi.wsgi` (``python -m libfcgi.wsgi app:app --bind ...``).

The shared library is found as described in :mod:`libfcgi._native`
(``LIBFCGI_PATH``, the bundled copy, a repository build, the system).
"""

from ._classic import fcgi_request, init_socket, shutdown
from ._core import (
    AUTHORIZER,
    FCGI_FAIL_ACCEPT_ON_INTR,
    FILTER,
    RESPONDER,
    FastCGIError,
    InputStream,
    OutputStream,
    Params,
    Request,
    init,
    is_cgi,
    open_socket,
    request_shutdown,
    shutdown_requested,
)
from ._native import (
    ENV_VAR,
    FCGX_Request,
    FCGX_Stream,
    LibraryNotFoundError,
    library_info,
    library_path,
)
from ._server import Server, WorkerPool

__version__ = "0.1.0"

__all__ = [
    "AUTHORIZER",
    "ENV_VAR",
    "FCGI_FAIL_ACCEPT_ON_INTR",
    "FCGX_Request",
    "FCGX_Stream",
    "FILTER",
    "FastCGIError",
    "InputStream",
    "LibraryNotFoundError",
    "OutputStream",
    "Params",
    "RESPONDER",
    "Request",
    "Server",
    "WorkerPool",
    "fcgi_request",
    "init",
    "init_socket",
    "is_cgi",
    "library_info",
    "library_path",
    "open_socket",
    "request_shutdown",
    "shutdown",
    "shutdown_requested",
]
