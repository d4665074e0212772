"""Faults from RELIABILITY.md that no module's own tests cover: each ends in a clear error.

The other faults of the table are tested beside their modules (tests/test_download.py,
test_zoo.py, test_caffe.py, test_data.py, test_train.py, test_export.py); see RELIABILITY.md.
Each test writes its hostile input itself (files, archives, pickles, a loopback HTTP server).
"""

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from nin_keras.errors import DataError, DownloadError, NinKerasError, PresetError, WeightsMismatchError


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
    monkeypatch.setattr(registry, "build_architecture", lambda *a, **k: built.append(a))
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
    monkeypatch.setattr(registry, "build_architecture", lambda *a, **k: built.append(a))
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


@pytest.mark.parametrize("mode, words", [("endless", "exceeds the 1000 bytes"), ("huge", "announces 10000000000 bytes")],
                         ids=["endless", "huge"])
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


# --------------------------------------------------------------------------- data readers: one value rule
# Before: idx float32 images in [0, 1] loaded as 0/1, int32 256-511 wrapped to 0-255, .npz float
# labels 0.2-4.7 became 0-4, while .npz refused any non-uint8 images.


def _idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
             np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    big = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, codes[big.dtype], array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + big.tobytes()


def _write_split(kind: str, folder: Path, images: np.ndarray, labels: np.ndarray) -> str:
    """Write a test split in ``kind``'s publisher format under ``folder``; return the data set name."""
    if kind == "idx":
        (folder / "mnist").mkdir(parents=True)
        (folder / "mnist" / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(images))
        (folder / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(labels))
        return "mnist"
    if kind == "npz":
        folder.mkdir(parents=True)
        np.savez(folder / "mnist.npz", x_test=images, y_test=labels)
        return "mnist"
    cifar = folder / "cifar-10-batches-py"  # the publisher's rows of R|G|B planes
    cifar.mkdir(parents=True)
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1) if images.ndim == 4 else images
    (cifar / "test_batch").write_bytes(pickle.dumps({b"data": rows, b"labels": labels}, protocol=2))
    return "cifar10"


def _images_for(kind, dtype, low, high, n=4):
    shape = (n, 32, 32, 3) if kind == "cifar" else (n, 28, 28)
    return np.random.default_rng(0).uniform(low, high, shape).astype(dtype)


@pytest.mark.parametrize("kind", ["idx", "npz", "cifar"])
@pytest.mark.parametrize("dtype, low, high, words", [
    ("float32", 0.0, 1.0, "integer pixel values"),
    ("int32", 256, 512, r"0\.\.255, got 2\d\d\.\.5\d\d"),
    ("int32", -5, 100, r"0\.\.255, got -\d\.\."),
], ids=["float-0-1", "int32-256-511", "negative"])
def test_every_reader_refuses_images_that_do_not_fit_uint8(tmp_path, kind, dtype, low, high, words):
    from nin_keras.data import load_dataset

    images = _images_for(kind, dtype, low, high)
    name = _write_split(kind, tmp_path / "data", images, np.zeros(len(images), np.uint8))
    with pytest.raises(DataError, match=words):
        load_dataset(name, "test", "local", tmp_path / "data")


@pytest.mark.parametrize("kind", ["idx", "npz", "cifar"])
def test_every_reader_refuses_fractional_labels(tmp_path, kind):
    from nin_keras.data import load_dataset

    images = _images_for(kind, "uint8", 0, 255, n=5)
    labels = np.array([0.2, 1.0, 2.5, 3.0, 4.7], ">f4" if kind == "idx" else np.float32)
    name = _write_split(kind, tmp_path / "data", images, labels)
    with pytest.raises(DataError, match=r"whole numbers, got 0\.2"):
        load_dataset(name, "test", "local", tmp_path / "data")


@pytest.mark.parametrize("kind", ["idx", "npz", "cifar"])
def test_every_reader_keeps_integer_pixels_and_whole_labels_exactly(tmp_path, kind):
    """Wider integer images in 0..255 and integral float labels are the same values: accepted."""
    from nin_keras.data import load_dataset

    images = _images_for(kind, "int32", 0, 256, n=5)
    labels = np.array([0, 3, 9, 1, 2], ">f8" if kind == "idx" else np.float64)
    name = _write_split(kind, tmp_path / "data", images, labels)
    got_images, got_labels = (np.stack(a) for a in zip(*load_dataset(name, "test", "local", tmp_path / "data")
                                                       .as_numpy_iterator()))
    expected = images if images.ndim == 4 else images[..., None]
    np.testing.assert_array_equal(got_images, expected)
    assert got_images.dtype == np.uint8
    np.testing.assert_array_equal(got_labels, [0, 3, 9, 1, 2])


# --------------------------------------------------------------------------- data readers: declared sizes


class _ArrayBomb:
    """Unpickles as ``numpy.ndarray((100000, 3072), 'u1')``: 300 MB from ~100 bytes."""

    def __reduce__(self):
        return (np.ndarray, ((100_000, 3072), "u1"))


def test_cifar_pickle_asking_for_a_huge_array_is_refused_before_allocating(tmp_path):
    from nin_keras.data import load_dataset

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    payload = pickle.dumps({b"data": _ArrayBomb(), b"labels": [0]}, protocol=2)
    assert len(payload) < 200
    (folder / "test_batch").write_bytes(payload)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="larger than the .*-byte pickle"):
            load_dataset("cifar10", "test", "local", tmp_path / "data")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20, peak  # NumPy reports its allocations to tracemalloc: 300 MB before


def test_tar_member_declaring_gigabytes_is_refused_before_reading(tmp_path):
    from nin_keras.data import load_dataset

    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
    info.size = 3 << 30  # the header claims 3 GB; a bomb's data would follow
    with gzip.open(archive, "wb") as out:
        out.write(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 4096)
    with pytest.raises(DataError, match="more than the .* this file may expand to"):
        load_dataset("cifar10", "test", "local", tmp_path / "data")


def test_tar_gz_bomb_is_refused_at_the_expansion_limit(tmp_path, monkeypatch):
    """A real bomb: a 4 MB member of zeros compresses to a few kB (limit lowered to 1 MB here)."""
    from nin_keras.data import archive

    monkeypatch.setattr(archive, "MIN_EXPANDED_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tar:
        info = tarfile.TarInfo("train/cat/zeros.png")
        info.size = 4 << 20
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert bomb.stat().st_size < 50_000
    with pytest.raises(DataError, match="decompression bomb"):
        list(archive.iter_files(bomb))


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("shape", [(1 << 16,) * 4, (3_000_000_000,)], ids=["product-wraps-int64", "3-GB"])
def test_idx_header_declaring_too_much_is_a_data_error(tmp_path, compressed, shape):
    """(2^16)^4 = 2^64 wrapped to 0 in np.prod: the header-only file gave 'cannot reshape'."""
    from nin_keras.data.idx import read_idx

    raw = bytes([0, 0, 0x08, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape)  # header only
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(gzip.compress(raw) if compressed else raw)
    with pytest.raises(DataError, match="decompression bomb" if compressed else "truncated"):
        read_idx(path)


def test_idx_gz_with_more_data_than_its_header_stops_reading(tmp_path):
    from nin_keras.data.idx import read_idx

    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(np.zeros(10, np.uint8)) + bytes(8 << 20)))  # 8 MB of zeros after
    with pytest.raises(DataError, match="longer than the 18 bytes its header"):
        read_idx(path)


def test_npz_array_header_larger_than_its_member_is_refused(tmp_path):
    from nin_keras.data.npz import read_npz_split

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (100_000, 100_000)})
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_test.npy", header.getvalue() + b"\0" * 100)
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(1, np.uint8))
        archive.writestr("y_test.npy", buffer.getvalue())
    with pytest.raises(DataError, match=r"x_test.npy declares shape \(100000, 100000\)"):
        read_npz_split(path, "test")


def test_npz_bomb_is_refused_at_the_expansion_limit(tmp_path, monkeypatch):
    from nin_keras.data import archive
    from nin_keras.data.npz import read_npz_split

    monkeypatch.setattr(archive, "MIN_EXPANDED_BYTES", 1 << 20)
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, x_test=np.zeros((3000, 28, 28), np.uint8), y_test=np.zeros(3000, np.uint8))
    assert path.stat().st_size < 50_000
    with pytest.raises(DataError, match="decompression bomb"):
        read_npz_split(path, "test")


# --------------------------------------------------------------------------- fuzzing: only the library's errors escape
# A seeded loop (reproducible, a few seconds per target), as tests/test_caffe.py fuzzes the Caffe reader.

FUZZ_CASES = 150


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random edit: flipped bits, a cut, inserted or overwritten bytes, or a repeated slice."""
    data = bytearray(data)
    kind = rng.integers(5)
    where = int(rng.integers(len(data) + 1))
    if kind == 0 and data:
        for i in rng.integers(0, len(data), int(rng.integers(1, 9))):
            data[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        del data[where:]
    elif kind == 2:
        data[where:where] = rng.bytes(int(rng.integers(1, 16)))
    elif kind == 3:
        data[where:where + 8] = bytes([int(rng.choice([0, 0xFF]))]) * 8
    else:
        data[where:where] = data[max(0, where - 64):where] * int(rng.integers(1, 4))
    return bytes(data)


def _only_library_errors(read, original: bytes, path: Path, seed: int) -> int:
    """Write ``FUZZ_CASES`` mutations of ``original`` to ``path`` and call ``read()`` on each."""
    rng = np.random.default_rng(seed)
    refused = 0
    for case in range(FUZZ_CASES):
        mutated = _mutate(original, rng)
        path.write_bytes(mutated)
        try:
            read()
        except (NinKerasError, ValueError):
            refused += 1
        except Exception as err:  # noqa: BLE001 - the point of the test
            raise AssertionError(f"case {case} (seed {seed}): {type(err).__name__}: {err}; "
                                 f"bytes {mutated[:80]!r}...") from err
    return refused


def test_fuzz_idx_reader(tmp_path):
    from nin_keras.data.idx import read_idx

    original = _idx_bytes(np.random.default_rng(1).integers(0, 256, (6, 28, 28), dtype=np.uint8))
    for name, data, seed in (("raw", original, 11), ("x.gz", gzip.compress(original), 12)):
        path = tmp_path / name
        assert _only_library_errors(lambda: read_idx(path), data, path, seed) > 0


def test_fuzz_npz_reader(tmp_path):
    from nin_keras.data.npz import read_npz_split

    path = tmp_path / "mnist.npz"
    rng = np.random.default_rng(2)
    for save, seed in ((np.savez, 21), (np.savez_compressed, 22)):
        save(path, x_test=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), y_test=np.arange(6))
        assert _only_library_errors(lambda: read_npz_split(path, "test"), path.read_bytes(), path, seed) > 0


def test_fuzz_cifar_python_reader(tmp_path):
    from nin_keras.data.cifar import read_cifar_python

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(3)
    batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [1, 2, 3, 4],
             b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"]}
    pickled = pickle.dumps(batch, protocol=2)
    path = folder / "test_batch"
    assert _only_library_errors(lambda: read_cifar_python(folder, "cifar10", "test"), pickled, path, 31) > 0
    path.write_bytes(pickled)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    assert _only_library_errors(lambda: read_cifar_python(archive, "cifar10", "test"), archive.read_bytes(),
                                archive, 32) > 0


@pytest.mark.parametrize("name, seed", [("config.json", 41), ("metadata.json", 42)])
def test_fuzz_preset_loader(preset_folder, tmp_path, name, seed):
    from nin_keras import zoo

    folder = _copy(preset_folder, tmp_path)
    original = (folder / name).read_bytes()
    _only_library_errors(lambda: zoo.load_preset(folder), original, folder / name, seed)


# --------------------------------------------------------------------------- export: half-written output


def _tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(3, activation="softmax")], name="tiny")


_PARITY = (np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), np.uint8), None)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from nin_keras.export import export

    return export(_tiny_model(), ("savedmodel", "tflite", "onnx"), tmp_path_factory.mktemp("artifacts"),
                  parity_data=_PARITY)


@pytest.mark.parametrize("fmt, squatter", [("tflite", "folder"), ("onnx", "savedmodel"), ("savedmodel", "file"),
                                           ("savedmodel", "folder")])
def test_export_over_something_that_is_not_its_artifact_is_refused_untouched(tmp_path, fmt, squatter):
    """Before: IsADirectoryError after writing a .tflite.json describing nothing, or a leftover
    .tiny.savedmodel.old-PID when a file stood where the SavedModel goes."""
    from nin_keras.errors import ExportError
    from nin_keras.export import export

    target = tmp_path / f"tiny.{fmt}"
    if squatter == "file":
        target.write_bytes(b"someone's file")
    else:
        target.mkdir()
        (target / ("saved_model.pb" if squatter == "savedmodel" else "notes.txt")).write_bytes(b"keep me")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    with pytest.raises(ExportError, match="not replacing it"):
        export(_tiny_model(), (fmt,), tmp_path, parity_data=_PARITY)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_export_replaces_its_own_savedmodel_without_leftovers(artifacts):
    from nin_keras.export import export

    out = artifacts["savedmodel"].parent
    export(_tiny_model(1), ("savedmodel",), out, parity_data=_PARITY)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("where", ["under-a-file", "read-only"])
def test_unwritable_output_folder_is_an_export_error(tmp_path, where):
    from nin_keras.errors import ExportError
    from nin_keras.export import export

    if where == "under-a-file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders; the under-a-file case covers the error path")
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o555)
    with pytest.raises(ExportError, match="cannot write to the output folder"):
        export(_tiny_model(), ("tflite",), out, parity_data=_PARITY)


def test_export_writes_the_artifact_before_its_metadata(tmp_path, monkeypatch):
    """A kill between the two leaves the new artifact without metadata, never the old metadata."""
    from nin_keras.export import export, metadata

    path = export(_tiny_model(0), ("tflite",), tmp_path, parity_data=_PARITY)["tflite"]
    old_digest = json.loads(metadata.metadata_path(path).read_text())["sha256"]

    def killed(artifact, info):
        assert Path(artifact).is_file() and hashlib.sha256(Path(artifact).read_bytes()).hexdigest() == info["sha256"]
        raise KeyboardInterrupt  # as if killed right after the rename

    monkeypatch.setattr(metadata, "write_metadata", killed)
    with pytest.raises(KeyboardInterrupt):
        export(_tiny_model(1), ("tflite",), tmp_path, parity_data=_PARITY)
    assert hashlib.sha256(path.read_bytes()).hexdigest() != old_digest  # the new artifact
    assert not metadata.metadata_path(path).exists()  # and no metadata describing the old one


@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
@pytest.mark.parametrize("fmt", ["onnx", "tflite", "savedmodel"])
def test_predictor_on_a_corrupt_artifact_is_an_export_error(artifacts, tmp_path, fmt, damage):
    from nin_keras.errors import ExportError
    from nin_keras.deploy import Predictor

    source = artifacts[fmt]
    target = tmp_path / source.name
    if fmt == "savedmodel":
        shutil.copytree(source, target)
        damaged = target / "saved_model.pb"
    else:
        shutil.copy(source, target)
        damaged = target
    original = damaged.read_bytes()
    damaged.write_bytes({"random": np.random.default_rng(0).bytes(len(original)),
                         "truncated": original[: len(original) // 2], "empty": b""}[damage])
    with pytest.raises(ExportError, match=f"{fmt} artifact .*{target.name}"):
        Predictor(target).classify(_PARITY[0])


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_predictor_metadata_with_too_few_class_names_is_an_export_error(artifacts, tmp_path, fmt):
    from nin_keras.errors import ExportError
    from nin_keras.deploy import Predictor
    from nin_keras.export import metadata

    target = tmp_path / artifacts[fmt].name
    shutil.copy(artifacts[fmt], target)
    info = json.loads(metadata.metadata_path(artifacts[fmt]).read_text())
    metadata.metadata_path(target).write_text(json.dumps({**info, "class_names": ["a", "b"]}))
    with pytest.raises(ExportError, match="lists 2 class names, but the artifact has 3 outputs"):
        Predictor(target).classify(_PARITY[0])
