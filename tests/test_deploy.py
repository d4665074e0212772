"""nin_keras.deploy: exported artifacts run with NumPy and their runtime alone.

The artifacts are exported here (TensorFlow), then run in a fresh process in which importing
TensorFlow, Keras or JAX raises ImportError; its predictions must equal the in-process ones.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nin_keras.deploy import Predictor
from nin_keras.export import export

_WITHOUT_TENSORFLOW = r"""
import json, sys
for blocked in ("tensorflow", "keras", "jax", "torch"):
    sys.modules[blocked] = None  # importing any of them now raises ImportError
from nin_keras.deploy import Predictor
spec = json.loads(sys.argv[1])
out = {}
for path in spec["artifacts"]:
    predictor = Predictor(path)
    out[path] = {"top": predictor.classify(spec["images"], top_k=3),
                 "proba": predictor.predict_proba(spec["images"]).tolist()}
loaded = sorted(name for name, module in sys.modules.items()
                if module is not None and name.split(".")[0] in ("tensorflow", "keras", "jax"))
print(json.dumps({"results": out, "loaded": loaded}))
"""


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy")
    paths = export("nin_mnist", formats=("tflite", "onnx"), out_dir=out)
    rng = np.random.default_rng(0)
    images = []
    for i, size in enumerate([(28, 28), (40, 33), (90, 120)]):
        path = out / f"digit{i}.png"
        Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(path)
        images.append(str(path))
    return [str(paths["tflite"]), str(paths["onnx"])], images


def test_deploy_runs_tflite_and_onnx_without_tensorflow_or_keras(artifacts):
    files, images = artifacts
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _WITHOUT_TENSORFLOW, json.dumps({"artifacts": files, "images": images})],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    for path in files:
        here = Predictor(path)
        np.testing.assert_allclose(np.array(report["results"][path]["proba"]), here.predict_proba(images), atol=1e-6)
        assert [[name for name, _ in row] for row in report["results"][path]["top"]] == \
               [[name for name, _ in row] for row in here.classify(images, top_k=3)]


def test_predictor_has_one_import_path():
    import nin_keras.export as export_package

    with pytest.warns(DeprecationWarning, match="nin_keras.deploy"):
        old = export_package.Predictor
    assert old is Predictor
