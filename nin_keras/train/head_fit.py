"""A closed-form start for a new classifier: logistic regression on the frozen body's features.

A fine-tune replaces a network's classifier with one output per new class. Started from random
weights, that classifier needs many optimizer steps before its outputs mean anything, and a NIN's
last convolution is followed by a ReLU: a randomly started map that is negative everywhere stays
dead. On three classes of 90 photos (the README's fine-tune, 8 optimizer steps) that ended at
chance, 30% held-out accuracy.

Both zoo heads are a linear map of features the body already computes, so the new classifier can
be *fitted* instead, the way a linear probe is:

- NIN: the class maps are a 1x1 convolution ``W`` of the last mlpconv's hidden layer ``h``
  (``MLPConv.hidden``), then ReLU and the global average: ``logits = mean_p relu(W h_p + b)``.
  Without the ReLU that is ``W mean_p(h_p) + b``, linear in the pooled features. The fit is a
  multinomial logistic regression on the pooled features; then every class's bias is raised by
  one shift ``c``, large enough that ``W h_p + b + c > 0`` at every position of every training
  image (plus a margin), so the ReLU passes everything and the network computes exactly the
  fitted logits plus ``c``, which the softmax ignores.
- Dense softmax heads (maxout): ``logits = W x + b`` directly.

The regression's L2 strength is chosen by 3-fold cross-validation on the training features over
``L2_GRID`` (features standardized first); no held-out image is used.

Example:
    >>> fit = fit_classifier(network, preprocess, x_train, y_train)
    >>> fit.l2, fit.train_accuracy
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from nin_keras.layers import GlobalAveragePoolingHead, MLPConv

#: L2 strengths tried by cross-validation (on standardized features, per example).
L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)
#: Beyond the lowest class-map value seen in training, how far the shift keeps the ReLU open,
#: as a fraction of the spread of those values (unseen images may reach a little lower).
RELU_MARGIN = 0.5
_FOLDS = 3
_BATCH = 256


@dataclasses.dataclass
class HeadFit:
    """What ``fit_classifier`` found.

    Attributes:
        l2: the L2 strength cross-validation chose.
        cross_validated_accuracy: mean accuracy of that strength on the held-back folds.
        train_accuracy: accuracy of the fitted classifier on all training images.
        shift: the bias shift that keeps a NIN's last ReLU open (0 for a dense head).
    """

    l2: float
    cross_validated_accuracy: float
    train_accuracy: float
    shift: float


def supports(network: keras.Model) -> bool:
    """Whether ``network``'s classifier can be fitted in closed form: a NIN whose last mlpconv has
    biases (no batch norm) before the GAP head, or a dense softmax layer last."""
    return _head(network) is not None


def fit_classifier(network: keras.Model, preprocess, images: np.ndarray, labels: np.ndarray) -> HeadFit:
    """Set ``network``'s last linear map to the logistic regression of ``labels`` on its features.

    Args:
        network: float32 network whose body already holds the pretrained weights.
        preprocess: the fitted preprocessing layers that take ``images`` to the network's input.
        images: uint8 training images ``(N, H, W, C)``.
        labels: their integer labels, ``0 .. classes - 1``.

    Returns:
        A ``HeadFit``; ``network``'s last kernel and bias now hold the fit.

    Raises:
        ValueError: the network's head is not one ``supports`` accepts.
    """
    kind = _head(network)
    if kind is None:
        raise ValueError(f"{network.name}: its classifier is neither a NIN class-map convolution with biases "
                         "before a global-average-pooling head nor a dense softmax layer; it cannot be fitted "
                         "in closed form (use head='random')")
    classes = int(network.output_shape[-1])
    features = _pooled_features(network, preprocess, images)
    l2, cv_accuracy = _choose_l2(features, labels, classes)
    weights, bias = fit_logistic(features, labels, classes, l2)
    shift = 0.0
    if kind == "nin":
        lowest, highest = _class_map_range(network, preprocess, images, weights, bias)
        shift = max(0.0, -lowest) + RELU_MARGIN * (highest - lowest)
    kernel, old_bias = classifier_weights(network)
    kernel.assign(np.reshape(weights, kernel.shape).astype(kernel.dtype))
    old_bias.assign((bias + shift).astype(old_bias.dtype))
    train_accuracy = float(np.mean(np.argmax(features @ weights + bias, axis=1) == labels))
    return HeadFit(l2, cv_accuracy, train_accuracy, shift)


def fit_logistic(features: np.ndarray, labels: np.ndarray, classes: int, l2: float,
                 iterations: int = 1000, tolerance: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression with an L2 penalty on standardized features.

    Minimises ``mean_i CE(softmax(W x_i + b), y_i) + l2 / 2 * |W_std|^2`` (``W_std``: the weights
    on standardized features; the bias is not penalised) by Nesterov's accelerated gradient with
    the step ``1 / L`` from the loss's curvature bound, in float64.

    Returns:
        ``(W, b)`` for the raw features: ``W`` of shape ``(features, classes)``, ``b`` ``(classes,)``.
    """
    mean = features.mean(0)
    scale = features.std(0)
    scale[scale == 0] = 1.0
    x = np.concatenate([(features - mean) / scale, np.ones((len(features), 1))], axis=1)
    targets = np.eye(classes)[labels]
    penalty = np.ones((x.shape[1], 1))
    penalty[-1] = 0.0  # the bias row
    # The softmax cross-entropy's Hessian is at most half the features' second moment.
    lipschitz = 0.5 * np.linalg.eigvalsh(x.T @ x / len(x))[-1] + l2
    step = 1.0 / lipschitz
    w = np.zeros((x.shape[1], classes))
    previous = w
    for t in range(1, iterations + 1):
        look = w + (t - 1) / (t + 2) * (w - previous)
        logits = x @ look
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        gradient = x.T @ (p - targets) / len(x) + l2 * penalty * look
        previous, w = w, look - step * gradient
        if np.abs(gradient).max() < tolerance:
            break
    weights = w[:-1] / scale[:, None]
    return weights, w[-1] - mean @ weights


def _choose_l2(features: np.ndarray, labels: np.ndarray, classes: int) -> tuple[float, float]:
    """The ``L2_GRID`` strength with the best mean accuracy over ``_FOLDS`` stratified folds."""
    folds = np.zeros(len(labels), int)
    rng = np.random.default_rng(0)
    for c in range(classes):
        members = np.flatnonzero(labels == c)
        folds[rng.permutation(members)] = np.arange(len(members)) % _FOLDS
    scores = []
    for l2 in L2_GRID:
        correct = 0
        for fold in range(_FOLDS):
            held = folds == fold
            weights, bias = fit_logistic(features[~held], labels[~held], classes, l2, iterations=300)
            correct += int(np.sum(np.argmax(features[held] @ weights + bias, axis=1) == labels[held]))
        scores.append(correct / len(labels))
    best = int(np.argmax(scores))  # the first (weakest penalty) of equal scores
    return L2_GRID[best], scores[best]


def classifier_weights(network: keras.Model) -> tuple[keras.Variable, keras.Variable]:
    """The kernel and bias of ``network``'s last linear map (a ``supports``-ed head): the NIN's
    class-map convolution ``(1, 1, features, classes)`` or the dense layer's ``(features, classes)``."""
    layer = network.layers[-2] if _head(network) == "nin" else network.layers[-1]
    return layer.weights[-2], layer.weights[-1]


def _head(network: keras.Model) -> str | None:
    last = network.layers[-1]
    if isinstance(last, GlobalAveragePoolingHead) and len(network.layers) > 1:
        conv = network.layers[-2]
        if isinstance(conv, MLPConv) and not conv.batch_norm and conv.kernels[-1].shape[:2] == (1, 1):
            return "nin"
    if isinstance(last, keras.layers.Dense) and last.use_bias:
        return "dense"
    return None


def _feature_batches(network: keras.Model, preprocess, images: np.ndarray):
    """The classifier's inputs, batch by batch: NIN hidden maps ``(B, H, W, C)`` or dense inputs."""
    layer = network.layers[-2] if _head(network) == "nin" else network.layers[-1]
    body = keras.Model(network.inputs, layer.input)
    for start in range(0, len(images), _BATCH):
        x = keras.ops.cast(images[start:start + _BATCH], "float32")
        for step in preprocess:
            x = step(x, training=False)
        x = body(x, training=False)
        if isinstance(layer, MLPConv):
            x = layer.hidden(x, training=False)
        yield keras.ops.convert_to_numpy(x).astype(np.float64)


def _pooled_features(network: keras.Model, preprocess, images: np.ndarray) -> np.ndarray:
    batches = _feature_batches(network, preprocess, images)
    return np.concatenate([b.mean(axis=(1, 2)) if b.ndim == 4 else b for b in batches])


def _class_map_range(network, preprocess, images, weights, bias) -> tuple[float, float]:
    """Lowest and highest value of ``W h_p + b`` over every position of every image."""
    lowest, highest = np.inf, -np.inf
    for maps in _feature_batches(network, preprocess, images):
        values = maps @ weights + bias
        lowest, highest = min(lowest, float(values.min())), max(highest, float(values.max()))
    return lowest, highest
