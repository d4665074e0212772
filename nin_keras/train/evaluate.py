"""A preset's accuracy and loss on a data set split or a class-folder set (``nin-keras eval``),
measured by ``nin_keras.evaluation.evaluate_model`` on its inference model."""

from __future__ import annotations

import os
from typing import Any

from nin_keras.arguments import check_count
from nin_keras.data.arrays import load_arrays
from nin_keras.evaluation import evaluate_model


def evaluate_preset(
    preset: str | os.PathLike,
    dataset: str | os.PathLike | None = None,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    source: str = "auto",
    limit: int | None = None,
    batch_size: int = 500,
    tta: str = "none",
    workers: int | None = None,
    per_class: bool = False,
) -> dict[str, Any]:
    """Evaluate a preset (zoo name, folder or URL) on a data set split with its own preprocessing.

    Args:
        preset: anything ``ImageClassifier.from_preset`` accepts.
        dataset: a catalogued data set name, or the path of a class-folder directory or
            ``.tar.gz``/``.zip`` archive (``[<split>/]<class>/<image>``: see
            ``nin_keras.data.image_folder``), whose images of any size go through the preset's
            input policy and whose folder names must be among the preset's class names. Default:
            the data set the preset was trained on.
        split: split name; a folder without split folders is evaluated whole.
        data_dir, source: passed to ``nin_keras.data.load_dataset``.
        limit: evaluate the first ``limit`` examples only.
        batch_size: images per forward pass.
        tta: test-time augmentation (``nin_keras.evaluation.tta_views``); the preset's published
            figure is single-view.
        workers: processes decoding a folder's images (``nin_keras.data.decode_pool``; the same
            arrays for any number): default one per usable CPU, up to ``MAX_DEFAULT_WORKERS``.
        per_class: also return the ``confusion`` matrix (``evaluate_model``) and the preset's
            ``class_names`` its rows and columns follow.

    Returns:
        ``evaluate_model``'s dict plus ``preset``, ``dataset``, ``split``, ``paper_error`` (the
        paper's test error in %) and ``published`` (the preset's own recorded metrics), both None
        unless this is the test split of the preset's own data set;
        for a folder also ``class_names`` and ``input_policy``.

    Raises:
        ValueError: ``dataset`` is neither a catalogued name nor an existing path.
        DataError: the folder's classes are not the preset's (both lists named), or its images
            cannot be read.

    Example:
        >>> evaluate_preset("runs/pets/preset", "pets.zip")["accuracy"]
    """
    from nin_keras.data import DATASET_NAMES
    from nin_keras.zoo.classifier import ImageClassifier

    if limit is not None:
        check_count(limit, "limit")
    check_count(batch_size, "batch_size")
    check_count(workers, "workers", optional=True)
    loaded = ImageClassifier.from_preset(preset)
    dataset = dataset or loaded.metadata["dataset"]
    extra: dict[str, Any] = {}
    if os.path.exists(dataset):
        images, labels, split, extra = _folder_split(loaded, preset, dataset, split, workers)
        images, labels = images[:limit], labels[:limit]
    elif dataset in DATASET_NAMES:
        block = {"name": dataset, "source": source, f"{split}_examples": limit}
        images, labels = load_arrays(block, split, data_dir)
    else:
        trained_on = loaded.metadata.get("data_source")
        hint = f"; this preset was fine-tuned on {trained_on}" if trained_on else ""
        raise ValueError(f"dataset {str(dataset)!r} is neither a data set name ({', '.join(DATASET_NAMES)}) "
                         f"nor an existing class-folder directory or archive{hint}")
    result = evaluate_model(loaded, images, labels, batch_size, tta, per_class)
    # The paper's and the published figures are about the preset's own test split, not a user's
    # folder or the images it was trained on.
    own = not extra and dataset == loaded.metadata.get("dataset") and split == "test"
    if per_class:  # a folder's labels follow the preset's class names, and so do a data set's indices
        extra.setdefault("class_names", loaded.output_class_names)
    result.update(
        preset=str(preset),
        dataset=str(dataset),
        split=split,
        paper_error=loaded.metadata.get("paper_error") if own else None,
        published=loaded.metadata.get("metrics") if own else None,
        **extra,
    )
    return result


def _folder_split(classifier, preset: str | os.PathLike, root: str | os.PathLike, split: str, workers: int | None):
    """``(images, labels, split, extra)`` of a class-folder set, labelled by the preset's class names."""
    from nin_keras.data.image_folder import read_labelled_images
    from nin_keras.errors import DataError

    if not classifier.class_names:
        raise DataError(f"preset {preset} records no class names to match the folders of {root} against")
    policy = classifier.input_policy
    found = read_labelled_images(root, tuple(classifier.class_names), policy, workers=workers)
    if found.has_splits:
        if split not in found.splits:
            raise DataError(f"{root}: no split folder {split!r} (found {', '.join(sorted(found.splits))})")
    else:
        split = "all"  # no split folders: every image is evaluated
    images, labels = found.splits[split] if found.has_splits else found.splits["train"]
    return images, labels, split, {"class_names": list(found.class_names), "input_policy": policy.to_dict()}
