"""CPU ceiling: this CPU's peak fp32 and int8 multiply-add rates, and what they allow NIN.

The edge goals ask an int8 raw-pixel artifact for a multiple of the dense-ZCA preset's compiled
Keras call. Whether a multiple is reachable is arithmetic: any int8 artifact still does the
network's multiply-adds, so it runs at most ``int8 peak MAC/s / network MACs`` images per second,
with a perfect runtime and free preprocessing. This script measures, in one run:

- the peak rates of the AVX-512 instructions the runtimes' kernels are built on, fp32 FMA and
  int8 VNNI (``peak_macs.c``, compiled here with gcc and run on every core): register-resident
  loops, no memory traffic, so no kernel can beat them;
- a large fp32 ``tf.matmul`` (the oneDNN kernels behind Keras's convolutions) against the fp32 peak;
- NIN CIFAR-10's compiled Keras call at batch 64 (the dense-ZCA preset, raw pixels in): its rate
  over the network's multiply-adds, and its fraction of the fp32 peak;
- ``int8_ceiling_vs_compiled_keras``: the int8 peak over the network's MACs, over the compiled
  Keras throughput. On a CPU with AMX (``amx_int8``) the int8 tiles go beyond VNNI and this is
  not a bound (``amx_int8`` in the summary says so).

Usage:
    python benchmarks/cpu_ceiling.py           # writes results/cpu_ceiling.json
    python benchmarks/cpu_ceiling.py --quick   # short loops, small matrix, random-weight model
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from inference import source_model  # noqa: E402
from train_step import matmul_gflops  # noqa: E402

COLUMNS = ["kernel", "dtype", "runtime", "threads", "gmacs", "status"]
#: Each instruction's multiply-adds per call: 16 fp32 lanes; 16 int32 lanes of 4 uint8 x int8 products.
PEAK_INSTRUCTIONS = {"fp32": "vfmadd231ps zmm (AVX-512 FMA)", "int8": "vpdpbusd zmm (AVX-512 VNNI)"}


def peak_rows(iterations: int, repeats: int) -> list[dict[str, Any]]:
    """Peak fp32 and int8 multiply-add rates from ``peak_macs.c``, one thread per core; rows with a
    ``status`` saying why where the CPU lacks AVX-512 VNNI or there is no gcc."""
    threads = os.cpu_count()
    rows = [{"kernel": PEAK_INSTRUCTIONS[dtype], "dtype": dtype, "runtime": "peak_macs.c", "threads": threads,
             "gmacs": None, "status": "ok"} for dtype in ("fp32", "int8")]
    missing = [flag for flag in ("avx512f", "avx512_vnni") if flag not in common.cpu_features()]
    gcc = shutil.which("gcc")
    if missing or gcc is None:
        for row in rows:
            row["status"] = f"not measured: {'no ' + ', '.join(missing) if missing else 'no gcc'}"
        return rows
    with tempfile.TemporaryDirectory(prefix="nin_keras_peak_") as tmp:
        binary = Path(tmp) / "peak_macs"
        subprocess.run([gcc, "-O2", "-mavx512f", "-mavx512vnni", "-fopenmp", str(HERE / "peak_macs.c"),
                        "-o", str(binary)], check=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="true")
        for row in rows:
            out = subprocess.run([str(binary), row["dtype"], str(iterations), str(repeats)], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            row["gmacs"], row["checksum"] = float(out[0]) / 1e9, float(out[1])
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Named by tag: the default nin_cifar10 weights moved to a preset without whitening.
    parser.add_argument("--preset", default="nin_cifar10.caffe",
                        help="the dense-ZCA preset whose compiled call is timed (default: %(default)s, the one "
                             "benchmarks/inference.py's edge goals compare against)")
    parser.add_argument("--size", type=int, default=4096, help="square tf.matmul size")
    parser.add_argument("--iterations", type=int, default=20_000_000, help="loop iterations per peak call")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per row (the peaks keep the best)")
    parser.add_argument("--quick", action="store_true", help="short loops, small matrix, random-weight model")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.iterations, args.repeats = 512, 200_000, 2

    from nin_keras.models import count_flops
    from nin_keras.zoo.classifier import split_preprocessing

    rows = peak_rows(args.iterations, args.repeats)
    gflops, _ = matmul_gflops(args.size, args.repeats)
    rows.append({"kernel": f"matmul {args.size} x {args.size}", "dtype": "fp32", "runtime": "tensorflow",
                 "threads": os.cpu_count(), "gmacs": gflops / 2, "status": "ok"})

    _, model = source_model(args.preset, args.quick)
    network_macs = count_flops(split_preprocessing(model)[1])
    compiled = tf.function(lambda x: model(x, training=False))
    batch = tf.constant(np.random.default_rng(2).uniform(0, 255, (64, 32, 32, 3)).astype(np.float32))
    keras_ips = 64 / common.time_call(lambda: compiled(batch).numpy(), repeats=args.repeats)["median_s"]
    # The network's multiply-adds only: the dense ZCA's 9.4 M (4% more) make the true rate higher.
    keras_gmacs = keras_ips * network_macs / 1e9
    rows.append({"kernel": f"{'random weights' if args.quick else args.preset} batch 64 (raw pixels in)",
                 "dtype": "fp32", "runtime": "keras tf.function", "threads": os.cpu_count(),
                 "gmacs": keras_gmacs, "status": "ok"})

    peaks = {r["dtype"]: r["gmacs"] for r in rows if r["runtime"] == "peak_macs.c"}
    summary: dict[str, Any] = {"network_macs_per_image": network_macs, "compiled_keras_ips": keras_ips,
                               "amx_int8": "amx_int8" in common.cpu_features()}
    if peaks["int8"] is not None:
        int8_ceiling_ips = peaks["int8"] * 1e9 / network_macs
        summary.update({
            "int8_peak_over_fp32_peak": peaks["int8"] / peaks["fp32"],
            "tf_matmul_fraction_of_fp32_peak": gflops / 2 / peaks["fp32"],
            "compiled_keras_fraction_of_fp32_peak": keras_gmacs / peaks["fp32"],
            "int8_ceiling_ips": int8_ceiling_ips,
            "int8_ceiling_vs_compiled_keras": int8_ceiling_ips / keras_ips,
        })
    common.finish(
        "cpu_ceiling", rows, common.command_line(__file__, argv), title="CPU ceiling: peak fp32 and int8 multiply-add rates against NIN's compiled call",
        columns=COLUMNS, summary=summary, quick=args.quick, model="random weights" if args.quick else args.preset,
        notes=["gmacs: billions of multiply-adds per second (x2 for GFLOP/s); peaks: the best of the timed calls, "
               "all cores; others: the median",
               "checksum: peak_macs.c's lane 0 summed over thread 0's chains, which the test recomputes (the "
               "instructions ran the counted number of times)",
               "int8_ceiling_ips = int8 peak / network MACs per image: the most any int8 artifact of the network "
               "could run at, preprocessing, pooling and requantization free; int8_ceiling_vs_compiled_keras: that "
               "over the dense-ZCA preset's compiled Keras call measured here"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
