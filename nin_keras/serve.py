"""A static HTTP server for a web export folder (``nin-keras serve FOLDER``), standard library only.

Browsers refuse to run WebAssembly from ``file://`` pages, so the exported page needs a server;
any static one works. This one binds the loopback address by default, serves ``.wasm`` and
``.mjs`` with the MIME types browsers require, and sends the cross-origin isolation headers
(``Cross-Origin-Opener-Policy``/``-Embedder-Policy``) that let ONNX Runtime Web use threads.
Importing it does not import TensorFlow.

What it serves, and what it refuses (any web page the user visits can make the browser send
requests here, so the rules assume hostile requests):

- ``/`` is the folder's ``index.html``; any other URL must name a regular file in the folder.
  Folders are never listed: a folder URL other than ``/`` is 404.
- Symlinks: a link inside the folder that resolves inside it is served; one that resolves
  outside it (or a ``..`` that would leave it) is 404, as is anything that does not exist.
- Dotfiles and anything under a dot-folder (``.git/``, ``.env``) are 404, also when a link
  leads to them.
- The ``Host`` header must name this server: an IP address (the one a browser connected to),
  ``localhost``, or the name given as ``host``, with the bound port; anything else (a missing
  header too) is 421 Misdirected Request. This stops DNS rebinding: a page on an attacker's
  domain whose name is re-pointed at 127.0.0.1 reaches the port, but its requests carry the
  attacker's name. On a wildcard bind (``0.0.0.0``) a computer on the network must use the
  address, not a host name, in its URL.
- A path with a NUL or other control character, bytes that are not percent-encoded ASCII, or
  percent-escapes that are not UTF-8 is 400, with no traceback.
- A connection idle for :data:`IDLE_TIMEOUT` seconds (no request, or a request or read
  stalled that long) is closed, and at most :data:`MAX_CONNECTIONS` connections are handled at
  once, one daemon thread each; further ones wait in the listen backlog
  (:data:`LISTEN_BACKLOG`, sized for a page's burst of requests) until a thread is free.
"""

from __future__ import annotations

import errno
import functools
import http.server
import ipaddress
import os
import re
import socket
import sys
import threading
import urllib.parse
from http import HTTPStatus
from pathlib import Path

#: Seconds a connection may stay silent (before or within a request) before the server closes it.
IDLE_TIMEOUT = 10.0
#: Connections handled at once (one thread each); the rest wait in the listen backlog.
MAX_CONNECTIONS = 128
#: Pending connections the kernel queues before refusing new ones. socketserver's default of 5
#: made a burst of 100 connections time out; 256 is more than a page loads at once.
LISTEN_BACKLOG = 256


class BindError(OSError):
    """The server cannot listen on the address: the port is in use, or the host is not one of
    this computer's addresses. The message names the problem and the ``--host``/``--port`` fix."""


class _Refused(Exception):
    """A request the rules above refuse: ``status`` is the answer."""

    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript",
                      ".js": "text/javascript", ".json": "application/json"}
    #: Idle timeout in seconds (socketserver sets it on each connection's socket).
    timeout = IDLE_TIMEOUT

    def __init__(self, *args, quiet: bool = False, idle_timeout: float = IDLE_TIMEOUT,
                 host_names: frozenset[str], **kwargs):
        self._quiet = quiet
        self.timeout = idle_timeout
        self._host_names = host_names
        super().__init__(*args, **kwargs)

    def send_head(self):
        try:
            self._check_host()
            return super().send_head()  # through translate_path below
        except _Refused as refused:
            self.send_error(refused.status, refused.reason)
            return None

    def _check_host(self) -> None:
        if not host_header_allowed(self.headers.get("Host"), self._host_names, self.server.server_address[1]):
            raise _Refused(HTTPStatus.MISDIRECTED_REQUEST, "Host header does not name this server")

    def translate_path(self, path: str) -> str:
        """The real path of the regular file the URL ``path`` names, or :class:`_Refused`."""
        url_path = path.split("?", 1)[0].split("#", 1)[0]
        if not url_path.startswith("/") or not url_path.isascii() or not url_path.isprintable():
            raise _Refused(HTTPStatus.BAD_REQUEST, "Bad path")
        try:
            decoded = urllib.parse.unquote(url_path, errors="strict")
        except UnicodeDecodeError:
            raise _Refused(HTTPStatus.BAD_REQUEST, "Path is not UTF-8") from None
        if not decoded.isprintable():  # NUL and other control characters
            raise _Refused(HTTPStatus.BAD_REQUEST, "Bad path")
        words = [word for word in decoded.split("/") if word] or ["index.html"]
        if decoded.endswith("/") and decoded != "/" or any(word.startswith(".") for word in words):
            raise _Refused(HTTPStatus.NOT_FOUND, "File not found")  # folders, dotfiles, "..": not served
        # Where links lead counts: relative to the folder's real path, a target outside it starts
        # with "..", and one that is (or is under) a dotfile has a part starting with "." too.
        real = os.path.realpath(os.path.join(self.directory, *words))
        landed = Path(os.path.relpath(real, self.directory)).parts
        if any(part.startswith(".") for part in landed) or not os.path.isfile(real):
            raise _Refused(HTTPStatus.NOT_FOUND, "File not found")
        return real

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")  # a re-export shows on reload
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if not self._quiet:
            super().log_message(format, *args)

    def log_error(self, format: str, *args) -> None:
        # Browsers keep spare connections open; the idle timeout closing them is not an error.
        if not format.startswith("Request timed out"):
            super().log_error(format, *args)


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True
    # Stopping must not wait for idle connections (up to the idle timeout) to end: the daemon
    # threads end with the process.
    block_on_close = False

    def __init__(self, address, handler, max_connections: int = MAX_CONNECTIONS):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        self._slots.acquire()  # a thread per connection, at most max_connections of them
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        # A browser that leaves the page stops its downloads (the runtime's .wasm is megabytes):
        # that is not a server fault worth a traceback.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def host_header_allowed(header: str | None, names: frozenset[str], port: int) -> bool:
    """Whether a request's ``Host`` header names this server (see the module docstring).

    Args:
        header: the header's value, ``None`` when the request has none.
        names: the host names accepted besides IP addresses, lower case (``localhost`` and the
            bound name).
        port: the bound port; a header without a port means 80.
    """
    if header is None:
        return False
    host, _, port_text = header.strip().lower().rpartition(":")
    if not host or "]" in port_text:  # no port given ("localhost", "[::1]")
        host, port_text = header.strip().lower(), "80"
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or int(port_text) != port:
        return False
    if host.startswith("[") and host.endswith("]"):
        return ":" in host and _is_ip_address(host[1:-1])  # brackets hold an IPv6 address only
    return ":" not in host and (_is_ip_address(host) or host in names)


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def make_server(folder: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
                quiet: bool = False, idle_timeout: float = IDLE_TIMEOUT,
                max_connections: int = MAX_CONNECTIONS) -> http.server.ThreadingHTTPServer:
    """A threading HTTP server for ``folder``, bound but not yet serving (rules: module docstring).

    Args:
        folder: the web export folder (it must hold ``index.html``).
        host: address to bind; the loopback address by default, so nothing outside this
            computer can reach it. An IPv6 address (``::1``) binds IPv6.
        port: TCP port, 0 to 65535; ``0`` picks a free one (``server.server_address[1]`` tells which).
        quiet: do not log each request to standard error.
        idle_timeout: seconds after which a silent connection is closed.
        max_connections: connections handled at once; more wait in the listen backlog.

    Raises:
        ValueError: ``folder`` has no ``index.html``, or ``port`` is out of range.
        BindError: an ``OSError`` naming why the address cannot be bound (port in use, no
            such host on this computer).
    """
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise ValueError(f"{folder} is not a web export folder (no index.html); make one with "
                         "`nin-keras export NAME --formats web`")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range: 0 to 65535 (0 picks a free one)")
    handler = functools.partial(_Handler, directory=os.path.realpath(folder), quiet=quiet,
                                idle_timeout=idle_timeout, host_names=frozenset({"localhost", host.lower()}))
    try:
        return _Server((host, port), handler, max_connections)
    except OSError as err:
        raise BindError(_bind_problem(err, host, port)) from err


def _bind_problem(err: OSError, host: str, port: int) -> str:
    """Why ``(host, port)`` cannot be bound, and the flag that fixes it."""
    if isinstance(err, socket.gaierror):
        return f"cannot listen on {host!r}: not an address or a host name this computer resolves; check --host"
    if err.errno == errno.EADDRINUSE:
        return (f"port {port} on {host} is already in use (another server, or an earlier `nin-keras serve`); "
                "pick another with --port, or --port 0 for a free one")
    if err.errno == errno.EADDRNOTAVAIL:
        return (f"cannot listen on {host}: it is not an address of this computer; use the default "
                "--host 127.0.0.1 or one of this computer's addresses")
    if err.errno == errno.EACCES:
        return (f"no permission to listen on port {port} (ports below 1024 need administrator rights); "
                "pick another with --port, e.g. --port 8000")
    return f"cannot listen on {host} port {port}: {err.strerror or err}; check --host and --port"


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    """The page's address on ``server``."""
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
