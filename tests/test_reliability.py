"""Faults from RELIABILITY.md that no module's own tests cover: each ends in a clear error.

The other faults of the table are tested beside their modules (tests/test_download.py,
test_zoo.py, test_caffe.py, test_data.py, test_train.py, test_export.py); see RELIABILITY.md.
"""

import contextlib
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from nin_keras.errors import DataError, DownloadError, PresetError, WeightsMismatchError


def _tar_with_member(path, name: str, payload: bytes = b"x"):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.parametrize("member", ["/etc/cron.d/evil", "/tmp/train/cat/1.png"])
def test_archive_member_with_absolute_path_is_refused(tmp_path, member):
    from nin_keras.data import archive

    evil = _tar_with_member(tmp_path / "evil.tar.gz", member)
    with pytest.raises(DataError, match="unsafe member path"):
        list(archive.iter_files(evil))


def test_keras_file_with_lambda_is_refused_in_safe_mode(tmp_path):
    """A ``.keras`` file given to the visualizer may carry code; safe mode refuses it unrun."""
    from nin_keras.visualize.sources import load_model

    marker = tmp_path / "code-ran"
    inputs = keras.Input((4,))
    # The lambda writes a file when called: loading must refuse before building the model.
    # (Built from source so it closes over no variables, which Keras could not serialize.)
    touch = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")
    outputs = keras.layers.Lambda(touch)(inputs)
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    marker.unlink()
    with pytest.raises(ValueError, match="Lambda|safe_mode|unsafe"):
        load_model(path)
    assert not marker.exists()


@pytest.fixture(scope="module")
def mnist_network():
    from nin_keras.models import nin_mnist

    return nin_mnist()


@pytest.mark.parametrize(
    "images, words",
    [
        (np.full((2, 28, 28, 1), np.nan, np.float32), "NaN or infinite"),
        (np.full((2, 28, 28, 1), -np.inf, np.float32), "NaN or infinite"),
        (np.full((2, 28, 28, 1), "7"), "dtype"),
        (np.ones((2, 28, 28, 1), bool), "dtype"),
        (np.zeros((2, 28, 28, 3), np.uint8), r"shape \(N, 28, 28, 1\)"),
        (np.zeros((2, 28, 28), np.uint8), r"shape \(N, 28, 28, 1\)"),
        (np.zeros((0, 28, 28, 1), np.uint8), "non-empty"),
    ],
    ids=["nan", "inf", "strings", "bool", "channels", "rank", "empty"],
)
def test_evaluation_rejects_bad_images_naming_the_problem(mnist_network, images, words):
    # NaN images used to give NaN probabilities whose argmax (class 0) counted as correct.
    from nin_keras.train.evaluate import evaluate_model

    with pytest.raises(ValueError, match=words):
        evaluate_model(mnist_network, images, np.zeros(len(images), np.int64))


@pytest.mark.parametrize(
    "images, words",
    [
        (np.full((2, 8, 8, 3), np.nan, np.float32), "NaN or infinite"),
        (np.full((2, 8, 8, 3), np.inf, np.float32), "NaN or infinite"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty|representative_data is required"),
        (np.zeros((2, 9, 9, 3), np.uint8), r"shape \(N, 8, 8, 3\)"),
        (np.zeros((2, 8, 8), np.uint8), r"shape \(N, 8, 8, 3\)"),
        (np.full((2, 8, 8, 3), "pixel"), "convert string"),
    ],
    ids=["nan", "inf", "empty", "shape", "rank", "strings"],
)
@pytest.mark.parametrize("argument", ["parity_data", "representative_data"])
def test_export_rejects_bad_images_before_writing_anything(tmp_path, images, words, argument):
    """Parity and int8 calibration images are checked before any conversion; nothing is written."""
    from nin_keras.export import export

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax")], name="tiny")
    good = np.zeros((2, 8, 8, 3), np.uint8)
    kwargs = {"parity_data": (images, None), "representative_data": good} if argument == "parity_data" \
        else {"parity_data": (good, None), "representative_data": images}
    with pytest.raises(ValueError, match=words):
        export(model, ("tflite",), tmp_path / "out", quantize="int8", **kwargs)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# --------------------------------------------------------------------------- presets: hostile files
# (issue 17: each fault below was a raw h5py / json / interpreter exception or a silent read)


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch, tmp_path):
    from nin_keras.zoo import download

    for name in (download.ENV_MIRROR, download.ENV_OFFLINE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(download.ENV_HOME, str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def preset_folder(tmp_path_factory):
    from nin_keras import zoo

    folder = tmp_path_factory.mktemp("presets") / "good"
    normalization = keras.layers.Normalization(mean=33.3, variance=78.5**2)
    zoo.save_preset(zoo.create_model("nin_mnist"), folder, {"dataset": "mnist"}, [normalization])
    return folder


def _copy(preset_folder, tmp_path, name="copy"):
    return Path(shutil.copytree(preset_folder, tmp_path / name))


def _edit_metadata(folder, edit):
    path = folder / "metadata.json"
    metadata = json.loads(path.read_text())
    edit(metadata)
    path.write_text(json.dumps(metadata))


def _replace_listed_file(folder, name, content: bytes):
    """Overwrite a preset file and make metadata.json vouch for the new bytes (sha256 and size)."""
    (folder / name).write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    _edit_metadata(folder, lambda m: m["files"].update({name: {"sha256": digest, "size": len(content)}}))


@pytest.mark.parametrize("name", ["model.weights.h5", "preprocessing.weights.h5"])
@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_unreadable_weights_file_vouched_for_by_metadata_is_a_preset_error(preset_folder, tmp_path, name, damage):
    from nin_keras import zoo

    folder = _copy(preset_folder, tmp_path)
    original = (folder / name).read_bytes()
    content = original[: len(original) // 2] if damage == "truncated" \
        else np.random.default_rng(0).bytes(len(original))
    _replace_listed_file(folder, name, content)
    with pytest.raises(PresetError, match=f"{name} is not a readable Keras weights file"):
        zoo.load_preset(folder)


@pytest.mark.parametrize("outside", ["../../../../etc/hostname", "/etc/hostname", "sub/../../x", "a\\b"])
def test_metadata_files_outside_the_preset_are_refused_without_reading_them(preset_folder, tmp_path, outside):
    from nin_keras import zoo

    folder = _copy(preset_folder, tmp_path)
    _edit_metadata(folder, lambda m: m["files"].update({outside: {"sha256": "0" * 64, "size": 1}}))
    with pytest.raises(PresetError, match="only name files inside the preset") as info:
        zoo.load_preset(folder)
    target = Path("/etc/hostname")
    if target.is_file():  # the old message disclosed the outside file's sha256
        assert hashlib.sha256(target.read_bytes()).hexdigest() not in str(info.value)


def test_listed_file_linking_outside_the_preset_is_refused(preset_folder, tmp_path):
    from nin_keras import zoo

    folder = _copy(preset_folder, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"not for the preset")
    _edit_metadata(folder, lambda m: m["files"].update({"notes.txt": {"sha256": "0" * 64, "size": 18}}))
    (folder / "notes.txt").symlink_to(secret)
    with pytest.raises(PresetError, match="outside the preset") as info:
        zoo.load_preset(folder)
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in str(info.value)


def test_unlisted_preprocessing_weights_are_never_loaded(preset_folder, tmp_path):
    from nin_keras import zoo

    folder = _copy(preset_folder, tmp_path)
    _edit_metadata(folder, lambda m: m["files"].pop("preprocessing.weights.h5"))
    with pytest.raises(PresetError, match="does not list preprocessing.weights.h5"):
        zoo.load_preset(folder)


@pytest.mark.parametrize("classes", [2_000_000, 7, 10.5])
def test_declared_classes_are_checked_before_the_model_is_built(preset_folder, tmp_path, monkeypatch, classes):
    """A config asking for 2,000,000 classes used to build a 3 GB model before any check."""
    from nin_keras import zoo
    from nin_keras.zoo import registry

    folder = _copy(preset_folder, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["kwargs"]["classes"] = classes
    (folder / "config.json").write_text(json.dumps(config))
    built = []
    monkeypatch.setattr(registry, "build_model", lambda *a, **k: built.append(a))
    with pytest.raises(WeightsMismatchError, match=r"'classes' is .*classifier 'mlpconv3'.* 10 outputs"):
        zoo.load_preset(folder)
    assert built == []


def test_metadata_recording_more_weights_than_the_file_holds_is_refused(preset_folder, tmp_path, monkeypatch):
    from nin_keras import zoo
    from nin_keras.zoo import registry

    folder = _copy(preset_folder, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["kwargs"]["classes"] = 2_000_000
    (folder / "config.json").write_text(json.dumps(config))
    _edit_metadata(folder, lambda m: m["layers"]["mlpconv3"][-1].__setitem__(0, 2_000_000))
    built = []
    monkeypatch.setattr(registry, "build_model", lambda *a, **k: built.append(a))
    with pytest.raises(PresetError, match="records .* weight values, more than model.weights.h5"):
        zoo.load_preset(folder)
    assert built == []


def _kill_9_inside(code_in_context: str, env_path: str) -> None:
    """Run ``code_in_context`` in a fresh process that SIGKILLs itself inside it (cleanup skipped)."""
    code = f"import os, signal, sys\n{code_in_context}"
    proc = subprocess.run([sys.executable, "-c", code, env_path], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]


def test_killed_preset_write_leaves_part_folder_that_the_next_write_removes(tmp_path):
    from nin_keras import zoo

    target = tmp_path / "runs" / "preset"
    _kill_9_inside(
        "from nin_keras.io_utils import atomic_dir\n"
        "with atomic_dir(sys.argv[1]) as tmp:\n"
        "    (tmp / 'config.json').write_text('{}')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n", str(target))
    stale = sorted(p.name for p in target.parent.iterdir())
    assert len(stale) == 1 and stale[0].startswith(".preset.") and stale[0].endswith(".part"), stale
    zoo.save_preset(zoo.create_model("nin_mnist"), target, {"dataset": "mnist"})
    assert sorted(p.name for p in target.parent.iterdir()) == ["preset"]


def test_live_writers_temporaries_are_left_alone(tmp_path):
    from nin_keras.io_utils import atomic_dir, remove_dead_writers_temporaries

    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        assert remove_dead_writers_temporaries(target) == []  # our own, alive
        assert tmp.is_dir()


# --------------------------------------------------------------------------- URL presets and downloads


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files[path]`` (bytes), or plays a hostile server for /endless, /drip, /huge."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        mode = self.path.strip("/").split("/")[0]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if mode == "endless":  # no Content-Length, a body that never ends
                self.send_response(200)
                self.end_headers()
                while True:
                    self.wfile.write(b"\0" * 65536)
            elif mode == "drip":  # 100 bytes every 0.1 s: no single read ever times out
                self.send_response(200)
                self.send_header("Content-Length", str(10**9))
                self.end_headers()
                while True:
                    self.wfile.write(b"x" * 100)
                    self.wfile.flush()
                    time.sleep(0.1)
            elif mode == "huge":  # announces 10 GB
                self.send_response(200)
                self.send_header("Content-Length", str(10**10))
                self.end_headers()
                self.wfile.write(b"x" * 1000)
            elif self.path in self.server.files:
                body = self.server.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self.send_error(404)


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.hits = {}, {}
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _serve_preset(server, folder, prefix="/p"):
    for path in folder.iterdir():
        server.files[f"{prefix}/{path.name}"] = path.read_bytes()
    return f"{server.url}{prefix}/"


@pytest.mark.parametrize("name", ["config.json", "metadata.json"])
@pytest.mark.parametrize("body", [b"{not json", b"[" * 100_000, b'{"format": "nin_keras.preset"}'],
                         ids=["bad-json", "deep-json", "invalid"])
def test_url_preset_with_bad_json_is_a_preset_error_and_never_cached(preset_folder, server, tmp_path, name, body):
    from nin_keras import zoo

    url = _serve_preset(server, preset_folder)
    good = server.files[f"/p/{name}"]
    server.files[f"/p/{name}"] = body
    with pytest.raises(PresetError, match=name):
        zoo.load_preset(url)
    assert not list((tmp_path / "cache").rglob(name))  # the bad answer did not enter the cache
    server.files[f"/p/{name}"] = good  # the server is repaired: the next load works
    assert zoo.load_preset(url).architecture == "nin_mnist"


def test_invalid_cached_url_preset_json_is_fetched_again(preset_folder, server, tmp_path):
    from nin_keras import zoo

    url = _serve_preset(server, preset_folder)
    first = zoo.load_preset(url)
    (first.path / "metadata.json").write_text("{poisoned")
    with pytest.warns(UserWarning, match="metadata.json is corrupt"):
        again = zoo.load_preset(url)
    assert again.path == first.path and json.loads((again.path / "metadata.json").read_text())["dataset"] == "mnist"
    assert server.hits["/p/metadata.json"] == 2


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and p.name.startswith("."))


@pytest.mark.parametrize("mode, words", [("endless", "exceeds the 1000 bytes"), ("huge", "announces 10000000000 bytes")])
def test_download_stops_at_the_listed_size(server, tmp_path, mode, words):
    """A mirror sending an endless body wrote 314 MB for a file listed at 1.17 MB."""
    from nin_keras.zoo import download

    start = time.monotonic()
    with pytest.raises(DownloadError, match=words):
        download.resolve_files("e.v1", {"f.bin": "0" * 64}, [f"{server.url}/{mode}"], sizes={"f.bin": 1000})
    assert time.monotonic() - start < 10
    assert not (tmp_path / "cache" / "e.v1" / "f.bin").exists() and _leftovers(tmp_path / "cache") == []


def test_download_without_a_listed_size_stops_at_the_stated_maximum(server, tmp_path, monkeypatch):
    from nin_keras.zoo import download

    monkeypatch.setattr(download, "DEFAULT_MAX_BYTES", 300_000)
    with pytest.raises(DownloadError, match="exceeds the 300000 bytes"):
        download.fetch("u/f.bin", None, [f"{server.url}/endless/f.bin"])
    assert _leftovers(tmp_path / "cache") == []


def test_dripping_server_hits_the_overall_deadline(server, tmp_path):
    """100 bytes every 0.1 s never trips the per-read timeout; the deadline ends it."""
    from nin_keras.zoo import download

    start = time.monotonic()
    with pytest.raises(DownloadError, match="past the 1 s deadline"):
        download.fetch("d/f.bin", "0" * 64, [f"{server.url}/drip/f.bin"], timeout=5, deadline=1)
    assert time.monotonic() - start < 4
    assert not (tmp_path / "cache" / "d" / "f.bin").exists() and _leftovers(tmp_path / "cache") == []
