"""Every command README.md shows in a ``bash`` block, run exactly as written (and the ``python``
blocks of README.md and zoo/README.md, run as scripts).

Each block runs top to bottom in a fresh folder holding the files its commands name (``cat.jpg``,
``ship.png``, ``my_photos.zip``, the authors' ``cifar10_nin.caffemodel``): this module writes them
first, from the CIFAR-10 (JPEG copy) and ``../shared``. A line run elsewhere (a results figure's
``eval``, the fine-tune lines, the JAX block, the test command itself) is named in ``ELSEWHERE`` with
the test that runs it, and a fast test keeps the two lists and the README in step.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_DIR
from shell_lines import (README, command, command_lines, kill_then_rerun_resumes, line_env, printed_line, readme_blocks,
                         shell, start, stop, wait_for)
from test_images import cifar_jpegs, photo
from test_train import _free_ports

#: README lines another test runs exactly as written: ``line -> "file::test"``.
ELSEWHERE = {
    "bash scripts/test.sh": ".ci/run (CI runs the suite through it)",
    "nin-keras eval nin_mnist --data mnist":
        "tests/test_zoo.py::test_documented_eval_commands_print_their_figures (the results table's row)",
    "nin-keras finetune nin_cifar10 my_photos/ --out my_preset --epochs 2 --freeze-body-epochs 1":
        "tests/test_finetune.py::test_the_readme_finetune_command_beats_chance_on_three_classes_of_100_photos",
    "nin-keras predict my_preset new_photo.jpg":
        "tests/test_finetune.py::test_the_readme_finetune_command_beats_chance_on_three_classes_of_100_photos",
    "nin-keras export my_preset --formats onnx":
        "tests/test_finetune.py::test_the_readme_finetune_command_beats_chance_on_three_classes_of_100_photos",
}


def _jax_block_commands() -> set[str]:
    return {command(line) for line, _ in command_lines("Training on JAX.")}


def test_every_readme_command_is_run_by_a_test():
    """The lines the block tests below run, the ones ``ELSEWHERE`` names and the JAX block (its own
    test in ``tests_jax``) are every command of the README, each once."""
    blocks = readme_blocks()
    assert set(blocks) == {"Quick start", "Using it", "Training on JAX.", "In the browser", "Your own images"}
    commands = [command(line) for heading in blocks for line, _ in command_lines(heading)]
    run_here = [command(line) for heading in RUN_HERE for line, _ in command_lines(heading)]
    covered = [c for c in commands if c in ELSEWHERE or c in _jax_block_commands()]
    assert sorted(commands) == sorted(set(commands)), "a README command appears twice"
    assert sorted(set(run_here) | set(covered)) == sorted(commands)
    unchecked = [line for heading in RUN_HERE for line, shown in command_lines(heading)
                 if command(line) not in ELSEWHERE and _checker(line, shown) is None]
    assert not unchecked, f"README lines no check fits: {unchecked}"
    assert set(ELSEWHERE) <= set(commands), set(ELSEWHERE) - set(commands)
    # Each test ELSEWHERE names exists, and the results-table test does collect its line.
    from test_zoo import _documented_eval_figures

    for line, where in ELSEWHERE.items():
        if "::" not in where:
            continue
        file, name = where.split(" ")[0].split("::")
        assert f"def {name}(" in (REPO / file).read_text(), where
        if name == "test_documented_eval_commands_print_their_figures":
            assert line in _documented_eval_figures(), line
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()


# --------------------------------------------------------------------------- the files the blocks name


def cifar_photo(name: str, index: int = 0):
    """The ``index``-th image of class ``name`` of the CIFAR-10 (JPEG copy) test split, blown up to
    a 451x300 photo (what README's ``cat.jpg`` is)."""
    return photo(cifar_jpegs("test", {name: index + 1})[name][index])


def top_classes(output: str) -> dict[str, list[str]]:
    """``nin-keras predict``'s lines ``file: class p, class p, ...`` -> ``{file: [class, ...]}``."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"(\S+): (.+)$", line)
        if match and re.fullmatch(r"(\S+ [01]\.\d{4}(, )?)+", match[2]):
            found[match[1]] = [entry.split()[0] for entry in match[2].split(", ")]
    return found


def keras_top_classes(files: list[Path]) -> list[str]:
    """The default ``nin_cifar10`` classifier's top class of each file (the preset loaded once)."""
    from nin_keras.zoo import ImageClassifier

    return [top[0][0] for top in ImageClassifier.from_preset("nin_cifar10").classify([str(f) for f in files], top_k=1)]


# --------------------------------------------------------------------------- the blocks


def _check_quick_start(line: str, cwd: Path) -> None:
    from nin_keras.zoo import registry

    out = shell(line, REPO)  # "from the repository root"
    _, config = registry.get_pretrained_config("nin_cifar10")
    printed = re.search(r"accuracy ([\d.]+)%", out)
    assert printed and float(printed[1]) == config.metrics["test_accuracy"], out[-2000:]


def _check_models(line: str, cwd: Path) -> None:
    from nin_keras import zoo

    out = shell(line, cwd)
    if "--pretrained" in line:
        for tag in zoo.list_models(pretrained=True):
            assert re.search(rf"^{re.escape(tag)}\b", out, re.M), tag
    else:
        row = next(row for row in out.splitlines() if row.startswith("nin_cifar10 "))
        assert "966,986" in row and "nin_cifar10.caffe" in row, row


def _check_resumes(line: str, cwd: Path) -> None:
    """"kill it, rerun it: it resumes": from the step of its first checkpoint."""
    step = kill_then_rerun_resumes(line, cwd, cwd / "runs" / "mnist" / "checkpoint.npz")
    assert step >= 100 and step % 100 == 0, step  # nin_mnist_fast checkpoints every 100 steps


def _check_multiworker(line: str, cwd: Path) -> None:
    """"with TF_CONFIG set on each worker": two workers on loopback, each in its own folder (as on
    its own machine), both run the line as written; the chief writes the first checkpoint."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        (cwd / f"worker{index}").mkdir()
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(start(line, cwd / f"worker{index}", TF_CONFIG=tf_config))
    checkpoint = cwd / "worker0" / "runs" / "nin_mnist_fast" / "checkpoint.npz"
    try:
        for process in processes:
            wait_for(checkpoint.is_file, process, "the chief's checkpoint")
        assert all(process.poll() is None for process in processes)  # both still training
    finally:
        for process in processes:
            stop(process)


def _check_import_caffe(line: str, cwd: Path) -> None:
    """The imported preset is the zoo's ``nin_cifar10.caffe`` (imported the same way)."""
    from nin_keras.zoo import ImageClassifier

    if not (cwd / "cifar10_nin.caffemodel").exists():
        pytest.skip("../shared/weights/cifar10_nin.caffemodel is absent")
    shell(line, cwd)
    images = np.stack([np.asarray(cifar_photo(name).resize((32, 32))) for name in ("cat", "ship")])
    mine = ImageClassifier.from_preset(cwd / "my_preset").predict(images.astype("float32"), verbose=0)
    zoo = ImageClassifier.from_preset("nin_cifar10.caffe").predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(mine, zoo, atol=1e-5)


def _check_export(line: str, cwd: Path) -> None:
    """Each file format asked for is written under ``--out`` (default ``exported``), its metadata
    beside it with the file's sha256."""
    import hashlib

    from nin_keras.export.metadata import metadata_path

    out = shell(line, cwd)
    words = command(line).split()
    folder = cwd / (words[words.index("--out") + 1] if "--out" in words else "exported")
    formats = words[words.index("--formats") + 1].split(",")
    stem = words[2] + (".int8" if "int8" in words else "")
    for extension in ("tflite", "onnx"):
        if extension in formats:
            artifact = folder / f"{stem}.{extension}"
            assert artifact.is_file(), (artifact, out[-2000:])
            written = json.loads(metadata_path(artifact).read_text())
            assert written["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()
    if "savedmodel" in formats:
        assert any(path.is_dir() for path in folder.iterdir()), "no SavedModel folder"


def _check_predict(line: str, cwd: Path) -> None:
    """Each file's classes are printed (``--top-k`` of them, five by default), the first the one
    the Keras classifier gives the same file."""
    out = shell(line, cwd)
    files = [word for word in command(line).split() if re.search(r"\.(jpg|png)$", word)]
    found = top_classes(out)
    assert sorted(found) == sorted(files), out
    assert [len(found[file]) for file in files] == [3 if "--top-k 3" in line else 5] * len(files), out
    assert [found[file][0] for file in files] == keras_top_classes([cwd / file for file in files]), out


def _check_visualize(line: str, cwd: Path) -> None:
    from PIL import Image

    shell(line, cwd)
    pictures = sorted((cwd / "nin_keras_visualize").glob("*.png"))
    assert pictures, "no PNG written"
    for picture in pictures:
        Image.open(picture).verify()


def _check_bench(line: str, cwd: Path) -> None:
    out = shell(line, cwd)
    assert out.strip(), "bench --quick printed nothing"


def _check_web_export(line: str, cwd: Path) -> None:
    shell(line, cwd)
    folder = cwd / "artifacts" / "nin_cifar10.caffe_compact.int8.web"
    for name in ("index.html", "app.js", "input_policy.js", "model.onnx", "model.onnx.json", "ort"):
        assert (folder / name).exists(), name
    # "About 30 MB, almost all of it the runtime" (to the nearest 5 MB).
    stated = int(re.search(r"About (\d+) MB, almost\s+all of it the runtime", README.read_text())[1])
    size, runtime = (sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 1e6
                     for root in (folder, folder / "ort"))
    assert 5 * round(size / 5) == stated and runtime > 0.9 * size, (size, runtime)


def _check_serve(line: str, cwd: Path) -> None:
    """It prints its address, serves the page with the cross-origin isolation headers, and stops
    on Ctrl-C (SIGINT) with exit status 0."""
    import urllib.request

    server = start(line, cwd)
    url = printed_line(server, r"http://127\.0\.0\.1:\d+/", "address", timeout=120)[0]
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200 and b"<html" in response.read().lower()
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    os.killpg(server.pid, signal.SIGINT)
    server.communicate(timeout=60)
    assert server.returncode == 0


def _check_predict_with_output(line: str, cwd: Path, printed: str) -> None:
    """The line the README shows under the command is what the command prints."""
    out = shell(line, cwd)
    assert printed in out.splitlines(), (printed, out)


def _check_predict_json(line: str, cwd: Path) -> None:
    """One prediction per photo of the folder, the same top class as the Keras classifier's, and
    the input policy used."""
    out = json.loads(shell(line, cwd))
    photos = sorted((cwd / "photos").iterdir())
    assert sorted(Path(p["image"]).name for p in out["predictions"]) == [p.name for p in photos], out
    tops = [prediction["top_k"][0]["label"] for prediction in out["predictions"]]
    files = [cwd / "photos" / Path(prediction["image"]).name for prediction in out["predictions"]]
    assert tops == keras_top_classes(files), out
    from nin_keras.zoo import ImageClassifier

    assert out["input_policy"] == ImageClassifier.from_preset("nin_cifar10").input_policy.to_dict()


def _check_eval_zip(line: str, cwd: Path) -> None:
    """The accuracy printed is the fraction of the archive's photos whose top class, as the Keras
    classifier gives it, is their folder's name."""
    out = shell(line, cwd)
    with zipfile.ZipFile(cwd / "my_photos.zip") as archive:
        members = [member for member in archive.namelist() if member.endswith(".jpg")]
        archive.extractall(cwd / "unzipped", members)
    tops = keras_top_classes([cwd / "unzipped" / member for member in members])
    correct = sum(top == member.split("/")[0] for top, member in zip(tops, members))
    printed = re.search(r"accuracy ([\d.]+)%", out)
    assert printed and float(printed[1]) == round(100 * correct / len(members), 2), (correct, members, out)


def _write_files(cwd: Path) -> None:
    """What the README's commands name: photos, a zip of class folders, the Caffe weights."""
    cifar_photo("cat").save(cwd / "cat.jpg", quality=90)
    cifar_photo("ship").save(cwd / "ship.png")
    (cwd / "photos").mkdir()
    for name in ("airplane", "frog"):
        cifar_photo(name).save(cwd / "photos" / f"{name}.jpg", quality=90)
    chosen = cifar_jpegs("test", {"cat": 4, "ship": 4})
    with zipfile.ZipFile(cwd / "my_photos.zip", "w") as archive:
        for name, files in chosen.items():
            for i, data in enumerate(files):
                buffer = io.BytesIO()
                photo(data, (96, 64)).save(buffer, "JPEG", quality=90)
                archive.writestr(f"{name}/{i}.jpg", buffer.getvalue())
    caffemodel = SHARED_DIR / "weights" / "cifar10_nin.caffemodel"
    if caffemodel.is_file():
        (cwd / "cifar10_nin.caffemodel").symlink_to(caffemodel)


def _checker(line: str, shown: str | None):
    """The check that fits a README line: a function of ``(line, folder)`` that runs it as written
    (``shown``: the output the README shows under it), or None."""
    text = command(line)
    if text == "bash scripts/quickstart.sh":
        return _check_quick_start
    if text.startswith("nin-keras models"):
        return _check_models
    if "kill it, rerun it" in line:
        return _check_resumes
    if "TF_CONFIG" in line:
        return _check_multiworker
    if text.startswith("nin-keras import-caffe"):
        return _check_import_caffe
    if text.startswith("nin-keras export"):
        return _check_web_export if "--formats web" in text else _check_export
    if text.startswith("nin-keras predict"):
        if "--json" in text:
            return _check_predict_json
        if shown:
            printed = shown.lstrip("# ").split("  (")[0].strip()
            return lambda line, cwd: _check_predict_with_output(line, cwd, printed)
        return _check_predict
    if text.startswith("nin-keras eval") and ".zip" in text:
        return _check_eval_zip
    return {"nin-keras visualize": _check_visualize, "nin-keras bench": _check_bench,
            "nin-keras serve": _check_serve}.get(" ".join(text.split()[:2]))


#: The blocks run here, each in one folder, top to bottom.
RUN_HERE = ["Quick start", "Using it", "In the browser", "Your own images"]


@pytest.mark.slow
@pytest.mark.parametrize("heading", RUN_HERE)
def test_the_readme_block_runs_as_written(heading, tmp_path):
    _write_files(tmp_path)
    for line, shown in command_lines(heading):
        if command(line) in ELSEWHERE:
            continue
        _checker(line, shown)(line, tmp_path)


@pytest.mark.parametrize("document", [
    pytest.param(README, marks=pytest.mark.slow, id="README.md"),  # it reads the whole CIFAR-10 test split
    pytest.param(REPO / "zoo" / "README.md", id="zoo/README.md"),
])
def test_the_python_blocks_run_as_written(document, tmp_path):
    """Each ``python`` block of the document, run as a script in a folder holding the files it names;
    both end by printing the published weight sets."""
    _write_files(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", document.read_text(), re.S)
    assert blocks
    for code in blocks:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=line_env(), capture_output=True,
                              text=True, timeout=1800)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "'nin_cifar10.caffe'" in done.stdout, done.stdout[-2000:]
