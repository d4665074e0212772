"""Write TensorFlow's outputs of every case in ``cases.py`` to a ``.npz`` for the JAX comparison.

Run with the TensorFlow venv (scripts/test_jax.sh does)::

    KERAS_BACKEND=tensorflow .venv/bin/python tests_jax/tf_reference.py /tmp/tf_reference.npz

Keys: ``layer/<name>/x`` and ``layer/<name>/y`` for each layer case, ``preset/<name>/x`` (uint8
images) and ``preset/<name>/y`` (the inference model's probabilities) for each preset.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nin_keras.tf_startup import quiet_tensorflow_import  # noqa: E402

quiet_tensorflow_import()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import cases  # noqa: E402
from nin_keras import zoo  # noqa: E402
from nin_keras.io_utils import atomic_write  # noqa: E402


def main(out: str) -> None:
    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"tf_reference.py needs KERAS_BACKEND=tensorflow, got {keras.backend.backend()!r}")
    arrays = {}
    for name in cases.LAYERS:
        x = cases.layer_inputs(name)
        arrays[f"layer/{name}/x"] = x
        arrays[f"layer/{name}/y"] = keras.ops.convert_to_numpy(cases.build_layer(name)(x))
    for index, name in enumerate(cases.PRESETS):
        model = zoo.ImageClassifier.from_preset(name, input_dtype="uint8")
        images = cases.preset_images(index, tuple(model.input_shape[1:]))
        arrays[f"preset/{name}/x"] = images
        arrays[f"preset/{name}/y"] = keras.ops.convert_to_numpy(model(images, training=False))
    with atomic_write(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    print(f"tf_reference: {len(cases.LAYERS)} layer and {len(cases.PRESETS)} preset cases -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])
