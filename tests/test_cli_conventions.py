"""What every ``nin-keras`` subcommand shares: quiet start-up and one exit-code rule."""

import argparse
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from nin_keras.cli import build_parser, main
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
    "E0000 00:00:1796415461.620104   20739 util.cc:131] oneDNN supports DT_HALF only on platforms with "
    "AVX-512. Falling back to the default Eigen-based implementation if present.",
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
    "visualize curves": ["visualize", "curves", "{tmp}/missing.csv", "--out", "{tmp}/v"],
    "visualize filters": ["visualize", "filters", "--model", "{tmp}/missing.keras", "--out", "{tmp}/v"],
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


# What TensorFlow, absl, LiteRT, the converters and ONNX Runtime print that a user cannot act on:
# none of it may reach a terminal without --verbose.
LOG_LINE_PATTERNS = [re.compile(p) for p in (
    r"^[IW]\d{4} \d\d:\d\d:\d\d|cuInit",                   # absl's C++ INFO/WARNING format
    r"absl::InitializeLog|^(WARNING|INFO):absl:",           # absl before init; absl's Python logger
    r"oneDNN custom operations|oneDNN supports DT_HALF|cpu_feature_guard|cudart_stub|rebuild TensorFlow",
    r"^INFO: Created TensorFlow Lite",                      # LiteRT's XNNPACK line
    r"fully_quantize: \d, inference_type",                  # the TFLite quantizer's settings
    r"tf\.lite\.Interpreter is deprecated|Statistics for quantized inputs",
    r"^(Collecting tensor data|Finding optimal threshold|Number of tensors :|Number of histogram bins"
    r"|Percentile :)",                                      # ONNX Runtime's calibration
    r"site-packages/(tensorflow|tf2onnx|onnxruntime|ai_edge_litert|absl)/.*Warning",
)]


def _log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(p.search(line) for p in LOG_LINE_PATTERNS)]


def _subcommands(parser=None) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)subcommand's parser by its words ("visualize cam"), read from the real parser."""
    parser = parser or build_parser()
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found[name] = child
                found.update({f"{name} {k}": v for k, v in _subcommands(child).items()})
    return found


def test_log_line_patterns_catch_what_the_converters_printed():
    # Printed by `nin-keras export nin_cifar10.caffe_compact --quantize int8` before the fix.
    printed = [
        "WARNING:absl:Please consider providing the trackable_obj argument in the from_concrete_functions.",
        "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, output_inference_type: FLOAT32",
        "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
        "Collecting tensor data and making histogram ...",
        "    Warning: tf.lite.Interpreter is deprecated and is scheduled for deletion in",
        *TENSORFLOW_STARTUP_LINES[:4],
    ]
    assert _log_lines("\n".join(printed)) == printed
    assert _log_lines("\n".join(REAL_PROBLEMS + ["tflite  out/nin_mnist.tflite  1.1 MB  float32"])) == []


@pytest.mark.parametrize("words", sorted(_subcommands()))
def test_every_subcommand_has_help(words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*words.split(), "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"usage: nin-keras {words}") and out.err == ""
    undocumented = [a.dest for a in _subcommands()[words]._actions if not a.help and a.dest != "help"
                    and not isinstance(a, argparse._SubParsersAction)]
    assert undocumented == [], f"options without help text: {undocumented}"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny digit image, a two-class folder of drawn digits, and a model exported to TFLite and ONNX.

    The folder's classes differ (a ring, a bar, each on faint noise): a fine-tune on noise alone
    fits a head to features that tell nothing apart, which the first training-mode step (dropout
    on) then finds badly wrong, and the run is refused as diverged."""
    from PIL import Image

    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / "digit.png")
    rows, columns = np.mgrid[:28, :28]
    radius = np.hypot(rows - 13.5, columns - 13.5)
    shapes = {"zero": (radius > 6) & (radius < 10), "one": (np.abs(columns - 13.5) < 2.5) & (np.abs(rows - 13.5) < 10)}
    for name, shape in shapes.items():
        (root / "photos" / name).mkdir(parents=True)
        for i in range(8):
            digit = np.clip(255 * shape + rng.normal(0, 20, shape.shape), 0, 255).astype(np.uint8)
            Image.fromarray(digit).save(root / "photos" / name / f"{i}.png")
    (root / "metrics.csv").write_text("epoch,loss,accuracy\n0,1.0,0.5\n1,0.5,0.8\n")
    return root


# One real call per subcommand (a quick one; some end in the library's error, which loads the same
# libraries); the export makes the files the predict calls read, so it runs first.
REAL_CALLS = {
    "export": ["export", "nin_mnist", "--formats", "tflite,onnx", "--quantize", "int8", "--parity-samples", "20",
               "--calibration-samples", "20", "--out", "{tmp}/exported"],
    "predict": ["predict", "{tmp}/exported/nin_mnist.int8.tflite", "{tmp}/digit.png"],
    "predict onnx": ["predict", "{tmp}/exported/nin_mnist.int8.onnx", "{tmp}/digit.png"],
    "models": ["models", "nin_mnist"],
    "eval": ["eval", "nin_mnist", "--limit", "50"],
    "train": ["train", "nin_mnist_fast", "--max-steps", "1", "--epochs", "1", "--quiet", "--out", "{tmp}/run"],
    "finetune": ["finetune", "nin_mnist", "{tmp}/photos", "--out", "{tmp}/tuned", "--max-steps", "1", "--epochs", "1",
                 "--quiet"],
    "import-caffe": ["import-caffe", "{tmp}/digit.png", "--arch", "nin_mnist", "--out", "{tmp}/imported"],
    "visualize filters": ["visualize", "filters", "--model", "nin_mnist", "--out", "{tmp}/pictures"],
    # nin_cifar10's ZCA matrix is float16: its first cast logged an "E0000 ... DT_HALF" line on CPUs
    # with AVX-512 but no AVX512-FP16 (AMD Zen 4) until the quiet import made that cast itself.
    "visualize filters float16": ["visualize", "filters", "--model", "nin_cifar10", "--out", "{tmp}/pictures10"],
    "visualize curves": ["visualize", "curves", "{tmp}/metrics.csv", "--out", "{tmp}/pictures"],
    "compact": ["compact", "nin_mnist", "--out", "{tmp}/compact"],
    "serve": ["serve", "{tmp}/no_such_folder.web", "--port", "0"],
    "bench": ["bench", "--quick", "--only", "pipeline", "--results-dir", "{tmp}/bench"],
}
SLOW_CALLS = {"bench", "train", "finetune"}
# The calls meant to end in the library's refusal (exit 1): a PNG is no .caffemodel, the folder to
# serve does not exist, nin_mnist has no ZCA to distil (a real distillation takes minutes). Every
# other call succeeds.
REFUSED_CALLS = {"import-caffe", "serve", "compact"}


def test_real_calls_cover_every_subcommand():
    top = {words for words in _subcommands() if " " not in words}
    assert top <= {words.split()[0] for words in REAL_CALLS}


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CALLS else c
                                  for c in REAL_CALLS])
def test_subcommands_print_no_log_lines_unless_verbose(case, workspace):
    done = _cli(*(word.format(tmp=workspace) for word in REAL_CALLS[case]))
    assert done.returncode == (1 if case in REFUSED_CALLS else 0), done.stderr
    assert _log_lines(done.stderr) == [] and _log_lines(done.stdout) == [], done.stderr
    if done.returncode == 1:  # the library's refusal: one line, no traceback
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_library_is_quiet_when_imported_unless_verbose(tmp_path):
    # The README's Python use: import, load a preset, export it; only the results are printed.
    child = (
        "from nin_keras import zoo\n"
        "from nin_keras.export import export\n"
        "model = zoo.ImageClassifier.from_preset('nin_mnist')\n"
        f"paths = export(model, ['tflite'], {str(tmp_path)!r}, parity_samples=10)\n"
        "print(paths['tflite'].name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "NIN_KERAS_VERBOSE")}
    quiet = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.split() == ["nin_mnist_inference.tflite"]
    assert quiet.stderr == ""
    loud = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300,
                          env={**env, "NIN_KERAS_VERBOSE": "1"})
    assert loud.returncode == 0, loud.stderr
    assert _log_lines(loud.stderr), loud.stderr  # what the quiet run hid is really there


def test_quiet_output_shows_what_a_failed_call_printed(capfd):
    from nin_keras.tf_startup import quiet_output

    with quiet_output():
        os.write(2, b"I0000 00:00:1.0 1 converter.cc:1] converting\n")
        os.write(1, b"fully_quantize: 0, inference_type: 6\n")
    assert capfd.readouterr() == ("", "")
    with pytest.raises(RuntimeError, match="conversion failed"):
        with quiet_output():
            os.write(2, b"E0000 converter.cc:2] op FOO has no kernel\n")
            raise RuntimeError("conversion failed")
    assert "op FOO has no kernel" in capfd.readouterr().err


# ---------------------------------------------------------------- messages a user can follow


def _error(argv, capsys) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def mnist_onnx(tmp_path_factory):
    """nin_mnist exported to ONNX, with its metadata."""
    from nin_keras.export import export

    return export("nin_mnist", ["onnx"], tmp_path_factory.mktemp("onnx"), parity_samples=8)["onnx"]


@pytest.mark.parametrize("command", [["eval"], ["visualize", "filters", "--model"]])
def test_a_preset_command_on_an_exported_artifact_points_to_predict(command, mnist_onnx, capsys):
    # Before: "Preset folder .../nin_mnist.onnx does not exist." about a file that exists.
    err = _error([*command, str(mnist_onnx)], capsys)
    assert f"{mnist_onnx} is not a preset but a file" in err
    assert "zoo name" in err and "preset folder" in err and "`nin-keras predict`" in err
    assert "does not exist" not in err


def test_an_unknown_zoo_name_is_named_with_close_matches_and_the_models_command(tmp_path, capsys):
    # Before: "cannot load the preset artifact 'nin_cifar11' (corrupt or truncated?)" and a Python function.
    for argv in (["predict", "nin_cifar11", str(tmp_path / "x.png")], ["eval", "nin_cifar11"]):
        err = _error(argv, capsys)
        assert "Unknown zoo model 'nin_cifar11'" in err and "'nin_cifar10'" in err
        assert "`nin-keras models --pretrained`" in err
        assert "corrupt" not in err and "list_models()" not in err


def test_cli_errors_name_the_flag_not_the_python_argument(tmp_path, capsys):
    # Before: "pass overwrite=True to replace it" from `nin-keras compact`.
    (tmp_path / "taken").mkdir()
    err = _error(["compact", "nin_cifar10.caffe", "--out", str(tmp_path / "taken")], capsys)
    assert f"{tmp_path / 'taken'} already exists" in err and "(pass --overwrite to replace it)" in err
    assert "overwrite=True" not in err
    err = _error(["eval", "nin_cifar10", "--data", "svhn", "--data-dir", str(tmp_path / "empty")], capsys)
    assert "'svhn' is not available offline" in err and "pass --data-dir" in err and "data_dir=" not in err
    assert "(--source auto never downloads; --source tfds does)" in err and "source='tfds'" not in err
    assert not (tmp_path / "empty").exists()
    err = _error(["eval", "nin_cifar10", "--data", "svhn", "--source", "local", "--data-dir", str(tmp_path / "e")],
                 capsys)
    assert "no local copy of dataset 'svhn'" in err and "test_32x32.mat" in err


def test_predict_takes_a_web_export_folder_and_names_skipped_files(mnist_onnx, tmp_path, capsys):
    import shutil

    from PIL import Image

    # A web export folder holds the page's model.onnx and its metadata model.onnx.json.
    web = tmp_path / "nin_mnist.web"
    web.mkdir()
    shutil.copy(mnist_onnx, web / "model.onnx")
    shutil.copy(f"{mnist_onnx}.json", web / "model.onnx.json")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(photos / "white.png")
    (photos / "notes.txt").write_text("not an image")
    assert main(["predict", str(web), str(photos), "--top-k", "1"]) == 0
    out = capsys.readouterr()
    from nin_keras.deploy import Predictor

    expected = Predictor(mnist_onnx).classify([str(photos / "white.png")], top_k=1)[0][0][0]
    assert out.out.startswith(f"{photos / 'white.png'}: {expected} ")
    # Before: notes.txt was skipped without a word.
    assert out.err.strip() == f"nin-keras predict: skipped 1 file(s) that are not images (by suffix) or hidden: {photos / 'notes.txt'}"


def test_eval_prints_the_paper_figures_only_on_the_presets_own_data_set(tmp_path, capsys):
    from PIL import Image

    from nin_keras.data.arrays import load_arrays

    images, labels = load_arrays({"name": "mnist", "test_examples": 30}, "test", None)
    for i, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "digits" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[..., 0]).save(tmp_path / "digits" / str(label) / f"{i}.png")
    assert main(["eval", "nin_mnist", "--data", str(tmp_path / "digits")]) == 0
    on_folder = capsys.readouterr().out
    assert "accuracy" in on_folder and "paper error" not in on_folder and "published error" not in on_folder
    assert main(["eval", "nin_mnist", "--limit", "30"]) == 0
    default = _default_weights("nin_mnist")
    assert f"paper error 0.47%   published error {default.metrics['test_error']:.2f}%" in capsys.readouterr().out


def _default_weights(model: str):
    """The published weight set ``model`` loads by default (the best measured), from the index."""
    from nin_keras.zoo import index
    from nin_keras.zoo.pretrained import best_tag

    configs = {config.tag: config for config in index.published(model, index.read_index())}
    return configs[best_tag(configs)]


# ---------------------------------------------------------------- defaults and names from the library


def _library_functions(command: argparse.ArgumentParser) -> list:
    import importlib

    functions = []
    for reference in command.get_default("library") or ():
        module, _, name = reference.partition(":")
        found = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
        functions.append(found)
    return functions


def test_every_option_left_to_the_library_has_no_default_of_its_own():
    import inspect

    checked = []
    for words, command in sorted(_subcommands().items()):
        parameters = {}
        for function in _library_functions(command):
            for name, parameter in inspect.signature(function).parameters.items():
                parameters.setdefault(name, parameter)
        for action in command._actions:
            parameter = parameters.get(action.dest)
            if parameter is None or parameter.default is inspect.Parameter.empty:
                continue
            # None: the call leaves the argument out; a flag's default is what the call gets without it.
            assert action.default in (None, argparse.SUPPRESS, parameter.default), (words, action.dest, action.default)
            checked.append(f"{words} {action.dest}")
    assert {"export opset", "export parity_samples", "export formats", "finetune epochs", "eval batch_size",
            "compact kernel_size", "serve port", "predict top_k", "visualize cam top"} <= set(checked)
    assert len(checked) >= 50, checked


def test_help_shows_the_library_defaults(capsys):
    import inspect

    from nin_keras.export import export
    from nin_keras.export.onnx import DEFAULT_OPSET
    from nin_keras.train import finetune

    for argv in (["export", "--help"], ["finetune", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
    text = " ".join(capsys.readouterr().out.split())
    assert f"ONNX opset (default: {DEFAULT_OPSET})" in text
    assert f"(default: {inspect.signature(export).parameters['parity_samples'].default})" in text
    assert "(default: savedmodel,tflite,onnx)" in text
    learning_rate = inspect.signature(finetune).parameters["learning_rate"].default
    assert f"down to a tenth of it (default: {learning_rate})" in text


@pytest.mark.parametrize("argv, message", [
    (["--validation-fraction", "1.5"], "--validation-fraction must be a number in (0, 1), got 1.5"),
    (["--learning-rate", "-1"], "--learning-rate must be a finite number > 0, got -1.0"),
    (["--clip-norm", "nan"], "--clip-norm must be a finite number >= 0 (0: no clipping), got nan"),
])
def test_an_out_of_range_argument_is_named_by_its_flag(argv, message, tmp_path, capsys):
    err = _error(["finetune", "nin_mnist", str(tmp_path / "data"), "--out", str(tmp_path / "out"), *argv], capsys)
    assert err == f"nin-keras finetune: error: {message}"


def test_library_errors_spell_arguments_as_the_commands_flags():
    from nin_keras.cli import _flag_spelling
    from nin_keras.errors import Argument, ArgumentError, Call

    parser = build_parser()
    spell = _flag_spelling(parser, parser.parse_args(["export", "nin_mnist"]))
    error = ArgumentError(Argument("name"), " must be plain; ", Argument("quantize", "int8"), ", ",
                          Argument("include_preprocessing", True), ", ", Argument("accept_parity_failure", True),
                          "; see ", Call("nin_keras.zoo:list_models", pretrained=True))
    assert str(error) == ("name must be plain; quantize='int8', include_preprocessing=True, "
                          "accept_parity_failure=True; see nin_keras.zoo.list_models(pretrained=True)")
    # `name` has no option: it keeps its Python name rather than an invented flag.
    assert error.spelled(spell) == ("name must be plain; --quantize int8, no --no-preprocessing, "
                                    "--accept-parity-failure; see `nin-keras models --pretrained`")


#: Makes a DeprecationWarning an error when a nin_keras module caused it (the aliases warn at their
#: caller). Plain ``-W error::DeprecationWarning`` would also stop at TensorFlow's and NumPy's own.
_OWN_DEPRECATIONS_FAIL = "warnings.filterwarnings('error', category=DeprecationWarning, module=r'nin_keras(\\.|$)')"


def test_commands_trigger_none_of_the_librarys_own_deprecation_warnings(tmp_path):
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(image)
    child = ("import sys, warnings\n"
             f"{_OWN_DEPRECATIONS_FAIL}\n"
             "from nin_keras.cli import main\n"
             "from nin_keras.visualize.sources import load_model\n"
             "from nin_keras.export.exporter import resolve_source\n"
             "load_model('nin_mnist'), resolve_source('nin_mnist')\n"
             f"sys.exit(main(['predict', 'nin_mnist', {str(image)!r}, '--top-k', '2'])"
             " or main(['eval', 'nin_mnist', '--limit', '50']))\n")
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout


def test_a_deprecated_alias_called_from_inside_the_library_is_an_error_under_that_filter():
    import warnings

    from nin_keras import zoo

    caller = compile("zoo.from_preset('nin_mnist')", "nin_keras_module.py", "exec")
    with warnings.catch_warnings():
        exec(_OWN_DEPRECATIONS_FAIL, {"warnings": warnings})
        with pytest.raises(DeprecationWarning, match="ImageClassifier.from_preset"):
            exec(caller, {"__name__": "nin_keras.some_module", "zoo": zoo})
        exec(caller, {"__name__": "users_code", "zoo": zoo})  # the user's own call only warns
