"""Tests of the zoo: registry, create_model (pretrained, fine-tuning), presets and their loader."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nin_keras import cli, zoo
from nin_keras.errors import DownloadError, PresetError, WeightsMismatchError
from nin_keras.zoo import cards, download, index, preset_format, preset_loader, pretrained, publish, registry
from nin_keras import models as builders

MEAN, STD = 33.3, 78.5
TEST_MODEL = "nin_mnist_zoo_test"


def _preprocessing():
    return [keras.layers.Normalization(mean=MEAN, variance=STD**2)]


def _numpy_preprocess(images):
    return (images.astype(np.float64) - MEAN) / STD


def _images(n=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)


@pytest.fixture
def nin_keras_home(tmp_path):
    """conftest's isolated_env sets NIN_KERAS_HOME here: an empty cache per test."""
    return tmp_path / "cache"


@pytest.fixture
def published(tmp_path):
    """A registered test model with one published weight set ``TEST_MODEL.t`` in the cache."""
    registry.register_model(builders.nin_mnist, name=TEST_MODEL, dataset="mnist")
    model = zoo.create_model(TEST_MODEL)
    folder = tmp_path / "cache" / f"{TEST_MODEL}.t"
    zoo.save_preset(model, folder, {"dataset": "mnist", "source": "test", "metrics": {"test_error": 1.5}}, _preprocessing())
    registry.unregister_model(TEST_MODEL)
    config = index.pretrained_config("t", index.index_record(folder))
    assert config.metrics == {"test_error": 1.5} and config.preprocessing == "Normalization"
    assert [f.name for f in config.files] == ["config.json", "metadata.json"]  # the metadata vouches for the rest
    registry.register_model(builders.nin_mnist, name=TEST_MODEL, dataset="mnist", pretrained=[config])
    yield model, folder
    registry.unregister_model(TEST_MODEL)


def _same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


# --------------------------------------------------------------------------- registry


def test_list_models_patterns_and_pretrained_filter():
    names = zoo.list_models()
    assert names == sorted(names)
    for name in ("nin_cifar10", "nin_cifar100", "nin_svhn", "nin_mnist", "nin_fashion_mnist", "nin_cifar10_bn",
                 "maxout_mnist", "maxout_conv_mnist", "maxout_cifar10", "nin_fc_cifar10", "nin_fc_dropout_cifar10"):
        assert name in names
    assert zoo.list_models("nin_cifar10*") == [n for n in names if n.startswith("nin_cifar10")]
    assert zoo.list_models("svhn") == [n for n in names if "svhn" in n]
    with_weights, without = zoo.list_models(pretrained=True), zoo.list_models(pretrained=False)
    assert with_weights == sorted(with_weights) and "nin_cifar10.caffe" in with_weights
    bases = {registry.split_name(name)[0] for name in with_weights}
    assert all(registry.split_name(name)[1] for name in with_weights)  # weight sets are name.tag
    assert sorted(bases | set(without)) == names and not bases & set(without)
    assert "nin_cifar100" in without and "nin_svhn" in without
    assert zoo.list_models("nin_mnist", pretrained=True) == [
        f"nin_mnist.{tag}" for tag in sorted(zoo.get_model_entry("nin_mnist").pretrained)]


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="Did you mean 'nin_cifar10'"):
        zoo.create_model("nin_cifr10")
    with pytest.raises(ValueError, match="Unknown zoo model"):
        zoo.create_model("resnet50")


def test_models_without_weights_say_so():
    with pytest.raises(ValueError, match="no published weights"):
        zoo.create_model("nin_cifar100", pretrained=True)


def test_register_rejects_duplicates_and_dotted_names():
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model(builders.nin_mnist, name="nin_mnist", dataset="mnist")
    with pytest.raises(ValueError, match="identifier"):
        registry.register_model(builders.nin_mnist, name="nin.mnist", dataset="mnist")


def test_create_model_arguments_reach_the_builder():
    model = zoo.create_model("nin_mnist", classes=7, input_shape=(32, 32, 1))
    assert model.input_shape == (None, 32, 32, 1) and model.output_shape == (None, 7)
    body = zoo.create_model("nin_mnist", include_top=False)
    assert body.layers[-1].name == "dropout2"
    bn = zoo.create_model("nin_mnist_bn")
    assert len(bn.get_layer("mlpconv1").weights) > len(model.get_layer("mlpconv1").weights)



def test_the_architecture_travels_in_the_model_through_clone_model_and_a_keras_file(tmp_path):
    """``save_preset`` reads the architecture from the model itself: a clone and a reloaded
    .keras copy record the same name and arguments, and the preset rebuilt from the clone's
    config.json takes the clone's weights."""
    from nin_keras.zoo.architectures import architecture_of

    model = zoo.create_model("nin_mnist", classes=7, input_shape=(32, 32, 1))
    recorded = ("nin_mnist", {"classes": 7, "input_shape": [32, 32, 1], "include_top": True})
    assert architecture_of(model) == recorded
    clone = keras.models.clone_model(model)
    assert architecture_of(clone) == recorded and clone is not model
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert architecture_of(reloaded) == recorded and _same_weights(reloaded, model)
    zoo.save_preset(clone, tmp_path / "preset", {"dataset": "mnist"})
    assert json.loads((tmp_path / "preset" / "config.json").read_text())["kwargs"] == recorded[1]
    assert _same_weights(zoo.ImageClassifier.from_preset(tmp_path / "preset").backbone, clone)
    assert architecture_of(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])) is None
    with pytest.raises(ValueError, match="Unknown zoo model 'no_such_net'"):
        type(model).from_config({**model.get_config(), "architecture": "no_such_net"})


# --------------------------------------------------------------------------- presets


def test_save_load_round_trip_with_preprocessing(tmp_path):
    from nin_keras.zoo.architectures import architecture_of

    model = zoo.create_model("nin_mnist", dropout=0.3)
    folder = zoo.save_preset(model, tmp_path / "p", {"dataset": "mnist", "class_names": list("0123456789"), "license": "CC0"}, _preprocessing())
    files = {p.name for p in folder.iterdir()}
    assert files == {"config.json", "metadata.json", "model.weights.h5", "preprocessing.weights.h5"}
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["params"] == sum(int(np.prod(w.shape)) for w in model.weights)
    for name, info in meta["files"].items():
        assert info["sha256"] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert info["size"] == (folder / name).stat().st_size
    assert meta["layers"]["mlpconv1"][0] == [5, 5, 1, 64]
    assert json.loads((folder / "config.json").read_text())["kwargs"]["dropout"] == 0.3

    classifier = zoo.ImageClassifier.from_preset(folder)
    assert architecture_of(classifier.backbone) == ("nin_mnist", {"dropout": 0.3, "include_top": True})
    assert classifier.class_names == list("0123456789") and classifier.metadata["license"] == "CC0"
    assert _same_weights(classifier.backbone, model)
    images = _images()
    expected = model.predict(_numpy_preprocess(images).astype("float32"), verbose=0)
    np.testing.assert_allclose(classifier.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    inference = zoo.ImageClassifier.from_preset(folder, input_dtype="uint8")
    assert inference.input.dtype == "uint8"
    np.testing.assert_allclose(inference.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_fitted_zca_statistics_travel_with_the_preset(tmp_path):
    from nin_keras.layers import GlobalContrastNormalization, ZCAWhitening

    images = np.random.default_rng(1).integers(0, 256, (64, 8, 8, 3)).astype("float32")
    gcn, zca = GlobalContrastNormalization(scale=55.0), ZCAWhitening(filter_bias=0.1)
    zca.adapt(gcn(images))
    model = zoo.create_model("nin_cifar10", input_shape=(8, 8, 3))
    preset = zoo.ImageClassifier.from_preset(zoo.save_preset(model, tmp_path / "zca", {"dataset": "cifar10"}, [gcn, zca]))
    assert [type(layer) for layer in preset.preprocessing] == [GlobalContrastNormalization, ZCAWhitening]
    assert _same_weights(preset.preprocessing[1], zca)
    expected = model.predict(zca(gcn(images[:4])), verbose=0)
    np.testing.assert_allclose(preset.predict(images[:4].astype("uint8"), verbose=0), expected, atol=1e-6)


def test_equal_preprocessing_is_saved_as_byte_identical_files(tmp_path):
    """Presets fitted on the same data can share one whitening file (git stores equal files once;
    a mirror or cache could key them by the sha256 the metadata lists): the stack's name used to be
    Keras's process-wide counter ("sequential_1"), the only difference between nin_cifar10.caffe's
    and nin_cifar10.modern's 19 MB whitening files, whose arrays are equal."""
    network = zoo.create_model("nin_mnist")
    for name in ("a", "b"):  # the layers' own names are the recipe's (here fixed: they are in the file too)
        layers = [keras.layers.Normalization(mean=MEAN, variance=STD**2, name="normalization")]
        zoo.save_preset(network, tmp_path / name, {"dataset": "mnist"}, layers)
    first, second = ((tmp_path / name / "preprocessing.weights.h5").read_bytes() for name in ("a", "b"))
    assert first == second


def test_save_preset_needs_a_zoo_architecture(tmp_path):
    foreign = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="architecture"):
        zoo.save_preset(foreign, tmp_path / "f", {"dataset": "mnist"})
    with pytest.raises(ValueError, match="dataset"):
        zoo.save_preset(zoo.create_model("nin_mnist"), tmp_path / "g", {})


def test_an_existing_preset_is_replaced_only_with_overwrite_which_the_error_names_as_an_argument(tmp_path):
    from nin_keras.errors import Argument, OutputExistsError

    model = zoo.create_model("nin_mnist")
    zoo.save_preset(model, tmp_path / "p", {"dataset": "mnist"})
    with pytest.raises(OutputExistsError, match=r"already exists \(pass overwrite=True to replace it\)") as caught:
        zoo.save_preset(model, tmp_path / "p", {"dataset": "mnist"})
    assert isinstance(caught.value, FileExistsError)
    assert any(isinstance(part, Argument) and part.name == "overwrite" for part in caught.value.parts)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(PresetError, match="never replaced, even with overwrite=True") as caught:
        zoo.save_preset(model, tmp_path / "other", {"dataset": "mnist"}, overwrite=True)
    assert any(isinstance(part, Argument) for part in caught.value.parts)


@pytest.fixture(scope="module")
def saved_preset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("presets") / "good"
    zoo.save_preset(zoo.create_model("nin_mnist"), folder, {"dataset": "mnist"}, _preprocessing())
    return folder


def _broken_copy(saved_preset, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(saved_preset, folder)
    return folder


def _edit_json(path, edit):
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_config_with_other_classes_fails_naming_the_layer(saved_preset, tmp_path):
    folder = _broken_copy(saved_preset, tmp_path)
    _edit_json(folder / "config.json", lambda c: c["kwargs"].update(classes=7))
    with pytest.raises(WeightsMismatchError, match="mlpconv3"):
        preset_loader.read_preset(folder)


@pytest.mark.parametrize(
    "breakage, error, words",
    [
        (lambda f: (f / "config.json").write_text("{not json"), PresetError, "not valid JSON"),
        (lambda f: (f / "model.weights.h5").unlink(), PresetError, "no model.weights.h5"),
        (lambda f: (f / "metadata.json").unlink(), PresetError, "no metadata.json"),
        (lambda f: (f / "preprocessing.weights.h5").write_bytes(b"x"), PresetError, "preprocessing.weights.h5 is altered"),
        (lambda f: _edit_json(f / "config.json", lambda c: c.update(architecture="nin_mnst")), PresetError, "Did you mean 'nin_mnist'"),
        (lambda f: _edit_json(f / "config.json", lambda c: c["kwargs"].update(classes="ten")), PresetError, "cannot build"),
        (lambda f: _edit_json(f / "config.json", lambda c: c.update(format_version=99)), PresetError, "format_version"),
        (lambda f: _edit_json(f / "config.json", lambda c: c["kwargs"].update(weights="/etc/x.weights.h5")), PresetError, "weights"),
        (lambda f: (f / "config.json").write_text("[" * 100_000), PresetError, "not valid JSON"),
        (lambda f: _edit_json(f / "metadata.json", lambda m: m["preprocessing"][0].update(class_name="NoSuchLayer")), PresetError, "NoSuchLayer"),
    ],
    ids=["bad-json", "no-weights", "no-metadata", "altered-file", "unknown-architecture", "bad-kwargs", "version",
         "weights-path", "deep-json", "unknown-layer"],
)
def test_broken_presets_name_the_problem(saved_preset, tmp_path, breakage, error, words):
    folder = _broken_copy(saved_preset, tmp_path)
    breakage(folder)
    with pytest.raises(error, match=words):
        preset_loader.read_preset(folder)


def test_lambda_preprocessing_is_refused_in_safe_mode(saved_preset, tmp_path):
    folder = _broken_copy(saved_preset, tmp_path)
    lambda_spec = keras.saving.serialize_keras_object(keras.layers.Lambda(lambda x: x * 2))
    _edit_json(folder / "metadata.json", lambda m: m.update(preprocessing=[lambda_spec]))
    with pytest.raises(PresetError, match="Lambda"):
        preset_loader.read_preset(folder)


def test_preprocessing_naming_arbitrary_code_is_refused(saved_preset, tmp_path):
    folder = _broken_copy(saved_preset, tmp_path)
    marker = tmp_path / "ran"
    spec = {"module": "subprocess", "class_name": "Popen", "config": {"args": ["touch", str(marker)]}, "registered_name": None}
    _edit_json(folder / "metadata.json", lambda m: m.update(preprocessing=[spec]))
    with pytest.raises(PresetError, match="Popen"):
        preset_loader.read_preset(folder)
    assert not marker.exists()


def test_missing_local_folder_is_a_preset_error(tmp_path):
    with pytest.raises(PresetError, match="does not exist"):
        preset_loader.read_preset(str(tmp_path / "nowhere") + os.sep)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_config_like = st.fixed_dictionaries(
    {},
    optional={
        "format": st.sampled_from([preset_format.FORMAT, "keras", 1]),
        "format_version": st.sampled_from([1, 2, True, "1"]),
        "architecture": st.sampled_from(["nin_mnist", "nin_mnist ", None, 3]) | st.text(max_size=12),
        "kwargs": _json,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=_json | _config_like)
def test_fuzz_config_parser_accepts_or_raises_preset_error(config):
    try:
        architecture, kwargs = preset_format.parse_config(config)
    except PresetError:
        return
    assert architecture in zoo.list_models() and isinstance(kwargs, dict)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metadata=_json | st.fixed_dictionaries({"dataset": st.just("mnist"), "input_shape": st.just([28, 28, 1]), "files": _json, "layers": _json}))
def test_fuzz_metadata_parser_accepts_or_raises_preset_error(metadata):
    try:
        preset_format.parse_metadata(metadata)
    except PresetError:
        return
    assert isinstance(metadata["files"], dict) and isinstance(metadata["layers"], dict)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=64) | _json.map(lambda v: json.dumps(v).encode()))
def test_fuzz_config_file_bytes(raw):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_bytes(raw)
        try:
            preset_format.parse_config(preset_format.read_preset_json(Path(tmp), "config.json"))
        except PresetError:
            pass


# --------------------------------------------------------------------------- pretrained and fine-tuning


def test_pretrained_loads_the_published_weights(published):
    model, _ = published
    loaded = zoo.create_model(TEST_MODEL, pretrained=True)
    assert _same_weights(loaded, model)
    assert _same_weights(zoo.create_model(f"{TEST_MODEL}.t", pretrained=True), model)
    preset = zoo.ImageClassifier.from_preset(f"{TEST_MODEL}.t")
    np.testing.assert_allclose(
        preset.predict(_images(), verbose=0),
        model.predict(_numpy_preprocess(_images()).astype("float32"), verbose=0),
        rtol=1e-5, atol=1e-6,
    )
    with pytest.raises(ValueError, match="no weights tagged 'x'"):
        zoo.create_model(TEST_MODEL, pretrained="x")


def test_new_classes_keep_the_body_and_reset_only_the_classifier(published):
    model, _ = published
    tuned = zoo.create_model(TEST_MODEL, pretrained=True, classes=5)
    assert tuned.output_shape == (None, 5)
    for name in ("mlpconv1", "mlpconv2"):
        assert _same_weights(tuned.get_layer(name), model.get_layer(name))
    new, old = tuned.get_layer("mlpconv3").get_weights(), model.get_layer("mlpconv3").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(new[:4], old[:4]))  # the 3x3 and first 1x1 convolutions
    assert new[4].shape == (1, 1, 96, 5) and new[5].shape == (5,)


def test_include_top_false_reuses_the_body(published):
    model, _ = published
    body = zoo.create_model(TEST_MODEL, pretrained=True, include_top=False, input_shape=(40, 40, 1))
    assert body.layers[-1].name == "dropout2" and body.input_shape == (None, 40, 40, 1)
    for name in ("mlpconv1", "mlpconv2"):
        assert _same_weights(body.get_layer(name), model.get_layer(name))


def test_mismatched_architecture_fails_naming_the_layer(published):
    with pytest.raises(WeightsMismatchError, match="mlpconv1.*\\(5, 5, 3, 64\\).*\\(5, 5, 1, 64\\)"):
        zoo.create_model(TEST_MODEL, pretrained=True, input_shape=(28, 28, 3))
    with pytest.raises(WeightsMismatchError, match="mlpconv1"):
        zoo.create_model(TEST_MODEL, pretrained=True, batch_norm=True)


def test_pretrained_offline_without_cache_is_a_clear_error(published, monkeypatch, tmp_path):
    monkeypatch.setenv(download.ENV_HOME, str(tmp_path / "empty"))
    monkeypatch.setenv(download.ENV_OFFLINE, "1")
    with pytest.raises(DownloadError, match="offline"):
        zoo.create_model(TEST_MODEL, pretrained=True)


class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def loopback(tmp_path):
    """A static HTTP server on 127.0.0.1 serving ``tmp_path / "www"``."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietFileHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_preset_from_url(saved_preset, loopback, tmp_path):
    root, url = loopback
    shutil.copytree(saved_preset, root / "good")
    preset = preset_loader.read_preset(f"{url}/good/")
    assert _same_weights(preset.model, zoo.ImageClassifier.from_preset(saved_preset).backbone)
    assert preset.path.is_relative_to(tmp_path / "cache")


_FRESH_PROCESS = r"""
import json, sys
import numpy as np
from nin_keras.zoo import create_model, download, registry
from nin_keras import models as builders
spec = json.loads(sys.argv[1])
download.BUNDLED_WEIGHTS_DIR = download.Path(spec["bundled"])  # empty: force the download path
model = create_model("nin_mnist", pretrained=True)
np.save(spec["out"], model.predict(np.load(spec["inputs"]), verbose=0))
"""


def test_create_model_pretrained_in_a_fresh_process_downloads_verifies_and_loads(loopback, tmp_path):
    """The acceptance path: empty cache, mirror on the loopback server, nothing bundled."""
    root, url = loopback
    entry = registry.get_model_entry("nin_mnist")
    tag = entry.default_tag  # the published weights: serve the bundled copy from the loopback server
    shutil.copytree(download.BUNDLED_WEIGHTS_DIR / entry.preset_name(tag), root / entry.preset_name(tag))
    reference = zoo.ImageClassifier.from_preset(root / entry.preset_name(tag)).backbone
    inputs = _numpy_preprocess(_images(4)).astype("float32")
    np.save(tmp_path / "inputs.npy", inputs)
    (tmp_path / "empty").mkdir()
    spec = {"bundled": str(tmp_path / "empty"), "inputs": str(tmp_path / "inputs.npy"), "out": str(tmp_path / "out.npy")}
    cache = tmp_path / "fresh-cache"
    env = {**os.environ, download.ENV_HOME: str(cache), download.ENV_MIRROR: url, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(download.ENV_OFFLINE, None)
    result = subprocess.run([sys.executable, "-c", _FRESH_PROCESS, json.dumps(spec)], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Downloading {url}/nin_mnist.{tag}/model.weights.h5" in result.stderr
    for name in ("config.json", "metadata.json", "model.weights.h5"):
        assert (cache / f"nin_mnist.{tag}" / name).read_bytes() == (root / f"nin_mnist.{tag}" / name).read_bytes()
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), reference.predict(inputs, verbose=0), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- cards and CLI


def test_cards_tabulate_counts_and_say_which_models_have_no_weights(published):
    bare = f"{TEST_MODEL}_bare"
    registry.register_model(builders.nin_mnist, name=bare, dataset="mnist", paper_error=0.47)
    try:
        text = cards.render([bare, "nin_svhn", TEST_MODEL], {f"{TEST_MODEL}.t": index.index_record(published[1])})
    finally:
        registry.unregister_model(bare)
    params = sum(int(np.prod(w.shape)) for w in zoo.create_model("nin_mnist").weights)
    assert f"| `{bare}` | none (not trained here) | — | 0.47% | {params:,} |" in text
    assert "| `nin_svhn` | none (no data here) | — | 2.35% |" in text
    size = sum(p.stat().st_size for p in published[1].iterdir())
    assert f"| `{TEST_MODEL}.t` | test | 1.50% |" in text and f"{size / 1e6:.1f} MB" in text


def test_weights_index_and_zoo_readme_match_the_published_folders():
    """The index is recomputed from the folders (hashes, sizes, metrics) and the README from both."""
    assert publish.check() == [], "run python -m nin_keras.zoo.publish --index"
    text = cards.README.read_text()
    for name in zoo.list_models():
        assert f"`{name}`" in text
    for preset in zoo.list_models(pretrained=True):
        assert f"`{preset}`" in text


def test_cli_models_prints_counts_and_tags(capsys):
    assert cli.main(["models", "nin_mnist"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {"nin_mnist", "nin_mnist_bn"}
    params = sum(int(np.prod(w.shape)) for w in zoo.create_model("nin_mnist").weights)
    assert f"{params:,}" in rows["nin_mnist"] and "0.47%" in rows["nin_mnist"]
    assert cli.main(["models", "no_such_model"]) == 1
    capsys.readouterr()
    assert cli.main(["models", "mnist", "--pretrained"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:-1]
    assert [row.split()[0] for row in rows] == zoo.list_models("mnist", pretrained=True)
    default = f"nin_mnist.{zoo.get_model_entry('nin_mnist').default_tag}"
    assert any(row.startswith(f"{default} *") for row in rows)


PUBLISHED_PRESETS = zoo.list_models(pretrained=True)


@pytest.mark.slow
@pytest.mark.parametrize("preset", PUBLISHED_PRESETS)
def test_published_weights_reach_their_recorded_accuracy(preset):
    """Acceptance: each published weight set, with the zoo's own preprocessing, on its whole test split."""
    from nin_keras.errors import DataError
    from nin_keras.train import evaluate_preset

    name, tag = preset.split(".")
    published = zoo.get_model_entry(name).pretrained[tag].metrics["test_error"]
    try:
        result = evaluate_preset(preset)
    except (DataError, FileNotFoundError) as err:  # ../shared or the Debian package absent
        pytest.skip(f"test split not available: {err}")
    assert result["examples"] == 10_000
    assert abs(result["error_percent"] - published) <= 0.02, (result["error_percent"], published)


REPO = Path(__file__).resolve().parents[1]
RUN_CARDS = sorted((REPO / "zoo" / "runs").glob("*/README.md"))


def _markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """``(header cells, body rows' cells)`` of each table in a Markdown text."""
    def cells(row: str) -> list[str]:
        return [cell.strip() for cell in row.strip().strip("|").split("|")]

    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if i and line.startswith("|---"):
            body = []
            for row in lines[i + 1:]:
                if not row.startswith("|"):
                    break
                body.append(cells(row))
            tables.append((cells(lines[i - 1]), body))
    return tables


def _documented_eval_figures() -> dict[str, list[tuple[str, str, float]]]:
    """Each ``nin-keras eval ... --data ...`` command in the last column of a results table of the
    README or a model card (or ``nin-keras compact ... --out DIR, then nin-keras eval DIR ...``: a
    preset made first) -> ``(document, "error" or "accuracy", figure %)`` of each row giving it.
    The figure is the row's first number in the table's first column whose header names an error,
    an accuracy or a test split; its kind, that header's."""
    import re

    figures: dict[str, list[tuple[str, str, float]]] = {}
    for document in [REPO / "README.md", *RUN_CARDS]:
        for header, body in _markdown_tables(document.read_text()):
            column = next((i for i, name in enumerate(header) if re.search("error|accuracy|test", name)), None)
            for cells in body if column is not None else ():
                steps = re.fullmatch(r"(`nin-keras compact [^`]+ --out DIR`, then )?`(nin-keras eval [^`]+)`", cells[-1])
                if steps and "--data" in steps[2]:
                    kind = "error" if "error" in header[column] else "accuracy"
                    figure = float(cells[column].lstrip("*").split("%")[0])
                    figures.setdefault(cells[-1].replace("`", ""), []).append(
                        (document.relative_to(REPO).as_posix(), kind, figure))
    return figures


@pytest.mark.slow
@pytest.mark.parametrize("command, figures", sorted(_documented_eval_figures().items()))
def test_documented_eval_commands_print_their_figures(command, figures, capsys, tmp_path, monkeypatch):
    """Each results-table command of the README and the model cards (TTA rows included), run
    exactly as written (in a scratch folder: ``DIR`` is a folder there), prints every figure the
    documents give for it."""
    import re
    import shlex

    monkeypatch.chdir(tmp_path)
    for step in command.split(", then "):
        capsys.readouterr()
        assert cli.main(shlex.split(step)[1:]) == 0, step
    out = capsys.readouterr().out
    for document, kind, figure in figures:
        printed = re.search(rf"{kind} ([0-9.]+)%", out)
        assert printed and float(printed.group(1)) == figure, (document, command, kind, printed)


PER_CLASS_HEADER = r"\| class \| (test|training) images \| accuracy \| most often taken for \|"


def _documented_per_class_tables() -> list[tuple[str, str, str, list[list[str]]]]:
    """Each per-class table of the README and the model cards: ``(document, command, split
    ("test" or "training", from the header), rows)``, the command the last ``nin-keras eval ...
    --per-class`` cited before the table."""
    import re

    tables = []
    for document in [REPO / "README.md", *RUN_CARDS]:
        text = document.read_text()
        for table in re.finditer(PER_CLASS_HEADER + r"\n\|[-|]+\|\n((?:\|.*\|\n)+)", text):
            command = re.findall(r"`(nin-keras eval [^`]*--per-class)`", text[:table.start()])[-1]
            rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.group(2).splitlines()]
            tables.append((document.relative_to(REPO).as_posix(), command, table.group(1), rows))
    return tables


def test_per_class_tables_cite_a_tagged_command_and_add_up_to_its_accuracy():
    """A card's per-class table names the weights by tag (it stays true when the default moves), is
    of the split its command measures, and adds up: its accuracies average to the figure the
    documents give for the same command without ``--per-class``; a test-split table's images are
    the whole test split and average to the published accuracy."""
    tables = _documented_per_class_tables()
    figures = _documented_eval_figures()
    assert {(document, split) for document, _, split, _ in tables} >= {
        ("zoo/runs/nin_cifar10_standardized/README.md", "test"),
        ("zoo/runs/nin_cifar10_standardized/README.md", "training"),
        ("zoo/runs/nin_fashion_mnist_long/README.md", "test")}
    for document, command, split, rows in tables:
        preset = command.split()[2]
        images = [int(row[1].replace(",", "")) for row in rows]
        correct = sum(n * float(row[2].rstrip("%")) / 100 for n, row in zip(images, rows))
        accuracy = round(100 * correct / sum(images), 2)
        documented = [figure for _, kind, figure in figures[command.removesuffix(" --per-class")]
                      if kind == "accuracy"]
        assert "." in preset and ("--split train" in command) == (split == "training"), (document, command)
        assert documented and all(figure == accuracy for figure in documented), (document, command, accuracy)
        if split == "test":
            _, config = registry.get_pretrained_config(preset)
            assert sum(images) == config.metrics.get("test_examples", 10000), (document, command)
            assert accuracy == config.metrics["test_accuracy"], (document, command)


@pytest.mark.slow
@pytest.mark.parametrize("table", _documented_per_class_tables(), ids=lambda table: table[1])
def test_documented_per_class_tables_are_what_their_command_prints(table, capsys):
    """Each per-class table, its command run exactly as written: every row is a line it prints."""
    import shlex

    document, command, _, rows = table
    assert cli.main(shlex.split(command)[1:]) == 0
    printed = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    for name, images, accuracy, taken_for in rows:
        assert " ".join([name, images.replace(",", ""), accuracy, taken_for]) in printed, (document, name)


def test_every_model_cards_eval_command_names_its_tag():
    """A card's commands stay true when the default moves: each names the tag (``name.tag``), and a
    card calls its weights the default only while the registry's best-tag rule makes them so."""
    import re

    cards = {(document, command) for command, figures in _documented_eval_figures().items()
             for document, _, _ in figures if document != "README.md"}
    assert len({document for document, _ in cards}) >= 4
    for document, command in cards:
        assert "." in command.split()[2], (document, command)
    for card in RUN_CARDS:
        text = card.read_text()
        for name, tag in re.findall(r"`(\w+)\.(\w+)` \(the default", text) + re.findall(
                r"# Model card: `(\w+)\.(\w+)`\n\nThe default `\w+` weights \(", text):
            assert zoo.get_model_entry(name).default_tag == tag, (card, f"{name}.{tag}")


def test_each_model_cards_reproduce_block_retraces_its_published_weights():
    """A card's "Reproduce" block trains the recipe whose run folder the card sits in, publishes
    that folder's preset under the tag the card evaluates, and that tag's weights say they came
    from that recipe and that publish command: a renamed recipe, folder or tag breaks the chain."""
    import json
    import re
    import shlex

    blocks = {card: re.search(r"## Reproduce\n```bash\n(.*?)```", card.read_text(), re.S) for card in RUN_CARDS}
    blocks = {card: block.group(1) for card, block in blocks.items() if block}
    assert len(blocks) >= 4
    for card, block in blocks.items():
        lines = [shlex.split(line, comments=True) for line in block.strip().splitlines()]
        train, publish, evaluate = lines
        run = card.parent.relative_to(REPO).as_posix()
        assert train[:2] == ["bash", "scripts/train_in_background.sh"] and f"zoo/runs/{train[2]}" == run, card
        assert (REPO / "zoo" / "recipes" / f"{train[2]}.json").is_file(), card
        assert publish[:3] == ["python", "-m", "nin_keras.zoo.publish"] and publish[3] == f"{run}/preset", card
        tag = publish[4]
        assert evaluate[:3] == ["nin-keras", "eval", tag], card
        registry.get_pretrained_config(tag)  # registered
        metadata = json.loads((REPO / "zoo" / "weights" / tag / "metadata.json").read_text())
        assert metadata["recipe"]["name"] == train[2], (card, tag)
        assert shlex.split(metadata["published_by"])[:5] == publish[:5], (card, tag)


def test_bundled_weights_load_offline_and_fine_tune(monkeypatch):
    """Every published tag ships in the package: it loads with the network forbidden."""
    monkeypatch.setenv(download.ENV_OFFLINE, "1")
    published_presets = zoo.list_models(pretrained=True)
    if not published_presets:
        pytest.skip("no published weights registered")
    for preset_name in published_presets:
        assert (download.BUNDLED_WEIGHTS_DIR / preset_name).is_dir()
    name = registry.split_name(published_presets[0])[0]
    entry = zoo.get_model_entry(name)
    preset = preset_loader.read_preset(name)
    assert preset.path == download.BUNDLED_WEIGHTS_DIR / entry.preset_name(entry.default_tag)
    classes = preset.model.output_shape[-1] + 3
    tuned = zoo.create_model(name, pretrained=True, classes=classes)
    assert tuned.output_shape[-1] == classes
    body = [layer.name for layer in zoo.create_model(name, include_top=False).layers if layer.weights]
    for layer in body:
        assert _same_weights(tuned.get_layer(layer), preset.model.get_layer(layer))


# --------------------------------------------------------------------------- tags are weights


@pytest.mark.parametrize("preset", PUBLISHED_PRESETS)
def test_every_tag_is_weights_for_the_architecture_of_its_name(preset):
    """``create_model(name)`` and ``create_model(name.tag, pretrained=True)`` build one network;
    the index's and the metadata's recorded numbers are recomputed from the real model and files."""
    name, tag = registry.split_name(preset)
    plain = zoo.create_model(name)
    loaded = preset_loader.read_preset(preset)
    assert loaded.architecture == name and not {"batch_norm", "classes"} & set(loaded.kwargs)
    assert [w.shape for w in loaded.model.weights] == [w.shape for w in plain.weights]
    assert loaded.model.input_shape == plain.input_shape
    assert loaded.metadata["params"] == plain.count_params()
    record = index.read_index()[preset]
    assert record["size"] == sum(p.stat().st_size for p in loaded.path.iterdir())
    assert record["metrics"] == {k: v for k, v in loaded.metadata["metrics"].items()}


def test_default_tag_is_the_most_accurate_published_weight_set():
    def config(tag, accuracy=None):
        return pretrained.PretrainedConfig(tag, (), 0, "mnist", "", {} if accuracy is None else {"test_accuracy": accuracy},
                                           "", None, "", "")

    assert pretrained.best_tag({"a": config("a", 90.0), "b": config("b", 91.5), "c": config("c", 91.5)}) == "b"
    assert pretrained.best_tag({"a": config("a"), "b": config("b")}) == "a"  # no metrics: the first
    assert pretrained.best_tag({}) is None
    entry = zoo.get_model_entry("nin_cifar10")
    best = max(entry.pretrained.values(), key=lambda c: c.metrics["test_accuracy"])
    assert entry.default_tag == best.tag
    assert preset_loader.read_preset("nin_cifar10").path.name == f"nin_cifar10.{best.tag}"


def test_build_model_is_a_deprecated_spelling_of_create_model():
    with pytest.warns(DeprecationWarning, match="create_model"):
        model = zoo.build_model("nin_mnist")
    assert model.count_params() == zoo.create_model("nin_mnist").count_params()


def test_loading_a_registered_preset_hashes_each_file_once(monkeypatch):
    hashed = []
    real = preset_loader.sha256_file

    def counting(path, *args, **kwargs):
        hashed.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(preset_loader, "sha256_file", counting)
    monkeypatch.setattr(download, "sha256_file", counting)
    preset_loader.read_preset("nin_mnist")
    assert sorted(n for n in hashed if n.endswith(".h5")) == ["model.weights.h5", "preprocessing.weights.h5"]


def test_altered_bundled_metadata_breaks_the_chain_of_trust(tmp_path, monkeypatch):
    """The index's sha256 of metadata.json is the anchor: a bundled copy whose metadata was edited
    (here: its recorded test error) is not used, and offline there is no other copy."""
    name = zoo.list_models("nin_mnist", pretrained=True)[0]
    bundled = tmp_path / "bundled"
    shutil.copytree(download.BUNDLED_WEIGHTS_DIR / name, bundled / name)
    metadata = json.loads((bundled / name / "metadata.json").read_text())
    metadata["metrics"]["test_error"] = 0.0
    (bundled / name / "metadata.json").write_text(json.dumps(metadata))
    monkeypatch.setattr(download, "BUNDLED_WEIGHTS_DIR", bundled)
    monkeypatch.setenv(download.ENV_OFFLINE, "1")
    with pytest.warns(UserWarning, match="altered"), pytest.raises(DownloadError):
        preset_loader.read_preset(name)


@pytest.fixture
def bn_preset(tmp_path):
    """A batch-normalized nin_mnist with non-trivial BN statistics, saved as a preset."""
    keras.utils.set_random_seed(3)
    model = zoo.create_model("nin_mnist_bn")
    for layer in model.layers:
        for norm in getattr(layer, "norms", ()):
            shape = norm.moving_mean.shape
            norm.moving_mean.assign(np.random.default_rng(1).normal(0, 0.3, shape))
            norm.moving_variance.assign(np.random.default_rng(2).uniform(0.5, 2.0, shape))
            norm.gamma.assign(np.random.default_rng(4).uniform(0.5, 1.5, shape))
    folder = tmp_path / "trained"
    zoo.save_preset(model, folder, {"dataset": "mnist", "source": "test", "metrics": {"test_accuracy": 12.0}},
                    _preprocessing(), architecture="nin_mnist", architecture_kwargs={"batch_norm": True, "dropout": 0.25})
    return model, folder


def test_publish_folds_batch_norm_into_the_plain_architecture_and_indexes_it(bn_preset, tmp_path):
    model, folder = bn_preset
    weights_dir = tmp_path / "weights"
    out = publish.publish(folder, "nin_mnist.folded", weights_dir=weights_dir, command="publish test")
    loaded = preset_loader.read_preset(out)
    assert loaded.architecture == "nin_mnist" and loaded.kwargs == {}
    assert loaded.model.count_params() == zoo.create_model("nin_mnist").count_params()
    source = preset_loader.read_preset(folder)
    images = _images(8)
    np.testing.assert_allclose(zoo.ImageClassifier.from_preset(out).predict(images, verbose=0),
                               zoo.ImageClassifier.from_preset(folder).predict(images, verbose=0), atol=1e-5)
    assert loaded.metadata["folded"]["from"]["kwargs"]["batch_norm"] is True
    assert loaded.metadata["published_by"] == "publish test"
    assert index.read_index(weights_dir / "index.json") == index.build_index(weights_dir)["presets"]
    assert publish.check(weights_dir) == []
    (out / "metadata.json").write_text((out / "metadata.json").read_text().replace("publish test", "edited"))
    assert publish.check(weights_dir) != []  # the index no longer matches the folder
    with pytest.raises(FileExistsError):
        publish.publish(folder, "nin_mnist.folded", weights_dir=weights_dir)


def test_publish_refuses_weights_of_another_architecture_and_bad_names(bn_preset, tmp_path):
    _, folder = bn_preset
    with pytest.raises(ValueError, match="<model>.<tag>"):
        publish.publish(folder, "nin_mnist", weights_dir=tmp_path / "w")
    with pytest.raises(PresetError, match="trained on 'mnist'"):
        publish.publish(folder, "nin_cifar10.x", weights_dir=tmp_path / "w")
    with pytest.raises(WeightsMismatchError):
        publish.publish(folder, "maxout_mnist.x", weights_dir=tmp_path / "w")
    assert not (tmp_path / "w").exists()  # nothing half-written


def test_published_presets_with_equal_whitening_share_one_file():
    """Issue 30: presets whose fitted preprocessing arrays are equal carry byte-identical files (git
    and the cache store them once): compared array by array, independently of the files' bytes.
    nin_cifar10.caffe and .modern were fitted on the same split; their files differed only in
    Keras's per-process stack name ('sequential' / 'sequential_1')."""
    import h5py

    def arrays(path: Path) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with h5py.File(path, "r") as file:
            file.visititems(lambda name, item: found.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset)
                            else None)
        return found

    # The whitening matrices (2-D arrays, 19 MB each for CIFAR's dense ZCA); a Rescaling-only file
    # holds nothing worth sharing.
    contents = {path: arrays(path) for path in sorted(index.WEIGHTS_DIR.glob("*/preprocessing.weights.h5"))}
    files = [path for path, found in contents.items() if any(array.ndim == 2 for array in found.values())]
    equal_pairs = 0
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            same = contents[a].keys() == contents[b].keys() and all(
                contents[a][k].dtype == contents[b][k].dtype and np.array_equal(contents[a][k], contents[b][k])
                for k in contents[a])
            if same:
                equal_pairs += 1
                assert a.read_bytes() == b.read_bytes(), f"{a.parent.name} and {b.parent.name} hold equal arrays in different files"
    assert equal_pairs >= 1  # caffe and modern
