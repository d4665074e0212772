"""Tests of nin_keras.zoo.download against a real HTTP server on 127.0.0.1 (no TensorFlow needed)."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections import Counter
from pathlib import Path

import pytest

from nin_keras.errors import DownloadError, HashMismatchError
from nin_keras.zoo import download

PAYLOAD = os.urandom(200_000)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
STALL_SECONDS = 5.0


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD under /<mode>/...: good, truncated, wronghash, 404, 500, stall, slow."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        self.server.hits[self.path] += 1
        mode = self.path.strip("/").split("/")[0]
        if mode in ("404", "500"):
            self.send_error(int(mode))
            return
        body = b"not the payload" + PAYLOAD[15:] if mode == "wronghash" else PAYLOAD
        self.send_response(200)
        # "truncated" promises more bytes than it sends, then closes the connection.
        self.send_header("Content-Length", str(len(body) + (1000 if mode == "truncated" else 0)))
        self.end_headers()
        if mode == "stall":
            self.wfile.write(body[:1000])
            self.wfile.flush()
            time.sleep(STALL_SECONDS)
            return
        if mode == "slow":  # about 1 s in total, so concurrent fetches overlap
            for i in range(0, len(body), 20_000):
                self.wfile.write(body[i : i + 20_000])
                self.wfile.flush()
                time.sleep(0.1)
            return
        self.wfile.write(body)
        self.close_connection = True


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.hits = Counter()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def nin_keras_home(tmp_path):
    """conftest's isolated_env sets NIN_KERAS_HOME here: an empty cache per test."""
    return tmp_path / "cache"


def _leftovers(folder: Path) -> list[str]:
    """Files in the cache other than finished files and their lock files."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.name.startswith("."))


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    assert download.default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(download.ENV_HOME)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert download.default_cache_dir() == tmp_path / "kh" / "nin_keras"
    monkeypatch.delenv("KERAS_HOME")
    assert download.default_cache_dir() == Path.home() / ".keras" / "nin_keras"


def test_good_download_is_verified_and_then_served_from_cache(server, tmp_path):
    url = f"{server.url}/good/a.bin"
    path = download.fetch("p/a.bin", PAYLOAD_SHA, [url])
    assert path == tmp_path / "cache" / "p" / "a.bin"
    assert path.read_bytes() == PAYLOAD
    again = download.fetch("p/a.bin", PAYLOAD_SHA.upper(), [url])
    assert again == path and server.hits["/good/a.bin"] == 1
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    assert _leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize(
    "mode, error, words",
    [
        ("truncated", DownloadError, "truncated"),
        ("404", DownloadError, "HTTP 404"),
        ("500", DownloadError, "HTTP 500"),
    ],
)
def test_failed_downloads_raise_and_leave_nothing(server, tmp_path, mode, error, words):
    with pytest.raises(error, match=words):
        download.fetch(f"{mode}/f.bin", PAYLOAD_SHA, [f"{server.url}/{mode}/f.bin"])
    folder = tmp_path / "cache" / mode
    assert not (folder / "f.bin").exists()
    assert _leftovers(folder) == []


def test_wrong_hash_names_file_expected_and_actual(server, tmp_path):
    served = b"not the payload" + PAYLOAD[15:]
    with pytest.raises(HashMismatchError) as info:
        download.fetch("w/weights.h5", PAYLOAD_SHA, [f"{server.url}/wronghash/weights.h5"])
    message = str(info.value)
    assert "w/weights.h5" in message
    assert PAYLOAD_SHA in message and hashlib.sha256(served).hexdigest() in message
    assert not (tmp_path / "cache" / "w" / "weights.h5").exists()
    assert _leftovers(tmp_path / "cache") == []


def test_stalled_server_times_out(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError, match="stall/s.bin"):
        download.fetch("s/s.bin", PAYLOAD_SHA, [f"{server.url}/stall/s.bin"], timeout=0.5)
    assert time.monotonic() - start < STALL_SECONDS - 1
    assert not (tmp_path / "cache" / "s" / "s.bin").exists()


def test_next_url_is_tried_after_a_failure(server):
    path = download.fetch("n/x.bin", PAYLOAD_SHA, [f"{server.url}/404/x.bin", f"{server.url}/good/x.bin"])
    assert path.read_bytes() == PAYLOAD


def test_mirror_is_tried_first(server, monkeypatch):
    monkeypatch.setenv(download.ENV_MIRROR, f"{server.url}/500, {server.url}/good/")
    path = download.fetch("m/y.bin", PAYLOAD_SHA, [f"{server.url}/404/never.bin"])
    assert path.read_bytes() == PAYLOAD
    assert server.hits["/500/m/y.bin"] == 1 and server.hits["/good/m/y.bin"] == 1
    assert server.hits["/404/never.bin"] == 0


def test_file_url_mirror(monkeypatch, tmp_path):
    (tmp_path / "mirror" / "d").mkdir(parents=True)
    (tmp_path / "mirror" / "d" / "z.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv(download.ENV_MIRROR, (tmp_path / "mirror").as_uri())
    assert download.fetch("d/z.bin", PAYLOAD_SHA).read_bytes() == PAYLOAD


def test_no_url_says_how_to_set_a_mirror():
    with pytest.raises(DownloadError, match=download.ENV_MIRROR):
        download.fetch("q/none.bin", PAYLOAD_SHA, [])


def test_offline_mode_never_connects(server, monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise AssertionError("offline mode opened a URL")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv(download.ENV_OFFLINE, "1")
    monkeypatch.setenv(download.ENV_MIRROR, f"{server.url}/good")
    before = sum(server.hits.values())
    with pytest.raises(DownloadError, match="offline"):
        download.fetch("o/off.bin", PAYLOAD_SHA, [f"{server.url}/good/o/off.bin"])
    cached = tmp_path / "cache" / "o" / "on.bin"
    cached.write_bytes(PAYLOAD)
    assert download.fetch("o/on.bin", PAYLOAD_SHA, [f"{server.url}/good/o/on.bin"]) == cached
    assert sum(server.hits.values()) == before


def test_corrupt_cached_file_is_downloaded_again(server, tmp_path):
    cached = tmp_path / "cache" / "c" / "c.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(PAYLOAD[:-1] + b"\0")
    with pytest.warns(UserWarning, match="corrupt"):
        path = download.fetch("c/c.bin", PAYLOAD_SHA, [f"{server.url}/good/c/c.bin"])
    assert path == cached and cached.read_bytes() == PAYLOAD
    assert server.hits["/good/c/c.bin"] == 1


def test_two_processes_fetching_at_once_share_one_verified_file(server, tmp_path):
    code = (
        "import sys; from nin_keras.zoo import download; "
        "p = download.fetch('two/f.bin', sys.argv[1], [sys.argv[2]]); print(p)"
    )
    url = f"{server.url}/slow/two/f.bin"
    env = {**os.environ, download.ENV_HOME: str(tmp_path / "cache")}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, PAYLOAD_SHA, url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err.decode() for _, err in results]
    paths = {out.decode().strip() for out, _ in results}
    target = tmp_path / "cache" / "two" / "f.bin"
    assert paths == {str(target)}
    assert hashlib.sha256(target.read_bytes()).hexdigest() == PAYLOAD_SHA
    assert server.hits["/slow/two/f.bin"] == 1  # the second process found the first one's file
    assert _leftovers(tmp_path / "cache") == []


def test_kill_9_during_a_download_leaves_no_temporary_after_the_next_fetch(server, tmp_path):
    code = "import sys; from nin_keras.zoo import download; download.fetch('k/f.bin', sys.argv[1], [sys.argv[2]])"
    env = {**os.environ, download.ENV_HOME: str(tmp_path / "cache")}
    folder = tmp_path / "cache" / "k"
    proc = subprocess.Popen([sys.executable, "-c", code, PAYLOAD_SHA, f"{server.url}/slow/k/f.bin"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size for p in folder.glob(".f.bin.*.part.bin")) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=10)
    assert _leftovers(tmp_path / "cache") != [], "the killed download left no temporary (nothing to clean)"
    assert not (folder / "f.bin").exists()

    path = download.fetch("k/f.bin", PAYLOAD_SHA, [f"{server.url}/good/k/f.bin"])
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path / "cache") == []


def test_resolve_files_prefers_a_verified_bundled_copy(server, monkeypatch, tmp_path):
    bundled = tmp_path / "bundled"
    (bundled / "m.v1").mkdir(parents=True)
    (bundled / "m.v1" / "w.h5").write_bytes(PAYLOAD)
    monkeypatch.setattr(download, "BUNDLED_WEIGHTS_DIR", bundled)
    monkeypatch.setenv(download.ENV_MIRROR, f"{server.url}/good")
    assert download.resolve_files("m.v1", {"w.h5": PAYLOAD_SHA}) == bundled / "m.v1"
    assert server.hits["/good/m.v1/w.h5"] == 0
    (bundled / "m.v1" / "w.h5").write_bytes(b"edited")
    with pytest.warns(UserWarning, match="altered"):
        folder = download.resolve_files("m.v1", {"w.h5": PAYLOAD_SHA})
    assert folder == tmp_path / "cache" / "m.v1"
    assert (folder / "w.h5").read_bytes() == PAYLOAD and server.hits["/good/m.v1/w.h5"] == 1


def test_an_incomplete_bundled_copy_is_completed_in_the_cache(server, monkeypatch, tmp_path):
    """An installed wheel bundles a preset's JSON files, not its weights: the verified bundled
    files are copied into the cache (offline too) and only the missing ones are downloaded."""
    anchor = b'{"format": "anchor"}'
    files = {"a.json": hashlib.sha256(anchor).hexdigest(), "w.h5": PAYLOAD_SHA}
    bundled = tmp_path / "bundled"
    (bundled / "m.v2").mkdir(parents=True)
    (bundled / "m.v2" / "a.json").write_bytes(anchor)
    monkeypatch.setattr(download, "BUNDLED_WEIGHTS_DIR", bundled)
    monkeypatch.setenv(download.ENV_OFFLINE, "1")
    with pytest.raises(DownloadError, match="m.v2/w.h5 is not in the cache"):
        download.resolve_files("m.v2", files)
    assert (tmp_path / "cache" / "m.v2" / "a.json").read_bytes() == anchor  # copied, offline
    monkeypatch.delenv(download.ENV_OFFLINE)
    monkeypatch.setenv(download.ENV_MIRROR, f"{server.url}/good")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing bundled file is expected, not "altered"
        folder = download.resolve_files("m.v2", files)
    assert folder == tmp_path / "cache" / "m.v2"
    assert (folder / "w.h5").read_bytes() == PAYLOAD and (folder / "a.json").read_bytes() == anchor
    assert server.hits["/good/m.v2/w.h5"] == 1 and server.hits["/good/m.v2/a.json"] == 0


@pytest.mark.parametrize("name", ["", "../x", "/abs/x", "a/../b", "a//b"])
def test_bad_file_names_are_rejected(name):
    with pytest.raises(ValueError, match="file_name"):
        download.fetch(name, PAYLOAD_SHA, [])
