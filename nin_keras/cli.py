"""The ``nin-keras`` command: thin argparse subcommands over the library.

Each subcommand is a ``_cmd_<name>(args) -> int`` function registered in ``build_parser`` with
the library functions it calls (``_library``); library imports happen inside them so
``nin-keras --help`` stays fast. An option that sets a parameter of those functions is named
after it (its dest), has no default of its own and reaches the call only when given, so every
default is the library's (the help reads it from the function's signature); the command line is
recorded as typed (``_command``). A library error's arguments and calls (``nin_keras.errors``'s
``Argument``/``Call`` parts) are spelled as this command's flags and subcommands.

Exit codes, the same for every subcommand: 0 success; 1 the library rejected the request (a
``NinKerasError``, a ``ValueError`` naming a bad value, a missing or existing file; one line on
stderr, no traceback unless ``--verbose``); 2 bad usage that argparse catches (unknown option,
missing argument, invalid choice, a number out of range), and an address ``serve`` cannot listen
on (port in use, a host this computer does not have; one line, no traceback). TensorFlow's
start-up log lines are hidden unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import sys
from typing import Any, Callable, Sequence


def _cmd_bench(args: argparse.Namespace) -> int:
    """Run ``benchmarks/run_all.py`` of the source checkout this package is installed from."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"
    if not script.exists():
        print(f"nin-keras bench: {script} not found; the benchmarks ship with the source "
              "repository, not the installed package", file=sys.stderr)
        return 1
    # The script takes the same options: the words typed after `bench` go to it as typed.
    extra = args.argv[args.argv.index(args.command) + 1:]
    if args.verbose:
        return subprocess.run([sys.executable, str(script), *extra]).returncode
    return _filtered_run([sys.executable, str(script), *extra])


def _filtered_run(command: list[str]) -> int:
    """Run ``command`` with its stderr (and its children's) passed through line by line, less
    TensorFlow's start-up lines: each benchmark is a fresh Python that imports TensorFlow."""
    import subprocess

    from nin_keras.tf_startup import is_startup_noise

    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace") as child:
        for line in child.stderr:
            if not is_startup_noise(line):
                sys.stderr.write(line)
                sys.stderr.flush()
    return child.returncode


def _command(args: argparse.Namespace) -> str:
    """The command line as typed, recorded in a run's metrics and its preset's metadata."""
    import shlex

    return shlex.join(["nin-keras", *args.argv])


def _cmd_train(args: argparse.Namespace) -> int:
    """Train a recipe; rerunning the same command resumes from the last checkpoint."""
    from nin_keras.train import load_recipe, train, with_overrides

    strategy = _strategy(args)
    recipe = with_overrides(load_recipe(args.recipe), epochs=args.epochs)
    if args.source:
        recipe = with_overrides(recipe, dataset={**recipe["dataset"], "source": args.source})
    result = train(**{**_given(args, train), "recipe": recipe, "out_dir": args.out_dir or f"runs/{recipe['name']}",
                      "strategy": strategy}, command=_command(args), verbose=0 if args.quiet else 1)
    if result.preset_dir is not None:
        print(f"preset: {result.preset_dir}")
    print(f"weights digest: {result.weights_digest}")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a preset on a class-folder directory or archive; rerun the same command to resume."""
    from nin_keras.train import finetune

    if args.freeze_epochs is not None:
        print("nin-keras finetune: --freeze-epochs is deprecated; use --freeze-body-epochs", file=sys.stderr)
    given = _given(args, finetune)
    if args.freeze_epochs is not None:
        given.setdefault("freeze_body_epochs", args.freeze_epochs)
    if args.mixed_precision:
        given["mixed_precision"] = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}[args.mixed_precision]
    if args.strategy or any(flag is not None for flag in (args.coordinator, args.num_processes, args.process_id)):
        given["strategy"] = _strategy(args)
    result = finetune(**given, command=_command(args), verbose=0 if args.quiet else 1)
    if result.preset_dir is not None:
        print(f"preset: {result.preset_dir}  classes: {', '.join(result.class_names)}")
    print(f"weights digest: {result.weights_digest}")
    return 0


def _add_strategy_flags(parser: argparse.ArgumentParser) -> None:
    """``--strategy`` and, for ``data_parallel`` over several processes, the arguments of
    ``keras.distribution.initialize`` (else its ``KERAS_DISTRIBUTION_*`` variables)."""
    parser.add_argument("--strategy", choices=("default", "mirrored", "multiworker", "data_parallel"),
                        help="TensorFlow: mirrored or multiworker (reads TF_CONFIG); JAX: data_parallel "
                             "(keras.distribution over all devices of all processes) (default: one device)")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="data_parallel over several processes: process 0's address, the same in every "
                             "process (else $KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    parser.add_argument("--num-processes", type=_count(1), metavar="N",
                        help="data_parallel: how many processes join (else $KERAS_DISTRIBUTION_NUM_PROCESSES)")
    parser.add_argument("--process-id", type=_count(0), metavar="I",
                        help="data_parallel: this process's index, 0 to N-1; 0 writes the checkpoints and the "
                             "preset (else $KERAS_DISTRIBUTION_PROCESS_ID)")


def _strategy(args: argparse.Namespace):
    """The run's strategy (``nin_keras.train.strategy.make_strategy``), made before anything else
    computes: joining processes and tf.distribute's collectives must come first."""
    from nin_keras.train.strategy import Processes, make_strategy

    flags = (args.coordinator, args.num_processes, args.process_id)
    if all(flag is None for flag in flags):
        return make_strategy(args.strategy or "default")
    if any(flag is None for flag in flags):
        raise ValueError("--coordinator, --num-processes and --process-id go together (or use the "
                         "KERAS_DISTRIBUTION_* variables)")
    return make_strategy(args.strategy or "default", Processes(*flags))


def _count(minimum: int):
    """An argparse type: a whole number >= ``minimum`` (argparse names the flag in its error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _cmd_eval(args: argparse.Namespace) -> int:
    """Print accuracy, loss and the paper's number for a preset on a data set split."""
    import json

    from nin_keras.train import evaluate_preset

    r = evaluate_preset(**_given(args, evaluate_preset))
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    published = (r["published"] or {}).get("test_error")
    print(f"{r['preset']} on {r['dataset']} {r['split']} ({r['examples']} images)")
    views = "" if r["tta"] == "none" else f"   (test-time augmentation: {r['tta']}; the published figure is single-view)"
    print(f"  accuracy {100 * r['accuracy']:.2f}%   error {r['error_percent']:.2f}%   loss {r['loss']:.4f}{views}")
    if r["paper_error"] is not None or published is not None:  # only on the preset's own test split
        paper = "n/a" if r["paper_error"] is None else f"{r['paper_error']:.2f}%"
        published = "n/a" if published is None else f"{published:.2f}%"
        print(f"  paper error {paper}   published error {published}")
    if "confusion" in r:
        _print_per_class(r["confusion"], r["class_names"])
    return 0


def _print_per_class(confusion: list[list[int]], class_names: list[str]) -> None:
    """Each class's images, accuracy and the class its images are most often taken for; a class
    with no images (a folder of some of the preset's classes) gets no line."""
    width = max(len("class"), *map(len, class_names)) + 2
    print(f"  {'class':<{width}}{'images':>7}{'accuracy':>10}  most often taken for")
    for index, (name, row) in enumerate(zip(class_names, confusion)):
        images = sum(row)
        if not images:
            continue
        accuracy = f"{100 * row[index] / images:.2f}%"
        mistakes = [(count, other) for column, (other, count) in enumerate(zip(class_names, row))
                    if column != index and count]
        count, other = max(mistakes, key=lambda mistake: mistake[0], default=(0, None))
        taken_for = "—" if other is None else f"{other} ({count} images)"
        print(f"  {name:<{width}}{images:>7}{accuracy:>10}  {taken_for}")


def _cmd_models(args: argparse.Namespace) -> int:
    """List zoo architectures (parameters, multiply-adds, paper error, weight sets), or with
    ``--pretrained`` every published weight set (``name.tag``) with its measured test error."""
    from nin_keras.zoo import cards, get_model_entry, list_models

    names = list_models(**_given(args, list_models))
    if not names:
        which = (f" matching {args.pattern!r}" if args.pattern else "") + (" with published weights" if args.pretrained else "")
        print(f"no zoo model{which}", file=sys.stderr)
        return 1
    if args.pretrained:
        print(f"{'weights':<30}{'dataset':<15}{'test error':>11}{'size':>9}  evaluated on")
        for name in names:
            entry = get_model_entry(name)
            tag = name.partition(".")[2]
            config = entry.pretrained[tag]
            error = config.metrics.get("test_error")
            shown = "—" if error is None else f"{error:.2f}%"
            default = " *" if tag == entry.default_tag else ""
            print(f"{name + default:<30}{config.dataset:<15}{shown:>11}{config.size / 1e6:>7.1f}MB  {config.evaluated_on}")
        print("* the default weights of the name (its most accurate)")
        return 0
    print(f"{'model':<24}{'dataset':<15}{'params':>12}{'MACs':>10}{'paper':>8}  weights")
    for name in names:
        s = cards.summarize(name)
        paper = "—" if s.paper_error is None else f"{s.paper_error:.2f}%"
        weights = ", ".join(f"{s.name}.{tag}" for tag in s.tags) or "none"
        print(f"{s.name:<24}{s.dataset:<15}{s.params:>12,}{s.flops / 1e6:>9.1f}M{paper:>8}  {weights}")
    return 0


def _cmd_import_caffe(args: argparse.Namespace) -> int:
    """Convert a Caffe NIN ``.caffemodel`` into a preset: weights, fitted preprocessing, metadata."""
    from nin_keras.zoo.caffe_import import import_caffe_preset

    out = import_caffe_preset(**_given(args, import_caffe_preset), command=_command(args))
    print(f"preset: {out}")
    return 0


def _cmd_visualize(args: argparse.Namespace) -> int:
    """Write confidence-map, CAM, deconvnet, filter or training-curve PNGs (see nin_keras.visualize)."""
    from pathlib import Path

    from nin_keras.errors import NinKerasError

    if args.output is not None:
        print("nin-keras visualize: --output is deprecated; use --out (the name every command uses)",
              file=sys.stderr)
        args.out = args.output
    try:
        written = _visualize(args, Path(args.out))
    except NinKerasError:
        raise  # bad files (an ImageError is also a ValueError): exit status 1 from main
    except ValueError as err:
        # A layer, channel or count the model does not have, or a model without the needed layers.
        print(f"nin-keras visualize {args.kind}: error: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _visualize(args: argparse.Namespace, out) -> list:
    """The PNG files ``nin-keras visualize <kind>`` asks for, written into ``out``."""
    from nin_keras import visualize
    from nin_keras.visualize import sources

    if args.kind == "curves":
        return [visualize.plot_training_curves(args.metrics, out)]
    loaded = sources.load_model(args.model)
    if args.kind == "filters":
        return [visualize.plot_filters(loaded.model, args.layer, out)]
    labels = None
    if args.images:
        policy = loaded.input_policy
        if policy is not None and args.no_resize:
            policy = policy.replace(resize=False)
        images = sources.read_images(args.images, policy)
    else:
        dataset = args.data or loaded.dataset
        if dataset is None:
            raise ValueError("--data is needed: the model does not say which data set it was trained on")
        count = args.count or (500 if args.kind == "deconv" else 8)
        images, labels = sources.dataset_images(dataset, args.split, count, args.data_dir,
                                                **_given(args, sources.dataset_images, "seed"))
    if args.kind == "confidence":
        return [visualize.plot_confidence_maps(loaded.model, images, out, labels, loaded.class_names)]
    if args.kind == "cam":
        return [visualize.plot_class_activation_maps(loaded.model, images, out, labels, loaded.class_names,
                                                     **_given(args, visualize.plot_class_activation_maps, "top"))]
    k = _default(visualize.plot_top_patches, "k") if args.k is None else args.k
    return [
        visualize.plot_deconv(loaded.model, images[: args.show], args.layer, args.channel, out),
        visualize.plot_top_patches(loaded.model, images, args.layer, args.channel, k=min(k, len(images)), path=out),
    ]


def _cmd_export(args: argparse.Namespace) -> int:
    """Export a preset to SavedModel / TFLite / ONNX; each artifact is parity-checked first."""
    import warnings

    from nin_keras.export import export
    from nin_keras.export.exporter import SPECS

    given = {"formats": _default(export, "formats"), "parity_samples": _default(export, "parity_samples"),
             **_given(args, export)}
    formats = given["formats"]
    formats = [f.strip() for f in formats.split(",") if f.strip()] if isinstance(formats, str) else list(formats)
    print(f"exporting {args.model_or_name}: {', '.join(formats)} into {args.out}/ (each checked against Keras "
          f"on {given['parity_samples']} test images)", flush=True)
    unquantized = [f for f in formats if f in SPECS and args.quantize not in SPECS[f].quantize_modes]
    if args.quantize and len(unquantized) < len(formats) and unquantized:
        print(f"note: --quantize {args.quantize} does not apply to {', '.join(unquantized)}: written in float32",
              flush=True)
    with warnings.catch_warnings():  # a kept failure is on its artifact's line: "PARITY FAILED, kept"
        warnings.filterwarnings("ignore", message=r".*\(accept_parity_failure=True\)", category=UserWarning)
        export(**given, out_dir=args.out, progress=_print_artifact)
    return 0


def _print_artifact(fmt: str, path) -> None:
    """One line per exported artifact, printed as soon as it is written: path, size, parity."""
    import json

    from nin_keras.export.metadata import metadata_path

    info = json.loads(metadata_path(path).read_text())
    parity = info["parity"]
    accuracy = (f", accuracy {parity['artifact_accuracy']:.2f}% (Keras {parity['keras_accuracy']:.2f}%)"
                if "artifact_accuracy" in parity else "")
    failed = "" if parity["passed"] else f"  PARITY FAILED, kept: {'; '.join(parity['failures'])}"
    print(f"{fmt:<10} {path}  {info['bytes'] / 1e6:.1f} MB  {info['quantization']['mode'] or 'float32'}  "
          f"max|Δ| {parity['max_abs_diff']:.2g}, top-1 agreement {parity['top1_agreement']:.4f}"
          f"{accuracy} on {parity['count']} images{failed}")
    if fmt == "web":
        print(f"{'':<10} open the page: nin-keras serve {path}")
    if "micro" in info:
        fits = [name for name, ok in info["micro"]["fits"].items() if ok]
        print(f"{'':<10} tflite-micro: flash {info['micro']['flash_bytes'] / 1024:.0f} KiB, tensor arena "
              f"{info['micro']['arena_bytes'] / 1024:.0f} KiB; fits: {', '.join(fits) or 'none of the listed MCU classes'}")
    sys.stdout.flush()


def _cmd_serve(args: argparse.Namespace) -> int:
    """Serve a web export folder over HTTP until Ctrl-C (SIGINT) or SIGTERM."""
    import signal

    from nin_keras.serve import BindError, make_server, url_of

    def stop(signum: int, frame) -> None:
        raise KeyboardInterrupt

    try:
        server = make_server(**_given(args, make_server))
    except BindError as err:
        # The address is an argument, so a usage error (2), said in one line.
        print(f"nin-keras serve: error: {err}", file=sys.stderr)
        return 2
    # A shell starts background jobs with SIGINT ignored (Python then never raises
    # KeyboardInterrupt) and service managers stop with SIGTERM: both must stop the server.
    # The previous handlers come back afterwards, for callers of main() in their own process.
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    print(f"Serving {args.folder} at {url_of(server)} (open it in a browser; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.server_close()
    return 0


def _tcp_port(text: str) -> int:
    """``--port``: a TCP port number, 0 to 65535 (argparse reports anything else as a usage error)."""
    try:
        port = int(text)
    except ValueError:
        port = None
    if port is None or not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (an integer 0 to 65535; 0 picks a free one)")
    return port


def _cmd_compact(args: argparse.Namespace) -> int:
    """Write a copy of a preset whose dense ZCA is distilled into a small ConvWhitening."""
    import json

    from pathlib import Path

    from nin_keras.errors import Argument, OutputExistsError
    from nin_keras.zoo.compact import make_compact_preset

    if Path(args.out_dir).exists() and not args.overwrite:  # before minutes of fitting, not after
        raise OutputExistsError(f"{args.out_dir} already exists (pass ", Argument("overwrite", True), " to replace it)")
    folder = make_compact_preset(**_given(args, make_compact_preset), command=_command(args))
    metadata = json.loads((folder / "metadata.json").read_text())
    fit = metadata["compact_whitening"]
    print(f"{folder}: {fit['kernel_size']}x{fit['kernel_size']} {fit['padding']} ConvWhitening fitted on "
          f"{fit['fit_images']} training images in {fit['fit_seconds']} s; test accuracy "
          f"{metadata['metrics']['test_accuracy']:.2f}% (dense ZCA: {fit['dense_zca_test_accuracy']}%)")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    """Print the top-k classes of images (files, folders, globs) with a zoo name, preset or exported artifact."""
    import json

    from nin_keras.data.image_folder import list_image_files, printable_path
    from nin_keras.deploy import Predictor

    predictor = Predictor(**_given(args, Predictor))
    policy = predictor.input_policy
    if policy is not None:
        predictor.input_policy = policy.replace(resize=policy.resize and not args.no_resize,
                                                invert=policy.invert or args.invert)
    images = list_image_files(args.files)
    _say_skipped(args.files, images)
    results = [top for start in range(0, len(images), 64)
               for top in predictor.classify(images[start:start + 64], **_given(args, Predictor.classify))]
    if args.json:
        policy = predictor.input_policy
        print(json.dumps({"model": args.path, "format": predictor.format, "runtime": predictor.runtime,
                          "input_policy": None if policy is None else policy.to_dict(),
                          "predictions": [{"image": image, "top_k": [{"label": label, "probability": p} for label, p in top]}
                                          for image, top in zip(images, results)]}, indent=2))
        return 0
    for image, top in zip(images, results):  # names that are not UTF-8 print as \xe9 escapes
        print(f"{printable_path(image)}: " + ", ".join(f"{label} {p:.4f}" for label, p in top))
    return 0


def _say_skipped(specs: list[str], taken: list[str]) -> None:
    """One stderr line naming the files in the given folders that are not read (not an image by
    their suffix, or hidden), so that none is skipped without a word."""
    from pathlib import Path

    chosen = {Path(p).resolve() for p in taken}
    skipped = sorted(str(p) for spec in specs if Path(spec).is_dir()
                     for p in Path(spec).rglob("*") if p.is_file() and p.resolve() not in chosen)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        print(f"nin-keras predict: skipped {len(skipped)} file(s) that are not images (by suffix) or hidden: {shown}",
              file=sys.stderr)


_SOURCES = ("auto", "local", "tfds")
_SOURCE_HELP = ("where a named data set comes from: auto (the publisher's files in the data folder, else a copy "
                "tensorflow-datasets already prepared; never downloads), local (the files only), tfds "
                "(tensorflow-datasets, downloading when needed)")
_WORKERS_HELP = ("processes decoding a folder's images (the same images for any number; default: one per usable "
                 "CPU, at most nin_keras.data.decode_pool.MAX_DEFAULT_WORKERS; 1: no extra processes)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nin-keras", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow's start-up logs and full tracebacks (before COMMAND)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # One function a subcommand, in the order `nin-keras --help` lists them. An option named after
    # a parameter of the library function it feeds has no default of its own (see _library).
    for add in (_add_bench, _add_train, _add_eval, _add_finetune, _add_models, _add_import_caffe, _add_visualize,
                _add_compact, _add_export, _add_serve, _add_predict):
        add(sub)
    return parser


def _add_bench(sub: argparse._SubParsersAction) -> None:
    """``nin-keras bench``."""
    bench = sub.add_parser("bench", help="run the benchmarks and regenerate benchmarks/README.md")
    bench.add_argument("--quick", action="store_true", help="tiny settings, results in a temporary folder")
    bench.add_argument("--only", nargs="+", metavar="NAME", help="train_step, scaling, pipeline, inference")
    bench.add_argument("--results-dir", help="where the JSON results and README go")
    bench.set_defaults(func=_cmd_bench)


def _add_train(sub: argparse._SubParsersAction) -> None:
    """``nin-keras train``."""
    train = sub.add_parser("train", help="train a recipe (zoo name or .json); rerun the same command to resume")
    train.add_argument("recipe", help="recipe name in zoo/recipes (e.g. nin_mnist_fast) or a path to a .json")
    train.add_argument("--epochs", type=_count(1), help="override the recipe's epochs")
    train.add_argument("--out", dest="out_dir", metavar="OUT", help="run folder (checkpoint, metrics, preset); default runs/<recipe>")
    _add_strategy_flags(train)
    train.add_argument("--data-dir", help="local data folder (else $NIN_KERAS_DATA_DIR, ../shared/datasets, ...)")
    train.add_argument("--source", choices=_SOURCES, help=_SOURCE_HELP + " (default: the recipe's)")
    train.add_argument("--max-steps", type=_count(1), help="stop after this many optimizer steps in total")
    train.add_argument("--checkpoint-every", dest="checkpoint_every_steps", metavar="N", type=_count(0),
                       help="also checkpoint every N steps inside an epoch (0: off)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _library(train, _cmd_train, "nin_keras.train:train")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    """``nin-keras eval``."""
    evaluate = sub.add_parser("eval", help="accuracy and loss of a preset next to the paper's number")
    evaluate.add_argument("preset", help="zoo name (nin_mnist, nin_cifar10.caffe), preset folder or URL")
    evaluate.add_argument("--data", dest="dataset", metavar="DATA", help="data set name (default: the preset's), or a class-folder "
                          "directory or .tar.gz/.zip archive ([<split>/]<class>/<image>, images of any size)")
    evaluate.add_argument("--split", help="split to evaluate")
    evaluate.add_argument("--data-dir", help="local data folder")
    evaluate.add_argument("--source", choices=_SOURCES, help=_SOURCE_HELP)
    evaluate.add_argument("--limit", type=_count(1), help="evaluate the first N images only")
    evaluate.add_argument("--batch-size", type=_count(1),
                          help="images per inference batch (lower it to use less memory)")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")
    evaluate.add_argument("--tta", choices=("none", "flip", "flip_translate"),
                          help="test-time augmentation: average over mirrored (and 2-pixel shifted) views")
    evaluate.add_argument("--workers", type=_count(1), help=_WORKERS_HELP)
    evaluate.add_argument("--per-class", action="store_true",
                          help="also each class's accuracy and the class it is most often taken for "
                               "(with --json: the confusion matrix, rows the true classes)")
    _library(evaluate, _cmd_eval, "nin_keras.train:evaluate_preset")


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    """``nin-keras finetune``."""
    tune = sub.add_parser("finetune", help="fine-tune a preset on your own class folders; rerun the same command to resume")
    tune.add_argument("preset", help="zoo name (nin_cifar10, nin_cifar10.fast) or preset folder to start from")
    tune.add_argument("data", help="class-folder directory or .tar.gz/.zip archive: <class>/<image>, optionally in "
                      "train/, test/ and val/ folders; images of any size")
    tune.add_argument("--out", required=True, help="preset folder to write (class names = the folder names); an "
                      "existing one only with --overwrite, and only if it is a preset folder")
    tune.add_argument("--overwrite", action="store_true", help="replace --out if it is another run's preset folder")
    tune.add_argument("--epochs", type=_count(0), help="epochs (0: the started classifier only)")
    tune.add_argument("--learning-rate", type=float,
                      help="peak SGD learning rate, cosine schedule down to a tenth of it")
    tune.add_argument("--clip-norm", type=float,
                      help="largest global norm of a step's gradients (0: no clipping)")
    tune.add_argument("--batch-size", type=_count(1),
                      help="images per step (default: 64, or all training images when fewer)")
    tune.add_argument("--min-steps", type=_count(0),
                      help="fewest optimizer steps: a shorter plan repeats its epochs (0: as planned)")
    tune.add_argument("--head", choices=("fit", "preset", "random"),
                      help="how the new classifier starts: fit (logistic regression on the pretrained body's "
                           "features), preset (the preset's maps of the same class names), random")
    tune.add_argument("--freeze-body-epochs", type=_count(0),
                      help="train only the new classifier for the first K epochs")
    tune.add_argument("--freeze-epochs", type=_count(0), help=argparse.SUPPRESS)  # deprecated name
    tune.add_argument("--freeze-body", action="store_true", help="train only the new classifier, for the whole run")
    tune.add_argument("--whitening", choices=("reuse", "refit"),
                      help="reuse the preset's fitted preprocessing (ZCA, channel statistics) or refit it on your training images")
    tune.add_argument("--validation-fraction", type=float,
                      help="training images held out for validation when there is no val/ folder")
    tune.add_argument("--no-augment", dest="augment", action="store_false", help="no random translations and flips")
    tune.add_argument("--from-scratch", dest="pretrained", action="store_false",
                      help="random initial weights (a baseline)")
    tune.add_argument("--mixed-precision", choices=("float16", "bfloat16"), help="train under mixed precision")
    _add_strategy_flags(tune)
    tune.add_argument("--seed", type=_count(0), help="hold-out, random classifier, data order, augmentation and dropout seed")
    tune.add_argument("--max-steps", type=_count(1), help="stop after this many optimizer steps in total")
    tune.add_argument("--run-dir", help="checkpoint and metrics folder (default: OUT.run)")
    tune.add_argument("--workers", type=_count(1), help=_WORKERS_HELP)
    tune.add_argument("--quiet", action="store_true", help="no progress bar")
    _library(tune, _cmd_finetune, "nin_keras.train:finetune")


def _add_models(sub: argparse._SubParsersAction) -> None:
    """``nin-keras models``."""
    models = sub.add_parser("models", help="list zoo models: parameters, multiply-adds, paper error, weight tags")
    models.add_argument("pattern", nargs="?", help="name pattern (nin_cifar*) or substring (mnist)")
    models.add_argument("--pretrained", action="store_const", const=True, help="list the published weight sets (name.tag) instead")
    _library(models, _cmd_models, "nin_keras.zoo:list_models")


def _add_import_caffe(sub: argparse._SubParsersAction) -> None:
    """``nin-keras import-caffe``."""
    import_caffe = sub.add_parser("import-caffe", help="convert a Caffe NIN .caffemodel into a preset folder")
    import_caffe.add_argument("caffemodel", metavar="file",
                              help="the .caffemodel (old V1 'layers' or new 'layer' format)")
    import_caffe.add_argument("--arch", required=True, help="zoo architecture to load it into, e.g. nin_cifar10")
    import_caffe.add_argument("--out", required=True, help="preset folder to write (config.json, weights, metadata.json)")
    import_caffe.add_argument("--no-preprocessing", dest="fit", action="store_false",
                              help="write no fitted preprocessing (default: fit the data set's GCN + ZCA on its train split)")
    import_caffe.add_argument("--zca-dtype", choices=("float16", "float32"),
                              help="storage dtype of the ZCA matrix (float16: half the file size)")
    import_caffe.add_argument("--data-dir", help="local data folder for fitting the preprocessing")
    import_caffe.add_argument("--source", choices=_SOURCES, help="data source")
    import_caffe.add_argument("--license", help="license of the weights, recorded in metadata.json")
    import_caffe.add_argument("--origin", help="where the .caffemodel comes from, recorded in metadata.json")
    import_caffe.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    _library(import_caffe, _cmd_import_caffe, "nin_keras.zoo:import_caffe_preset")


def _add_visualize(sub: argparse._SubParsersAction) -> None:
    """``nin-keras visualize``."""
    visualize = sub.add_parser("visualize", help="PNG pictures: confidence maps, CAM, deconvnet, filters, curves")
    kinds = visualize.add_subparsers(dest="kind", required=True, metavar="KIND")
    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--out", default="nin_keras_visualize", help="folder for the PNGs (default: %(default)s)")
    output.add_argument("--output", help=argparse.SUPPRESS)  # the old name of --out, deprecated
    model = argparse.ArgumentParser(add_help=False, parents=[output])
    model.add_argument("--model", required=True, help="zoo preset (nin_cifar10), preset folder or URL, or a .keras file")
    images = argparse.ArgumentParser(add_help=False, parents=[model])
    images.add_argument("--images", nargs="+", metavar="FILE",
                        help="image files of any size (resized and center-cropped by the model's input policy)")
    images.add_argument("--no-resize", action="store_true", help="strict: --images must have the model's input size")
    images.add_argument("--data", help="data set to draw images from (default: the preset's)")
    images.add_argument("--split", default="test", help="data set split (default: %(default)s)")
    images.add_argument("--count", type=int, help="images drawn from the data set (default 8; deconv: 500 searched)")
    images.add_argument("--seed", type=int, help="which images are drawn")
    images.add_argument("--data-dir", help="local data folder")
    visualize_library = ("nin_keras.visualize.sources:dataset_images", "nin_keras.visualize:plot_class_activation_maps",
                         "nin_keras.visualize:plot_top_patches")
    confidence = kinds.add_parser("confidence", parents=[images], help="per-class confidence maps of a NIN (paper Fig. 4)")
    _library(confidence, _cmd_visualize, *visualize_library)
    cam = kinds.add_parser("cam", parents=[images], help="class activation maps of the top classes")
    cam.add_argument("--top", type=int, help="classes per image")
    _library(cam, _cmd_visualize, *visualize_library)
    deconv = kinds.add_parser("deconv", parents=[images], help="deconvnet projections and the top-k image patches")
    deconv.add_argument("--layer", required=True, help="layer to project from, e.g. mlpconv2")
    deconv.add_argument("--channel", type=int, required=True, help="feature map of that layer")
    deconv.add_argument("--top-k", dest="k", metavar="TOP_K", type=int, help="strongest images shown as patches")
    deconv.add_argument("--show", type=int, default=4, help="images drawn with their full projection (default: %(default)s)")
    _library(deconv, _cmd_visualize, *visualize_library)
    filters = kinds.add_parser("filters", parents=[model], help="first convolution's filters as an image grid")
    filters.add_argument("--layer", help="convolution to draw (default: the first)")
    _library(filters, _cmd_visualize, *visualize_library)
    curves = kinds.add_parser("curves", parents=[output], help="training curves from metrics.csv or metrics.json")
    curves.add_argument("metrics", help="metrics file written by nin-keras train")
    _library(curves, _cmd_visualize, *visualize_library)


def _add_compact(sub: argparse._SubParsersAction) -> None:
    """``nin-keras compact``."""
    compact = sub.add_parser("compact", help="distil a preset's dense ZCA into a k x k ConvWhitening (a compact preset)")
    compact.add_argument("preset", help="zoo name (nin_cifar10.caffe) or preset folder with a ZCAWhitening")
    compact.add_argument("--out", dest="out_dir", metavar="OUT", required=True, help="the new preset folder")
    compact.add_argument("--kernel-size", type=int, help="odd kernel size")
    compact.add_argument("--padding", choices=("symmetric", "reflect", "zeros"),
                         help="how the convolution sees past the image border: mirrored with the edge pixel "
                              "(symmetric), without it (reflect) or black (zeros)")
    compact.add_argument("--fit-images", type=int, help="training images to fit on")
    compact.add_argument("--seed", type=int, help="seed of the fitting subset")
    compact.add_argument("--data-dir", help="local data folder")
    compact.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    _library(compact, _cmd_compact, "nin_keras.zoo.compact:make_compact_preset")


def _add_export(sub: argparse._SubParsersAction) -> None:
    """``nin-keras export``."""
    export = sub.add_parser("export", help="export a preset to SavedModel / TFLite / ONNX / a web page, parity-checked")
    export.add_argument("model_or_name", metavar="NAME_OR_PRESET",
                        help="zoo name with weights (nin_cifar10) or preset folder")
    export.add_argument("--formats",
                        help="comma-separated: savedmodel, tflite, onnx, web (web: a folder with a page that "
                             "classifies photos in the browser, see `nin-keras serve`)")
    export.add_argument("--quantize", choices=("float16", "dynamic", "int8"),
                        help="float16 (tflite), dynamic or int8 (tflite, onnx, web); formats without the mode "
                             "(SavedModel always) are written in float32; without it web is int8 for compact "
                             "presets, float32 otherwise")
    export.add_argument("--integer-io", action="store_true",
                        help="with --quantize int8: integer-only TFLite (uint8 pixels in, uint8 out, int8 kernels, "
                             "no float tensor; tflite-micro flash/arena in its metadata) and fully quantized ONNX")
    # The command's own default: a command run in a working folder writes into a folder of its own.
    export.add_argument("--out", default="exported", help="output folder (default: %(default)s)")
    export.add_argument("--no-preprocessing", dest="include_preprocessing", action="store_false",
                        help="export the network alone (default: the preprocessing baked in, raw [0, 255] pixels in)")
    export.add_argument("--opset", type=int, help="ONNX opset")
    export.add_argument("--parity-samples", type=_count(1), help="test images for the parity check")
    export.add_argument("--accept-parity-failure", action="store_true",
                        help="keep an artifact that fails its parity check (the failure is printed and recorded "
                             "in its metadata) instead of writing nothing")
    export.add_argument("--calibration-samples", type=_count(1), help="training images for int8 calibration")
    _library(export, _cmd_export, "nin_keras.export:export")


def _add_serve(sub: argparse._SubParsersAction) -> None:
    """``nin-keras serve``."""
    serve = sub.add_parser("serve", help="serve a web export folder on this computer (http://127.0.0.1:8000/)")
    serve.add_argument("folder", metavar="FOLDER", help="a folder written by `nin-keras export NAME --formats web`")
    serve.add_argument("--host", help="address to bind; the default is reachable from this computer only")
    serve.add_argument("--port", type=_tcp_port, help="TCP port (0 picks a free one)")
    _library(serve, _cmd_serve, "nin_keras.serve:make_server")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    """``nin-keras predict``."""
    predict = sub.add_parser("predict", help="top-k classes of images with a zoo model, preset or exported artifact")
    predict.add_argument("path", metavar="MODEL", help="zoo name (nin_cifar10, nin_cifar10.caffe), preset folder, "
                         "or a SavedModel folder, .tflite or .onnx file written by nin-keras export")
    predict.add_argument("files", nargs="+", metavar="IMAGE",
                         help="image files of any size, folders of them, or glob patterns ('photos/*.jpg')")
    predict.add_argument("--no-resize", action="store_true",
                         help="strict: images must have the model's input size (default: the model's input "
                              "policy resizes and center-crops)")
    predict.add_argument("--invert", action="store_true",
                         help="invert the images (255 - value): dark digits on white paper for an MNIST model")
    predict.add_argument("--top-k", type=int, help="classes per image")
    predict.add_argument("--threads", dest="num_threads", metavar="THREADS", type=int, help="runtime CPU threads (default: the runtime's choice)")
    predict.add_argument("--runtime", choices=("onnxruntime", "openvino"),
                         help="runtime for a .onnx artifact (default: onnxruntime)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    _library(predict, _cmd_predict, "nin_keras.deploy:Predictor",
             "nin_keras.deploy:Predictor.classify")


def _library(parser: argparse.ArgumentParser, command, *functions: str) -> None:
    """Register ``command`` for ``parser``, whose options feed the library ``functions``
    (``"module:name"``).

    An option whose dest is a parameter of one of them takes no default of its own: it is None
    unless given (a flag: what the function takes without it), and ``_given`` passes only the
    given ones, so the library's default applies; the help shows that default, read from the
    function when the help is printed (``nin-keras`` starts without importing the library); and a
    library error naming the parameter names the option (``_flag_spelling``).
    """
    parser.set_defaults(func=command, library=functions, options=tuple(
        action.dest for action in parser._actions if action.dest != "help"))
    parser.formatter_class = functools.partial(_LibraryHelp, functions=functions)


class _LibraryHelp(argparse.HelpFormatter):
    """Help that ends each option left to the library with the library's default."""

    def __init__(self, prog: str, functions: Sequence[str] = ()):
        super().__init__(prog)
        self._functions = functions

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = _library_parameters(self._functions).get(action.dest)
        value = None if default is None else default.default
        # A flag says what it does; None, False and "" are "not asked for", which the help says in words.
        if action.default is not None or value in (inspect.Parameter.empty, None, "") or isinstance(value, bool):
            return action.help
        shown = ",".join(value) if isinstance(value, (tuple, list)) else value
        return f"{action.help} (default: {shown})"


def _library_parameters(functions: Sequence[str]) -> dict[str, inspect.Parameter]:
    """The parameters of the library ``functions`` (``"module:name"``), the first one's first."""
    parameters: dict[str, inspect.Parameter] = {}
    for function in functions:
        for name, parameter in inspect.signature(_resolve(function)).parameters.items():
            parameters.setdefault(name, parameter)
    return parameters


def _resolve(function: str):
    module, _, name = function.partition(":")
    found = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def _given(args: argparse.Namespace, function, *only: str) -> dict[str, Any]:
    """The options of this subcommand (``only`` these, if named) that are parameters of
    ``function`` and were given (a flag: always, as it says what the function takes); the others
    are left to the library's defaults."""
    parameters = inspect.signature(function).parameters
    return {dest: getattr(args, dest) for dest in args.options
            if dest in parameters and (not only or dest in only) and getattr(args, dest) is not None}


def _default(function, name: str) -> Any:
    """``function``'s default for its parameter ``name``."""
    return inspect.signature(function).parameters[name].default


def _flag_spelling(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Callable[[Any], str]:
    """How the command line spells the arguments and calls a library error names: an argument as
    this subcommand's option that sets it (``--overwrite``, ``--source tfds``; its Python name if
    no option sets it), a library function as the subcommand over it
    (``nin-keras models --pretrained``)."""
    from nin_keras.errors import Argument, Call

    commands = _subcommands(parser)
    this = commands[" ".join(filter(None, (args.command, getattr(args, "kind", None))))]

    def option(command: argparse.ArgumentParser, argument: Argument) -> str | None:
        action = next((a for a in command._actions if a.dest == argument.name and a.option_strings), None)
        if action is None:
            return None
        flag = max(action.option_strings, key=len)
        if action.nargs == 0:  # a flag sets its const; without it the function gets its default
            return flag if not argument.has_value or argument.value == action.const else f"no {flag}"
        return f"{flag} {argument.value}" if argument.has_value else flag

    def spell(part: Argument | Call) -> str:
        if isinstance(part, Argument):
            return option(this, part) or str(part)
        for words, command in commands.items():
            if part.function in (command.get_default("library") or ()):
                flags = [option(command, Argument(name, value)) for name, value in part.arguments.items()]
                if None not in flags:
                    return f"`nin-keras {' '.join([words, *flags])}`"
        return str(part)

    return spell


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every (sub)subcommand's parser by its words (``"visualize cam"``)."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found[name] = child
                found.update({f"{name} {words}": grandchild for words, grandchild in _subcommands(child).items()})
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what the user typed, for the record
    from nin_keras.errors import NamesArguments, NinKerasError
    from nin_keras.tf_startup import is_verbose, set_verbose

    was_verbose = is_verbose()  # $NIN_KERAS_VERBOSE
    args.verbose = args.verbose or was_verbose
    set_verbose(args.verbose)  # before any subcommand imports Keras (and so TensorFlow)
    try:
        return int(args.func(args) or 0)
    except (NinKerasError, ValueError, FileNotFoundError, FileExistsError) as err:
        if args.verbose:
            raise
        # Bad files and inputs are the user's to fix: one line, no traceback, in the command's words.
        message = err.spelled(_flag_spelling(parser, args)) if isinstance(err, NamesArguments) else str(err)
        print(f"nin-keras {args.command}: error: {message}", file=sys.stderr)
        return 1
    finally:
        set_verbose(was_verbose)  # main() called in a caller's process leaves it as it was


if __name__ == "__main__":
    sys.exit(main())
