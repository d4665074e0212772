"""The end of a run: measure the test split through the inference model and write the preset.

The published number is measured the way a user re-measures it (``evaluate_model`` on the
preset's inference model, raw images in); the preset's metadata records the recipe, the history,
the command and the weights' license (the recipe's ``license``, else ``DEFAULT_LICENSE``).
"""

from __future__ import annotations

from nin_keras.data.arrays import load_arrays
from nin_keras.evaluation import evaluate_model, preset_metrics
from nin_keras.train.history import write_history

#: The license of weights a recipe trains, unless the recipe names one (the project's own).
DEFAULT_LICENSE = "BSD-3-Clause"


def paper_error_of(recipe, entry):
    """The published test error (%) a run's result is set beside: the recipe's own ``paper``
    figure, else the architecture's, but only on the data set the architecture is laid out for
    (NIN CIFAR-10's 10.41% says nothing about that network trained on Fashion-MNIST); else None."""
    if recipe.paper_error is not None:
        return recipe.paper_error
    return entry.paper_error if entry.dataset == recipe.dataset["name"] else None


def finish_run(recipe, outcome, preprocess, out_dir, data_dir, verbose):
    """Measure the test split through the inference model and write the preset (chief only).

    Args:
        recipe: the run's ``Recipe``.
        outcome: the ``RunOutcome`` of ``nin_keras.train.run.run``.
        preprocess: the fitted preprocessing layers (saved in the preset).
        out_dir: the run's folder (the preset goes to ``out_dir/preset``).
        data_dir: local data folder of the test split.
        verbose: 1 prints the test result.

    With a weight average, the preset holds the averaged weights; the last step's weights are
    measured too (``test_without_ema`` in ``metrics.json``), which is what the average gave.
    """
    from nin_keras.data import dataset_info
    from nin_keras.zoo import get_model_entry, save_preset
    from nin_keras.zoo.architectures import architecture_of
    from nin_keras.zoo.classifier import ImageClassifier

    network, extra = outcome.network, dict(outcome.extra)
    architecture, _ = architecture_of(network)
    x_test, y_test = load_arrays(recipe.dataset, "test", data_dir)
    inference = ImageClassifier(network, preprocess)
    if outcome.averaged_weights is not None:
        extra["test_without_ema"] = evaluate_model(inference, x_test, y_test)
        network.set_weights(outcome.averaged_weights)
    test = evaluate_model(inference, x_test, y_test)
    if any(layer.get("config", {}).get("horizontal_flip") for layer in recipe.augmentation):
        # Mirrored views are only fair for a model trained on mirrored images (not for digits).
        extra["test_tta"] = evaluate_model(inference, x_test, y_test, tta="flip_translate")
    paper_error = paper_error_of(recipe, get_model_entry(architecture))
    info = dataset_info(recipe.dataset["name"])
    history = outcome.history
    metadata = {
        "dataset": info.name,
        "class_names": list(info.class_names),
        "metrics": preset_metrics(test),
        "command": extra.get("command"),
        "evaluated_on": f"{recipe.dataset.get('label', info.name)} test split",
        "paper_error": paper_error,
        "recipe": recipe.to_dict(),
        "epochs_trained": len(history),
        "history": history,
        "source": f"trained with nin-keras recipe {recipe.name!r}",
        "license": recipe.license or DEFAULT_LICENSE,
    }
    preset_dir = save_preset(network, out_dir / "preset", metadata, preprocess, overwrite=True)
    write_history(out_dir, history, {**extra, "test": test})
    if verbose:
        print(f"Test {info.name}: accuracy {100 * test['accuracy']:.2f}%, error {test['error_percent']:.2f}% "
              f"(paper: {'n/a' if paper_error is None else f'{paper_error}%'}), loss {test['loss']:.4f}; preset written to {preset_dir}", flush=True)
    return test, preset_dir
