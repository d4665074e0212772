"""TensorFlow Lite for Microcontrollers: run integer-only ``.tflite`` artifacts in TFLM's own
interpreter (the ``tflite-micro`` package) and measure what a microcontroller needs for them.

TFLM has no dynamic memory: every tensor lives in one *tensor arena* the application reserves
up front, and the model itself is a constant array in flash. ``micro_report`` gives both
figures for an artifact: the flatbuffer's size (flash) and the smallest arena in which TFLM's
allocator plans all tensors (RAM, found by bisection to 1 KiB with the real allocator, not
estimated), and checks them against typical microcontroller classes.

TFLM checks some kernel parameters with ``abort()`` rather than an error status (an int8
comparison whose input scale is 1 or more, for one), so a model it cannot take may end the
process that loads it. The probe (allocation, bisection and one invocation) therefore runs in a
child process (``python -m nin_keras.export.micro FILE``), and a file only reaches an
interpreter in this process once the child has loaded and run it.

Example:
    >>> report = micro_report(Path("nin_mnist.int8io.tflite").read_bytes())
    >>> report["arena_bytes"], report["fits"]["1 MB flash / 512 KB RAM"]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nin_keras.errors import ExportError
from nin_keras.export.runtime import Runner, dequantize, quantize
from nin_keras.tf_startup import captured_output

#: Microcontroller classes an artifact is checked against: (flash bytes, RAM bytes). The RAM
#: figure is compared with the tensor arena alone; the application needs some RAM of its own.
MCU_CLASSES = {
    "256 KB flash / 64 KB RAM (Cortex-M0+/M4 class)": (256 * 1024, 64 * 1024),
    "1 MB flash / 512 KB RAM (Cortex-M7 class)": (1024 * 1024, 512 * 1024),
    "2 MB flash / 1 MB RAM (Cortex-M7/M55 class)": (2 * 1024 * 1024, 1024 * 1024),
}
_ARENA_STEP = 1024
_ARENA_LIMIT = 256 * 1024 * 1024
_PROBE_TIMEOUT_S = 600


def _runtime():
    try:
        from tflite_micro import runtime
    except ImportError as err:  # an optional dependency (the "export" extra)
        raise ExportError("running artifacts on TensorFlow Lite for Microcontrollers needs the "
                          "'tflite-micro' package (pip install 'nin-keras[export]')") from err
    return runtime


def _allocates(runtime, flatbuffer: bytes, arena: int) -> tuple[bool, list[str]]:
    """Whether TFLM allocates the model in ``arena`` bytes, and what it printed."""
    try:
        # TFLM's allocator prints every failed attempt from C++; the lines say why a model failed
        # (``Node BROADCAST_TO (number 9) failed to prepare with status 1``).
        with captured_output() as printed:
            runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena)
    except RuntimeError:
        return False, printed
    return True, printed


def _check_flatbuffer(flatbuffer: bytes, source: str) -> None:
    # TFLM's Python wrapper parses the file with the flatbuffers library before its C++ checks,
    # and garbage makes that raise struct.error: check the TFLite file identifier first.
    if len(flatbuffer) < 8 or flatbuffer[4:8] != b"TFL3":
        raise ExportError(f"{source} is not a TFLite flatbuffer (no 'TFL3' identifier)")


def _check_invokes(runtime, flatbuffer: bytes, arena: int) -> None:
    """Run the model once on a zero input: some kernels only check their input types when invoked
    (TFLM's SQRT prepares on an int8 tensor, then refuses it)."""
    with captured_output() as printed:
        interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena)
        source = interpreter.get_input_details(0)
        interpreter.set_input(np.zeros(source["shape"], source["dtype"]), 0)
        try:
            interpreter.invoke()
            failed = None
        except RuntimeError as err:
            failed = err
    if failed is not None:
        reason = "; ".join(line.strip() for line in printed if line.strip()) or str(failed)
        raise ExportError(f"TensorFlow Lite for Microcontrollers cannot run this model: {reason}")


def arena_bytes(flatbuffer: bytes) -> int:
    """The smallest tensor arena (a multiple of 1 KiB) in which TFLM allocates and runs the model.

    Measured in a child process, which TFLM may abort without harm to this one.

    Raises:
        ExportError: not a TFLite flatbuffer, or the model does not load or run in TFLM (an op
            without a TFLM kernel for its types, a kernel that aborts, or an arena above 256 MiB).
    """
    _check_flatbuffer(flatbuffer, "the model")
    _runtime()  # the missing-package error here, not in the child
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "model.tflite"
        model.write_bytes(flatbuffer)
        child = subprocess.run([sys.executable, "-m", __name__, str(model)], capture_output=True, text=True,
                               timeout=_PROBE_TIMEOUT_S)
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        raise ExportError(f"TensorFlow Lite for Microcontrollers aborted ({name}) while loading or running this "
                          "model: one of its kernels refuses the model's parameters")
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        raise ExportError(f"the TensorFlow Lite for Microcontrollers probe failed: {child.stderr.strip()[-500:]}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise ExportError(result["error"])
    return int(result["arena_bytes"])


def _probe_arena(flatbuffer: bytes) -> int:
    """:func:`arena_bytes` in this process (the child's side)."""
    runtime = _runtime()
    high = -(-max(_ARENA_STEP, len(flatbuffer)) // _ARENA_STEP) * _ARENA_STEP
    while True:
        allocated, printed = _allocates(runtime, flatbuffer, high)
        if allocated:
            break
        # An op TFLM cannot prepare fails the same way in any arena: no need to grow to 256 MiB.
        unprepared = [line.strip() for line in printed if "failed to prepare" in line or "not supported" in line
                      or "Didn't find op" in line]
        high *= 2
        if unprepared or high > _ARENA_LIMIT:
            reason = "; ".join(dict.fromkeys(unprepared)) or "no arena up to 256 MiB is enough"
            raise ExportError(f"TensorFlow Lite for Microcontrollers cannot allocate this model: {reason}")
    low = 0  # invariant: low fails (or is 0), high allocates
    while high - low > _ARENA_STEP:
        middle = (low + high) // 2 // _ARENA_STEP * _ARENA_STEP or _ARENA_STEP
        if middle <= low:
            break
        if _allocates(runtime, flatbuffer, middle)[0]:
            high = middle
        else:
            low = middle
    _check_invokes(runtime, flatbuffer, high)
    return high


def micro_report(flatbuffer: bytes) -> dict[str, Any]:
    """Flash size, tensor arena and the microcontroller classes the artifact fits.

    A model TFLM cannot load (an op it has no kernel for) gets ``arena_bytes: None``, fits
    nothing, and ``tflm_error`` says which node failed; the artifact itself stays valid for
    LiteRT and other integer runtimes.
    """
    flash = len(flatbuffer)
    try:
        arena, error = arena_bytes(flatbuffer), None
    except ExportError as err:
        arena, error = None, str(err)
    report = {
        "runtime": f"tflite-micro {_version()}",
        "flash_bytes": flash,
        "arena_bytes": arena,
        "fits": {name: arena is not None and flash <= max_flash and arena <= max_ram
                 for name, (max_flash, max_ram) in MCU_CLASSES.items()},
        "note": "flash: the flatbuffer alone; RAM: the tensor arena TFLM's allocator needs, measured by bisection "
                "(the application's own RAM comes on top)",
    }
    if error is not None:
        report["tflm_error"] = error
    return report


def _version() -> str:
    import importlib.metadata as md

    try:
        return md.version("tflite-micro")
    except md.PackageNotFoundError:
        return "unknown"


def load_micro(path: str | os.PathLike, arena_size: int | None = None) -> Runner:
    """Load an integer-only ``.tflite`` file in TFLM's interpreter as a NumPy function.

    TFLM runs one image at a time (its input shape is fixed at batch 1); the function loops.

    Args:
        path: the ``.tflite`` file (uint8 or int8 input and output).
        arena_size: tensor arena in bytes (default: ``arena_bytes`` of the file).

    Returns:
        ``run(images float32 [N, H, W, C] raw pixels) -> probabilities float32 [N, classes]``.
    """
    runtime = _runtime()
    flatbuffer = Path(path).read_bytes()
    _check_flatbuffer(flatbuffer, str(path))
    needed = arena_bytes(flatbuffer)  # the child process loads and runs it first
    if arena_size is not None and arena_size < needed:
        raise ExportError(f"{path} needs a tensor arena of {needed} bytes in TensorFlow Lite for "
                          f"Microcontrollers, {arena_size} given")
    arena = arena_size or needed
    try:
        with captured_output() as printed:  # TFLM's allocator prints its failed attempts
            interpreter = runtime.Interpreter.from_bytes(flatbuffer, arena_size=arena)
    except RuntimeError as err:
        raise ExportError(f"TensorFlow Lite for Microcontrollers cannot load {path}: {err} "
                          f"({'; '.join(line.strip() for line in printed[-3:])})") from err
    source, target = interpreter.get_input_details(0), interpreter.get_output_details(0)

    def run(images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if len(images) == 0:
            raise ValueError("images is an empty batch")
        out = []
        for image in images:
            interpreter.set_input(quantize(image[None], source), 0)
            interpreter.invoke()
            out.append(dequantize(interpreter.get_output(0), target)[0])
        return np.stack(out)

    return run


if __name__ == "__main__":
    # The child process of arena_bytes: one JSON line, the arena or why TFLM cannot take the model.
    try:
        print(json.dumps({"arena_bytes": _probe_arena(Path(sys.argv[1]).read_bytes())}))
    except ExportError as err:
        print(json.dumps({"error": str(err)}))
