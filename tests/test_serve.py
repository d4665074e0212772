"""``nin-keras serve`` (nin_keras.serve) against hostile requests, bursts and idle connections.

Standard library only, no browser (tests/test_web.py serves a real export to Chromium). Every
test writes its folder and its hostile input itself and talks to the server over loopback
with raw sockets, so that requests no HTTP library would send (``/%00``, a foreign ``Host``,
no request at all) reach it as written.
"""

from __future__ import annotations

import errno
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from nin_keras import cli
from nin_keras.serve import BindError, host_header_allowed, make_server

WASM = bytes(range(256)) * 256  # 64 KiB, enough to take several reads


@pytest.fixture
def folder(tmp_path) -> Path:
    """A web export folder with what a user's disk may hold around it."""
    page = tmp_path / "page"
    (page / "ort").mkdir(parents=True)
    (page / "index.html").write_text("<html>the page</html>")
    (page / "app.js").write_text("// the app")
    (page / "ort" / "runtime.wasm").write_bytes(WASM)
    (page / "sub").mkdir()
    (page / "sub" / "index.html").write_text("a sub page")
    (page / ".env").write_text("TOKEN=dotfile-secret")
    (page / ".git").mkdir()
    (page / ".git" / "config").write_text("dot-folder-secret")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside-secret")
    (page / "leak.txt").symlink_to(outside / "secret.txt")
    (page / "leakdir").symlink_to(outside)
    (page / "visible.txt").symlink_to(page / ".env")
    (page / "inside_link.js").symlink_to("app.js")
    (page / "loop").symlink_to("loop")
    (page / "twin").symlink_to(tmp_path / "pagetwin")  # outside, though its path starts like the folder's
    (tmp_path / "pagetwin").write_text("outside-secret")
    return page


@contextmanager
def serving(folder: Path, **options):
    server = make_server(folder, port=0, **{"quiet": True, **options})
    # A short poll interval: shutdown() waits for the loop's next look.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def own_host(server) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


def request(server, target: str | bytes, host: str | None = "", timeout: float = 15) -> tuple[int, dict, bytes]:
    """GET ``target`` as written; ``host`` "" sends this server's own Host, ``None`` none at all."""
    target = target.encode("latin-1") if isinstance(target, str) else target
    host_line = b"" if host is None else f"Host: {host or own_host(server)}\r\n".encode("latin-1")
    with socket.create_connection(server.server_address[:2], timeout=timeout) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\n" + host_line + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def handler_threads() -> int:
    return sum("process_request_thread" in thread.name for thread in threading.enumerate())


# --------------------------------------------------------------------------- what is served


def test_serves_the_page_its_files_and_links_that_stay_inside(folder):
    with serving(folder) as server:
        assert request(server, "/")[2] == b"<html>the page</html>"
        assert request(server, "/app.js?v=2#x")[2] == b"// the app"
        status, headers, body = request(server, "/ort/runtime.wasm")
        assert (status, headers["Content-type"], body) == (200, "application/wasm", WASM)
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert request(server, "/inside_link.js")[2] == b"// the app"
        assert request(server, "/%61pp.js")[2] == b"// the app"  # percent-escapes are decoded


@pytest.mark.parametrize("target", ["/leak.txt", "/leakdir/secret.txt", "/../outside/secret.txt",
                                    "/%2e%2e/outside/secret.txt", "/ort/..%2f..%2foutside/secret.txt",
                                    "/twin", "/loop"])
def test_symlinks_and_dot_dots_out_of_the_folder_are_refused(folder, target):
    with serving(folder) as server:
        status, _, body = request(server, target)
    assert status == 404 and b"outside-secret" not in body


@pytest.mark.parametrize("target", ["/ort/", "/ort", "/sub/", "/leakdir/", "/index.html/"])
def test_folders_are_not_listed(folder, target):
    with serving(folder) as server:
        status, _, body = request(server, target)
    assert status == 404
    assert b"runtime.wasm" not in body and b"secret.txt" not in body and b"a sub page" not in body


@pytest.mark.parametrize("target", ["/.env", "/.git/config", "/%2eenv", "/visible.txt", "/ort/../.env"])
def test_dotfiles_and_dot_folders_are_refused(folder, target):
    """``/visible.txt`` is a link to ``.env``: where a link lands counts, not only its name."""
    with serving(folder) as server:
        status, _, body = request(server, target)
    assert status == 404 and b"secret" not in body


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}",
                                  "127.0.0.1:{other}", "localhost", "127.0.0.1", "::1:{port}", "localhost:",
                                  "localhost:{port}0", "localhost:²", None])
def test_a_host_header_not_naming_this_server_is_misdirected(folder, host):
    """DNS rebinding: a page on evil.example, re-pointed at 127.0.0.1, sends its own name."""
    with serving(folder) as server:
        port = server.server_address[1]
        host = host and host.format(port=port, other=port + 1)
        status, _, body = request(server, "/", host=host)
        assert status == 421 and b"the page" not in body
        for good in (f"127.0.0.1:{port}", f"localhost:{port}", f"LocalHost:{port}", f"[::1]:{port}"):
            assert request(server, "/", host=good)[0] == 200, good


def test_host_rule_accepts_ip_addresses_localhost_and_the_bound_name():
    names = frozenset({"localhost", "mybox.lan"})
    for header in ("127.0.0.1:8000", "[::1]:8000", "192.168.1.5:8000", "mybox.lan:8000", "MyBox.lan:8000"):
        assert host_header_allowed(header, names, 8000), header
    assert host_header_allowed("localhost", names, 80)  # no port in the header means 80
    for header in ("other.lan:8000", "mybox.lan:8001", "mybox.lan", "[::1]", "[mybox.lan]:8000", "", None):
        assert not host_header_allowed(header, names, 8000), header


@pytest.mark.parametrize("target", [b"/%00", b"/app.js%00.html", b"/%ff", b"/%c0%af", b"/\xff", b"/%0a",
                                    b"/a\x01b", b"*"])
def test_nul_control_and_undecodable_paths_are_400_without_a_traceback(folder, target, capfd):
    with serving(folder, quiet=False) as server:
        status, _, _ = request(server, target)
        assert status == 400
        assert request(server, "/")[0] == 200  # the server is still up
    err = capfd.readouterr().err
    assert "Traceback" not in err and '" 400 ' in err


# --------------------------------------------------------------------------- connections


def test_idle_connections_are_closed_after_the_timeout(folder):
    """50 connections: half never send a byte, half stop in the middle of a request line."""
    timeout, margin = 1.0, 2.0
    with serving(folder, idle_timeout=timeout) as server:
        baseline = handler_threads()
        started = time.monotonic()
        sockets = [socket.create_connection(server.server_address[:2]) for _ in range(50)]
        for sock in sockets[::2]:
            sock.sendall(b"GET /app.js HTTP/1.1\r\nHost: ")
        try:
            for sock in sockets:
                sock.settimeout(max(0.01, started + timeout + margin - time.monotonic()))
                assert sock.recv(1024) == b""  # closed by the server, with no answer
            assert time.monotonic() - started >= timeout
        finally:
            for sock in sockets:
                sock.close()
        deadline = time.monotonic() + margin
        while handler_threads() > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handler_threads() == baseline  # their threads are gone too
        assert request(server, "/")[0] == 200


def test_connections_past_the_limit_wait_for_a_thread_and_are_then_answered(folder):
    with serving(folder, idle_timeout=1.0, max_connections=4) as server:
        baseline = handler_threads()
        idle = [socket.create_connection(server.server_address[:2]) for _ in range(12)]
        try:
            time.sleep(0.5)
            assert handler_threads() - baseline <= 4
            started = time.monotonic()
            assert request(server, "/app.js", timeout=20)[2] == b"// the app"
            # Behind 12 idle connections, 4 at a time, 1 s each.
            assert 1.0 <= time.monotonic() - started < 10
        finally:
            for sock in idle:
                sock.close()


def test_a_burst_of_300_connections_is_all_answered(folder):
    """socketserver's listen backlog of 5 made a burst of 100 lose connections to 15 s timeouts."""
    clients, failures, bodies = 300, [], []
    start = threading.Barrier(clients)

    def fetch() -> None:
        start.wait()
        try:
            bodies.append(request(server, "/ort/runtime.wasm", timeout=15)[2])
        except OSError as err:
            failures.append(repr(err))

    with serving(folder) as server:
        began = time.monotonic()
        threads = [threading.Thread(target=fetch) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        took = time.monotonic() - began
    assert failures == [] and len(bodies) == clients and all(body == WASM for body in bodies)
    assert took < 30, f"the burst took {took:.1f} s"


# --------------------------------------------------------------------------- command-line errors


def _cli_error(argv: list[str], capsys) -> str:
    handlers = [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)]
    assert cli.main(argv) == 2
    assert [signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)] == handlers
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nin-keras serve: error: "), captured.err
    return lines[0]


def test_cli_serve_on_a_busy_port_says_so_in_one_line(folder, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _cli_error(["serve", str(folder), "--port", str(port)], capsys)
    assert f"port {port}" in line and "already in use" in line and "--port 0" in line


@pytest.mark.parametrize("host", ["203.0.113.1", "no-such-host.invalid"])
def test_cli_serve_on_a_host_it_cannot_bind_says_so_in_one_line(folder, host, capsys):
    """203.0.113.1 is a documentation address no computer here has; .invalid never resolves."""
    line = _cli_error(["serve", str(folder), "--host", host, "--port", "0"], capsys)
    assert host in line and "--host" in line


@pytest.mark.parametrize("port", ["70000", "-1", "65536", "eight"])
def test_cli_serve_port_out_of_range_is_a_usage_error(folder, port, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", str(folder), f"--port={port}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"nin-keras serve: error: argument --port: '{port}' is not a TCP port (an integer 0 to 65535" in err


def test_make_server_names_bad_ports_and_busy_addresses(folder):
    with pytest.raises(ValueError, match="port 70000 is out of range"):
        make_server(folder, port=70000)
    with serving(folder) as server:
        with pytest.raises(BindError, match="already in use") as raised:
            make_server(folder, port=server.server_address[1])
    assert isinstance(raised.value, OSError) and raised.value.__cause__.errno == errno.EADDRINUSE


def test_ipv6_loopback_binds_and_takes_its_bracketed_host(folder):
    try:
        make_server(folder, host="::1", port=0).server_close()
    except BindError as err:
        pytest.skip(f"no IPv6 loopback here: {err}")
    with serving(folder, host="::1") as server:
        port = server.server_address[1]
        assert request(server, "/", host=f"[::1]:{port}")[2] == b"<html>the page</html>"
        assert request(server, "/", host=f"evil.example:{port}")[0] == 421
