"""Publishing a weight set: one command writes the preset folder, the weights index and the cards.

    python -m nin_keras.zoo.publish runs/nin_cifar10_modern/preset nin_cifar10.modern --evaluate
    python -m nin_keras.zoo.publish --check     # exit 1 if the index or zoo/README.md is stale

A tag is weights for one architecture: the published network is the one ``create_model(name)``
builds. A preset trained with batch normalization (``batch_norm=True`` in its config) is folded
into that plain layout first (``nin_keras.models.folding``), and the fold is checked by running
both networks on the same images; training-only arguments such as ``dropout`` do not change the
weights and are dropped. Weights that still do not fit the architecture (other widths, another
input size) belong under a zoo name of their own and are refused.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from nin_keras.errors import PresetError, WeightsMismatchError
from nin_keras.models.folding import fold_batch_norm, has_batch_norm
from nin_keras.zoo import builder, cards, index, registry, transfer
from nin_keras.zoo.classifier import ImageClassifier
from nin_keras.zoo.preset_loader import PresetContents, read_preset
from nin_keras.zoo.preset_writer import save_preset

#: Largest difference between the probabilities of a BN network and its folded twin that
#: publishing accepts (float32 rounding gives about 1e-6).
FOLD_TOLERANCE = 1e-4
#: Metadata fields ``save_preset`` computes (they describe the published network, not the source).
_COMPUTED = ("input_shape", "preprocessing", "params", "flops", "layers", "files", "keras_version",
             "nin_keras_version", "format", "format_version")


def _published_network(preset: PresetContents, name: str) -> tuple[keras.Model, dict[str, Any]]:
    """The preset's network as zoo architecture ``name`` (folded when it has batch norms), and
    what the folding did (empty when nothing was folded).

    Raises:
        WeightsMismatchError: the weights do not fit ``create_model(name)``, or folding changed
            the network's outputs by more than ``FOLD_TOLERANCE``.
    """
    target = builder.create_model(name)
    source = preset.model
    folding: dict[str, Any] = {}
    if has_batch_norm(source):
        try:
            target = fold_batch_norm(source, lambda: builder.create_model(name))
        except ValueError as err:
            raise WeightsMismatchError(f"{preset.path}: cannot fold into {name!r}: {err}") from err
        images = np.random.default_rng(0).integers(0, 256, (32, *source.input_shape[1:]), dtype=np.uint8)
        before = ImageClassifier(source, preset.preprocessing).predict(images, verbose=0)
        after = ImageClassifier(target, preset.preprocessing).predict(images, verbose=0)
        difference = float(np.max(np.abs(before - after)))
        if difference > FOLD_TOLERANCE:
            raise WeightsMismatchError(f"{preset.path}: the folded network differs from the trained one by "
                                       f"{difference:.2e} in probability (tolerance {FOLD_TOLERANCE}).")
        folding = {"from": {"architecture": preset.architecture, "kwargs": preset.kwargs},
                   "by": "nin_keras.models.folding.fold_batch_norm",
                   "max_probability_difference": difference, "checked_on": f"{len(images)} random images"}
    else:
        transfer.transfer_weights(source, target)  # raises, naming the layer, when a weight does not fit
    return target, folding


def publish(
    source: str | Path,
    name: str,
    *,
    evaluate: bool = False,
    data_dir: str | Path | None = None,
    weights_dir: str | Path = index.WEIGHTS_DIR,
    overwrite: bool = False,
    command: str | None = None,
) -> Path:
    """Publish the preset folder ``source`` as weight set ``name`` (``"<model>.<tag>"``).

    Writes ``weights_dir/<name>/`` (atomically), regenerates ``weights_dir/index.json`` and, for
    the package's own weights folder, ``zoo/README.md``.

    Args:
        source: a preset folder (as ``save_preset`` or a training run writes it).
        name: ``"<zoo model>.<tag>"``; the model must be registered.
        evaluate: measure the published network on its data set's test split and record those
            metrics (with ``nin-keras eval <name>`` as the command); else the source's are kept.
        data_dir: local data folder for ``evaluate``.
        weights_dir: where published presets live (the package's ``zoo/weights`` by default).
        overwrite: replace an already published weight set of that name.
        command: the command line to record as ``published_by``.

    Returns:
        The published folder.

    Raises:
        ValueError: ``name`` has no tag or names an unknown model.
        PresetError: ``source`` is not a valid preset, or the data sets disagree.
        WeightsMismatchError: the weights do not fit the model's architecture.
    """
    base, tag = registry.split_name(name)
    if not tag or not tag.isidentifier():
        raise ValueError(f"`name` must be '<model>.<tag>' with an identifier tag, got {name!r}.")
    entry = registry.get_model_entry(base)
    preset = read_preset(Path(source))
    if preset.metadata["dataset"] != entry.dataset:
        raise PresetError(f"{source} was trained on {preset.metadata['dataset']!r}; {base!r} is laid out for {entry.dataset!r}.")
    network, folding = _published_network(preset, base)
    metadata = {k: v for k, v in preset.metadata.items() if k not in _COMPUTED}
    if folding:
        metadata["folded"] = folding
    if evaluate:
        # The training command stays on record when the metrics' command becomes ``nin-keras eval``.
        metadata.setdefault("trained_by", metadata.get("command"))
        metadata.update(_measure(network, preset, name, data_dir))
    if command:
        metadata["published_by"] = command
    folder = save_preset(network, Path(weights_dir) / name, metadata, preset.preprocessing,
                                 architecture=base, architecture_kwargs={}, overwrite=overwrite)
    index.write_index(weights_dir)
    if Path(weights_dir).resolve() == index.WEIGHTS_DIR:
        cards.write(cards.render(presets_index=index.read_index()))
    return folder


def _measure(network: keras.Model, preset: PresetContents, name: str, data_dir: str | Path | None) -> dict[str, Any]:
    """Test-split metrics of ``network`` behind the preset's preprocessing, as ``nin-keras eval``
    measures them."""
    from nin_keras.data.arrays import load_arrays
    from nin_keras.evaluation import evaluate_model, preset_metrics

    dataset = preset.metadata["dataset"]
    images, labels = load_arrays({"name": dataset}, "test", data_dir)
    result = evaluate_model(ImageClassifier(network, preset.preprocessing), images, labels)
    return {
        "metrics": preset_metrics(result),
        "command": f"nin-keras eval {name} --data {dataset}",
    }


def check(weights_dir: str | Path = index.WEIGHTS_DIR) -> list[str]:
    """What is stale: the index against the folders, the zoo README against the index."""
    stale = []
    if index.read_index(Path(weights_dir) / index.INDEX_FILE.name) != index.build_index(weights_dir)["presets"]:
        stale.append(f"{Path(weights_dir) / index.INDEX_FILE.name} does not match the preset folders")
    if Path(weights_dir).resolve() == index.WEIGHTS_DIR and not cards.is_current():
        stale.append(f"{cards.README} is out of date")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nin_keras.zoo.publish", description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", help="preset folder to publish")
    parser.add_argument("name", nargs="?", help="<model>.<tag>")
    parser.add_argument("--evaluate", action="store_true", help="measure the test split and record it")
    parser.add_argument("--data-dir", help="local data folder for --evaluate")
    parser.add_argument("--overwrite", action="store_true", help="replace a published weight set of that name")
    parser.add_argument("--index", action="store_true", help="only regenerate the index and the zoo README")
    parser.add_argument("--check", action="store_true", help="exit 1 if the index or the zoo README is stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = check()
        for line in stale:
            print(line, file=sys.stderr)
        return 1 if stale else 0
    if args.index:
        index.write_index()
        cards.write(cards.render(presets_index=index.read_index()))
        return 0
    if not (args.source and args.name):
        parser.error("SOURCE and NAME are required (or --index / --check)")
    words = ["python", "-m", "nin_keras.zoo.publish", *(argv if argv is not None else sys.argv[1:])]
    folder = publish(args.source, args.name, evaluate=args.evaluate, data_dir=args.data_dir,
                     overwrite=args.overwrite, command=shlex.join(words))
    print(f"published {args.name} to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
