"""Training-step throughput of NIN CIFAR-10: the library's layers against stock Keras layers.

Measures, in one run:

- images/s of a real training step (``model.train_on_batch``: forward, loss, backward and an
  SGD-with-momentum update, in Keras's compiled train function) for ``nin_keras.models.nin_cifar10``
  and for the same network written with stock ``keras.layers`` only (``Conv2D``, ``MaxPooling2D`` /
  ``AveragePooling2D`` with ``"same"`` padding, which equals Caffe's ceil-rounded pooling for
  32 → 16 → 8, and ``GlobalAveragePooling2D``). The two models are timed in alternation within one
  process, so load from other processes hits both alike; the ratio is library / stock;
- the fp32 matmul rate of a large square ``tf.matmul`` in the same process;
- achieved GFLOP/s = images/s × ``3 × 2 × count_flops(model)`` / 1e9: ``count_flops`` gives forward
  multiply-adds per image, 2 FLOPs each, and the backward pass costs about twice the forward pass
  (gradients with respect to inputs and to weights), hence ×3. Biases, activations and pooling are
  not counted, so this slightly understates the work done;
- the same rates per CPU second (process CPU time, all threads) besides per wall second: on a
  machine shared with other processes the wall-clock rates measure how much of the cores this
  process got, the CPU-time rates how well it used them.

Each variant (data layout, XLA, oneDNN, Grappler op fusion, thread counts, batch size) runs in its
own subprocess, because oneDNN and thread pools are fixed when TensorFlow starts. The machine's
peak is the highest matmul rate any variant's process measured; every row's fraction of peak is
against it. ``--budget-s`` bounds the whole run on a busy machine (later variants are skipped).

With ``--backend tensorflow|jax`` it measures instead the library's whole training path
(``nin_keras.train.run.run``: the ``tf.distribute`` loop on TensorFlow, Keras ``fit`` with the
library's callbacks, rate table and Caffe L2 on JAX) against plain ``model.fit`` of the same
network on the same uint8 arrays, on that backend, and writes ``results/train_step_<backend>.json``
(run it with a Python that has that backend: ``.venv-jax/bin/python`` for JAX).

Usage:
    python benchmarks/train_step.py            # all variants, writes results/train_step.json
    .venv-jax/bin/python benchmarks/train_step.py --backend jax --quick
    python benchmarks/train_step.py --quick    # tiny smoke run
    python benchmarks/train_step.py --variants baseline jit_compile
    python benchmarks/train_step.py --budget-s 540
    python benchmarks/train_step.py --variants baseline batch_norm batch_norm_bf16 --result train_step_batch_norm
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

RESULT_PREFIX = "RESULT "

# Each variant changes one thing from the baseline (channels last, no XLA, oneDNN on, Grappler's
# op fusion on, TF's default thread pools, batch 128, no batch norm, float32).
BASELINE: dict[str, Any] = {
    "layout": "channels_last", "jit_compile": False, "onednn": "1", "fusion": True,
    "intra_op_threads": 0, "inter_op_threads": 0, "batch_size": 128, "batch_norm": False, "precision": "float32",
}
VARIANTS: dict[str, dict[str, Any]] = {  # in the order they run (XLA last: its CPU steps are slow)
    "baseline": {"runs": 5},
    "onednn_off": {"onednn": "0"},
    "fusion_off": {"fusion": False},
    "channels_first": {"layout": "channels_first"},
    "batch_64": {"batch_size": 64},
    "batch_256": {"batch_size": 256},
    "threads_2x1": {"intra_op_threads": 2, "inter_op_threads": 1},
    "threads_1x1": {"intra_op_threads": 1, "inter_op_threads": 1},
    # Batch norm after every convolution: the library's FusedBatchNormalization against Keras's.
    "batch_norm": {"batch_norm": True},
    "batch_norm_bf16": {"batch_norm": True, "precision": "mixed_bfloat16"},
    "jit_compile": {"jit_compile": True, "runs": 2},
}
COLUMNS = [
    "variant", "layout", "jit_compile", "onednn", "fusion", "intra_op_threads", "inter_op_threads",
    "batch_size", "batch_norm", "precision", "library_images_per_s", "stock_images_per_s", "ratio", "cpu_ratio", "achieved_gflops",
    "fraction_of_peak", "cpu_fraction_of_peak", "matmul_gflops", "load_avg_1m", "status",
]


def stock_nin_cifar10(input_shape: Sequence[int] = (32, 32, 3), classes: int = 10,
                      data_format: str = "channels_last", batch_norm: bool = False):
    """NIN CIFAR-10 from stock ``keras.layers`` only, layer for layer the library's ``nin_cifar10``
    (``batch_norm``: each convolution without bias, then ``BatchNormalization``, then ReLU, as the
    library's ``batch_norm=True`` mlpconvs).

    ``"same"`` pooling equals Caffe's pooling here: for 3/2 windows on even sizes the only padding
    is one row/column at the bottom/right, and average pooling divides by the in-bounds count.
    """
    import keras
    from keras import layers

    def conv(filters: int, kernel: int):
        if not batch_norm:
            return layers.Conv2D(filters, kernel, padding="same", activation="relu", data_format=data_format)
        axis = -1 if data_format == "channels_last" else 1
        return keras.Sequential([layers.Conv2D(filters, kernel, padding="same", use_bias=False, data_format=data_format),
                                 layers.BatchNormalization(axis=axis), layers.ReLU()])

    return keras.Sequential(
        [
            keras.Input(tuple(input_shape)),
            conv(192, 5), conv(160, 1), conv(96, 1),
            layers.MaxPooling2D(3, 2, padding="same", data_format=data_format),
            layers.Dropout(0.5),
            conv(192, 5), conv(192, 1), conv(192, 1),
            layers.AveragePooling2D(3, 2, padding="same", data_format=data_format),
            layers.Dropout(0.5),
            conv(192, 3), conv(192, 1), conv(classes, 1),
            layers.GlobalAveragePooling2D(data_format=data_format),
            layers.Softmax(),
        ],
        name="stock_nin_cifar10",
    )


def compile_for_training(model, jit_compile: bool):
    """Compile ``model`` with the paper's optimizer (SGD with momentum) and a sparse cross-entropy."""
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    return model


def random_batch(batch_size: int, input_shape: Sequence[int], classes: int = 10):
    """A fixed batch of random images in [0, 1) and labels, as tensors (no input pipeline cost)."""
    import tensorflow as tf

    images = tf.random.uniform((batch_size, *input_shape), seed=0)
    labels = tf.random.uniform((batch_size,), maxval=classes, dtype=tf.int32, seed=1)
    return images, labels


def matmul_gflops(n: int, repeats: int) -> tuple[float, float]:
    """fp32 ``n×n @ n×n`` ``tf.matmul`` rate: (GFLOP per wall second, GFLOP per CPU second).

    Medians of ``repeats`` after one untimed warm-up. CPU seconds sum over all of the process's
    threads, so the second rate does not depend on how much of the machine other processes take.
    """
    import tensorflow as tf

    a = tf.random.normal((n, n), seed=2)
    b = tf.random.normal((n, n), seed=3)
    # Eager CPU ops return when the product is computed; reading one element keeps it honest.
    tf.matmul(a, b)[0, 0].numpy()
    wall, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        tf.matmul(a, b)[0, 0].numpy()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    flops = 2 * n**3
    return flops / statistics.median(wall) / 1e9, flops / statistics.median(cpu) / 1e9


def load_avg() -> float | None:
    """The 1-minute load average (other processes share this machine's cores)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def configure_tensorflow(intra_op_threads: int, inter_op_threads: int, fusion: bool = True) -> None:
    """Set TF's thread pools (0 = TF's default) and Grappler's remapper, which fuses e.g.
    convolution + bias + ReLU into one kernel; must run before TensorFlow executes any op."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    tf.config.optimizer.set_experimental_options({"remapping": fusion})


def run_in_subprocess(script: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                      timeout: float | None = None) -> dict[str, Any]:
    """Run ``script --worker CONFIG`` in a fresh Python and return the JSON it reports.

    A failing worker gives ``{"status": "error: <last line of its stderr>"}`` instead of raising,
    so one unsupported variant does not lose the others.
    """
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    proc = subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(config)],
        capture_output=True, text=True, env=full_env, timeout=timeout,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    return {"status": f"error: {errors[-1][:300] if errors else f'exit code {proc.returncode}'}"}


class TimeBudget:
    """Wall-clock budget for a sequence of subprocess runs (the machine may be busy).

    ``allows_another()`` is False once the elapsed time plus the last run's duration exceeds
    the budget, so the remaining configurations are recorded as skipped instead of run.
    """

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.start = time.monotonic()
        self.last = 0.0

    def allows_another(self) -> bool:
        return self.seconds is None or time.monotonic() - self.start + self.last <= self.seconds

    def run(self, script: Path, config: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
        """``run_in_subprocess`` if the budget allows it (killed when the budget runs out), else skipped."""
        if not self.allows_another():
            return {"status": f"skipped: over the {self.seconds:g} s time budget"}
        start = time.monotonic()
        remaining = None if self.seconds is None else max(60.0, self.seconds - (start - self.start))
        try:
            result = run_in_subprocess(script, config, env, timeout=remaining)
        except subprocess.TimeoutExpired:
            result = {"status": f"skipped: stopped after {remaining:.0f} s, over the {self.seconds:g} s time budget"}
        self.last = time.monotonic() - start
        return result


def worker(config: dict[str, Any]) -> dict[str, Any]:
    """Time the library and stock models alternately under one variant's settings."""
    configure_tensorflow(config["intra_op_threads"], config["inter_op_threads"], config["fusion"])
    import keras

    from nin_keras.models import count_flops, nin_cifar10

    layout = config["layout"]
    keras.config.set_image_data_format(layout)
    keras.mixed_precision.set_dtype_policy(config["precision"])
    input_shape = (32, 32, 3) if layout == "channels_last" else (3, 32, 32)
    keras.utils.set_random_seed(0)
    batch_norm = config["batch_norm"]
    models = {
        "library": compile_for_training(nin_cifar10(input_shape=input_shape, batch_norm=batch_norm),
                                        config["jit_compile"]),
        "stock": compile_for_training(stock_nin_cifar10(input_shape, data_format=layout, batch_norm=batch_norm),
                                      config["jit_compile"]),
    }
    flops = {name: count_flops(model) for name, model in models.items()}
    params = {name: model.count_params() for name, model in models.items()}
    if params["library"] != params["stock"] or flops["library"] != flops["stock"]:
        raise RuntimeError(f"library and stock networks differ: params {params}, multiply-adds {flops}")

    images, labels = random_batch(config["batch_size"], input_shape)
    for model in models.values():  # warm-up: tracing, graph optimization, oneDNN primitive caches
        for _ in range(config["warmup"]):
            model.train_on_batch(images, labels)
    times: dict[str, list[float]] = {name: [] for name in models}
    cpu_times: dict[str, list[float]] = {name: [] for name in models}
    load_before = load_avg()
    for run in range(config["runs"]):
        # Alternate which model goes first so neither always follows the other.
        order = list(models) if run % 2 == 0 else list(reversed(models))
        for name in order:
            start, cpu_start = time.perf_counter(), time.process_time()
            for _ in range(config["steps"]):
                models[name].train_on_batch(images, labels)  # returns host floats: step finished
            times[name].append((time.perf_counter() - start) / config["steps"])
            cpu_times[name].append((time.process_time() - cpu_start) / config["steps"])
    load_after = load_avg()

    result: dict[str, Any] = {"parameters": params["library"], "forward_macs_per_image": flops["library"]}
    for name, step_times in times.items():
        median = statistics.median(step_times)
        result[f"{name}_step_s"] = {"median": median, "min": min(step_times), "max": max(step_times)}
        result[f"{name}_images_per_s"] = config["batch_size"] / median
        result[f"{name}_cpu_ms_per_image"] = 1e3 * statistics.median(cpu_times[name]) / config["batch_size"]
    result["ratio"] = result["library_images_per_s"] / result["stock_images_per_s"]
    # CPU seconds of all this process's threads: the work done, less sensitive than wall time to
    # other processes taking the cores.
    result["cpu_ratio"] = result["stock_cpu_ms_per_image"] / result["library_cpu_ms_per_image"]
    result["achieved_gflops"] = result["library_images_per_s"] * 6 * flops["library"] / 1e9
    result["stock_achieved_gflops"] = result["stock_images_per_s"] * 6 * flops["stock"] / 1e9
    # FLOPs per CPU second: the work rate while the process had a core, whatever the load.
    result["achieved_gflops_per_cpu_s"] = 6 * flops["library"] / result["library_cpu_ms_per_image"] / 1e6
    result["stock_gflops_per_cpu_s"] = 6 * flops["stock"] / result["stock_cpu_ms_per_image"] / 1e6
    result["matmul_gflops"], result["matmul_gflops_per_cpu_s"] = matmul_gflops(config["matmul_n"], config["matmul_repeats"])
    result["load_avg_1m"] = [load_before, load_after]
    result["status"] = "ok"
    return result


def run(variants: Sequence[str], quick: bool, runs: int | None = None,
        budget_s: float | None = None) -> tuple[list[dict[str, Any]], float, float]:
    """Run each named variant in its own subprocess; return the rows and the machine's matmul peaks
    (per wall second and per CPU second).

    Timed runs per model: 5 for the baseline, 2 with XLA, 3 for the others (``runs`` overrides).
    """
    budget = TimeBudget(budget_s)
    rows = []
    for name in variants:
        config = {**BASELINE, "warmup": 1, "runs": 3, "steps": 1, "matmul_n": 2048, "matmul_repeats": 5,
                  **VARIANTS[name]}
        if quick:
            config.update(runs=2, matmul_n=1024, matmul_repeats=3, batch_size=max(4, config["batch_size"] // 16))
        if runs is not None:
            config["runs"] = runs
        print(f"[train_step] {name}: {config}", file=sys.stderr, flush=True)
        result = budget.run(Path(__file__), config, env={"TF_ENABLE_ONEDNN_OPTS": config["onednn"]})
        row = {"variant": name, **{k: config[k] for k in BASELINE}, "runs": config["runs"],
               "steps_per_run": config["steps"], **result}
        print(f"[train_step] {name}: {json.dumps(result)}", file=sys.stderr, flush=True)
        rows.append(row)
    ok = [row for row in rows if row.get("status") == "ok"]
    peak = max((row["matmul_gflops"] for row in ok), default=float("nan"))
    cpu_peak = max((row["matmul_gflops_per_cpu_s"] for row in ok), default=float("nan"))
    for row in ok:
        row["fraction_of_peak"] = row["achieved_gflops"] / peak
        row["stock_fraction_of_peak"] = row["stock_achieved_gflops"] / peak
        row["cpu_fraction_of_peak"] = row["achieved_gflops_per_cpu_s"] / cpu_peak
    return rows, peak, cpu_peak


def summarize(rows: list[dict[str, Any]], peak: float) -> str:
    """One sentence on the baseline and the fastest variant, for the report."""
    ok = [row for row in rows if row.get("status") == "ok"]
    base = next((row for row in ok if row["variant"] == "baseline"), None)
    if base is None:
        return "The baseline did not run."
    best = max(ok, key=lambda row: row["library_images_per_s"])
    return (
        f"Baseline (batch {base['batch_size']}): library {base['library_images_per_s']:.1f} images/s, stock "
        f"{base['stock_images_per_s']:.1f}: ratio {base['ratio']:.3f} (CPU-time ratio {base['cpu_ratio']:.3f}); "
        f"{base['achieved_gflops']:.1f} GFLOP/s = {100 * base['fraction_of_peak']:.0f}% of the {peak:.0f} GFLOP/s "
        f"matmul peak ({100 * base['cpu_fraction_of_peak']:.0f}% per CPU second). Fastest: {best['variant']}, "
        f"{best['library_images_per_s']:.1f} images/s ({100 * best['fraction_of_peak']:.0f}% of peak)."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="subset of variants to run")
    parser.add_argument("--runs", type=int, help="timed runs per model (median reported)")
    parser.add_argument("--budget-s", type=float, help="skip the remaining variants once this many seconds "
                        "would likely be exceeded")
    parser.add_argument("--backend", choices=("tensorflow", "jax"),
                        help="compare the library's training path with plain Keras fit on this backend")
    parser.add_argument("--result", default="train_step",
                        help="results/<name>.json to write (a subset of variants measured on another machine)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backend:
        return backend_comparison(args.backend, args.quick, args.runs, argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0
    variants = args.variants or (["baseline"] if args.quick else list(VARIANTS))
    rows, peak, cpu_peak = run(variants, args.quick, args.runs, args.budget_s)
    common.finish(
        args.result, rows, common.command_line(__file__, argv),
        title="Training step: NIN CIFAR-10, library layers vs stock keras.layers"
              + (f" ({', '.join(variants)})" if args.variants else ""),
        columns=COLUMNS,
        summary=summarize(rows, peak),
        matmul_peak_gflops=peak,
        matmul_peak_gflops_per_cpu_s=cpu_peak,
        quick=args.quick,
        notes=(
            "images/s = batch / median step time (train_on_batch: forward, loss, backward, SGD momentum "
            "0.9), warm-up excluded, library and stock models timed alternately in one process. ratio = "
            "library / stock images/s; cpu_ratio = stock / library CPU seconds per image (all threads of "
            "the process, far less disturbed by other processes than wall time). achieved GFLOP/s = "
            "images/s x 3 x 2 x count_flops(model) / 1e9 (forward multiply-adds x 2 FLOPs, x 3 for "
            "forward + backward). fraction_of_peak = achieved / matmul_peak_gflops, the highest fp32 "
            "tf.matmul rate measured in this run (a mixed_bfloat16 row can pass 1); cpu_fraction_of_peak = the "
            "same with both rates per CPU second. load_avg_1m = [before, after] the timed runs: the cores are shared with other "
            "processes."
        ),
    )
    return common.exit_status(rows)


def backend_comparison(backend: str, quick: bool, runs: int | None, argv) -> int:
    """Library training path vs plain ``fit``, NIN CIFAR-10 on random uint8 images (see the module
    docstring); each side trains ``1 + runs`` epochs, the first (compilation) is not timed."""
    os.environ["KERAS_BACKEND"] = backend  # before the first Keras import
    batch, steps, runs = (32, 4, runs or 2) if quick else (128, 10, runs or 3)
    library = _library_epochs(batch, steps, runs)
    plain = _plain_fit_epochs(batch, steps, runs)
    row = {"backend": backend, "batch_size": batch, "steps_per_epoch": steps, "timed_epochs": runs,
           "library_images_per_s": batch * steps / statistics.median(library),
           "plain_fit_images_per_s": batch * steps / statistics.median(plain),
           "library_epoch_s": library, "plain_fit_epoch_s": plain, "load_avg_1m": os.getloadavg()[0]}
    row["ratio"] = row["library_images_per_s"] / row["plain_fit_images_per_s"]
    command = "python benchmarks/train_step.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    path = common.write_result(
        f"train_step_{backend}", [row], command,
        title=f"Training path on {backend}: nin_keras.train vs plain Keras fit, NIN CIFAR-10",
        quick=quick,
        notes=("images/s = batch x steps / median epoch time of the timed epochs (first epoch excluded: "
               "compilation). Library: nin_keras.train.run.run with SGD momentum 0.9, Caffe L2 5e-4, a cosine "
               "schedule, Rescaling in the model and no augmentation, EMA or validation; plain: model.fit of the "
               "same network (float32 images, SGD momentum 0.9, no L2). ratio = library / plain. The CPU is "
               "shared with other processes (load_avg_1m), which moves single figures by tens of percent."),
    )
    print(json.dumps(row, indent=1))
    print(path)
    return 0


def _recipe(batch: int, epochs: int) -> dict[str, Any]:
    return {"name": "bench", "model": {"name": "nin_cifar10"}, "dataset": {"name": "synthetic"},
            "preprocessing": [{"module": "keras.layers", "class_name": "Rescaling", "config": {"scale": 1 / 255, "offset": 0.0}}],
            "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
            "weight_decay": {"value": 5e-4, "mode": "l2"}, "schedule": {"name": "cosine"},
            "epochs": epochs, "batch_size": batch, "seed": 0, "checkpoint_every_steps": 0}


def _arrays(batch: int, steps: int):
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, batch * steps).astype(np.int64)
    return images, labels


def _library_epochs(batch: int, steps: int, runs: int) -> list[float]:
    import tempfile

    import numpy as np

    from nin_keras.train.components import build_layers
    from nin_keras.train.recipes import Recipe
    from nin_keras.train.run import input_shape_after, run
    from nin_keras.train.run_state import NetworkStart, RunInputs, RunSettings

    images, labels = _arrays(batch, steps)
    recipe = Recipe.parse(_recipe(batch, 1 + runs))
    preprocess = build_layers(recipe.preprocessing)
    empty = np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)
    network = NetworkStart("nin_cifar10", {"input_shape": input_shape_after(preprocess, (32, 32, 3))})
    with tempfile.TemporaryDirectory() as out:
        outcome = run(recipe, RunInputs((images, labels, *empty), preprocess, network), RunSettings(Path(out), verbose=0))
    return [row["seconds"] for row in outcome.history[1:]]


def _plain_fit_epochs(batch: int, steps: int, runs: int) -> list[float]:
    import keras
    import numpy as np

    from nin_keras.models import nin_cifar10

    images, labels = _arrays(batch, steps)
    x, y = images.astype("float32") / 255, np.eye(10, dtype="float32")[labels]
    model = nin_cifar10()
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.CategoricalCrossentropy(),
                  metrics=["accuracy"])
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(x, y, batch_size=batch, epochs=1 + runs, shuffle=False, verbose=0, callbacks=[Clock()])
    return times[1:]


if __name__ == "__main__":
    sys.exit(main())
