"""Run every benchmark script, then regenerate the report from their results.

The scripts run one after another in subprocesses (they load the CPU fully; running them side by
side would measure each other). A failing benchmark is reported and the others still run.

Usage:
    python benchmarks/run_all.py                 # results/*.json and benchmarks/README.md
    python benchmarks/run_all.py --quick         # tiny settings, written to a temporary folder
    python benchmarks/run_all.py --only train_step scaling
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import report  # noqa: E402

# Benchmark scripts in run order; ones not present in this checkout are skipped.
BENCHMARKS = ("train_step", "scaling", "pipeline", "decode", "inference", "cpu_ceiling", "whitening", "whitening_grid", "int8_accuracy", "micro", "ablation", "jpeg_copy")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--results-dir", type=Path, help="where results and the report go (default "
                        "benchmarks/results and benchmarks/README.md; a temporary folder with --quick)")
    args = parser.parse_args(argv)
    results_dir = args.results_dir
    if results_dir is None and args.quick and not os.environ.get(common.RESULTS_DIR_ENV):
        # A smoke run must not overwrite the committed full results.
        results_dir = Path(tempfile.mkdtemp(prefix="nin-keras-bench-"))
    results_dir = results_dir or common.results_dir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    env[common.RESULTS_DIR_ENV] = str(results_dir)
    failed = []
    for name in args.only or BENCHMARKS:
        script = HERE / f"{name}.py"
        if not script.exists():
            print(f"[run_all] {name}: no {script.name} in this checkout, skipped", file=sys.stderr)
            continue
        print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
        code = subprocess.run([sys.executable, str(script), *(["--quick"] if args.quick else [])], env=env).returncode
        if code:
            failed.append(name)
            print(f"[run_all] {name} exited with code {code}", file=sys.stderr)
    print(report.write_report(results_dir, report.default_output(results_dir)))
    if failed:
        print(f"[run_all] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
