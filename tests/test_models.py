"""nin_keras.models: parameter counts, layer names, builder arguments, save/load round trips, training."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from nin_keras import layers as nl
from nin_keras import models
from nin_keras.errors import WeightsMismatchError

BUILDERS = {
    name: getattr(models, name)
    for name in (
        "nin_cifar10", "nin_cifar100", "nin_svhn", "nin_mnist", "nin_fashion_mnist",
        "maxout_mnist", "maxout_conv_mnist", "maxout_cifar10", "nin_fc_cifar10", "nin_fc_dropout_cifar10",
        "min_cifar10",
    )
}
# Variants exercising batch_norm, logits and dropout=0 through the shared builder code.
VARIANTS = {
    "nin_cifar10_bn_logits": lambda: models.nin_cifar10(batch_norm=True, classifier_activation=None, dropout=0.0),
    "maxout_mnist_bn": lambda: models.maxout_mnist(batch_norm=True),
    "min_cifar10_bn": lambda: models.min_cifar10(batch_norm=True),
}


def _wrap(layer, input_shape):
    """A one-layer functional model, so a bare layer goes through model.save like an architecture."""
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, layer(inputs), name=f"wrapped_{type(layer).__name__.lower()}")


# name -> zero-argument factory of a built model; every layer and every architecture appears here.
ROUND_TRIP_MODELS = {
    **BUILDERS,
    **VARIANTS,
    "layer_mlpconv": lambda: _wrap(nl.MLPConv((6, 5), 3, strides=2, linear_last=True, kernel_regularizer="l2"), (9, 9, 3)),
    "layer_mlpconv_bn": lambda: _wrap(nl.MLPConv((6, 5), 3, batch_norm=True), (8, 8, 3)),
    "layer_caffe_pooling_max": lambda: _wrap(nl.CaffePooling2D(3, 2), (9, 9, 3)),
    "layer_caffe_pooling_average": lambda: _wrap(nl.CaffePooling2D(3, 2, mode="average"), (9, 9, 3)),
    "layer_gap_head": lambda: _wrap(nl.GlobalAveragePoolingHead(), (5, 5, 4)),
    "layer_maxout": lambda: _wrap(nl.Maxout(4, 3, kernel_constraint=keras.constraints.MaxNorm(2.0, axis=0)), (6,)),
    "layer_maxout_conv": lambda: _wrap(nl.MaxoutConv2D(4, 2, 3, padding="same"), (7, 7, 3)),
    "layer_maxout_mlpconv": lambda: _wrap(nl.MaxoutMLPConv((4, 3), (1, 2), 3, strides=2), (9, 9, 3)),
    "layer_maxout_mlpconv_bn": lambda: _wrap(nl.MaxoutMLPConv((4, 3, 2), (2, 3, 2), 3, batch_norm=True), (8, 8, 3)),
    "layer_dropconnect": lambda: _wrap(nl.DropConnect(5, 0.5, activation="relu", seed=1), (6,)),
    "layer_dropconnect_gaussian": lambda: _wrap(nl.DropConnect(5, 0.5, inference="gaussian", seed=1), (6,)),
    "layer_stochastic_pooling": lambda: _wrap(nl.StochasticPooling2D(3, 2, seed=1), (9, 9, 3)),
}
TRAINABLE_LAYER_MODELS = ["layer_dropconnect", "layer_maxout", "layer_maxout_conv", "layer_maxout_mlpconv",
                          "layer_maxout_mlpconv_bn", "layer_mlpconv", "layer_mlpconv_bn"]


# ---------------------------------------------------------------- architecture facts
def test_parameter_counts_match_the_caffe_models():
    assert models.nin_cifar10().count_params() == 966_986
    assert models.nin_cifar100().count_params() == 984_356


def test_nin_cifar10_layout_is_the_caffe_layout():
    model = models.nin_cifar10()
    assert [layer.name for layer in model.layers[1:]] == [
        "mlpconv1", "pool1", "dropout1", "mlpconv2", "pool2", "dropout2", "mlpconv3", "head"
    ]
    blobs = [tuple(w.shape) for name in ("mlpconv1", "mlpconv2", "mlpconv3") for w in model.get_layer(name).weights]
    # Caffe blobs (out, in, kh, kw) conv1 192x3x5x5, cccp1 160x192, cccp2 96x160, conv2 192x96x5x5, ...
    caffe = [(192, 3, 5, 5), (160, 192, 1, 1), (96, 160, 1, 1), (192, 96, 5, 5), (192, 192, 1, 1),
             (192, 192, 1, 1), (192, 192, 3, 3), (192, 192, 1, 1), (10, 192, 1, 1)]
    assert blobs[0::2] == [(kh, kw, i, o) for o, i, kh, kw in caffe]
    assert blobs[1::2] == [(o,) for o, *_ in caffe]
    assert model.get_layer("pool1").mode == "max" and model.get_layer("pool2").mode == "average"
    assert model.get_layer("pool2").output.shape == (None, 8, 8, 192)
    assert not model.get_layer("mlpconv3").linear_last  # ReLU on cccp6, as in Caffe


def test_count_flops_nin_cifar10():
    # Reference sum over the Caffe layers: positions × kh × kw × in × out.
    convs = [(1024, 5 * 5 * 3 * 192), (1024, 192 * 160), (1024, 160 * 96),
             (256, 5 * 5 * 96 * 192), (256, 192 * 192), (256, 192 * 192),
             (64, 3 * 3 * 192 * 192), (64, 192 * 192), (64, 192 * 10)]
    expected = sum(p * k for p, k in convs)
    assert models.count_flops(models.nin_cifar10()) == expected
    assert 222e6 < expected < 223e6


# MIN (Chang & Chen 2015) as the authors' cnn_cifar_init_mnin.m builds it: per mlpconv, the k×k
# convolution's kernel, then (units, pieces) of its three convolutions.
MIN_CIFAR10 = [(5, [(192, 1), (160, 5), (96, 5)]), (5, [(192, 1), (192, 5), (192, 5)]), (3, [(192, 1), (192, 5), (10, 5)])]


def _min_hand_count(batch_norm):
    """Parameters of MIN CIFAR-10 from the widths: each convolution's kernel, plus per output
    channel (units × pieces) a bias, or BN's gamma, beta, moving mean and variance."""
    total, inputs = 0, 3
    for kernel, convs in MIN_CIFAR10:
        window = kernel * kernel
        for units, pieces in convs:
            channels = units * pieces
            total += window * inputs * channels + (4 if batch_norm else 1) * channels
            window, inputs = 1, units
    return total


def test_min_cifar10_parameter_count_is_the_hand_count_of_the_authors_widths():
    assert models.min_cifar10().count_params() == _min_hand_count(batch_norm=False) == 1_604_722
    assert models.min_cifar10(batch_norm=True).count_params() == _min_hand_count(batch_norm=True)


def test_min_cifar10_layout_shapes_and_cost():
    model = models.min_cifar10()
    assert [layer.name for layer in model.layers[1:]] == [
        "mlpconv1", "pool1", "dropout1", "mlpconv2", "pool2", "dropout2", "mlpconv3", "head"
    ]
    blocks = [model.get_layer(f"mlpconv{i}") for i in (1, 2, 3)]
    assert all(isinstance(block, nl.MaxoutMLPConv) for block in blocks)
    assert [list(zip(b.filters, b.pieces)) for b in blocks] == [convs for _, convs in MIN_CIFAR10]
    assert [tuple(block.kernels[0].shape[:2]) for block in blocks] == [(k, k) for k, _ in MIN_CIFAR10]
    assert [model.get_layer(name).mode for name in ("pool1", "pool2")] == ["average", "average"]
    assert [model.get_layer(name).rate for name in ("dropout1", "dropout2")] == [0.5, 0.5]
    assert [tuple(model.get_layer(name).output.shape) for name in ("mlpconv1", "pool1", "pool2", "mlpconv3")] == [
        (None, 32, 32, 96), (None, 16, 16, 96), (None, 8, 8, 192), (None, 8, 8, 10)
    ]
    assert model.output.shape == (None, 10)
    assert models.min_cifar10(include_top=False).output.shape == (None, 8, 8, 192)
    out = models.min_cifar10(classes=4, input_shape=(24, 24, 3))(np.zeros((2, 24, 24, 3), "float32"))
    assert tuple(out.shape) == (2, 4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out).sum(axis=1), 1.0, rtol=1e-5)
    # Multiply-adds: every piece of every convolution at its block's positions (32², 16², 8²).
    expected, inputs = 0, 3
    for (kernel, convs), positions in zip(MIN_CIFAR10, (32 * 32, 16 * 16, 8 * 8)):
        window = kernel * kernel
        for units, pieces in convs:
            expected += positions * window * inputs * units * pieces
            window, inputs = 1, units
    assert models.count_flops(model) == expected
    assert 496e6 < expected < 497e6


def test_min_cifar10_is_a_zoo_architecture_without_weights(capsys):
    from nin_keras import cli, zoo

    assert zoo.create_model("min_cifar10").count_params() == 1_604_722
    entry = zoo.get_model_entry("min_cifar10")
    assert entry.dataset == "cifar10" and entry.paper_error == pytest.approx(6.75) and not entry.pretrained
    assert "min_cifar10" in zoo.list_models(pretrained=False)
    assert cli.main(["models", "min_cifar10"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[1].split()[:3] == ["min_cifar10", "cifar10", "1,604,722"]


def test_min_classifier_is_not_fitted_in_closed_form():
    """The closed-form head fit takes the last convolution as a linear map of the hidden maps; MIN's
    last convolution is a max over pieces, so finetuning must not fit it that way."""
    from nin_keras.train import head_fit

    assert head_fit.supports(models.nin_cifar10()) and not head_fit.supports(models.min_cifar10())


def test_architecture_layouts():
    """Builders share one code path per family; check each family's distinguishing layers."""
    mlp = models.maxout_mnist()
    assert [layer.units * layer.pieces for layer in mlp.layers if isinstance(layer, nl.Maxout)] == [1200, 1200]
    assert mlp.get_layer("input_dropout").rate == pytest.approx(0.2)
    cifar = models.maxout_cifar10()
    assert [(l.filters, l.pieces) for l in cifar.layers if isinstance(l, nl.MaxoutConv2D)] == [(96, 2), (192, 2), (192, 2)]
    assert cifar.get_layer("flatten").output.shape == (None, 4 * 4 * 192)
    fc = models.nin_fc_dropout_cifar10()
    assert fc.get_layer("flatten").output.shape == (None, 8 * 8 * 10)
    assert fc.get_layer("fc_dropout").rate == pytest.approx(0.5)
    assert "fc_dropout" not in [layer.name for layer in models.nin_fc_cifar10().layers]
    # Same convolutional weights as the GAP model: the two differ only in the top.
    gap = models.nin_cifar10()
    assert [tuple(w.shape) for w in gap.weights] == [tuple(w.shape) for w in fc.weights][:-2]


def test_count_flops_of_maxout_and_dropconnect_layers():
    # Dense-like layers: in × out per position; maxout counts every piece.
    assert models.count_flops(models.maxout_mnist()) == 784 * 1200 + 240 * 1200 + 240 * 10
    inputs = keras.Input((3, 6))
    model = keras.Model(inputs, nl.DropConnect(4)(inputs))
    assert models.count_flops(model) == 3 * 6 * 4


def test_include_top_false_returns_body_features():
    body = models.nin_cifar10(include_top=False)
    assert body.output.shape == (None, 8, 8, 192)
    assert body.layers[-1].name == "dropout2"
    mnist = models.nin_mnist(include_top=False, dropout=0.0)
    assert mnist.layers[-1].name == "pool2" and mnist.output.shape == (None, 7, 7, 96)


def test_classes_input_shape_and_variable_size():
    model = models.nin_mnist(input_shape=(None, None, 1), classes=7, classifier_activation=None)
    out = model.predict(np.zeros((2, 40, 36, 1), "float32"), verbose=0)
    assert out.shape == (2, 7)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_classifier_stays_float32_under_mixed_bfloat16(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = BUILDERS[name]()
    finally:
        keras.config.set_dtype_policy(previous)
    body, classifier = model.layers[-2], model.layers[-1]
    assert body.compute_dtype == "bfloat16"  # the body computes in bfloat16 ...
    assert classifier.compute_dtype == "float32"  # ... the softmax in float32
    probabilities = model(np.random.default_rng(0).random((2, *model.input_shape[1:]), "float32"))
    assert keras.backend.standardize_dtype(probabilities.dtype) == "float32"
    # bfloat16 keeps 8 significant bits; float32 probabilities sum to 1 far more closely.
    np.testing.assert_allclose(np.sum(np.asarray(probabilities), axis=-1), 1.0, atol=1e-5)


def test_confidence_map_model_shares_weights():
    model = models.nin_cifar10()
    maps_model = models.confidence_map_model(model)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    maps, probs = (keras.ops.convert_to_numpy(t) for t in maps_model(x))
    assert maps.shape == (2, 8, 8, 10)
    e = np.exp(maps.mean(axis=(1, 2)) - maps.mean(axis=(1, 2)).max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    # Same variables, not copies.
    assert {id(v) for v in maps_model.weights} == {id(v) for v in model.weights}
    with pytest.raises(ValueError, match="`head`"):
        models.confidence_map_model(models.nin_cifar10(include_top=False))


def test_weights_argument(tmp_path):
    model = models.nin_mnist()
    path = tmp_path / "m.weights.h5"
    model.save_weights(path)
    loaded = models.nin_mnist(weights=path)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    with pytest.raises(ValueError, match="`weights`"):
        models.nin_mnist(weights="nin_mnist.caffe")
    with pytest.raises(FileNotFoundError, match="`weights`"):
        models.nin_mnist(weights=tmp_path / "missing.weights.h5")
    with pytest.raises(WeightsMismatchError), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras warns about the layers it skips first
        models.nin_mnist(classes=3, weights=path)


@pytest.mark.parametrize(
    "kwargs,argument",
    [
        ({"classes": 0}, "classes"),
        ({"classes": -3}, "classes"),
        ({"input_shape": (32, 32)}, "input_shape"),
        ({"input_shape": (32, -1, 3)}, "input_shape"),
        ({"input_shape": (32, 32, None)}, "input_shape"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_builder_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        models.nin_cifar10(**kwargs)


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("name", sorted(BUILDERS) + sorted(VARIANTS) + TRAINABLE_LAYER_MODELS)
def test_one_training_step_changes_every_trainable_weight(name):
    model = ROUND_TRIP_MODELS[name]()
    rng = np.random.default_rng(2)
    x = np.abs(rng.normal(size=(4, *model.input_shape[1:]))).astype("float32")
    if name.startswith("layer_"):
        y = rng.normal(size=(4, *model.output_shape[1:])).astype("float32")
        loss = keras.losses.MeanSquaredError()
    else:
        y = rng.integers(0, model.output_shape[-1], size=4)
        from_logits = model.layers[-1].activation is not keras.activations.softmax
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    model.compile(keras.optimizers.SGD(0.1), loss)
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.trainable_weights]
    model.train_on_batch(x, y)
    unchanged = [v.path for v, b in zip(model.trainable_weights, before)
                 if np.array_equal(keras.ops.convert_to_numpy(v), b)]
    assert not unchanged


# ---------------------------------------------------------------- save / load in a fresh process
_LOADER = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import keras, numpy as np
    import nin_keras.layers  # registers the nin_keras layers, as a user would
    folder = sys.argv[1]
    report = {}
    for name in json.load(open(os.path.join(folder, "names.json"))):
        model = keras.saving.load_model(os.path.join(folder, name + ".keras"), safe_mode=True)
        data = np.load(os.path.join(folder, name + ".npz"))
        out = keras.ops.convert_to_numpy(model(data["x"], training=False))
        report[name] = {"class": type(model).__name__, "max_abs_diff": float(np.abs(out - data["y"]).max()),
                        "identical": bool(np.array_equal(out, data["y"]))}
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def round_trip_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("round_trip")
    rng = np.random.default_rng(3)
    for name, factory in ROUND_TRIP_MODELS.items():
        model = factory()
        # Move every weight off its initial value (BN statistics included), so that a weight the
        # file failed to carry would show in the outputs.
        for w in model.weights:
            value = keras.ops.convert_to_numpy(w)
            if w.path.endswith("moving_variance"):
                w.assign(rng.uniform(0.5, 2.0, value.shape).astype(value.dtype))
            else:
                w.assign((value + 0.05 * rng.normal(size=value.shape)).astype(value.dtype))
        x = np.abs(rng.normal(size=(2, *model.input_shape[1:]))).astype("float32")
        y = keras.ops.convert_to_numpy(model(x, training=False))
        model.save(folder / f"{name}.keras")
        np.savez(folder / f"{name}.npz", x=x, y=y)
    (folder / "names.json").write_text(json.dumps(sorted(ROUND_TRIP_MODELS)))
    result = subprocess.run(
        [sys.executable, "-c", _LOADER, str(folder)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(ROUND_TRIP_MODELS))
def test_save_load_round_trip_in_fresh_process(round_trip_report, name):
    entry = round_trip_report[name]
    assert entry["identical"], entry


def test_folding_batch_norm_keeps_the_function_and_gives_the_plain_layout():
    from nin_keras.models import nin_cifar10
    from nin_keras.models.folding import fold_batch_norm

    keras.utils.set_random_seed(3)
    trained = nin_cifar10(batch_norm=True, dropout=0.3)
    rng = np.random.default_rng(0)
    for layer in trained.layers:
        for norm in getattr(layer, "norms", []):
            size = norm.gamma.shape[0]
            norm.gamma.assign(rng.uniform(0.5, 1.5, size))
            norm.beta.assign(rng.normal(0, 0.2, size))
            norm.moving_mean.assign(rng.normal(0, 0.5, size))
            norm.moving_variance.assign(rng.uniform(0.2, 2.0, size))
    plain = fold_batch_norm(trained, lambda: nin_cifar10())
    assert plain.count_params() == 966_986  # the Caffe layout
    assert not any(getattr(layer, "batch_norm", False) for layer in plain.layers)
    images = rng.normal(0, 1, (4, 32, 32, 3)).astype("float32")
    expected = np.asarray(trained(images, training=False))
    np.testing.assert_allclose(np.asarray(plain(images, training=False)), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="batch_norm=False"):
        fold_batch_norm(trained, lambda: nin_cifar10(batch_norm=True))


def test_folding_min_batch_norms_before_the_max_keeps_the_function():
    """MIN normalizes each piece before the max over pieces: folding per channel is exact there too."""
    from nin_keras.models.folding import fold_batch_norm, has_batch_norm

    keras.utils.set_random_seed(4)
    trained = models.min_cifar10(batch_norm=True, classifier_activation=None)  # logits: nothing saturates
    rng = np.random.default_rng(1)
    for layer in trained.layers:
        for norm in getattr(layer, "norms", []):
            size = norm.gamma.shape[0]
            # Negative gammas too: a flipped piece must stay flipped before the max.
            norm.gamma.assign(rng.uniform(-1.5, 1.5, size))
            norm.beta.assign(rng.normal(0, 0.2, size))
            norm.moving_mean.assign(rng.normal(0, 0.5, size))
            norm.moving_variance.assign(rng.uniform(0.2, 2.0, size))
    assert has_batch_norm(trained)
    plain = fold_batch_norm(trained, lambda: models.min_cifar10(classifier_activation=None))
    assert not has_batch_norm(plain) and plain.count_params() == 1_604_722
    images = rng.normal(0, 1, (4, 32, 32, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(trained(images, training=False))
    assert np.abs(expected).max() > 0.1  # a function worth comparing, not all zeros
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(images, training=False)), expected, rtol=1e-4, atol=1e-4)
