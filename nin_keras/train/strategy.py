"""Pick the run's distribution by name, for the current Keras backend, and tell a worker whether
it is the chief.

- TensorFlow: ``tf.distribute`` strategies, ``"default"``, ``"mirrored"`` and ``"multiworker"``.
- JAX (and other backends): ``"default"`` (one device) and ``"data_parallel"``:
  ``keras.distribution.DataParallel`` over every device of every process. Several processes are
  joined with ``keras.distribution.initialize`` when ``KERAS_DISTRIBUTION_NUM_PROCESSES`` > 1
  (with ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID``), or by a
  ``Processes`` (the CLI's ``--coordinator``, ``--num-processes`` and ``--process-id``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import keras
import numpy as np

from nin_keras.arguments import check_count

TENSORFLOW_STRATEGIES = ("default", "mirrored", "multiworker")
KERAS_STRATEGIES = ("default", "data_parallel")
STRATEGIES = ("default", "mirrored", "multiworker", "data_parallel")


def make_strategy(name: str = "default", processes: Processes | None = None) -> Any:
    """Create the distribution the training loop runs under.

    On TensorFlow this must be called before any other TensorFlow op in the process
    (multi-worker collectives are configured at start-up); on JAX before any model is built.

    Args:
        name: ``"default"`` (one device); TensorFlow: ``"mirrored"`` (all local GPUs, or the CPU)
            or ``"multiworker"`` (``MultiWorkerMirroredStrategy``; the cluster comes from the
            ``TF_CONFIG`` environment variable); JAX: ``"data_parallel"``.
        processes: how the processes of a ``"data_parallel"`` run find each other (else the
            ``KERAS_DISTRIBUTION_*`` variables; one process when they are unset).

    Returns:
        A ``tf.distribute.Strategy`` on TensorFlow; on other backends None (``"default"``) or a
        ``keras.distribution.DataParallel``.

    Raises:
        ValueError: an unknown name, or one the backend does not run (the message names the
            ``--strategy`` values it does), or ``processes`` with another strategy than
            ``"data_parallel"``.
    """
    backend = keras.backend.backend()
    if name not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {name!r}")
    if processes is not None and name != "data_parallel":
        raise ValueError("the coordinator, number of processes and process id are for --strategy data_parallel "
                         "(keras.distribution); TensorFlow's multiworker strategy reads TF_CONFIG")
    if backend == "tensorflow":
        return _tensorflow_strategy(name)
    if name not in KERAS_STRATEGIES:
        raise ValueError(f"--strategy {name} is a tf.distribute strategy (KERAS_BACKEND=tensorflow); on {backend} "
                         f"use --strategy data_parallel")
    return data_parallel(processes) if name == "data_parallel" else None


def _tensorflow_strategy(name: str):
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable (cluster and task)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError("--strategy data_parallel is keras.distribution (KERAS_BACKEND=jax); on TensorFlow use "
                     "--strategy mirrored or multiworker")


@dataclasses.dataclass(frozen=True)
class Processes:
    """The arguments of ``keras.distribution.initialize``: the coordinator's ``host:port`` (process
    0's; Keras's comma-separated list of every job's address is accepted too), the number of
    processes and this one's index."""

    coordinator: str
    count: int
    index: int

    def __post_init__(self):
        check_count(self.count, "num_processes", minimum=1)
        check_count(self.index, "process_id", minimum=0)
        if self.index >= self.count:
            raise ValueError(f"process_id must be below num_processes ({self.count}), got {self.index}")
        if not self.coordinator:
            raise ValueError("coordinator must be the host:port of process 0, got an empty address")


def data_parallel(processes: Processes | None = None):
    """``keras.distribution.DataParallel`` over all devices of all processes, joining the processes
    first (``keras.distribution.initialize``, before any JAX computation) when ``processes`` or
    ``KERAS_DISTRIBUTION_NUM_PROCESSES`` says there are several.

    Keras's automatic sharding is off: it shards ``tf.data`` only, and the fit loop's batches
    (``fit_loop.EpochBatches``) already give each process its slice of every global batch."""
    if processes is not None:
        if processes.count > 1:
            keras.distribution.initialize(processes.coordinator, processes.count, processes.index)
    elif int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1) > 1:
        keras.distribution.initialize()  # reads the KERAS_DISTRIBUTION_* variables
    return keras.distribution.DataParallel(devices=keras.distribution.list_devices(), auto_shard_dataset=False)


def process_count() -> tuple[int, int]:
    """``(this process's index, number of processes)`` of a ``keras.distribution`` run."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_index(), jax.process_count()
    return 0, 1


def is_chief(strategy: Any) -> bool:
    """True on the worker that writes checkpoints, logs and the preset (task or process 0)."""
    if keras.backend.backend() != "tensorflow":
        return process_count()[0] == 0
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs)


def worker_index() -> int:
    """This process's index in ``TF_CONFIG`` (0 when there is none)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    return int(config.get("task", {}).get("index", 0))


def gather_from_processes(strategy: Any, values: list[int]) -> np.ndarray:
    """Every process's ``values`` (whole numbers below 2**31), one row per process (TensorFlow:
    per replica) in process order: a collective each process of a multi-process run must join.
    One process: just its own row."""
    row = np.asarray([values], np.int32)
    if keras.backend.backend() != "tensorflow":
        if process_count()[1] == 1:
            return row
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(row, tiled=True))
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return row
    import tensorflow as tf

    return strategy.gather(strategy.run(lambda: tf.constant(row)), axis=0).numpy()
