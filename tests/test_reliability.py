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
import re
import shutil
import stat
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
    from nin_keras.evaluation import evaluate_model

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
    from nin_keras.zoo import architectures

    folder = _copy(preset_folder, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["kwargs"]["classes"] = classes
    (folder / "config.json").write_text(json.dumps(config))
    built = []
    monkeypatch.setattr(architectures, "build_architecture", lambda *a, **k: built.append(a))
    with pytest.raises(WeightsMismatchError, match=r"'classes' is .*classifier 'mlpconv3'.* 10 outputs"):
        zoo.load_preset(folder)
    assert built == []


def test_metadata_recording_more_weights_than_the_file_holds_is_refused(preset_folder, tmp_path, monkeypatch):
    from nin_keras import zoo
    from nin_keras.zoo import architectures

    folder = _copy(preset_folder, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["kwargs"]["classes"] = 2_000_000
    (folder / "config.json").write_text(json.dumps(config))
    _edit_metadata(folder, lambda m: m["layers"]["mlpconv3"][-1].__setitem__(0, 2_000_000))
    built = []
    monkeypatch.setattr(architectures, "build_architecture", lambda *a, **k: built.append(a))
    with pytest.raises(PresetError, match="records .* weight values, more than model.weights.h5"):
        zoo.load_preset(folder)
    assert built == []


@pytest.fixture(scope="module")
def whitened_preset(tmp_path_factory):
    """nin_mnist behind every preprocessing class whose weights or buffers grow with the input."""
    from nin_keras import zoo
    from nin_keras.layers import (ConvWhitening, GlobalContrastNormalization, LocalContrastNormalization,
                                  ZCAWhitening)

    folder = tmp_path_factory.mktemp("presets") / "whitened"
    layers = [GlobalContrastNormalization(), ZCAWhitening(store_inverse=False), ConvWhitening(kernel_size=3),
              LocalContrastNormalization(kernel_size=5)]
    zoo.save_preset(zoo.create_model("nin_mnist"), folder, {"dataset": "mnist"}, layers)
    return folder


# Loads a preset once (the baseline: every module imported, one network built), then each case:
# the preset's config.json / metadata.json replaced by the case's, loaded, the outcome recorded. The
# peak resident memory beyond the baseline shows whether any case allocated what it declared.
_LOAD_CASES = r"""
import json, resource, sys
from pathlib import Path
from nin_keras import zoo
from nin_keras.errors import NinKerasError
folder, cases = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
originals = {name: (folder / name).read_bytes() for name in ("config.json", "metadata.json")}
zoo.load_preset(folder)
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcomes = []
for case in cases:
    for name, data in originals.items():
        (folder / name).write_bytes(data)
    for name, value in case.items():
        (folder / name).write_text(json.dumps(value))
    try:
        zoo.load_preset(folder)
        outcomes.append(["loaded", ""])
    except (NinKerasError, ValueError) as err:
        outcomes.append([type(err).__name__, str(err)])
    except Exception as err:
        outcomes.append(["unexpected " + type(err).__name__, str(err)[:500]])
growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline
print(json.dumps({"outcomes": outcomes, "growth_mib": growth / 1024}))
"""
#: Peak memory a hostile case may add over loading the good preset (each case below declares gigabytes).
_GROWTH_LIMIT_MIB = 400


def _load_cases(folder: Path, cases: list[dict], tmp_path: Path) -> tuple[list[list[str]], float]:
    """Run ``_LOAD_CASES`` on a copy of ``folder``; return each case's (error type, message) and the
    peak memory growth in MiB."""
    work = _copy(folder, tmp_path, name="cases")
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-c", _LOAD_CASES, str(work), str(tmp_path / "cases.json")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["outcomes"], result["growth_mib"]


def _variant(folder: Path, metadata_edit=None, config_edit=None) -> dict:
    """The preset's config and metadata as JSON values, edited in place by the given functions."""
    case = {}
    for name, edit in (("metadata.json", metadata_edit), ("config.json", config_edit)):
        if edit is not None:
            value = json.loads((folder / name).read_text())
            edit(value)
            case[name] = value
    return case


def _set(*keys_and_value):
    """An edit setting ``value[k1][k2]...[kn] = v`` (the last argument is v)."""
    *keys, new = keys_and_value

    def edit(value):
        for key in keys[:-1]:
            value = value[key]
        value[keys[-1]] = new
    return edit


def _both(*edits):
    def edit(value):
        for one in edits:
            one(value)
    return edit


def test_hostile_sizes_in_unhashed_json_are_refused_before_memory_is_spent(whitened_preset, tmp_path):
    """Before: a preprocessing Dense of 200,000,000 units took 3.1 GB before the weights misfit was
    reported; a spec's build_config or the metadata's input_shape sized a whitening matrix; the
    architecture kwargs were built before they were compared with the weights."""
    folder = whitened_preset
    dense = keras.saving.serialize_keras_object(keras.layers.Dense(200_000_000))
    huge_input = _set("kwargs", "input_shape", [4096, 4096, 1])
    cases = {
        "dense-units": (_variant(folder, _set("preprocessing", 1, dense)),
                        "PresetError", r"metadata.json: preprocessing\[1\]: 'Dense' is not a preprocessing layer"),
        "zca-build-config": (_variant(folder, _set("preprocessing", 1, "build_config", "input_shape",
                                                   [None, 4096, 4096, 1])), "loaded", ""),
        "zca-input-shape": (_variant(folder, _set("input_shape", [4096, 4096, 1]), huge_input), "PresetError",
                            r"metadata.json: 'input_shape' \[4096, 4096, 1\] gives .*preprocessing\[1\] "
                            r"\(ZCAWhitening\) 16777216 input values.* imply 784 input values"),
        "zca-store-inverse": (_variant(folder, _set("preprocessing", 1, "config", "store_inverse", True)),
                              "PresetError", r"preprocessing\[1\] \(ZCAWhitening\): its 'store_inverse' makes"),
        "conv-kernel": (_variant(folder, _set("preprocessing", 2, "config", "kernel_size", 10**9)), "PresetError",
                        r"preprocessing\[2\] \(ConvWhitening\): 'kernel_size' must be .* no larger than 28"),
        "conv-kernel-fits": (_variant(folder, _set("preprocessing", 2, "config", "kernel_size", 27)), "PresetError",
                             r"\(ConvWhitening\): its 'kernel_size' makes weights \[\(27, 27, 1, 1\)"),
        "lcn-kernel": (_variant(folder, _set("preprocessing", 3, "config", "kernel_size", 2 * 10**8 + 1)),
                       "PresetError", r"preprocessing\[3\] \(LocalContrastNormalization\): 'kernel_size'"),
        "input-beyond-limit": (_variant(folder, _set("input_shape", [100_000, 100_000, 3])), "PresetError",
                               r"'input_shape' must be at most 4096 per dimension"),
        "classes": (_variant(folder, config_edit=_set("kwargs", "classes", 10**9)), "WeightsMismatchError",
                    r"'classes' is 1000000000"),
    }
    outcomes, growth = _load_cases(folder, [case for case, _, _ in cases.values()], tmp_path)
    for (name, (_, kind, words)), (got, message) in zip(cases.items(), outcomes):
        assert got == kind and re.search(words, message), (name, got, message)
    assert growth < _GROWTH_LIMIT_MIB


def test_network_sized_by_config_is_compared_with_the_weights_before_it_is_built(tmp_path, monkeypatch):
    """A Maxout MLP's first dense layer grows with the input: input_shape [4096, 4096, 1] in
    config.json asks for 20 billion weights. The shapes are planned without allocating and
    compared with metadata.json's record (bounded by the weights file) first."""
    from nin_keras import zoo

    folder = tmp_path / "maxout"
    zoo.save_preset(zoo.create_model("maxout_mnist"), folder, {"dataset": "mnist"})
    case = _variant(folder, _set("input_shape", [4096, 4096, 1]), _set("kwargs", "input_shape", [4096, 4096, 1]))
    [(got, message)], growth = _load_cases(folder, [case], tmp_path)
    assert got == "WeightsMismatchError" and "'maxout_dense1'" in message and "[16777216, 1200]" in message, message
    assert growth < _GROWTH_LIMIT_MIB


@pytest.mark.parametrize("shape, words", [
    ([784], r"'input_shape' is \[784\], but the network 'nin_mnist' of config.json takes \[28, 28, 1\]"),
    ([28, 28, 3], r"'input_shape' is \[28, 28, 3\], but the network 'nin_mnist' of config.json takes \[28, 28, 1\]"),
])
def test_metadata_input_shape_other_than_the_networks_is_a_preset_error(whitened_preset, tmp_path, shape, words):
    """Before: Keras's "Input 0 of layer 'zca_whitening' is incompatible" from building the classifier."""
    from nin_keras import zoo

    folder = _copy(whitened_preset, tmp_path)
    _edit_metadata(folder, _set("input_shape", shape))
    with pytest.raises(PresetError, match=words):
        zoo.load_preset(folder).classifier()


def test_metadata_input_shape_other_than_the_preprocessing_weights_is_a_preset_error(whitened_preset, tmp_path):
    from nin_keras import zoo

    folder = _copy(whitened_preset, tmp_path)
    _edit_metadata(folder, _set("input_shape", [32, 32, 1]))
    config = json.loads((folder / "config.json").read_text())
    config["kwargs"]["input_shape"] = [32, 32, 1]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PresetError, match=r"metadata.json: 'input_shape' \[32, 32, 1\] gives .*\(ZCAWhitening\) "
                                          r"1024 input values, but preprocessing.weights.h5 holds weights "
                                          r"\[\(784,\), \(784, 784\)\] for it, which imply 784 input values"):
        zoo.load_preset(folder)


@pytest.mark.parametrize("name", ["metadata.json", "config.json", "model.weights.h5", "preprocessing.weights.h5"])
@pytest.mark.parametrize("kind", ["link-outside", "fifo"])
def test_preset_files_must_be_regular_files_inside_the_folder(preset_folder, tmp_path, name, kind):
    """Before: a metadata.json linked to a JSON file elsewhere was read and its values echoed in
    the error; a FIFO in its place would block the loader for ever."""
    from nin_keras import zoo

    folder = _copy(preset_folder, tmp_path)
    secret = tmp_path / "elsewhere.json"
    secret.write_text(json.dumps({"dataset": "SECRET-VALUE-42", "input_shape": "SECRET-VALUE-42"}))
    (folder / name).unlink()
    if kind == "fifo":
        os.mkfifo(folder / name)
    else:
        (folder / name).symlink_to(secret)
    words = "links to a file outside the preset folder" if kind == "link-outside" else "is not a regular file"
    with pytest.raises(PresetError, match=f"{name}.*{words}|{words}.*{name}") as info:
        zoo.load_preset(folder)
    assert "SECRET" not in str(info.value)


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


_REPLACING_WRITER = r"""
import sys
from nin_keras.io_utils import atomic_dir
target, writer, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(rounds):
    with atomic_dir(target, overwrite=True) as tmp:
        for name in ("a", "b", "c"):
            (tmp / name).write_text(f"{writer} {i}")
"""


def test_concurrent_overwriting_writers_all_succeed_and_leave_one_complete_folder(tmp_path):
    """Before: ENOTEMPTY errors when one writer's folder landed between another's two renames,
    and `.out.old-PID` folders left behind."""
    target, rounds = tmp_path / "out", 60
    writers = [subprocess.Popen([sys.executable, "-c", _REPLACING_WRITER, str(target), name, str(rounds)],
                                stderr=subprocess.PIPE) for name in ("w1", "w2", "w3")]
    failures = [w.stderr.read().decode()[-1500:] for w in writers if w.wait(timeout=120) != 0]
    assert failures == []
    contents = {(target / name).read_text() for name in ("a", "b", "c")}
    assert contents in ({f"{name} {rounds - 1}"} for name in ("w1", "w2", "w3")), contents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


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


@pytest.mark.parametrize("kind", ["idx", "npz", "cifar"])
def test_every_reader_refuses_an_empty_split_naming_the_file(tmp_path, kind):
    """Before: an .npz with empty arrays failed in load_arrays with NumPy's "need at least one
    array to concatenate", naming neither the file nor the arrays."""
    from nin_keras.data.arrays import load_arrays

    if kind == "cifar":  # protocol 3: protocol 2 pickles empty bytes as a call the reader refuses anyway
        (tmp_path / "data" / "cifar-10-batches-py").mkdir(parents=True)
        (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(
            {b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, protocol=3))
        name = "cifar10"
    else:
        name = _write_split(kind, tmp_path / "data", np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8))
    words = {"idx": r"t10k-images-idx3-ubyte: holds no images \(shape \(0, 28, 28\)\)",
             "npz": r"mnist.npz: x_test is empty \(shape \(0, 28, 28\)\)",
             "cifar": r"test_batch: holds no images \(shape \(0, 3072\)\)"}[kind]
    with pytest.raises(DataError, match=words):
        load_arrays({"name": name, "source": "local"}, "test", tmp_path / "data")


def _pets_archive(path: Path, extra=()) -> Path:
    """A tar of ``pets/{cat,dog}/0.png``, then the members ``extra`` (files among them hold the
    same PNG)."""
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    with tarfile.open(path, "w") as tar:
        for info in [tarfile.TarInfo("pets/cat/0.png"), tarfile.TarInfo("pets/dog/0.png"), *extra]:
            if info.isfile():
                info.size = len(png.getvalue())
            tar.addfile(info, io.BytesIO(png.getvalue()) if info.isfile() else None)
    return path


def _tar_member(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize("member, words", [
    (_tar_member("pets/dog/1.png", tarfile.SYMTYPE, "/etc/passwd"), r"symbolic link \(to '/etc/passwd'\)"),
    (_tar_member("pets/bird", tarfile.SYMTYPE, "/home/me/birds"), r"symbolic link \(to '/home/me/birds'\)"),
    (_tar_member("pets/dog/1.png", tarfile.LNKTYPE, "pets/cat/0.png"), r"hard link \(to 'pets/cat/0.png'\)"),
    (_tar_member("pets/dog/1.png", tarfile.FIFOTYPE), "FIFO"),
    (_tar_member("pets/dog/1.png", tarfile.CHRTYPE), "character device"),
    (_tar_member("pets/dog/1.png", tarfile.BLKTYPE), "block device"),
], ids=["symlink", "symlinked-class-folder", "hardlink", "fifo", "character-device", "block-device"])
def test_tar_link_device_and_fifo_members_are_refused_naming_them(tmp_path, member, words):
    """Before: skipped without a word (a linked class folder silently dropped its class)."""
    from nin_keras.data.image_folder import read_labelled_images

    archive = _pets_archive(tmp_path / "pets.tar", [member])
    with pytest.raises(DataError, match=f"member '{member.name}' is a {words}; an archive is read without "
                                        "extracting it.*tar --dereference"):
        read_labelled_images(archive)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets.tar"]  # nothing extracted


def test_tar_member_appearing_twice_is_refused(tmp_path):
    """Before: a file appended twice (tar --append) was trained on twice."""
    from nin_keras.data.image_folder import read_labelled_images

    archive = _pets_archive(tmp_path / "twice.tar", [tarfile.TarInfo("./pets/cat/0.png")])  # another spelling
    with pytest.raises(DataError, match=r"member './pets/cat/0.png' appears twice"):
        read_labelled_images(archive)


def _zip_with_overlapping_entries(path: Path, copies: int, size: int) -> Path:
    """One deflated member of ``size`` zeros whose central directory entry is repeated ``copies``
    times: every copy names the same compressed bytes, so the file stays small."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("pets/cat/0.png", bytes(size))
    data = path.read_bytes()
    start, end = data.index(b"PK\x01\x02"), data.index(b"PK\x05\x06")
    entry = data[start:end]
    tail = bytearray(data[end:])
    struct.pack_into("<HHII", tail, 8, copies, copies, len(entry) * copies, start)
    path.write_bytes(data[:start] + entry * copies + bytes(tail))
    return path


def test_zip_with_overlapping_entries_is_refused_before_inflating(tmp_path):
    """Before: a 103 kB zip of overlapping entries inflated 400 MB before failing."""
    from nin_keras.data.image_folder import read_labelled_images

    bomb = _zip_with_overlapping_entries(tmp_path / "bomb.zip", copies=100, size=4 << 20)
    assert bomb.stat().st_size < 20_000
    assert sum(info.file_size for info in zipfile.ZipFile(bomb).infolist()) == 400 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"bomb.zip: the data of all its members takes 419430400 bytes, more than "
                                            r"the 67108864 this file may expand to.*decompression bomb"):
            read_labelled_images(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 << 20, peak


def test_zip_inflation_is_counted_while_reading(tmp_path, monkeypatch):
    """The bytes actually inflated are counted too, not only the declared sizes: with the check of
    the declared sizes switched off, twenty 1 MiB members stop at the second (limit lowered to 1 MiB)."""
    from nin_keras.data import archive

    monkeypatch.setattr(archive, "MIN_EXPANDED_BYTES", 1 << 20)
    monkeypatch.setattr(archive, "check_declared_size", lambda *args: None)
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        for i in range(20):
            bomb.writestr(f"pets/cat/{i}.png", bytes(1 << 20))
    assert archive.expanded_limit(path) == 1 << 20
    with pytest.raises(DataError, match=r"member 'pets/cat/1.png' inflates the archive past the 1048576 bytes"):
        list(archive.iter_files(path))


@pytest.mark.parametrize("mode, words", [(stat.S_IFLNK | 0o777, "symbolic link"), (stat.S_IFIFO | 0o644, "FIFO")],
                         ids=["symlink", "fifo"])
def test_zip_link_members_are_refused_and_duplicates_too(tmp_path, mode, words):
    """zipfile reads a link member as a file holding the target's name; it is refused like tar's."""
    from nin_keras.data.image_folder import read_labelled_images

    path = tmp_path / "pets.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pets/cat/0.png", b"png")
        link = zipfile.ZipInfo("pets/dog/0.png")
        link.create_system, link.external_attr = 3, mode << 16
        archive.writestr(link, "../../../etc/passwd")
    with pytest.raises(DataError, match=f"member 'pets/dog/0.png' is a {words}; an archive is read"):
        read_labelled_images(path)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "w") as archive:
        archive.writestr("pets/cat/0.png", b"png")
        archive.writestr("pets/cat/0.png", b"png")
    with pytest.raises(DataError, match="member 'pets/cat/0.png' appears twice"):
        read_labelled_images(path)


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


def test_fuzz_image_folder_archives(tmp_path):
    """Class-folder zips (stored and deflated) and tars through read_labelled_images, whose zip
    reader has to survive the central directory, local headers and sizes being mutated."""
    import warnings

    from PIL import Image

    from nin_keras.data.image_folder import read_labelled_images
    from nin_keras.data.input_policy import InputPolicy

    rng = np.random.default_rng(5)
    folder = tmp_path / "pets"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (6, 5, 3), np.uint8)).save(folder / name / f"{i}.png")
    policy = InputPolicy(size=(4, 4))
    for suffix, write, seed in ((".zip", zipfile.ZIP_STORED, 51), (".zip", zipfile.ZIP_DEFLATED, 52),
                                (".tar.gz", None, 53)):
        path = tmp_path / f"pets{suffix}"
        if write is None:
            with tarfile.open(path, "w:gz") as tar:
                tar.add(folder, arcname="pets")
        else:
            with zipfile.ZipFile(path, "w", write) as archive:
                for file in sorted(folder.rglob("*")):
                    archive.write(file, file.relative_to(tmp_path).as_posix())
        assert read_labelled_images(path, policy=policy).splits["train"][0].shape == (4, 4, 4, 3)

        def read():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # mutated names are skipped with a warning
                read_labelled_images(path, policy=policy)

        assert _only_library_errors(read, path.read_bytes(), path, seed) > 0


@pytest.mark.parametrize("name, seed", [("config.json", 41), ("metadata.json", 42)])
def test_fuzz_preset_loader(preset_folder, tmp_path, name, seed):
    from nin_keras import zoo

    folder = _copy(preset_folder, tmp_path)
    original = (folder / name).read_bytes()
    assert _only_library_errors(lambda: zoo.load_preset(folder), original, folder / name, seed) > 0


_CLASS_NAMES = ["Dense", "Lambda", "Conv2D", "Popen", "NoSuchLayer", "ZCAWhitening", "ConvWhitening",
                "LocalContrastNormalization", "GlobalContrastNormalization", "Normalization", "Rescaling"]
_SIZE_KEYS = ["units", "kernel_size", "store_inverse", "axis", "mean", "variance", "scale", "filters", "sigma",
              "matrix_dtype", "padding", "dtype", "name"]


def _hostile_value(rng: np.random.Generator, depth: int = 0):
    """A JSON value of a random kind: huge, negative or fractional numbers, strings, nulls, deep
    nesting, lists of huge numbers, objects, layer class names."""
    kind = int(rng.integers(9 if depth < 3 else 6))
    if kind == 0:
        return int(rng.choice([0, -1, 1, 3, 10**6, 2 * 10**8, 10**12, 2**63, 10**30]))
    if kind == 1:
        return float(rng.choice([2e8, -0.5, 1e300, 0.0, 3.5]))
    if kind == 2:
        return str(rng.choice(_CLASS_NAMES + ["", "../x", "float16", "same"]))
    if kind == 3:
        return None if rng.integers(2) else bool(rng.integers(2))
    if kind == 4:
        return [int(rng.choice([1, 4096, 10**6, 10**9])) for _ in range(int(rng.integers(1, 5)))]
    if kind == 5:
        nested = 0
        for _ in range(int(rng.integers(1, 60))):
            nested = [nested]
        return nested
    if kind == 6:
        return [_hostile_value(rng, depth + 1) for _ in range(int(rng.integers(1, 4)))]
    if kind == 7:
        return {str(rng.choice(_SIZE_KEYS)): _hostile_value(rng, depth + 1) for _ in range(int(rng.integers(1, 4)))}
    return {"class_name": str(rng.choice(_CLASS_NAMES)), "config": _hostile_value(rng, depth + 1)}


def _mutate_spec(metadata: dict, config: dict, rng: np.random.Generator) -> None:
    """One random edit of the preprocessing spec, the input shape or the architecture kwargs."""
    specs = metadata["preprocessing"] if isinstance(metadata["preprocessing"], list) else []
    layer = specs[int(rng.integers(len(specs)))] if specs else {}
    layer = layer if isinstance(layer, dict) else {}
    kind = int(rng.integers(7))
    if kind == 0 and isinstance(layer.get("config"), dict):
        layer["config"][str(rng.choice(list(layer["config"]) + _SIZE_KEYS))] = _hostile_value(rng)
    elif kind == 1 and layer:
        layer["class_name"] = str(rng.choice(_CLASS_NAMES))
    elif kind == 2 and layer:
        huge = [None] + [int(d) for d in rng.choice([1, 28, 4096, 10**6, 10**9], 3)]
        layer["build_config"] = {"input_shape": huge} if rng.integers(2) else _hostile_value(rng)
    elif kind == 3:
        shape = _hostile_value(rng) if rng.integers(2) else [int(d) for d in rng.choice([1, 3, 28, 4096, 10**5], 3)]
        metadata["input_shape"] = shape
        if rng.integers(2):
            config["kwargs"]["input_shape"] = shape
    elif kind == 4:
        config["kwargs"][str(rng.choice(["classes", "input_shape", "dropout", "include_top", "batch_norm"]))] = \
            _hostile_value(rng)
    elif kind == 5 and specs:
        specs.insert(int(rng.integers(len(specs) + 1)), _hostile_value(rng))
    else:
        metadata["preprocessing"] = _hostile_value(rng) if rng.integers(3) else specs + specs


def test_fuzz_preset_metadata_and_preprocessing_spec(whitened_preset, tmp_path):
    """Seeded structural mutations (1-3 edits each) of a real preset's metadata.json and
    config.json end in a library error or a load, never another exception, and never allocate
    what they declare."""
    rng = np.random.default_rng(43)
    original_metadata = json.loads((whitened_preset / "metadata.json").read_text())
    original_config = json.loads((whitened_preset / "config.json").read_text())
    cases = []
    for _ in range(FUZZ_CASES // 2):
        metadata, config = json.loads(json.dumps(original_metadata)), json.loads(json.dumps(original_config))
        for _ in range(int(rng.integers(1, 4))):
            _mutate_spec(metadata, config, rng)
        cases.append({"metadata.json": metadata, "config.json": config})
    outcomes, growth = _load_cases(whitened_preset, cases, tmp_path)
    unexpected = [(i, got, message) for i, (got, message) in enumerate(outcomes) if got.startswith("unexpected")]
    assert unexpected == []
    assert sum(got != "loaded" for got, _ in outcomes) > len(cases) // 2  # the edits reach the checks
    assert growth < _GROWTH_LIMIT_MIB


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


def test_exported_preset_names_stay_inside_the_output_folder(preset_folder, server, tmp_path):
    """Before: a URL preset `http://HOST/a/../../../../escaped/p` wrote `escaped/p.onnx` outside
    --out, a plain URL preset wrote into `out/http:/HOST:PORT/...`, and an odd folder name went
    into the file name as it was."""
    from nin_keras.export import export

    work = tmp_path / "work"
    out = work / "out"
    parity = (np.random.default_rng(0).integers(0, 256, (2, 28, 28, 1), np.uint8), None)
    traversal = _serve_preset(server, preset_folder, prefix="/a/../../../../escaped/p").rstrip("/")
    assert export(traversal, ("tflite",), out, parity_data=parity) == {"tflite": out / "p.tflite"}
    odd = _copy(preset_folder, work, name="odd name; $(x) ..")
    assert export(str(odd / ".." / odd.name), ("tflite",), out, parity_data=parity)["tflite"] \
        == out / "odd_name____x__...tflite"
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*") if odd not in p.parents) == \
        ["odd name; $(x) ..", "out", "out/odd_name____x__...tflite", "out/odd_name____x__...tflite.json",
         "out/p.tflite", "out/p.tflite.json"]
    with pytest.raises(ValueError, match="name must be a plain file name"):
        export(str(odd), ("tflite",), out, name="../escaped", parity_data=parity)


@pytest.mark.parametrize("written", ["tiny.tflite", "tiny.tflite.json"])
def test_artifact_path_linking_outside_the_output_folder_is_refused(tmp_path, written):
    from nin_keras.errors import ExportError
    from nin_keras.export import export

    out, outside = tmp_path / "out", tmp_path / "someone's.file"
    out.mkdir()
    outside.write_bytes(b"keep me")
    (out / written).symlink_to(outside)
    with pytest.raises(ExportError, match="outside the output folder"):
        export(_tiny_model(), ("tflite",), out, parity_data=_PARITY)
    assert outside.read_bytes() == b"keep me" and sorted(p.name for p in out.iterdir()) == [written]


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
