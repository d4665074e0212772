"""What every ``nin-keras`` subcommand shares: quiet start-up and one exit-code rule."""

import os
import subprocess
import sys

import pytest

from nin_keras.cli import main
from nin_keras.tf_startup import _filtered_stderr, is_startup_noise

# Lines TensorFlow 2.21 printed on this project's CPU machine at every CLI start before the fix.
TENSORFLOW_STARTUP_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796192205.980908    4948 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different "
    "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796192205.981304    4948 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "I0000 00:00:1796192206.031060    4948 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX_VNNI FMA, in "
    "other operations, rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796192209.733533    4948 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
    "error: Failed call to cuInit: UNKNOWN ERROR (303)",
]
# What must still reach the user.
REAL_PROBLEMS = [
    "E0000 00:00:1796192209.733533    4948 saved_model.cc:52] could not read variables: corrupt file",
    "Traceback (most recent call last):",
    "nin-keras eval: error: Unknown zoo model 'x'.",
    "UserWarning: Protobuf gencode version 5.28.3 is older than the runtime version 6.31.1",
]


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI's own default is what is tested
    return subprocess.run([sys.executable, "-m", "nin_keras.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.parametrize("line", TENSORFLOW_STARTUP_LINES)
def test_startup_lines_are_noise(line):
    assert is_startup_noise(line)


@pytest.mark.parametrize("line", REAL_PROBLEMS)
def test_real_problems_are_not_noise(line):
    assert not is_startup_noise(line)


def test_filtered_stderr_drops_noise_and_replays_the_rest_at_the_file_descriptor_level():
    # C++ writes to fd 2 directly, so the child writes with os.write, not print.
    child = (
        "import os, sys\n"
        "from nin_keras.tf_startup import _filtered_stderr\n"
        "with _filtered_stderr():\n"
        f"    os.write(2, {(chr(10).join(TENSORFLOW_STARTUP_LINES[:3] + REAL_PROBLEMS[:1]) + chr(10)).encode()!r})\n"
        "    print('from python', file=sys.stderr)\n"
        "    os.write(2, b'no newline at the end')\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"{REAL_PROBLEMS[0]}\nfrom python\nno newline at the end"


def test_filtered_stderr_replays_when_the_body_raises(capfd):
    with pytest.raises(RuntimeError, match="import failed"):
        with _filtered_stderr():
            os.write(2, b"ImportError: libcudart.so.12: cannot open shared object file\n")
            raise RuntimeError("import failed")
    assert "libcudart.so.12: cannot open shared object file" in capfd.readouterr().err


def test_quiet_import_loads_nothing_until_tensorflow_is_imported_then_filters_it():
    child = (
        "import sys\n"
        "from nin_keras.tf_startup import quiet_tensorflow_import\n"
        "quiet_tensorflow_import()\n"
        "import json, numpy\n"
        "assert 'tensorflow' not in sys.modules\n"
        "import importlib.util\n"
        "assert importlib.util.find_spec('tensorflow') is not None  # a look does not load it\n"
        "assert 'tensorflow' not in sys.modules\n"
        "import tensorflow as tf\n"
        "print(float(tf.reduce_sum(tf.constant([1.5, 2.0]))), tf.__spec__.name)\n"
        "import tensorflow.python\n"
        "print('hooks left:', sum(type(f).__name__ == '_QuietFinder' for f in sys.meta_path))\n"
    )
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3.5", "tensorflow", "hooks", "left:", "0"]
    assert [line for line in done.stderr.splitlines() if is_startup_noise(line)] == [], done.stderr


def test_cli_prints_no_tensorflow_startup_lines_unless_verbose():
    quiet = _cli("models", "nin_mnist")
    assert quiet.returncode == 0, quiet.stderr
    assert "nin_mnist.fast" in quiet.stdout
    noise = [line for line in quiet.stderr.splitlines() if is_startup_noise(line)]
    assert noise == [], quiet.stderr
    for fragment in ("absl::InitializeLog", "oneDNN", "cudart_stub", "cpu_feature_guard", "cuInit"):
        assert fragment not in quiet.stderr

    verbose = _cli("--verbose", "models", "nin_mnist")
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stdout == quiet.stdout
    assert any(is_startup_noise(line) for line in verbose.stderr.splitlines()), verbose.stderr


# One rule for every subcommand: 1 when the library rejects the request, 2 for argparse usage errors.
LIBRARY_ERRORS = {
    "models": ["models", "no_such_model"],
    "eval": ["eval", "no_such_preset"],
    "eval split": ["eval", "nin_mnist", "--split", "no_such_split", "--limit", "1"],
    "train": ["train", "no_such_recipe", "--out", "{tmp}/run"],
    "export": ["export", "no_such_model", "--out", "{tmp}/exported"],
    "predict": ["predict", "{tmp}/missing.onnx", "{tmp}/missing.png"],
    "import-caffe": ["import-caffe", "{tmp}/missing.caffemodel", "--arch", "nin_cifar10", "--out", "{tmp}/p"],
    "visualize curves": ["visualize", "curves", "{tmp}/missing.csv", "--output", "{tmp}/v"],
    "visualize filters": ["visualize", "filters", "--model", "{tmp}/missing.keras", "--output", "{tmp}/v"],
}
USAGE_ERRORS = {
    "no command": [],
    "unknown command": ["no_such_command"],
    "unknown option": ["models", "--no-such-option"],
    "missing argument": ["import-caffe", "x.caffemodel", "--out", "p"],
    "invalid choice": ["export", "nin_mnist", "--quantize", "int3"],
    "not an integer": ["eval", "nin_mnist", "--limit", "ten"],
}


@pytest.mark.parametrize("case", sorted(LIBRARY_ERRORS))
def test_library_errors_exit_1_with_one_line(case, tmp_path, capsys):
    argv = [word.format(tmp=tmp_path) for word in LIBRARY_ERRORS[case]]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_exit_2(case, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(USAGE_ERRORS[case])
    assert exit_info.value.code == 2
    assert "usage: nin-keras" in capsys.readouterr().err


def test_verbose_shows_the_traceback_instead_of_one_line():
    with pytest.raises(ValueError, match="no_such_split"):
        main(["--verbose", "eval", "nin_mnist", "--split", "no_such_split", "--limit", "1"])
