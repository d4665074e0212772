"""Inference benchmark: Keras, SavedModel, TFLite (LiteRT), ONNX Runtime and OpenVINO, float and int8.

For NIN CIFAR-10 (the pretrained preset, preprocessing baked in: raw pixels in) it measures, in
one run on this machine:

- latency at batch 1 (median of many single-image calls) and throughput at batch 64
  (images/s from the median batch time) for Keras ``model.predict``, a compiled ``tf.function``
  call (graph mode, and XLA ``jit_compile=True``), the SavedModel's ``serving_default``, TFLite
  float32 / int8 (full integer), and the ONNX float32 / int8 (static QDQ) files under ONNX Runtime
  and under OpenVINO (non-quantized ops in float32);
- LiteRT with 1 and 2 threads (XNNPACK), ONNX Runtime with 1 and 2 intra-op threads and with
  basic vs all graph optimizations, OpenVINO with 1 and 2 threads;
- each artifact's accuracy on CIFAR-10 (JPEG copy) test images and its top-1 agreement with Keras;
- the compact preset (``--compact``, GCN + 7x7 ``ConvWhitening`` inside): float32, int8 and
  integer-only (uint8 in and out) raw-pixel artifacts with 2 threads, their sizes, and the ratios
  the edge goals ask for (``compact_*`` in the summary);
- the network alone (``include_preprocessing=False``: GCN + ZCA done by the caller), compiled
  Keras and the int8 artifacts with 2 threads: how fast int8 gets without the float whitening
  matmul, an upper bound on any raw-pixel int8 artifact built from these runtimes' kernels.

Artifacts come from ``nin_keras.export.export`` (so each passed its parity check first) and are
written to a temporary folder.

Usage:
    python benchmarks/inference.py                 # writes results/inference.json
    python benchmarks/inference.py --quick         # random-weight models, few images (smoke run)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nin_keras.export import ParityTolerance, export  # noqa: E402
from nin_keras.export import samples  # noqa: E402
from nin_keras.zoo.classifier import split_preprocessing  # noqa: E402
from nin_keras.export.runtime import load_onnx, load_tflite  # noqa: E402
from nin_keras.export.openvino import load_openvino  # noqa: E402
from nin_keras.export.savedmodel import load_savedmodel  # noqa: E402

COLUMNS = ["runtime", "artifact", "input", "settings", "latency_b1_ms", "throughput_b64_ips",
           "accuracy", "agreement", "size_mb"]
RAW, PREPROCESSED = "raw pixels", "preprocessed"


def source_model(preset: str, quick: bool) -> tuple[Any, keras.Model]:
    """``(what export() takes, the float32-input Keras inference model)``."""
    from nin_keras.zoo import ImageClassifier, create_model

    if quick:
        keras.utils.set_random_seed(0)
        model = ImageClassifier(create_model("nin_cifar10"), [keras.layers.Rescaling(1 / 255)],
                                name="nin_cifar10_random")
        return model, model
    return preset, ImageClassifier.from_preset(preset)


def measure(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray,
            reference_top1: np.ndarray | None, repeats: int) -> dict[str, Any]:
    """Latency at batch 1, throughput at batch 64, accuracy and agreement on ``images``."""
    one, batch = images[:1], images[:64]
    latency = common.time_call(lambda: run(one), repeats=repeats * 10, warmup=3)
    throughput = common.time_call(lambda: run(batch), repeats=repeats, warmup=1)
    top1 = np.concatenate([np.asarray(run(images[i:i + 64])).argmax(-1)
                           for i in range(0, len(images), 64)])
    return {
        "latency_b1_ms": 1e3 * latency["median_s"],
        "throughput_b64_ips": len(batch) / throughput["median_s"],
        "accuracy": 100.0 * float(np.mean(top1 == labels)),
        "agreement": None if reference_top1 is None else float(np.mean(top1 == reference_top1)),
        "_top1": top1,
    }


def compact_source(preset: str, quick: bool, images: np.ndarray) -> tuple[Any, keras.Model]:
    """``(what export() takes, the float32-input Keras model)`` for the compact rows; ``quick``:
    random network weights behind GCN and a 5x5 ``ConvWhitening`` fitted on ``images``."""
    from nin_keras.layers import ConvWhitening, GlobalContrastNormalization
    from nin_keras.zoo import ImageClassifier, create_model

    if quick:
        keras.utils.set_random_seed(0)
        gcn = GlobalContrastNormalization(scale=55.0)
        whitening = ConvWhitening(kernel_size=5).adapt(keras.ops.convert_to_numpy(gcn(images)))
        model = ImageClassifier(create_model("nin_cifar10"), [gcn, whitening], name="nin_cifar10_compact_random")
        return model, model
    return preset, ImageClassifier.from_preset(preset)


def add_compact_rows(args, images: np.ndarray, out: Path, add: Callable, size: Callable,
                     tolerance: ParityTolerance) -> None:
    """Raw-pixel artifacts of the compact preset (GCN + 7x7 ConvWhitening inside): float32, int8
    (whitening float) and integer-io (TFLite: uint8 in and out, nothing float; ONNX: the whitening
    quantized too), 2 threads, plus its compiled Keras call."""
    exported_from, compact = compact_source(args.compact, args.quick, images)
    graph = tf.function(lambda x: compact(x, training=False))
    add("keras", "compact tf.function", "graph", lambda x: graph(tf.constant(x)).numpy())
    floats = export(exported_from, ("tflite", "onnx"), out)
    int8 = export(exported_from, ("tflite", "onnx"), out, quantize="int8", tolerance=tolerance)
    integer_only = export(exported_from, ("tflite", "onnx"), out, quantize="int8", integer_io=True,
                          tolerance=tolerance)
    for name, paths in (("float32", floats), ("int8", int8), ("int8 integer-io", integer_only)):
        add("litert", f"compact tflite {name}", "XNNPACK, 2 thread(s)",
            load_tflite(paths["tflite"], num_threads=2), size(paths["tflite"]))
        if "onnx" in paths:
            add("onnxruntime", f"compact onnx {name}", "2 thread(s), opt=all",
                load_onnx(paths["onnx"], num_threads=2, graph_optimization="all"), size(paths["onnx"]))
            add("openvino", f"compact onnx {name}", "2 thread(s), f32",
                load_openvino(paths["onnx"], num_threads=2), size(paths["onnx"]))


#: Calls per turn of :func:`paired_ratio` that are not timed, then the calls that are.
SETTLE_CALLS, TIMED_CALLS = 2, 3


def paired_ratio(first: Callable, first_batch: np.ndarray, second: Callable, second_batch: np.ndarray,
                 rounds: int) -> dict[str, float]:
    """Batch times of two runners timed in alternating turns (first, second, first, ...), so that a
    machine that speeds up or slows down during the run moves both alike; ``ratio`` is the first's
    throughput over the second's, from the median times.

    A turn's first :data:`SETTLE_CALLS` calls are not timed: a runtime's worker threads keep
    spinning after a call returns (ONNX Runtime's for about two batch-64 calls of this network),
    and on two cores the runner called next shares the cores with that spin. Timed from its
    first call, each ONNX Runtime session ran at half speed.
    """
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for series, run, batch in ((times[0], first, first_batch), (times[1], second, second_batch)):
            for _ in range(SETTLE_CALLS):
                run(batch)
            for _ in range(TIMED_CALLS):
                start = time.perf_counter()
                run(batch)
                series.append(time.perf_counter() - start)
    first_s, second_s = (statistics.median(series) for series in times)
    return {"ratio": second_s / first_s, "median_ms": 1e3 * first_s, "network_only_median_ms": 1e3 * second_s}


def network_only_ratios(rows: list[dict[str, Any]], runners: dict[int, tuple[Callable, np.ndarray]],
                        rounds: int) -> dict[str, dict[str, float]]:
    """Each compact int8 artifact against the network-alone int8 artifact of its runtime, the
    two timed in alternation at batch 64 (:func:`paired_ratio`)."""
    bare = {r["runtime"]: r for r in rows if r["input"] == PREPROCESSED and "int8" in r["artifact"]}
    ratios = {}
    for row in rows:
        if row["artifact"].startswith("compact ") and "int8" in row["artifact"] and row["runtime"] in bare:
            (run, inputs), (bare_run, bare_inputs) = runners[id(row)], runners[id(bare[row["runtime"]])]
            ratios[f"{row['artifact']} on {row['runtime']}"] = paired_ratio(
                run, inputs[:64], bare_run, bare_inputs[:64], rounds)
    return ratios


def compact_summary(rows: list[dict[str, Any]], compiled: float,
                    versus_bare: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The issue's figures for the compact raw-pixel int8 artifacts, from rows of this one run and
    the paired ratios of :func:`network_only_ratios`."""
    compact = [r for r in rows if r["artifact"].startswith("compact ") and "int8" in r["artifact"]]
    if not compact:
        return {}
    best_per_runtime: dict[str, dict[str, Any]] = {}
    for label, paired in versus_bare.items():
        artifact, runtime = label.rsplit(" on ", 1)
        if paired["ratio"] > best_per_runtime.get(runtime, {"ratio": -1.0})["ratio"]:
            best_per_runtime[runtime] = {"artifact": artifact, "ratio": paired["ratio"]}
    fastest = min(compact, key=lambda r: r["latency_b1_ms"])
    best = max(compact, key=lambda r: r["throughput_b64_ips"])
    return {
        "compact_int8_b64_vs_network_only_int8_same_runtime": versus_bare,
        "compact_best_ratio_per_runtime": best_per_runtime,
        "compact_best_int8_b1": f"{fastest['artifact']} on {fastest['runtime']}: {fastest['latency_b1_ms']:.3f} ms",
        "compact_best_int8_b64": f"{best['artifact']} on {best['runtime']}: {best['throughput_b64_ips']:.0f} img/s",
        "compact_best_int8_vs_dense_compiled_keras": best["throughput_b64_ips"] / compiled,
        "compact_goals": "raw-pixel int8 b64 >= 0.9x the network-alone int8 on the same runtime; b1 <= 0.6 ms on "
                         "the best runtime; b64 >= 5x the dense-ZCA preset's compiled Keras call",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="nin_cifar10", help="zoo name or preset folder")
    parser.add_argument("--images", type=int, default=2000, help="CIFAR-10 test images for accuracy")
    parser.add_argument("--repeats", type=int, default=10, help="timed batch-64 calls (x10 at batch 1)")
    parser.add_argument("--quick", action="store_true", help="random-weight model, few images")
    parser.add_argument("--compact", default="nin_cifar10.caffe_compact",
                        help="compact-whitening preset timed beside the dense one ('' to skip)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeats = 128, 2

    exported_from, keras_model = source_model(args.preset, args.quick)
    images, labels, described = samples.parity_images("cifar10", args.images, (32, 32, 3))
    if labels is None:
        raise SystemExit(f"inference benchmark needs the local CIFAR-10 copy: {described}")
    images = images.astype(np.float32)
    preprocessing, network = split_preprocessing(keras_model)
    preprocessed = keras.Sequential([keras.Input(images.shape[1:]), *preprocessing]).predict(
        images, batch_size=500, verbose=0)

    rows: list[dict[str, Any]] = []
    runners: dict[int, tuple[Callable, np.ndarray]] = {}  # id(row) -> (its runner, its inputs)

    def add(runtime: str, artifact: str, settings: str, run, size: int | None = None,
            network_only: bool = False) -> None:
        # Compact rows agree with the compact Keras model, the others with the dense one.
        own = [r for r in rows if r["artifact"] == "compact tf.function"] if artifact.startswith("compact ") else rows
        reference = own[0]["_top1"] if own else None
        inputs = preprocessed if network_only else images
        row = {"runtime": runtime, "artifact": artifact, "input": PREPROCESSED if network_only else RAW,
               "settings": settings, **measure(run, inputs, labels, reference, args.repeats),
               "size_mb": None if size is None else size / 1e6}
        rows.append(row)
        runners[id(row)] = (run, inputs)
        print(f"{runtime:<14} {artifact:<30} {row['input']:<13} {settings:<22} {row['latency_b1_ms']:8.2f} ms "
              f"{row['throughput_b64_ips']:8.0f} img/s  acc {row['accuracy']:.2f}%", flush=True)

    add("keras", "model.predict", "batch_size=64",
        lambda x: keras_model.predict(x, batch_size=64, verbose=0))
    graph = tf.function(lambda x: keras_model(x, training=False))
    add("keras", "tf.function", "graph", lambda x: graph(tf.constant(x)).numpy())
    xla = tf.function(lambda x: keras_model(x, training=False), jit_compile=True)
    add("keras", "tf.function", "jit_compile=True (XLA)", lambda x: xla(tf.constant(x)).numpy())

    with tempfile.TemporaryDirectory(prefix="nin_keras_bench_") as tmp:
        floats = export(exported_from, ("savedmodel", "tflite", "onnx"), tmp)
        # Random weights give near-uniform outputs whose int8 top-1 is arbitrary: no bounds then.
        loose = ParityTolerance(min_top1_agreement=0.0, max_accuracy_drop=100.0)
        int8 = export(exported_from, ("tflite", "onnx"), tmp, quantize="int8",
                      tolerance=loose if args.quick else ParityTolerance())
        size = lambda p: sum(f.stat().st_size for f in Path(p).rglob("*") if f.is_file()) \
            if Path(p).is_dir() else Path(p).stat().st_size  # noqa: E731
        add("tensorflow", "SavedModel", "serving_default", load_savedmodel(floats["savedmodel"]),
            size(floats["savedmodel"]))
        for name, paths in (("float32", floats), ("int8", int8)):
            for threads in (1, 2):
                add("litert", f"tflite {name}", f"XNNPACK, {threads} thread(s)",
                    load_tflite(paths["tflite"], num_threads=threads), size(paths["tflite"]))
            for threads in (1, 2):
                for level in ("basic", "all"):
                    add("onnxruntime", f"onnx {name}", f"{threads} thread(s), opt={level}",
                        load_onnx(paths["onnx"], num_threads=threads, graph_optimization=level),
                        size(paths["onnx"]))
            for threads in (1, 2):
                add("openvino", f"onnx {name}", f"{threads} thread(s), f32",
                    load_openvino(paths["onnx"], num_threads=threads), size(paths["onnx"]))

        network_graph = tf.function(lambda x: network(x, training=False))
        add("keras", "tf.function", "graph", lambda x: network_graph(tf.constant(x)).numpy(),
            network_only=True)
        bare = Path(tmp) / "network_only"
        bare_int8 = export(exported_from, ("tflite", "onnx"), bare, quantize="int8",
                           include_preprocessing=False,
                           tolerance=loose if args.quick else ParityTolerance())
        add("litert", "tflite int8", "XNNPACK, 2 thread(s)", load_tflite(bare_int8["tflite"], num_threads=2),
            size(bare_int8["tflite"]), network_only=True)
        add("onnxruntime", "onnx int8", "2 thread(s), opt=all",
            load_onnx(bare_int8["onnx"], num_threads=2, graph_optimization="all"),
            size(bare_int8["onnx"]), network_only=True)
        add("openvino", "onnx int8", "2 thread(s), f32", load_openvino(bare_int8["onnx"], num_threads=2),
            size(bare_int8["onnx"]), network_only=True)

        if args.compact:
            add_compact_rows(args, images, Path(tmp) / "compact", add, size,
                             loose if args.quick else ParityTolerance())
        versus_bare = network_only_ratios(rows, runners, 3 * args.repeats)

    for row in rows:
        del row["_top1"]
    raw_rows = [r for r in rows if r["input"] == RAW and not r["artifact"].startswith("compact ")]
    bare_rows = [r for r in rows if r["input"] == PREPROCESSED]
    compiled = max(r["throughput_b64_ips"] for r in raw_rows if r["artifact"] == "tf.function")
    keras_accuracy = rows[0]["accuracy"]
    int8_rows = [r for r in raw_rows if "int8" in r["artifact"]]
    float_rows = [r for r in raw_rows if r["runtime"] != "keras" and "int8" not in r["artifact"]]
    bare_compiled = next(r["throughput_b64_ips"] for r in bare_rows if r["runtime"] == "keras")
    bare_int8 = max((r for r in bare_rows if "int8" in r["artifact"]), key=lambda r: r["throughput_b64_ips"])
    best_int8 = max(int8_rows, key=lambda r: r["throughput_b64_ips"])
    best_float = max(float_rows, key=lambda r: r["throughput_b64_ips"])
    fastest_b1 = min(int8_rows, key=lambda r: r["latency_b1_ms"])
    summary = {
        "compiled_keras_ips": compiled,
        "best_int8": f"{best_int8['artifact']} on {best_int8['runtime']} ({best_int8['settings']})",
        "best_int8_speedup_b64": best_int8["throughput_b64_ips"] / compiled,
        "best_int8_latency_b1_ms": fastest_b1["latency_b1_ms"],
        "best_int8_accuracy_drop": keras_accuracy - best_int8["accuracy"],
        "best_float": f"{best_float['artifact']} on {best_float['runtime']} ({best_float['settings']})",
        "best_float_vs_compiled_keras": best_float["throughput_b64_ips"] / compiled,
        "network_only_best_int8": f"{bare_int8['artifact']} on {bare_int8['runtime']} ({bare_int8['settings']})",
        "network_only_int8_vs_network_only_keras": bare_int8["throughput_b64_ips"] / bare_compiled,
        "network_only_int8_vs_compiled_keras": bare_int8["throughput_b64_ips"] / compiled,
        "goals": "int8 >= 4x compiled Keras at batch 64, < 1.5 ms at batch 1, accuracy within "
                 "0.5 points of float; best float >= compiled Keras",
    }
    summary.update(compact_summary(rows, compiled, versus_bare))
    common.finish(
        "inference", rows, common.command_line(__file__, argv), title="Inference: Keras vs SavedModel, TFLite, ONNX Runtime and OpenVINO",
        columns=COLUMNS, summary=summary, images=described, quick=args.quick,
        model=str(exported_from if isinstance(exported_from, str) else exported_from.name),
        notes=["latency: median of single-image calls; throughput: 64 / median batch-64 time",
               "accuracy in percent on CIFAR-10 (JPEG copy) test images; agreement: top-1 equal "
               "to Keras model.predict",
               "input: raw pixels = GCN + ZCA inside the artifact (the goals are for these); "
               "preprocessed = the network alone, fed whitened images",
               "network_only_int8_vs_compiled_keras: the network-alone int8 artifact against the "
               "raw-pixel compiled Keras call, the most any raw-pixel int8 artifact could reach "
               "with these kernels (it still has to whiten)",
               "compact_int8_b64_vs_network_only_int8_same_runtime: batch-64 calls of the two artifacts "
               "in alternation, the ratio of their median times (so drift in the machine's speed "
               "during the run moves both alike)"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
