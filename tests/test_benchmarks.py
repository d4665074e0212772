"""benchmarks/: quick runs write the expected JSON, the report renders any result as a table, and the
stock-Keras network the training benchmark compares against is numerically the library's network."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import common  # noqa: E402
import report  # noqa: E402

from nin_keras.errors import ArgumentError, DataError  # noqa: E402


def nin_cifar10_macs(size: int) -> int:
    """Forward multiply-adds per image of NIN CIFAR-10 at ``size`` px, from its layer widths."""
    stages = [  # (positions, [(kernel, in, out), ...]) for the 32/16/8 px stages at 32 px input
        (size**2, [(5, 3, 192), (1, 192, 160), (1, 160, 96)]),
        ((size // 2) ** 2, [(5, 96, 192), (1, 192, 192), (1, 192, 192)]),
        ((size // 4) ** 2, [(3, 192, 192), (1, 192, 192), (1, 192, 10)]),
    ]
    return sum(positions * k * k * cin * cout for positions, convs in stages for k, cin, cout in convs)


def quick_run(name: str, results: Path) -> dict:
    """Run ``benchmarks/<name>.py --quick`` writing into ``results``; return its JSON payload."""
    env = {**os.environ, common.RESULTS_DIR_ENV: str(results), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((results / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """Run train_step.py and scaling.py with --quick side by side; return their JSON payloads."""
    out = tmp_path_factory.mktemp("results")
    env = {**os.environ, common.RESULTS_DIR_ENV: str(out), "TF_CPP_MIN_LOG_LEVEL": "2"}
    # Each configuration is a fresh TensorFlow process: keep the scaling sweep to two of them.
    commands = {"train_step": ["--quick"], "scaling": ["--quick", "--batch-sizes", "2", "--image-sizes", "32", "48"]}
    procs = {
        name: subprocess.Popen([sys.executable, str(BENCH / f"{name}.py"), *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, args in commands.items()
    }
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} --quick failed:\n{stderr[-3000:]}"
    return {name: json.loads((out / f"{name}.json").read_text()) for name in procs}


def test_quick_train_step_writes_the_expected_fields(quick_results):
    payload = quick_results["train_step"]
    assert payload["benchmark"] == "train_step" and payload["quick"] is True
    assert "--quick" in payload["command"]
    assert {"cpu", "isa", "cores", "tensorflow", "keras"} <= set(payload["machine"])
    (row,) = payload["rows"]
    assert row["variant"] == "baseline" and row["status"] == "ok"
    assert row["parameters"] == 966_986
    assert row["forward_macs_per_image"] == nin_cifar10_macs(32)
    for key in ("library_images_per_s", "stock_images_per_s", "matmul_gflops", "achieved_gflops"):
        assert row[key] > 0, key
    assert row["ratio"] == pytest.approx(row["library_images_per_s"] / row["stock_images_per_s"])
    # Achieved rate = images/s x 6 FLOPs per forward multiply-add; fraction against the run's peak.
    assert row["achieved_gflops"] == pytest.approx(row["library_images_per_s"] * 6 * nin_cifar10_macs(32) / 1e9)
    assert payload["matmul_peak_gflops"] == max(r["matmul_gflops"] for r in payload["rows"])
    assert row["fraction_of_peak"] == pytest.approx(row["achieved_gflops"] / payload["matmul_peak_gflops"])
    # The same per CPU second of the process.
    macs = nin_cifar10_macs(32)
    assert row["achieved_gflops_per_cpu_s"] == pytest.approx(6 * macs / (row["library_cpu_ms_per_image"] / 1e3) / 1e9)
    assert row["cpu_ratio"] == pytest.approx(row["stock_cpu_ms_per_image"] / row["library_cpu_ms_per_image"])
    assert row["cpu_fraction_of_peak"] == pytest.approx(
        row["achieved_gflops_per_cpu_s"] / payload["matmul_peak_gflops_per_cpu_s"])
    assert payload["summary"].startswith("Baseline (batch 8)")
    assert set(payload["columns"]) <= set(row)


def test_quick_scaling_writes_the_expected_fields(quick_results):
    payload = quick_results["scaling"]
    rows = payload["rows"]
    # The batch sweep at the first image size, then the image-size sweep at the first batch size.
    assert [(r["batch_size"], r["image_size"]) for r in rows] == [(2, 32), (2, 48)]
    for row in rows:
        assert row["status"] == "ok"
        assert row["forward_macs_per_image"] == nin_cifar10_macs(row["image_size"])
        assert row["images_per_s"] == pytest.approx(row["batch_size"] / row["step_s"])
        assert row["epoch_s"] == pytest.approx(math.ceil(50_000 / row["batch_size"]) * row["step_s"])
        assert row["peak_rss_mb"] > row["training_rss_mb"] >= 0
    assert set(payload["columns"]) <= set(rows[0])


def test_report_renders_each_result_as_a_table(tmp_path, monkeypatch):
    monkeypatch.setenv(common.RESULTS_DIR_ENV, str(tmp_path))
    common.write_result(
        "train_step", [{"variant": "baseline", "ratio": 0.98765, "step_s": {"median": 1.25, "min": 1.0},
                        "hidden": "not a chosen column"}],
        "python benchmarks/train_step.py", columns=["variant", "ratio", "step_s"], matmul_peak_gflops=238.5,
    )
    # Another engineer's format: no column choice, keys differ between rows.
    path = tmp_path / "inference.json"
    path.write_text(json.dumps({"benchmark": "inference", "command": "python benchmarks/inference.py",
                                "rows": [{"format": "onnx", "latency_ms": 3.14159},
                                         {"format": "tflite", "images_per_s": 1234567.0}],
                                "summary": {"fastest": "onnx"}, "notes": ["first note", "second note"]}))
    text = report.render_report(report.load_results(tmp_path))
    lines = text.splitlines()
    assert "| variant | ratio | step_s |" in lines
    assert "| baseline | 0.9877 | median=1.25, min=1 |" in lines
    assert "hidden" not in text and "- matmul_peak_gflops: 238.5" in lines
    assert "| format | latency_ms | images_per_s |" in lines
    assert "| onnx | 3.142 |  |" in lines and "| tflite |  | 1,234,567 |" in lines
    assert "`python benchmarks/inference.py`" in text
    assert "- fastest: onnx" in lines and "first note" in lines and "second note" in lines
    # Sections follow the report order whatever the file names.
    assert text.index("python benchmarks/train_step.py") < text.index("python benchmarks/inference.py")
    out = report.write_report(tmp_path, tmp_path / "README.md")
    assert out.read_text() == text


def test_report_names_a_malformed_result_file(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        report.load_results(tmp_path)
    (tmp_path / "broken.json").write_text(json.dumps({"benchmark": "broken"}))
    with pytest.raises(ValueError, match="broken.json.*rows"):
        report.load_results(tmp_path)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_stock_network_computes_the_library_network(batch_norm):
    """The training benchmark's ratio compares equal networks: same weights give the same maps
    (with batch norm: also in training mode, batch statistics through both layers' code)."""
    import keras

    from nin_keras.models import nin_cifar10
    from train_step import stock_nin_cifar10

    library, stock = nin_cifar10(batch_norm=batch_norm), stock_nin_cifar10(batch_norm=batch_norm)
    rng = np.random.default_rng(0)
    if batch_norm:
        # Per convolution: its kernel, then gamma, beta, moving mean and a positive moving variance.
        stacks = [layer.layers[:2] for layer in stock.layers if isinstance(layer, keras.Sequential)]
        blocks = [library.get_layer(f"mlpconv{i}") for i in (1, 2, 3)]
        pairs = [pair for block in blocks for pair in zip(block.kernels, block.norms)]
        assert len(pairs) == len(stacks) == 9
        for (kernel, norm), (conv, stock_norm) in zip(pairs, stacks):
            values = [rng.normal(0.01, 0.05, kernel.shape).astype("float32")]
            channels = kernel.shape[-1]
            values += [rng.normal(1, 0.1, channels), rng.normal(0, 0.1, channels), rng.normal(0, 0.1, channels),
                       rng.uniform(0.5, 2, channels)]
            kernel.assign(values[0])
            norm.set_weights([v.astype("float32") for v in values[1:]])
            conv.set_weights(values[:1])
            stock_norm.set_weights([v.astype("float32") for v in values[1:]])
    else:
        # MLPConv's weight order (kernel_0, bias_0, kernel_1, ...) is the stock Conv2D stack's order.
        weights = [rng.normal(0.01, 0.05, w.shape).astype("float32") for w in library.get_weights()]
        library.set_weights(weights)
        stock.set_weights(weights)
    # Compare the per-class maps before the head (32 -> 16 -> 8 px through both poolings).
    library_maps = keras.Model(library.inputs, library.get_layer("mlpconv3").output)
    stock_maps = keras.Model(stock.inputs, stock.layers[-3].output)
    images = rng.uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    expected = stock_maps.predict(images, verbose=0)
    assert expected.shape == (2, 8, 8, 10) and expected.std() > 0
    np.testing.assert_allclose(library_maps.predict(images, verbose=0), expected, rtol=1e-4, atol=1e-5)
    if batch_norm:  # the first block in training mode (dropout follows it, so no further)
        first = keras.Model(library.inputs, library.get_layer("mlpconv1").output)
        stock_first = keras.Model(stock.inputs, stock.layers[2].output)
        trained = keras.ops.convert_to_numpy(stock_first(images, training=True))
        assert trained.std() > 0
        np.testing.assert_allclose(keras.ops.convert_to_numpy(first(images, training=True)), trained,
                                   rtol=1e-4, atol=1e-4)


def test_cpu_features_reads_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_int8 avx512_vnni\n")
    # In SPEED_FEATURES order, and only those (fpu and sse2 are not listed).
    assert common.cpu_features(cpuinfo) == ["avx2", "avx512f", "avx512_vnni", "amx_int8"]
    assert common.cpu_features(tmp_path / "missing") == []


def test_ablation_variants_are_valid_recipes_that_each_change_one_ingredient():
    import ablation

    from nin_keras.train import load_recipe
    from nin_keras.train.components import build_augmentation, build_layers
    from nin_keras.train.recipes import Recipe

    base = load_recipe(ablation.RECIPE)
    full = ablation.variant_recipe(base, None, 2, 10_000, 50)
    assert full["dataset"]["subset_seed"] == 0 and full["epochs"] == 2
    for name, edit in ablation.VARIANTS.items():
        recipe = ablation.variant_recipe(base, edit, 2, 10_000, 50)
        typed = Recipe.parse(recipe)
        changed = {key for key in set(recipe) | set(full) if recipe.get(key) != full.get(key)}
        derived = {"ema"} if "epochs" in changed else set()  # the average's decay follows the run's length
        assert len(changed - derived) == (0 if edit is None else 1), (name, changed)
        # Every layer a variant names deserializes (Keras's own Normalization, RandomErasing and
        # RandAugment too, and the mixing layer).
        augmentation = build_augmentation(typed)
        assert len(build_layers(recipe["preprocessing"]) + augmentation.augment + augmentation.raw) >= 1
        assert (augmentation.mixing is None) == ("mixing" not in recipe)
    assert base == load_recipe(ablation.RECIPE)  # variants are copies
    with_validation = ablation.variant_recipe(base, None, 2, 100, 50, validation=20)
    assert with_validation["validation"] == {"holdout": 20}


def test_a_search_on_another_recipe_leaves_out_the_variants_that_do_not_apply(capsys):
    """On the Fashion-MNIST recipe (pixels / 255, no weight average, the MNIST network) the
    variants about GCN, the EMA or the CIFAR-10 NIN, and those that would change nothing, are left
    out with their reason (that the others change one ingredient each, the every-recipe test below
    checks). Asked for by name,
    a variant that does not apply is a usage error that names it."""
    import ablation

    from nin_keras.train import load_recipe

    base = load_recipe("nin_fashion_mnist_long")
    reasons = {name: ablation.why_not_applicable(base, name) for name in ablation.VARIANTS}
    left_out = {name for name, reason in reasons.items() if reason}
    assert left_out == {"no weight average (EMA)", "EMA decay 0.9999", "GCN only (no whitening)",
                        "7x7 patch ZCA (ConvWhitening) for the dense ZCA",
                        "per-channel standardization for GCN + ZCA",
                        "pixels / 255 only (no GCN, no whitening)",
                        "MIN (maxout mlpconvs, Chang & Chen 2015) for the NIN"}
    assert reasons["GCN only (no whitening)"] == "the recipe has no GCN + ZCA"
    assert reasons["no weight average (EMA)"] == "it changes nothing in the recipe"
    full = ablation.variant_recipe(base, None, 60, 60_000, 10_000, 5_000)
    assert full["validation"] == {"holdout": 5_000} and "ema" not in full
    with pytest.raises(SystemExit):
        ablation.main(["--recipe", "nin_fashion_mnist_long", "--variants", "full recipe", "EMA decay 0.9999"])
    error = capsys.readouterr().err
    assert "not applicable to nin_fashion_mnist_long" in error and "EMA decay 0.9999" in error
    assert "full recipe" not in error.split("not applicable")[1]  # only the one that does not apply
    on = ["per-channel standardization for GCN + ZCA"]
    with pytest.raises(ablation.NotApplicable, match=re.escape(f"{on[0]!r}: the recipe has no GCN + ZCA")):
        ablation.round_recipes(["full recipe"], on, 1, 100, 10, 10, recipe="nin_fashion_mnist_long")


def test_on_every_zoo_recipe_each_variant_that_applies_changes_what_the_run_builds():
    """A variant applies to a recipe only where it changes one ingredient the recipe has: never
    the whitening of SVHN's GCN + LCN, a dropout or batch norm the network already has by its
    builder's default, or a second RandomErasing."""
    import ablation

    from nin_keras.train import list_recipes, load_recipe
    from nin_keras.train.recipes import Recipe

    left_out = {}
    for recipe_name in list_recipes():
        base = load_recipe(recipe_name)
        full = ablation.variant_recipe(base, None, 2, 1000, 50, 100)
        for name, edit in ablation.VARIANTS.items():
            reason = ablation.why_not_applicable(base, name)
            if reason:
                left_out[recipe_name, name] = reason
                continue
            recipe = ablation.variant_recipe(base, edit, 2, 1000, 50, 100)
            Recipe.parse(recipe)
            changed = {key for key in set(recipe) | set(full) if recipe.get(key) != full.get(key)}
            derived = {"ema"} if "epochs" in changed else set()  # the average's decay follows the run's length
            assert len(changed - derived) == (0 if edit is None else 1), (recipe_name, name, changed)
    whitening = ["GCN only (no whitening)", "7x7 patch ZCA (ConvWhitening) for the dense ZCA",
                 "per-channel standardization for GCN + ZCA"]
    assert all(left_out[("nin_svhn", name)] == "the recipe has no GCN + ZCA" for name in whitening)
    assert ("nin_cifar10", whitening[0]) not in left_out  # the paper's CIFAR-10 recipe has GCN + ZCA
    assert left_out["nin_cifar10", "no batch norm"].startswith("the network already has")  # built without
    assert left_out["maxout_mnist", "dropout 0.5"].startswith("the network already has")  # its default
    assert left_out["nin_cifar10_long", "cutout 8x8 (RandomErasing, a sixteenth of the image)"] \
        == "the recipe already has a RandomErasing layer"
    assert ("nin_cifar10_modern", "no batch norm") not in left_out


def test_paired_comparison_of_two_presets_on_a_recipes_held_out_images():
    """benchmarks/paired.py: its validation split is the images the recipe held out of training;
    each accuracy is what the evaluation code measures for that preset on those images, and the
    difference is (images only the other gets right - images only the base gets right) / n."""
    import paired

    from nin_keras.evaluation import evaluate_model
    from nin_keras.train import load_recipe
    from nin_keras.train.splits import training_arrays
    from nin_keras.zoo import ImageClassifier

    base, other, name = paired.QUICK
    recipe = load_recipe(name)
    try:
        arrays = paired.split_arrays(recipe, ["validation", "test"], None, 400)
    except DataError as err:  # no local Fashion-MNIST
        pytest.skip(str(err))
    _, _, held, held_labels = training_arrays(recipe)
    np.testing.assert_array_equal(arrays["validation"][1], held_labels[:400])
    np.testing.assert_array_equal(arrays["validation"][0], held[:400])
    models = {preset: ImageClassifier.from_preset(preset) for preset in (base, other)}
    paired.check_held_out(recipe, models)  # the fast and long recipes hold out the same images
    rows = paired.compare(models, arrays)
    assert [row["split"] for row in rows] == ["validation", "test"]
    for row, (images, labels) in zip(rows, arrays.values()):
        for key, preset in (("base_accuracy", base), ("other_accuracy", other)):
            measured = evaluate_model(ImageClassifier.from_preset(preset), images, labels)["accuracy"]
            assert row[key] == pytest.approx(100 * measured, abs=0.006), (row, key)
        assert row["base_only_right"] + row["other_only_right"] > 0  # the two do differ on some images
        assert row["difference"] == pytest.approx(row["other_accuracy"] - row["base_accuracy"], abs=0.011)
        assert row["difference"] == round(100 * (row["other_only_right"] - row["base_only_right"]) / 400, 2)
        assert row["ci95"][0] < row["difference"] < row["ci95"][1]
    # A recipe that measures the test split each epoch holds nothing out to choose on, even with a
    # hold-out beside it (training_arrays then validates on the split).
    for validation in ({"split": "test"}, {"holdout": 100, "split": "test"}):
        with pytest.raises(ArgumentError, match="holds out no validation images .*'split': 'test'"):
            paired.split_arrays({**recipe, "validation": validation}, ["validation"], None, 10)
    # A model trained on another draw of the training images saw some of this hold-out.
    trained_by = "nin_fashion_mnist.fast (trained by 'nin_fashion_mnist_fast') did not hold out"
    with pytest.raises(ArgumentError, match=re.escape(trained_by)):
        paired.check_held_out({**recipe, "seed": 2}, models)
    models[base].metadata.pop("recipe")
    with pytest.raises(ArgumentError, match="no training recipe recorded"):
        paired.check_held_out(recipe, models)
    with pytest.raises(SystemExit):  # one weight set against itself is no comparison
        paired.main([base, base, "--recipe", name])


def test_a_search_stopped_inside_a_variant_resumes_it_and_starts_a_changed_one_over(tmp_path, datasets_dir):
    """A full-length variant outlasts a CPU session: the search's runs checkpoint inside epochs, and
    rerunning the search continues an unfinished variant from its checkpoint, while a folder left by
    another recipe (an earlier round's) is cleared rather than resumed."""
    import ablation

    from nin_keras.train import train

    names = ["full recipe", "no label smoothing"]
    recipes = ablation.round_recipes(names, [], 1, 320, 50, 64)  # 256 training images: 2 steps of 128
    assert all(recipe["checkpoint_every_steps"] > 0 for recipe in recipes.values())
    stopped = tmp_path / ablation._slug("full recipe")
    stopped.mkdir()
    (stopped / "recipe.json").write_text(json.dumps(recipes["full recipe"]))
    train(recipes["full recipe"], stopped / "run", data_dir=str(datasets_dir), verbose=0, max_steps=1)
    other = tmp_path / ablation._slug("no label smoothing")
    other.mkdir()
    (other / "recipe.json").write_text(json.dumps({**recipes["no label smoothing"], "epochs": 2}))
    (other / "left_over.txt").write_text("an earlier round's file")

    rows = ablation._run_in_children(names, recipes, tmp_path, 1, str(datasets_dir))

    assert rows[0]["resumed_from"] == {"epoch": 0, "step": 1}
    assert rows[1]["resumed_from"] is None and not (other / "left_over.txt").exists()
    assert json.loads((other / "recipe.json").read_text()) == recipes["no label smoothing"]

    # The paired interval of the validation difference is centred on the two published presets'
    # accuracy difference on the held-out images, as the evaluation code measures it.
    from nin_keras.evaluation import evaluate_model
    from nin_keras.train.splits import training_arrays
    from nin_keras.zoo import ImageClassifier

    ablation._validation_intervals(names, rows, recipes, tmp_path, str(datasets_dir))
    _, _, images, labels = training_arrays(recipes["full recipe"], str(datasets_dir))
    accuracy = [evaluate_model(ImageClassifier.from_preset(folder / "run" / "preset"), images, labels)["accuracy"]
                for folder in (stopped, other)]
    low, high = rows[1]["val_accuracy_difference_ci95"]
    assert rows[0]["val_accuracy_difference_ci95"] is None and low <= high
    assert (low + high) / 2 == pytest.approx(100 * (accuracy[1] - accuracy[0]), abs=0.01)


def test_each_search_in_progress_resumes_with_the_command_its_readme_gives():
    """``benchmarks/runs/README.md`` gives, for each search folder committed there, the command that
    continues it: run as written, it names that folder and result, and rebuilds each variant's
    recipe exactly as its folder holds it (a different one would start the variant over), each
    variant having either its finished row or a checkpoint to resume."""
    import shlex

    import ablation

    runs = BENCH / "runs"
    commands = {}
    for block in re.findall(r"```bash\n(.*?)```", (runs / "README.md").read_text(), re.S):
        words = shlex.split(block.replace("\\\n", " "))
        arguments = words[words.index("benchmarks/ablation.py") + 1:words.index(">>")]
        args = ablation.build_parser().parse_args(arguments)
        commands[BENCH.parent / args.runs_dir] = args
    assert set(commands) == {folder for folder in runs.iterdir() if folder.is_dir()}
    for folder, args in commands.items():
        assert folder.name == args.result and (folder / "search.log").is_file(), folder
        names = [name for name in args.variants if name not in args.on]
        recipes = ablation.round_recipes(names, args.on, args.epochs, args.train, args.test,
                                         args.validation, args.checkpoint_every, args.recipe)
        for name in names:
            variant = folder / ablation._slug(name)
            assert ablation._same_recipe(variant, recipes[name]), (folder, name)
            assert (variant / "row.json").is_file() or (variant / "run" / "checkpoint.npz").is_file(), (folder, name)


def test_paired_difference_against_a_hand_computation():
    """100 images: the base alone right on 10, the other alone on 20, both right on 60. The
    difference is (20 - 10) / 100 = 10 points; its standard error sqrt(30 - 10^2 / 100) / 100 =
    0.05385, so the interval is 10 +- 10.55 points. Two identical models: 0, a zero-width interval."""
    import ablation

    base = np.array([True] * 10 + [False] * 20 + [True] * 60 + [False] * 10)
    other = np.array([False] * 10 + [True] * 20 + [True] * 60 + [False] * 10)
    assert ablation.paired_difference(base, other) == (10.0, -0.55, 20.55)
    assert ablation.paired_difference(other, base) == (-10.0, -20.55, 0.55)
    assert ablation.paired_difference(base, base) == (0.0, 0.0, 0.0)


def test_a_short_run_averages_the_same_fraction_of_its_steps_as_the_recipe():
    """The EMA's horizon is compressed with the run: the recipe's 0.999 over 36 epochs of 50,000
    images (1.8 M images seen) is 0.98 over 10 epochs of 9,000 (90,000 seen), by hand."""
    import ablation

    from nin_keras.train import load_recipe

    base = load_recipe(ablation.RECIPE)
    assert (base["epochs"], base["ema"]["decay"]) == (36, 0.999)
    assert ablation.variant_recipe(base, None, 10, 10_000, 50, validation=1_000)["ema"]["decay"] == 0.98
    slow_average = ablation.VARIANTS["EMA decay 0.9999"]
    assert ablation.variant_recipe(base, slow_average, 10, 10_000, 50, validation=1_000)["ema"]["decay"] == 0.998
    assert ablation.variant_recipe(base, None, 36, 50_000, 50)["ema"]["decay"] == 0.999  # the full run
    assert ablation.variant_recipe(base, None, 1, 64, 50)["ema"]["decay"] == 0.5  # capped: never below


def test_a_variant_that_doubles_the_schedule_doubles_the_run_and_the_averages_horizon():
    """Twice the recipe's epochs -> twice the run's, and the EMA horizon 1 / (1 - decay) doubles
    with the steps, so the average covers the same fraction of the run (by hand: 0.001 * 36 * 50,000
    / (6 * 90) per step for 3 epochs of 100 images, 10 held out; half that for 6)."""
    import ablation
    from nin_keras.train import load_recipe

    base = load_recipe(ablation.RECIPE)
    once = ablation.variant_recipe(base, None, 3, 100, 50, 10)
    twice = ablation.variant_recipe(base, ablation.VARIANTS["twice the schedule"], 3, 100, 50, 10)
    assert (once["epochs"], twice["epochs"]) == (3, 6)
    assert once["ema"]["decay"] == 0.5  # 0.001 * 1.8e6 / 270 is past the cap
    full = ablation.variant_recipe(base, None, 36, 50000, 50, 5000)
    doubled = ablation.variant_recipe(base, ablation.VARIANTS["twice the schedule"], 36, 50000, 50, 5000)
    assert doubled["epochs"] == 72
    assert 1 - full["ema"]["decay"] == pytest.approx(0.001 * 36 * 50000 / (36 * 45000), abs=1e-6)
    assert 1 - doubled["ema"]["decay"] == pytest.approx(0.001 * 36 * 50000 / (72 * 45000), abs=1e-6)
    assert {key for key in doubled if doubled[key] != full[key]} == {"epochs", "ema"}


def test_a_later_search_round_adds_one_change_to_the_winner_so_far():
    import ablation

    on = ["per-channel standardization for GCN + ZCA"]
    names = ["full recipe", "cutout (RandomErasing, a quarter of the image)"]
    recipes = ablation.round_recipes(names, on, 2, 100, 50, 10)
    first_round = ablation.round_recipes(names, [], 2, 100, 50, 10)
    for recipe in recipes.values():
        assert recipe["preprocessing"] == [ablation.PER_CHANNEL]
    cutout = recipes[names[1]]
    assert cutout["augmentation"][-1] == ablation.CUTOUT
    assert {key for key in cutout if cutout[key] != recipes["full recipe"][key]} == {"augmentation"}
    assert first_round[names[1]]["augmentation"] == cutout["augmentation"]
    assert first_round["full recipe"]["preprocessing"][0]["class_name"] == "GlobalContrastNormalization"


def test_quick_inference_run_covers_every_row_kind(tmp_path):
    """benchmarks/inference.py --quick (random weights): dense, network-alone and compact rows,
    every runtime, and the compact ratios computed from this run's own rows."""
    payload = quick_run("inference", tmp_path)
    assert payload["quick"] is True and payload["machine"]["cpu"]
    rows = payload["rows"]
    kinds = {(r["runtime"], r["artifact"], r["input"]) for r in rows}
    for runtime in ("litert", "onnxruntime", "openvino"):
        assert any(k[0] == runtime and k[2] == "preprocessed" for k in kinds), runtime
    assert ("litert", "compact tflite int8 integer-io", "raw pixels") in kinds
    assert ("openvino", "compact onnx int8", "raw pixels") in kinds
    by_name = {(r["runtime"], r["artifact"], r["input"], r["settings"]): r for r in rows}
    summary = payload["summary"]
    compact = by_name[("litert", "compact tflite int8", "raw pixels", "XNNPACK, 2 thread(s)")]
    paired = summary["compact_int8_b64_vs_network_only_int8_same_runtime"]
    # Every compact int8 artifact with a network-alone counterpart on its runtime, the ratio of medians.
    assert set(paired) == {f"{r['artifact']} on {r['runtime']}" for r in rows
                           if r["artifact"].startswith("compact ") and "int8" in r["artifact"]
                           and r["runtime"] in ("litert", "onnxruntime", "openvino")}
    for times in paired.values():
        assert times["ratio"] == pytest.approx(times["network_only_median_ms"] / times["median_ms"])
    best = summary["compact_best_ratio_per_runtime"]
    assert set(best) == {"litert", "onnxruntime", "openvino"}
    for runtime, choice in best.items():
        assert choice["ratio"] == max(t["ratio"] for label, t in paired.items() if label.endswith(f" on {runtime}"))
    for row in rows:
        assert row["latency_b1_ms"] > 0 and row["throughput_b64_ips"] > 0 and 0 <= row["accuracy"] <= 100
        assert row["size_mb"] is None or row["size_mb"] > 0
    # The compact int8 file (a 5x5 whitening kernel, int8 network) is far smaller than the dense float one.
    assert 0 < compact["size_mb"] < by_name[("litert", "tflite float32", "raw pixels", "XNNPACK, 2 thread(s)")]["size_mb"]


def test_quick_cpu_ceiling_run_derives_its_summary_from_its_rows(tmp_path):
    """benchmarks/cpu_ceiling.py --quick: the peak loops ran the counted instructions (their checksum,
    recomputed here), and the ceiling follows from the rows and NIN's layer widths."""
    payload = quick_run("cpu_ceiling", tmp_path)
    assert payload["quick"] is True and payload["machine"]["cpu"]
    rows, summary = payload["rows"], payload["summary"]
    assert summary["network_macs_per_image"] == nin_cifar10_macs(32)
    keras_row = next(r for r in rows if r["runtime"] == "keras tf.function")
    assert keras_row["gmacs"] == pytest.approx(summary["compiled_keras_ips"] * nin_cifar10_macs(32) / 1e9)
    peaks = {r["dtype"]: r for r in rows if r["runtime"] == "peak_macs.c"}
    assert set(peaks) == {"fp32", "int8"}
    if "avx512_vnni" not in common.cpu_features():
        assert all(r["status"].startswith("not measured") for r in peaks.values())
        return
    chains, iterations = 12, 200_000
    # int8: chain i starts at i and gains 4 x (3 x -2) per iteration; fp32: x -> 0.999 x + 0.001 tends to 1.
    assert peaks["int8"]["checksum"] == chains * (chains - 1) / 2 - 24 * iterations * chains
    assert peaks["fp32"]["checksum"] == pytest.approx(chains, rel=1e-3)
    # 64 multiply-adds per VNNI instruction against 16 per FMA: int8 must come out ahead.
    assert summary["int8_peak_over_fp32_peak"] > 1
    ceiling = peaks["int8"]["gmacs"] * 1e9 / nin_cifar10_macs(32)
    assert summary["int8_ceiling_vs_compiled_keras"] == pytest.approx(ceiling / summary["compiled_keras_ips"])


def test_accelerator_name_reads_nvidia_smi_and_is_none_without_it(tmp_path, monkeypatch):
    """A result measured on a GPU machine names the GPU: what ``nvidia-smi`` lists, counted when
    there are several; no ``nvidia-smi`` (this CPU machine) or a failing one gives None."""
    fake = tmp_path / "nvidia-smi"
    monkeypatch.setenv("PATH", str(tmp_path))
    assert common.accelerator_name() is None
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200'\necho 'NVIDIA H200'\n")
    fake.chmod(0o755)
    assert common.accelerator_name() == "NVIDIA H200 (x2)"
    fake.write_text("#!/bin/sh\necho 'NVIDIA H200'\n")
    assert common.accelerator_name() == "NVIDIA H200"
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert common.accelerator_name() is None


@pytest.mark.slow
def test_device_bundle_runs_the_search_from_the_installed_layout_on_jax():
    """The GPU machine gets the package in its installed layout without the weights
    (scripts/device_bundle.sh); the same bundle runs the search's smoke run here on JAX without
    TensorFlow (.venv-jax), the dry run the brief asks before a device call."""
    root = BENCH.parent
    if not (root / ".venv-jax" / "bin" / "python").exists():
        pytest.skip(".venv-jax is missing: bash scripts/test_jax.sh creates it")
    done = subprocess.run(["bash", "scripts/device_bundle.sh", "--check-here"], cwd=root,
                          capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    site = root / ".device" / "site" / "nin_keras"
    assert (site / "zoo" / "registry.py").is_file() and (site / "export" / "exporter.py").is_file()
    assert not [p for p in (site / "zoo" / "weights").iterdir() if p.is_dir()]
    assert sorted(p.name for p in (root / ".device" / "data").iterdir()) == ["cifar10-jpeg.tar.gz", "fashion-mnist"]
    travelling = int(re.search(r"device_bundle: (\d+) MiB will travel", done.stdout)[1])
    assert travelling < 64
    assert "device_bundle: rows [('full recipe'" in done.stdout


def test_quick_decode_run_times_each_number_of_workers_on_identical_arrays(tmp_path):
    """benchmarks/decode.py --quick: a row for workers=1 and 2 (and the default), the same arrays for each."""
    from nin_keras.data.decode_pool import default_workers

    payload = quick_run("decode", tmp_path)
    rows, summary = payload["rows"], payload["summary"]
    assert [row["workers"] for row in rows] == sorted({1, 2, default_workers()})
    assert all(row["images"] == 300 and row["images_per_s"] > 0 and row["status"] == "ok" for row in rows)
    assert summary["identical_arrays"] is True and summary["quick"] == "yes"
    assert summary["workers_2_over_1"] == pytest.approx(rows[1]["images_per_s"] / rows[0]["images_per_s"], abs=0.01)


def test_the_jpeg_survey_reads_back_the_quality_and_subsampling_each_file_was_written_with():
    """Files written by Pillow at known settings (and one with tables of no quality) are counted
    under those settings, by split."""
    import io
    from pathlib import PurePosixPath

    import jpeg_copy
    from PIL import Image

    rng = np.random.default_rng(0)

    def jpeg(**options) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, "JPEG", **options)
        return buffer.getvalue()

    files = [(PurePosixPath("train/cat/0.jpg"), jpeg(quality=75, subsampling="4:2:0")),
             (PurePosixPath("train/dog/0.jpg"), jpeg(quality=75, subsampling="4:2:0")),
             (PurePosixPath("train/dog/1.jpg"), jpeg(quality=31, subsampling="4:4:4")),
             (PurePosixPath("test/cat/0.jpg"), jpeg(quality=93, subsampling="4:2:2")),
             (PurePosixPath("test/cat/1.jpg"), jpeg(qtables=[[7] * 64], subsampling="4:4:4"))]
    rows = {(row["split"], row["quality"], row["subsampling"]): row["files"] for row in jpeg_copy.survey(files)}
    assert rows == {("train", 75, "4:2:0"): 2, ("train", 31, "4:4:4"): 1, ("test", 93, "4:2:2"): 1,
                    ("test", "custom", "4:4:4"): 1}


def test_a_stopped_search_keeps_the_rows_of_finished_runs_of_the_same_recipe(tmp_path, monkeypatch):
    """Rerunning a search runs only what has no finished row for the same recipe: here a variant
    whose recipe changed since (more epochs) and one that never finished."""
    import ablation

    names = ["full recipe", "dropout 0.5", "label smoothing 0.2"]
    earlier = ablation.round_recipes(names, [], 2, 1_000, 50, 100)
    recipes = {**earlier, "dropout 0.5": ablation.round_recipes(["dropout 0.5"], [], 3, 1_000, 50, 100)["dropout 0.5"]}
    for name in names:
        folder = tmp_path / ablation._slug(name)
        folder.mkdir()
        (folder / "recipe.json").write_text(json.dumps(earlier[name]))
        if name != "label smoothing 0.2":  # that one was stopped before its row
            (folder / "row.json").write_text(json.dumps({"variant": name, "val_accuracy": 1.0}))
    started = []

    class Child:  # a finished child process: its row written, exit 0
        def __init__(self, command, **_):
            folder = Path(command[command.index("--worker-dir") + 1])
            started.append(command[command.index("--worker") + 1])
            (folder / "row.json").write_text(json.dumps({"variant": started[-1], "val_accuracy": 2.0,
                                                         "test_accuracy": 2.0, "epoch_seconds": 1.0}))
            self.returncode = 0

        def wait(self):
            return 0

    monkeypatch.setattr(ablation.subprocess, "Popen", Child)
    rows = ablation._run_in_children(names, recipes, tmp_path, 1, None)
    assert started == ["dropout 0.5", "label smoothing 0.2"]
    assert [row["val_accuracy"] for row in rows] == [1.0, 2.0, 2.0]
    assert json.loads((tmp_path / "dropout_0_5" / "recipe.json").read_text())["epochs"] == 3


def test_change_energy_is_kept_by_an_affine_map_and_grown_by_whitening_of_a_low_variance_direction():
    """By hand: images varying along one pixel direction, changed along another. A per-pixel affine
    map keeps the ratio of energies; dividing the changed, low-variance pixel by its own small
    standard deviation (what whitening does) multiplies the change's energy by 1 / std**2."""
    import jpeg_copy
    import keras

    rng = np.random.default_rng(0)
    images = np.zeros((64, 2, 2, 1))
    images[:, 0, 0, 0] = rng.normal(0, 10, 64)
    images[:, 1, 1, 0] = rng.normal(0, 0.05, 64)
    changed = images.copy()
    changed[:, 1, 1, 0] += 0.1
    raw, kept = jpeg_copy.change_energy(images, changed, [keras.layers.Rescaling(3.0, offset=7.0)])
    energy = np.sum((images - images.mean(axis=0)) ** 2)
    assert raw == pytest.approx(64 * 0.1 ** 2 / energy) and kept == pytest.approx(raw, rel=1e-5)
    scale = np.ones((2, 2, 1), "float32")
    scale[1, 1, 0] = 1 / images[:, 1, 1, 0].std()
    _, whitened = jpeg_copy.change_energy(images, changed, [keras.layers.Lambda(lambda x: x * scale)])
    whitened_energy = np.sum(((images - images.mean(axis=0)) * scale) ** 2)
    assert whitened == pytest.approx(64 * (0.1 * scale[1, 1, 0]) ** 2 / whitened_energy, rel=1e-4)
    assert whitened > 10 * raw


def test_a_pass_on_a_moved_block_grid_meets_new_block_boundaries():
    """Grey images made of 8x8 blocks of one level each, on the encoder's own grid: each block is
    its DC coefficient alone, which quality 75 keeps, so a pass returns them exactly, and so does a
    grid moved by a whole block; moved by half a block, the encoder's blocks straddle the level
    steps and their quantized detail changes the pixels."""
    import jpeg_copy

    levels = np.random.default_rng(0).integers(0, 256, (3, 4, 4))
    blocks = np.repeat(np.repeat(levels, 8, axis=1), 8, axis=2)
    images = np.repeat(blocks[..., None], 3, axis=3).astype("uint8")
    error = {shift: np.abs(jpeg_copy.reencoded(images, 75, "4:2:0", shift).astype(int) - images).mean()
             for shift in (0, 4, 8)}
    assert error[0] == 0 and error[8] == 0 and error[4] > 1
    assert jpeg_copy.pass_names([75, 50], 75, 4) == {"q75": (75, 0), "q50": (50, 0), "q75_grid4": (75, 4)}
    assert jpeg_copy.pass_names([75], 75, 0) == {"q75": (75, 0)}


def test_quick_jpeg_copy_run_surveys_the_archive(tmp_path):
    """benchmarks/jpeg_copy.py --quick: the survey of the copy's first 500 test files, no models."""
    from nin_keras.data.locate import data_dirs

    if not any((folder / "cifar10-jpeg.tar.gz").is_file() for folder in data_dirs(None)):
        pytest.skip("the CIFAR-10 JPEG copy is not available")
    rows = quick_run("jpeg_copy", tmp_path)["rows"]
    assert sum(row["files"] for row in rows) == 500 and {row["kind"] for row in rows} == {"files"}
    assert {row["split"] for row in rows} == {"test"}


def test_int8_rows_name_the_preprocessing_the_preset_has():
    """The int8 benchmark's rows say what stays float: the compact presets' GCN and whitening, the
    standardized preset's per-channel Normalization (not whitening it does not have)."""
    import int8_accuracy
    import keras

    from nin_keras.layers import ConvWhitening, GlobalContrastNormalization

    float_onnx, _, _, quantized_onnx = (template for template, *_ in int8_accuracy.ARTIFACTS)
    compact = [GlobalContrastNormalization(), ConvWhitening()]
    assert int8_accuracy.artifact_label(float_onnx, compact) == "ONNX int8 QDQ, GCN and whitening float"
    assert int8_accuracy.artifact_label(quantized_onnx, [keras.layers.Normalization()]) == (
        "ONNX int8, standardization quantized too")
    assert int8_accuracy.artifact_label(float_onnx, [keras.layers.Rescaling(1 / 255)]) == (
        "ONNX int8 QDQ, Rescaling float")


def test_nearest_rounding_puts_each_output_channel_on_its_own_int8_grid_and_casts_to_float16():
    """Hand-computed: a channel whose largest tap is 0.5 has levels of 0.5 / 127, so 0.1 becomes
    round(25.4) = 25 levels; a zero channel stays zero; the bias stays float for int8 and becomes
    float16 (0.1 -> 0.0999755859375) on the float16 grid."""
    import whitening_grid

    kernel = np.array([0.5, -0.25, 0.1, 0.0, 0.0, 0.0], np.float32).reshape(1, 1, 3, 2, order="F")
    bias = np.array([0.1, -0.3], np.float32)
    rounded, same_bias = whitening_grid.nearest_on_grid(kernel, bias, "int8")
    level = np.float32(0.5 / 127)
    np.testing.assert_allclose(rounded[0, 0, :, 0], np.array([127, -64, 25]) * level, rtol=1e-6)
    assert not rounded[..., 1].any() and np.array_equal(same_bias, bias)
    half_kernel, half_bias = whitening_grid.nearest_on_grid(kernel, bias, "float16")
    assert half_bias[0] == np.float32(0.0999755859375) and half_kernel[0, 0, 2, 0] == np.float32(0.0999755859375)


def test_weights_on_a_grid_inside_the_block_and_back_after(datasets_dir):
    """The compact Caffe preset with its whitening on the int8 grid (nearest: every tap a whole
    number of its channel's levels; chosen: closer to the float output on the calibration images)
    and with every weight float16; each exit brings back the float32 weights exactly."""
    import keras
    import whitening_grid

    from nin_keras import zoo
    from nin_keras.data.arrays import load_arrays

    preset = zoo.ImageClassifier.from_preset("nin_cifar10.caffe_compact")
    gcn, whitening = preset.preprocessing
    images = load_arrays({"name": "cifar10"}, "test", datasets_dir)[0][:64].astype(np.float32)
    original = [keras.ops.convert_to_numpy(weight) for weight in preset.weights]
    exact = keras.ops.convert_to_numpy(whitening(gcn(images)))
    errors = {}
    for rounding in ("nearest", "chosen"):
        with whitening_grid.weights_on_grid(preset, "whitening", "int8", rounding, images):
            kernel = keras.ops.convert_to_numpy(whitening.kernel).reshape(-1, whitening.kernel.shape[-1])
            levels = kernel / (np.abs(kernel).max(axis=0) / 127)
            np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
            errors[rounding] = np.mean((keras.ops.convert_to_numpy(whitening(gcn(images))) - exact) ** 2)
        assert all(np.array_equal(keras.ops.convert_to_numpy(w), v) for w, v in zip(preset.weights, original))
    assert errors["chosen"] < errors["nearest"] / 2, errors
    with whitening_grid.weights_on_grid(preset, "all", "float16", "chosen", images):
        for weight in preset.weights:
            value = keras.ops.convert_to_numpy(weight)
            assert np.array_equal(value, value.astype(np.float16).astype(np.float32)), weight.path
    assert all(np.array_equal(keras.ops.convert_to_numpy(w), v) for w, v in zip(preset.weights, original))


def _without_folders(command: str) -> str:
    """``command`` without the folders it reads and writes (``--data-dir``, ``--runs-dir``)."""
    return re.sub(r" --(data|runs)-dir \S+", "", command)


def _script(command: str) -> str:
    """The benchmark a recorded or cited command runs (a result's ``benchmark`` is its file's name)."""
    return Path(command.split()[1]).stem


def _benchmark_citations(document: Path) -> list[tuple[str, str]]:
    """``document``'s ``python benchmarks/...`` commands as written, each with the text around it:
    from the end of the citation before to the start of the one after (whitespace collapsed, bold
    marks dropped)."""
    text = " ".join(document.read_text().replace("**", "").split())
    cites = list(re.finditer(r"`(python benchmarks/[^`]*)`", text))
    ends = [0] + [m.end() for m in cites]
    starts = [m.start() for m in cites] + [len(text)]
    return [(m.group(1), text[ends[i]:starts[i + 1]]) for i, m in enumerate(cites)]


def test_every_benchmark_command_the_docs_cite_made_a_committed_result_with_its_figures():
    """A figure the README or a model card cites with its benchmark command comes from the committed
    results file that command wrote (the file records its command, folders aside): a rerun with other
    arguments, or a prose figure left behind by one, fails here. Per-preset TFLM rows
    (``micro.py --presets P``), the int8 and ablation accuracies and what a JPEG pass costs each
    model, the whitening grids' agreements and probability changes, the paired comparisons'
    differences and intervals are checked figure by figure; the other citations, for the file alone."""
    payloads = [json.loads(path.read_text()) for path in sorted((BENCH / "results").glob("*.json"))]
    recorded = {_without_folders(payload["command"]): payload for payload in payloads}
    # micro.py keeps the rows of presets a run did not name, so its rows are looked up by preset.
    micro = {row["preset"]: row for payload in payloads if _script(payload["command"]) == "micro"
             for row in payload["rows"]}
    documents = [BENCH.parent / "README.md", *sorted((BENCH.parent / "zoo" / "runs").glob("*/README.md"))]
    citations = [(document, _without_folders(command), around) for document in documents
                 for command, around in _benchmark_citations(document)]
    assert len(citations) >= 15
    for document, command, around in citations:
        presets = re.fullmatch(r"python benchmarks/micro\.py --presets (\S+)", command)
        if presets:
            row = micro.get(presets.group(1))
            assert row is not None, f"{document}: results/micro.json has no row for {command!r}"
            expected = [f"{row['micro_accuracy']:.2f}%", f"{row['float_accuracy']:.2f}%",
                        f"{row['top1_agreement']:.2f}%", f"{round(row['flash_kib'])} KiB flash",
                        f"{round(row['arena_kib'])} KiB arena"]
        else:
            assert command in recorded, f"{document}: no committed result records {command!r}"
            payload, script = recorded[command], _script(command)
            if script == "int8_accuracy":
                expected = [f"{row['accuracy']:.2f}%" for row in payload["rows"]]
            elif script == "ablation":
                expected = [f"{row[key]:.2f}%" for row in payload["rows"]
                            for key in ("val_accuracy", "test_accuracy", "train_accuracy") if key in row]
            elif script == "whitening_grid":  # int8 whitening agreements; float16 files' largest changes
                expected = [f"{row['agreement']:.2f}%" for row in payload["rows"] if row["weights"].endswith("int8")]
                expected += [f"{row['max_change']:.4f}" for row in payload["rows"] if row["weights"] == "all float16"]
            elif script == "paired":  # each split's difference and the ends of its interval, signed
                expected = [f"{value:+.2f}" for row in payload["rows"] for value in (row["difference"], *row["ci95"])]
            elif script == "jpeg_copy":  # what a pass at quality 50, or on a moved grid, costs each model
                expected = [f"{-row[key]:.1f}" for row in payload["rows"] if row["kind"] == "model"
                            for key in row if key == "difference_q50" or re.fullmatch(r"difference_q\d+_grid\d+", key)]
            else:
                expected = []
        # A whole number, not part of a longer one ("1.2" is found in neither "91.2%" nor "1.29%").
        # The prose minus sign (U+2212) is read as "-".
        missing = [figure for figure in expected
                   if not re.search(rf"(?<![\d.]){re.escape(figure)}(?!\d)", around.replace("\u2212", "-"))]
        assert not missing, f"{document} cites {command!r} beside none of {missing}"


def _float_accuracies_by_preset(payload: dict) -> list[tuple[str, float]]:
    """The float model's accuracy on the whole test split that a committed result measured for each
    preset it names (``micro.py`` and ``jpeg_copy.py`` rows, ``int8_accuracy.py``'s float Keras rows,
    both sides of ``paired.py``'s test rows)."""
    script = _script(payload["command"])
    if script == "micro":
        return [(row["preset"], row["float_accuracy"]) for row in payload["rows"] if row["test_images"] == 10000]
    if script == "jpeg_copy":
        return [(row["preset"], row["accuracy_as_stored"]) for row in payload["rows"]
                if row["kind"] == "model" and row["test_images"] == 10000]
    if script == "int8_accuracy":  # every row measures the whole test split
        return [(row["artifact"].split()[0], row["accuracy"]) for row in payload["rows"]
                if " float Keras model" in row["artifact"]]
    if script == "paired":  # presets named in the registry (a run's folder is not)
        return [(payload["config"][side], row[f"{side}_accuracy"]) for row in payload["rows"]
                for side in ("base", "other")
                if row["split"] == "test" and row["images"] == 10000 and "/" not in payload["config"][side]]
    return []


def test_each_committed_row_measured_the_weights_its_preset_names_today():
    """A benchmark row names a preset, and a preset without a tag is its name's default, which moves
    when better weights are published (``nin_mnist`` became the ``modern`` weights): a row measured
    before the move describes other weights than its name loads now, and no file changes to say so.
    The float accuracy a row measured on the whole test split is a fingerprint of the weights it ran,
    so it must equal the weights index's test accuracy of the tag the preset resolves to today."""
    from nin_keras.zoo.registry import get_pretrained_config

    measured = [(path.name, preset, accuracy) for path in sorted((BENCH / "results").glob("*.json"))
                for preset, accuracy in _float_accuracies_by_preset(json.loads(path.read_text()))]
    assert len({preset for _, preset, _ in measured}) >= 7
    stale = []
    for name, preset, accuracy in measured:
        entry, config = get_pretrained_config(preset)
        if round(accuracy, 2) != round(config.metrics["test_accuracy"], 2):
            stale.append(f"{name}: {preset} (now {entry.preset_name(config.tag)}, "
                         f"{config.metrics['test_accuracy']}%) measured {accuracy}%")
    assert not stale, "rows measured other weights than their preset names now: " + "; ".join(stale)


# What a rerun on the same machine must reproduce: counts, sizes and accuracies, not timings.
REPRODUCIBLE = re.compile(r"accuracy|agreement|change|difference|energy|flash|arena|size|files|numbers|fits|relative_error")


def _reproducible(row: dict) -> dict:
    """``row``'s measured quantities that do not depend on timing, with the labels that name it;
    sizes in MB to the docs' 0.01 (a SavedModel's bytes vary by a few hundred from export to export)."""
    return {key: round(value, 2) if key.endswith("_mb") and value is not None else value
            for key, value in row.items()
            if REPRODUCIBLE.search(key) or (isinstance(value, str) and key not in ("date", "cpu"))}


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted({command for command, _ in _benchmark_citations(BENCH.parent / "README.md")}),
                         ids=lambda command: command.removeprefix("python benchmarks/"))
def test_each_benchmark_command_the_readme_cites_reproduces_its_committed_result(command, tmp_path):
    """The README's benchmark commands, run exactly as written from the repository's root (results
    into a scratch folder), record that command and reproduce the committed result row by row:
    every accuracy, agreement, size and JPEG difference; timings are the machine's and are not
    compared. With the docs test above, each figure the README cites beside one is rerun here.
    Minutes each; the TFLM runs of the CIFAR-10 presets take most of an hour."""
    import importlib.util
    import shlex

    argv = shlex.split(command)
    assert argv[0] == "python"
    python = sys.executable
    if "--backend jax" in command and importlib.util.find_spec("jax") is None:
        # The test venv holds TensorFlow, not JAX; scripts/test_jax.sh keeps the one that holds JAX.
        python = str(BENCH.parent / ".venv-jax" / "bin" / "python")
        if not Path(python).exists():
            pytest.skip(f"{command!r} needs JAX: run scripts/test_jax.sh to make .venv-jax")
    env = {**os.environ, common.RESULTS_DIR_ENV: str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([python, *argv[1:]], cwd=BENCH.parent, env=env, capture_output=True,
                          text=True, timeout=3 * 3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (written,) = tmp_path.glob("*.json")
    fresh = json.loads(written.read_text())
    assert _without_folders(fresh["command"]) == command
    committed = [json.loads(path.read_text()) for path in (BENCH / "results").glob("*.json")]
    if _script(command) == "micro":  # micro.json keeps a row per preset, whichever run wrote it
        presets = {row["preset"] for row in fresh["rows"]}
        before = [row for payload in committed if _script(payload["command"]) == "micro"
                  for row in payload["rows"] if row["preset"] in presets]
    else:
        (before,) = [payload["rows"] for payload in committed if _without_folders(payload["command"]) == command]
    assert [_reproducible(row) for row in fresh["rows"]] == [_reproducible(row) for row in before]
