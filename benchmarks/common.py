"""Shared benchmark plumbing: machine info, median-of-runs timing, JSON results.

Every benchmark script ends its ``main`` with ``finish`` (the result written to
``benchmarks/results/<name>.json`` through ``write_result``, its path and summary printed), the
command it records made by ``command_line``; ``benchmarks/report.py`` turns those files into the
tables in ``benchmarks/README.md``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Smoke runs and tests point this elsewhere so they never overwrite the committed results.
RESULTS_DIR_ENV = "NIN_KERAS_BENCH_RESULTS"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


#: CPU features that decide which kernels the runtimes pick: int8 and bfloat16 speed differ by
#: several times between AVX2 alone, AVX-512 VNNI and AMX (oneDNN uses AMX tiles where present).
SPEED_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The :data:`SPEED_FEATURES` the CPU reports in ``cpuinfo`` (empty where it cannot be read)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in SPEED_FEATURES if f in flags]


def machine_info() -> dict[str, Any]:
    """CPU model, core count and library versions, recorded with every result."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "isa": " ".join(cpu_features()) or "unknown",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    # Installed versions from package metadata: importing TensorFlow just to read it costs seconds.
    distributions = {"numpy": ("numpy",), "tensorflow": ("tensorflow", "tensorflow-cpu"), "keras": ("keras",),
                     "onnxruntime": ("onnxruntime",), "ai_edge_litert": ("ai-edge-litert",),
                     "openvino": ("openvino",), "jax": ("jax",)}
    info["accelerator"] = accelerator_name()
    for module, names in distributions.items():
        info[module] = None  # a missing optional runtime is recorded, not fatal
        for name in names:
            try:
                info[module] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return info


def accelerator_name() -> str | None:
    """The GPU's name as ``nvidia-smi`` gives it (the first one), or None on a machine without one:
    a result measured on a GPU machine must name the GPU, not only its host CPU."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = done.stdout.strip().splitlines() if done.returncode == 0 else []
    return f"{names[0]} (x{len(names)})" if len(names) > 1 else (names[0] if names else None)


def time_call(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times; return median/min/max seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "repeats": repeats}


def results_dir() -> Path:
    """Where results go: ``$NIN_KERAS_BENCH_RESULTS`` if set, else ``benchmarks/results``."""
    return Path(os.environ.get(RESULTS_DIR_ENV) or RESULTS_DIR)


def write_result(name: str, rows: list[dict[str, Any]], command: str, **extra: Any) -> Path:
    """Write one benchmark's rows with machine info and the command that produced them."""
    from nin_keras.io_utils import atomic_write

    payload = {"benchmark": name, "command": command, "machine": machine_info(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows, **extra}
    path = results_dir() / f"{name}.json"
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def command_line(script: str | os.PathLike, argv: Sequence[str] | None = None) -> str:
    """The command a result records: ``python benchmarks/<file name of script> ARGS``, shell-quoted.

    Args:
        script: the benchmark's ``__file__``.
        argv: the arguments its ``main`` was given; None means the process's own (``sys.argv[1:]``).
    """
    arguments = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", f"benchmarks/{Path(script).name}", *arguments])


def finish(name: str, rows: list[dict[str, Any]], command: str, **extra: Any) -> Path:
    """The end of a benchmark's ``main``: write its result (``write_result``, ``extra`` included),
    print the path, then a ``summary`` mapping among ``extra`` one ``key: value`` a line.

    The README's tables are not touched here: ``report.py`` (which ``run_all.py`` runs after the
    benchmarks) renders them from all the results.
    """
    path = write_result(name, rows, command, **extra)
    print(f"wrote {path}")
    summary = extra.get("summary")
    if isinstance(summary, Mapping):
        for key, value in summary.items():
            print(f"{key}: {value}")
    return path


def exit_status(rows: list[dict[str, Any]]) -> int:
    """0 when every row ran (``status`` "ok") or was skipped on purpose ("skipped ..."), else 1."""
    return 0 if all(row.get("status") == "ok" or row["status"].startswith("skipped") for row in rows) else 1
