"""A static HTTP server for a web export folder (``nin-keras serve FOLDER``), standard library only.

Browsers refuse to run WebAssembly from ``file://`` pages, so the exported page needs a server;
any static one works. This one binds the loopback address by default, serves ``.wasm`` and
``.mjs`` with the MIME types browsers require, and sends the cross-origin isolation headers
(``Cross-Origin-Opener-Policy``/``-Embedder-Policy``) that let ONNX Runtime Web use threads.
Importing it does not import TensorFlow.
"""

from __future__ import annotations

import functools
import http.server
import os
import sys
from pathlib import Path


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".mjs": "text/javascript",
                      ".js": "text/javascript", ".json": "application/json"}

    def __init__(self, *args, quiet: bool = False, **kwargs):
        self._quiet = quiet
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")  # a re-export shows on reload
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if not self._quiet:
            super().log_message(format, *args)


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A browser that leaves the page stops its downloads (the runtime's .wasm is megabytes):
        # that is not a server fault worth a traceback.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def make_server(folder: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
                quiet: bool = False) -> http.server.ThreadingHTTPServer:
    """A threading HTTP server for ``folder``, bound but not yet serving.

    Args:
        folder: the web export folder (it must hold ``index.html``).
        host: address to bind; the loopback address by default, so nothing outside this
            computer can reach it.
        port: TCP port; ``0`` picks a free one (``server.server_address[1]`` tells which).
        quiet: do not log each request to standard error.

    Raises:
        ValueError: ``folder`` has no ``index.html``.
        OSError: the address cannot be bound (port in use).
    """
    folder = Path(folder)
    if not (folder / "index.html").is_file():
        raise ValueError(f"{folder} is not a web export folder (no index.html); make one with "
                         "`nin-keras export NAME --formats web`")
    handler = functools.partial(_Handler, directory=os.fspath(folder), quiet=quiet)
    return _Server((host, port), handler)


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    """The page's address on ``server``."""
    host, port = server.server_address[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
