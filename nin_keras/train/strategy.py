"""Pick a ``tf.distribute`` strategy by name and tell a worker whether it is the chief."""

from __future__ import annotations

import json
import os

from nin_keras.tensorflow_only import import_tensorflow

tf = import_tensorflow(__name__)

STRATEGIES = ("default", "mirrored", "multiworker")


def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """Create the strategy the training loop runs under.

    Must be called before any other TensorFlow op in the process (multi-worker collectives are
    configured at start-up).

    Args:
        name: ``"default"`` (one device), ``"mirrored"`` (all local GPUs, or the CPU) or
            ``"multiworker"`` (``MultiWorkerMirroredStrategy``; the cluster comes from the
            ``TF_CONFIG`` environment variable).

    Returns:
        A ``tf.distribute.Strategy``.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, logs and the preset (task 0, or single-process)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs)


def worker_index() -> int:
    """This process's index in ``TF_CONFIG`` (0 when there is none)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return int(config.get("task", {}).get("index", 0))
