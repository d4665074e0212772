"""The lines the README shows, found and run as written: its ``bash`` blocks by heading, each line
through bash with the scripts installed beside the interpreter running the tests (``nin-keras``)
first on ``PATH``. Shared by ``tests/test_readme.py`` and ``tests_jax/`` (standard library and
pytest only, so it imports on either venv)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks() -> dict[str, list[str]]:
    """``{the heading above it: [its lines]}`` for each ``bash`` block of the README; a heading is a
    Markdown one or a paragraph's opening bold words (``**Training on JAX.**``)."""
    blocks, heading = {}, ""
    for part in re.split(r"(```bash\n.*?```)", README.read_text(), flags=re.S):
        if part.startswith("```bash"):
            assert heading not in blocks, f"two bash blocks under {heading!r}: give each its own heading"
            blocks[heading] = [line for line in part.splitlines()[1:-1] if line.strip()]
        else:
            headings = re.findall(r"^(?:#+ (.+)|\*\*([^*]+)\*\*)", part, flags=re.M)
            heading = "".join(headings[-1]) if headings else heading
    return blocks


def command_lines(heading: str) -> list[tuple[str, str | None]]:
    """A block's command lines, each with the line under it when that is a comment: the output the
    README shows for it."""
    lines = readme_blocks()[heading]
    return [(line, lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("#") else None)
            for i, line in enumerate(lines) if not line.startswith("#")]


def command(line: str) -> str:
    """The command of a README line, without its comment."""
    return line.split("  #")[0].strip()


def line_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI's own default is what a reader gets
    return env


def shell(line: str, cwd: Path, timeout: int = 1800, **env: str) -> str:
    """``line`` run by bash exactly as written (its comment included); its output."""
    done = subprocess.run(["bash", "-c", line], cwd=cwd, env=line_env(**env), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


def start(line: str, cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(["bash", "-c", line], cwd=cwd, env=line_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop(process: subprocess.Popen, sig: int = signal.SIGKILL) -> str:
    """Signal the whole process group of ``process`` (bash and the command); its output."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    return process.communicate(timeout=60)[0]


def wait_for(condition, process: subprocess.Popen, what: str, timeout: int = 1200) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"stopped before {what}: {process.communicate()[0][-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout} s: {stop(process)[-3000:]}")
        time.sleep(2)


def printed_line(process: subprocess.Popen, pattern: str, what: str, timeout: int = 600) -> re.Match:
    """Read ``process``'s output until a line matches ``pattern``; the match. A thread reads, so a
    child that goes quiet without exiting fails the test at ``timeout`` instead of hanging it."""
    seen, found = [], []

    def read() -> None:
        for line in process.stdout:
            seen.append(line)
            if match := re.search(pattern, line):
                found.append(match)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if found:
        return found[0]
    if reader.is_alive():
        os.killpg(process.pid, signal.SIGKILL)  # ends the reader's pipe, so the thread ends too
        reader.join(60)
        pytest.fail(f"no {what} after {timeout} s: {''.join(seen)[-3000:]}")
    pytest.fail(f"stopped before {what}: {''.join(seen)[-3000:]}")


def kill_then_rerun_resumes(line: str, cwd: Path, checkpoint: Path, **env: str) -> int:
    """"Kill it, rerun it: it resumes": ``line`` killed once ``checkpoint`` exists, then run again
    until it says where it resumes; that step."""
    first = start(line, cwd, **env)
    wait_for(checkpoint.is_file, first, "checkpoint")
    stop(first)
    again = start(line, cwd, **env)
    try:
        resumed = printed_line(again, rf"Resuming from .*{re.escape(checkpoint.name)}: epoch \d+, step (\d+)",
                               "'Resuming from' line")
    finally:
        stop(again)
    return int(resumed[1])
