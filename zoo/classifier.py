"""``ImageClassifier``: raw images in, class probabilities out, with the preprocessing inside.

This is the library's one inference model and the one way to load a preset
(``ImageClassifier.from_preset``). Export, ``eval``, ``predict``, the visualizations and
fine-tuning all start from it, so they agree on preprocessing. Its graph is::

    images (uint8, or float in [0, 255]) -> cast to float32 -> preprocessing layers -> backbone

The backbone is the bare network (``create_model``); the preprocessing layers are the preset's
fitted GCN / ZCA / convolutional whitening / LCN. Because both are inside one Keras model,
``predict``, ``fit`` and ``evaluate`` take raw images, and nothing can skip the preprocessing.

Example:
    >>> classifier = ImageClassifier.from_preset("nin_cifar10")
    >>> classifier.predict(uint8_images)           # probabilities, (N, 10)
    >>> classifier.classify(["cat.jpg"], top_k=3)  # [[("cat", 0.91), ...]]
    >>> classifier.backbone                        # the network alone
    >>> classifier.save_to_preset("my_preset")
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nin_keras.data.input_policy import InputPolicy
from nin_keras.data.model_io import check_top_k, image_batch, top_k_classes
from nin_keras.layers import PREPROCESSING_LAYERS
from nin_keras.zoo.preset_loader import PresetContents, read_preset
from nin_keras.zoo.preset_writer import save_preset

#: Metadata a classifier carries into a preset it saves; measured figures (metrics, the command
#: that measured them) describe the weights it was loaded with and are dropped unless given again.
_KEPT_METADATA = ("dataset", "class_names", "input_policy", "paper_error", "license", "source")


@keras.saving.register_keras_serializable(package="nin_keras")
class ImageClassifier(keras.Model):
    """A classifier that takes raw images: preprocessing layers, then the backbone network.

    Args:
        backbone: the network (its input is the preprocessed tensor), e.g. from ``create_model``.
        preprocessing: fitted preprocessing layers, applied in order to float32 pixels in
            ``[0, 255]``.
        class_names: one name per output (``classify`` names them ``"0"``, ``"1"``, ... without).
        input_policy: how an image file becomes an input (``InputPolicy``); ``None`` for models
            whose input is not a fixed-size image.
        metadata: the preset's ``metadata.json`` (kept for ``save_to_preset``).
        input_dtype: dtype of the input tensor: ``"float32"`` (default; uint8 arrays convert
            exactly) or ``"uint8"`` (what integer-input exports want).
        name: model name; default ``"<backbone.name>_classifier"``.

    Shapes: ``(batch, *backbone.input_shape[1:])`` in, ``(batch, classes)`` out.

    Example:
        >>> backbone = create_model("nin_mnist")
        >>> classifier = ImageClassifier(backbone, [GlobalContrastNormalization()])
        >>> classifier.compile("adam", "sparse_categorical_crossentropy")
        >>> classifier.fit(uint8_images, labels)
    """

    def __init__(
        self,
        backbone: keras.Model,
        preprocessing: Iterable[keras.layers.Layer] = (),
        *,
        class_names: Sequence[str] | None = None,
        input_policy: InputPolicy | Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        input_dtype: str = "float32",
        name: str | None = None,
        **kwargs: Any,
    ):
        preprocessing = list(preprocessing)
        for layer in preprocessing:
            if not isinstance(layer, PREPROCESSING_LAYERS):
                raise ValueError(f"preprocessing layer {layer.name!r} is a {type(layer).__name__}, "
                                 f"not one of {[t.__name__ for t in PREPROCESSING_LAYERS]}")
        inputs = keras.Input(shape=tuple(backbone.input_shape[1:]), dtype=input_dtype, name="images")
        x = keras.ops.cast(inputs, "float32")
        for layer in preprocessing:
            x = layer(x)
        super().__init__(inputs, backbone(x), name=name or f"{backbone.name}_classifier", **kwargs)
        classes = int(backbone.outputs[0].shape[-1])
        if class_names is not None and len(class_names) != classes:
            raise ValueError(f"class_names has {len(class_names)} names, the backbone has {classes} outputs")
        if isinstance(input_policy, Mapping):
            input_policy = InputPolicy.from_dict(input_policy)
        if input_policy is not None and input_policy.input_shape != tuple(backbone.input_shape[1:]):
            raise ValueError(f"input policy makes {input_policy.input_shape} images, the backbone takes "
                             f"{tuple(backbone.input_shape[1:])}")
        # Plain attributes, not tracked layers: the graph above already owns the layers.
        self._backbone, self._preprocessing = backbone, tuple(preprocessing)
        self.class_names = list(class_names) if class_names is not None else None
        self.input_policy = input_policy
        self.metadata = dict(metadata or {})
        self._raw_input_dtype = input_dtype

    # ------------------------------------------------------------------ parts

    @property
    def backbone(self) -> keras.Model:
        """The bare network: its input is the preprocessed tensor."""
        return self._backbone

    @property
    def preprocessing(self) -> list[keras.layers.Layer]:
        """The preprocessing layers, in application order (shared with the graph)."""
        return list(self._preprocessing)

    @property
    def output_class_names(self) -> list[str]:
        """One name per output: ``class_names``, or ``"0"``, ``"1"``, ... where the preset has none."""
        return list(self.class_names or map(str, range(int(self._backbone.outputs[0].shape[-1]))))

    def preprocess(self, images: Any) -> np.ndarray:
        """What the backbone sees for raw ``images``: float32 pixels through the preprocessing."""
        x = keras.ops.cast(keras.ops.convert_to_tensor(images), "float32")
        for layer in self._preprocessing:
            x = layer(x)
        return keras.ops.convert_to_numpy(x)

    # ------------------------------------------------------------------ use

    def classify(self, images: Any, top_k: int = 5, batch_size: int = 256) -> list[list[tuple[str, float]]]:
        """Top-``k`` ``(class name, probability)`` pairs per image, most probable first.

        Args:
            images: image file paths (decoded by the input policy), one image array or a batch
                of uint8 / float ``[0, 255]`` arrays, as ``Predictor.classify`` takes.
            top_k: how many classes per image.
            batch_size: images per forward pass.
        """
        check_top_k(top_k)
        batch = image_batch(images, tuple(self.input_shape[1:]), self._read)
        probabilities = np.asarray(self.predict(batch, batch_size=batch_size, verbose=0))
        return top_k_classes(probabilities, self.output_class_names, top_k)

    def _read(self, path: str | os.PathLike) -> np.ndarray:
        if self.input_policy is None:
            raise ValueError(f"image files need an input policy; {self.name} takes {tuple(self.input_shape[1:])} "
                             "inputs that are not a fixed-size 1- or 3-channel image")
        return self.input_policy(path)

    # ------------------------------------------------------------------ presets

    @classmethod
    def from_preset(cls, preset: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                    input_dtype: str = "float32") -> "ImageClassifier":
        """Load a preset (zoo name such as ``"nin_cifar10"`` or ``"nin_cifar10.caffe"``, a folder or
        an ``http(s)://``/``file://`` URL) as a classifier, every file verified
        (``nin_keras.zoo.preset_loader.read_preset`` says how, and what it raises).

        Args:
            preset: the zoo name, folder or URL.
            cache_dir: where fetched presets are cached (default ``download.default_cache_dir()``).
            input_dtype: ``"float32"`` (uint8 arrays convert exactly) or ``"uint8"``.
        """
        return cls.from_loaded(read_preset(preset, cache_dir=cache_dir), input_dtype=input_dtype)

    @classmethod
    def from_loaded(cls, preset: PresetContents, input_dtype: str = "float32") -> "ImageClassifier":
        """A preset already read (``read_preset``'s ``PresetContents``) as a classifier: its
        network and preprocessing, with its class names, input policy and metadata."""
        return cls(preset.model, preset.preprocessing, class_names=preset.class_names,
                   input_policy=preset.input_policy, metadata=preset.metadata, input_dtype=input_dtype,
                   name=f"{preset.model.name}_inference")

    def save_to_preset(self, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None, *,
                       overwrite: bool = False) -> Path:
        """Write backbone, preprocessing and metadata as a preset folder (``save_preset``).

        Args:
            path: the preset folder to create.
            metadata: fields to add or replace, e.g. ``metrics`` and the ``command`` that measured
                them. The classifier's data set, class names, input policy, license and source
                are kept; its old metrics are not (they described other weights).
            overwrite: replace an existing folder, once the new one is complete.
        """
        kept = {k: self.metadata[k] for k in _KEPT_METADATA if k in self.metadata}
        if self.class_names is not None:
            kept["class_names"] = self.class_names
        if self.input_policy is not None:
            kept["input_policy"] = self.input_policy.to_dict()
        full = {**kept, **dict(metadata or {})}
        if "dataset" not in full:
            raise ValueError("the classifier has no 'dataset' in its metadata; pass metadata={'dataset': ...}")
        return save_preset(self.backbone, path, full, self.preprocessing, overwrite=overwrite)

    # ------------------------------------------------------------------ Keras serialization

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessing": [keras.saving.serialize_keras_object(layer) for layer in self._preprocessing],
            "class_names": self.class_names,
            "input_policy": None if self.input_policy is None else self.input_policy.to_dict(),
            "metadata": self.metadata,
            "input_dtype": self._raw_input_dtype,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "ImageClassifier":
        config = dict(config)
        backbone = keras.saving.deserialize_keras_object(config.pop("backbone"))
        preprocessing = [keras.saving.deserialize_keras_object(p) for p in config.pop("preprocessing")]
        return cls(backbone, preprocessing, **config)


def split_preprocessing(model: keras.Model) -> tuple[list[keras.layers.Layer], keras.Model]:
    """Split a raw-image model into its leading preprocessing layers and the network.

    Handles an ``ImageClassifier``, a functional model built the same way (input -> cast ->
    preprocessing layers -> one network model) and ``keras.Sequential`` stacks; a model without
    leading preprocessing layers is all network.
    """
    if isinstance(model, ImageClassifier):
        return model.preprocessing, model.backbone
    body = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    leading = []
    for layer in body:
        if not isinstance(layer, PREPROCESSING_LAYERS):
            break
        leading.append(layer)
    rest = body[len(leading):]
    if not leading:
        return [], model
    if len(rest) == 1 and isinstance(rest[0], keras.Model):
        return leading, rest[0]
    if not isinstance(model, keras.Sequential):
        raise ValueError(f"model {model.name!r}: cannot split its preprocessing layers off; pass an "
                         "ImageClassifier or a keras.Sequential")
    network = keras.Sequential([keras.Input(leading[-1].output.shape[1:]), *rest], name=f"{model.name}_network")
    return leading, network
