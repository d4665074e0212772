"""Shared test set-up: where the local data lives, and one environment isolation for every test.

Data: ``$NIN_KERAS_DATA_DIR`` if set, else ``../shared/datasets`` next to the repository (the
library's own search order, ``nin_keras.data.locate.data_dirs``). Tests needing a file there skip
with the path in the reason when it is absent. Modules that decide at import time (``skipif``)
import the constants: ``from conftest import DATASETS_DIR``.

Isolation (``isolated_env``, autouse): no test reads the user's mirror, offline or Keras home
settings or writes the user's cache. ``NIN_KERAS_HOME`` is a fresh folder per test, beside its
``tmp_path`` (``nin_keras_home``; a module whose tests name the folder overrides that fixture). Its
``datasets/`` subfolder, the cache of decoded archives (60,000 CIFAR-10 JPEGs take ~100 s), is
shared by the whole session unless the module overrides ``nin_keras_home``. Session- and
module-scoped fixtures run under the same settings (``_session_env``).

Nothing here imports TensorFlow: ``tests/test_layers.py`` and ``tests/test_models.py`` also run on
JAX (``scripts/test_jax.sh``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO.parent / "shared"  # the data sets and the Caffe weights the project was given
DATASETS_DIR = Path(os.environ.get("NIN_KERAS_DATA_DIR") or SHARED_DIR / "datasets").expanduser()

_CLEARED = ("NIN_KERAS_MIRROR", "NIN_KERAS_OFFLINE", "KERAS_HOME")


def _isolate(patch: pytest.MonkeyPatch, home: Path) -> None:
    for name in _CLEARED:
        patch.delenv(name, raising=False)
    patch.setenv("NIN_KERAS_DATA_DIR", str(DATASETS_DIR))
    patch.setenv("NIN_KERAS_HOME", str(home))


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The local data sets folder: ``$NIN_KERAS_DATA_DIR``, else ``../shared/datasets``."""
    return DATASETS_DIR


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the repository (data sets, the authors' Caffe weights)."""
    return SHARED_DIR


@pytest.fixture(scope="session")
def _decoded_data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("decoded_datasets")


@pytest.fixture(scope="session", autouse=True)
def _session_env(tmp_path_factory, _decoded_data_cache):
    home = tmp_path_factory.mktemp("nin_keras_home")
    (home / "datasets").symlink_to(_decoded_data_cache, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, home)
        yield


@pytest.fixture
def nin_keras_home(tmp_path_factory, _decoded_data_cache) -> Path:
    """This test's ``NIN_KERAS_HOME``, empty but for the session's decoded data sets.

    A folder of its own beside ``tmp_path``, not in it: tests check that ``tmp_path`` holds
    nothing but what they wrote.
    """
    home = tmp_path_factory.mktemp("nin_keras_home")
    (home / "datasets").symlink_to(_decoded_data_cache, target_is_directory=True)
    return home


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, nin_keras_home) -> Path:
    """Isolate each test from the user's nin-keras settings; returns its ``NIN_KERAS_HOME``."""
    _isolate(monkeypatch, nin_keras_home)
    return nin_keras_home
