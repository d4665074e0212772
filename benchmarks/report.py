"""Render every ``benchmarks/results/*.json`` into the tables of ``benchmarks/README.md``.

Any benchmark written through ``common.write_result`` is rendered the same way: a section with
its title, the command and date that produced it, its machine, its notes and extra scalar
fields, and one table of its rows. A result may choose and order its table's columns with a
``columns`` list; otherwise every key found in its rows is a column. Nested values (a dict of
median/min/max, a list) are written compactly in one cell.

Usage:
    python benchmarks/report.py                          # results/ -> benchmarks/README.md
    python benchmarks/report.py --results-dir /tmp/r     # /tmp/r/*.json -> /tmp/r/README.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

README = Path(__file__).resolve().parent / "README.md"
# Sections appear in this order; benchmarks not listed follow alphabetically.
ORDER = ("train_step", "train_step_batch_norm", "scaling", "pipeline", "decode", "inference", "cpu_ceiling", "whitening", "whitening_grid", "int8_accuracy", "micro", "ablation", "jpeg_copy")
# Payload keys that have their own place in a section (everything else is listed as a field).
_LAID_OUT = {"benchmark", "command", "machine", "date", "rows", "title", "columns", "notes", "summary"}


def load_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Read every ``*.json`` result in ``results_dir``, in report order.

    Raises:
        ValueError: a file is not JSON or has no ``rows`` list (the message names the file).
    """
    payloads = []
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"benchmark result {path} is not readable JSON: {err}") from err
        if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
            raise ValueError(f"benchmark result {path} has no `rows` list")
        payload.setdefault("benchmark", path.stem)
        payloads.append(payload)
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(payloads, key=lambda p: (rank.get(p["benchmark"], len(ORDER)), p["benchmark"]))


def format_value(value: Any) -> str:
    """One table cell: 4 significant digits (whole numbers from 10,000), compact nested values, ``|`` escaped."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        text = str(value)
    elif isinstance(value, (int, float)) and abs(value) >= 10_000:
        text = f"{value:,.0f}"  # no exponent notation for epoch seconds or multiply-adds
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, dict):
        text = ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        text = ", ".join(format_value(v) for v in value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table_columns(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> list[str]:
    """``columns`` that occur in some row (in that order), else every row key in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    if columns:
        return [c for c in columns if c in seen]
    return list(seen)


def render_table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (missing cells are empty)."""
    if not rows:
        return "_(no rows)_\n"
    cols = table_columns(rows, columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(format_value(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def machine_line(machine: dict[str, Any]) -> str:
    """The machine info of a result as one line."""
    return "; ".join(f"{key} {format_value(value)}" for key, value in machine.items())


def render_section(payload: dict[str, Any], common_machine: dict[str, Any] | None) -> str:
    """One benchmark's section: heading, provenance, notes, fields and the table."""
    parts = [f"## {payload.get('title') or payload['benchmark']}\n"]
    provenance = f"Produced by `{payload.get('command', '?')}` on {payload.get('date', '?')}"
    parts.append(f"{provenance} (`results/{payload['benchmark']}.json`).\n")
    machine = payload.get("machine")
    if machine and machine != common_machine:
        parts.append(f"Machine: {machine_line(machine)}.\n")
    summary = payload.get("summary")
    if isinstance(summary, str) and summary:
        parts.append(f"**{summary}**\n")
    fields = {k: v for k, v in payload.items() if k not in _LAID_OUT}
    if isinstance(summary, dict):  # a summary of named numbers reads best as fields
        fields = {**summary, **fields}
    if fields:
        parts.append("\n".join(f"- {key}: {format_value(value)}" for key, value in fields.items()) + "\n")
    parts.append(render_table(payload["rows"], payload.get("columns")))
    notes = payload.get("notes") or []
    parts += [f"{note}\n" for note in ([notes] if isinstance(notes, str) else notes)]
    return "\n".join(parts)


def render_report(payloads: list[dict[str, Any]]) -> str:
    """The whole README: how to regenerate it, the machine, then one section per benchmark."""
    machines = [p["machine"] for p in payloads if p.get("machine")]
    # The machine is printed once when every result shares it, else in each section.
    common_machine = machines[0] if machines and all(m == machines[0] for m in machines) else None
    parts = [
        "# Benchmarks\n",
        "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; do not edit by "
        "hand. `nin-keras bench` (or `python benchmarks/run_all.py`) reruns every benchmark and then "
        "this report; `--quick` gives a smoke run with tiny settings in a temporary folder.\n",
    ]
    if common_machine:
        parts.append(f"Machine: {machine_line(common_machine)}.\n")
    if not payloads:
        parts.append("_No results yet._\n")
    parts += [render_section(p, common_machine) for p in payloads]
    return "\n".join(parts)


def write_report(results_dir: str | Path, output: str | Path) -> Path:
    """Render ``results_dir``'s results into ``output`` (written atomically)."""
    from nin_keras.io_utils import atomic_write

    text = render_report(load_results(results_dir))
    with atomic_write(output) as tmp:
        tmp.write_text(text)
    return Path(output)


def default_output(results_dir: str | Path) -> Path:
    """``benchmarks/README.md`` for the default results folder, else ``README.md`` inside ``results_dir``."""
    results_dir = Path(results_dir)
    return README if results_dir.resolve() == common.RESULTS_DIR.resolve() else results_dir / "README.md"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-dir", type=Path, help="folder of *.json results (default benchmarks/results)")
    parser.add_argument("--output", type=Path, help="README to write (default benchmarks/README.md, "
                        "or README.md inside a non-default --results-dir)")
    args = parser.parse_args(argv)
    results_dir = args.results_dir or common.results_dir()
    print(write_report(results_dir, args.output or default_output(results_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
