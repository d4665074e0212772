"""Where local data sets are looked for, and the error that says where when nothing is found."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from nin_keras.errors import Argument, DataError

_REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR_ENV = "NIN_KERAS_DATA_DIR"
HOME_ENV = "NIN_KERAS_HOME"

# System-wide copies installed by distribution packages (Debian's dataset-fashion-mnist).
_SYSTEM_DIRS = {"fashion_mnist": (Path("/usr/share/datasets"),)}

_HOW_TO_GET = {
    "cifar10": "download cifar-10-python.tar.gz or cifar-10-binary.tar.gz from "
               "https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar100": "download cifar-100-python.tar.gz or cifar-100-binary.tar.gz from "
                "https://www.cs.toronto.edu/~kriz/cifar.html",
    "svhn": "download train_32x32.mat, test_32x32.mat and extra_32x32.mat from "
            "http://ufldl.stanford.edu/housenumbers/",
    "mnist": "download mnist.npz (keras.datasets.mnist.load_data() saves it in ~/.keras/datasets) "
             "or the four idx .gz files into a mnist/ folder",
    "fashion_mnist": "download the four idx .gz files from "
                     "https://github.com/zalandoresearch/fashion-mnist into a fashion-mnist/ folder",
}


def data_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for local data, in order.

    ``data_dir`` if given (then it is the only one), else ``$NIN_KERAS_DATA_DIR``, then
    ``../shared/datasets`` relative to the repository root, then ``~/.keras/datasets``.
    """
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    dirs = []
    if os.environ.get(DATA_DIR_ENV):
        dirs.append(Path(os.environ[DATA_DIR_ENV]).expanduser())
    dirs.append(_REPO_ROOT.parent / "shared" / "datasets")
    dirs.append(Path("~/.keras/datasets").expanduser())
    return dirs


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """``data_dirs`` plus the system folders that may hold data set ``name``."""
    dirs = data_dirs(data_dir)
    return dirs if data_dir is not None else dirs + list(_SYSTEM_DIRS.get(name, ()))


def cache_dir() -> Path:
    """Where decoded arrays are cached: ``$NIN_KERAS_HOME/datasets`` or ``~/.cache/nin_keras/datasets``."""
    home = os.environ.get(HOME_ENV)
    root = Path(home).expanduser() if home else Path("~/.cache/nin_keras").expanduser()
    return root / "datasets"


def not_found(name: str, looked: list[Path], candidates: list[str], tfds_error: Sequence[Any] = ()) -> DataError:
    """The error for a data set with no local copy: where it looked, what for, how to get it
    (``tfds_error``: message parts saying why tensorflow-datasets had none either)."""
    tfds = (("tensorflow-datasets failed too: ", *tfds_error) if tfds_error else
            ("or use ", Argument("source", "tfds"), " (needs tensorflow-datasets and a download)."))
    return DataError(
        f"no local copy of dataset {name!r}. Looked in: {', '.join(str(d) for d in looked)} for "
        f"any of: {', '.join(candidates)}. To get it: {_HOW_TO_GET[name]}, and put it in one of "
        "those folders, pass ", Argument("data_dir"), f" or set ${DATA_DIR_ENV}; ", *tfds)
