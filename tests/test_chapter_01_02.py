"""The introduction and chapters 1 and 2 compute their numbers in their own cells; these tests check what the built
book glued against values computed here independently: the data's counts with NumPy, the parameter counts from a
freshly built model, and the history from the run's own history.csv (nothing trains)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import executed_notebook, glued, shown_run_dir

from fer_utils import book, models, original, prose
from fer_utils.data import CLASSES, IMAGE_SIZE, SPLITS


def check_intro(values: dict, data) -> None:
    """The introduction's glued sizes and balance against the data's labels."""
    sizes = {s: len(data.y[s]) for s in SPLITS}
    assert [values[f"n_{s}"] for s in SPLITS] == list(sizes.values())
    assert values["n_images"] == sum(sizes.values())
    assert values["n_classes"] == len(CLASSES) and values["input_side"] == IMAGE_SIZE
    assert values["fingerprint"] == data.fingerprint
    assert ("synthetic" in values["data_name"]) == data.is_synthetic
    share = np.bincount(data.y["train"], minlength=len(CLASSES)) / len(data.y["train"])
    assert values["commonest"] == CLASSES[share.argmax()] and values["rarest"] == CLASSES[share.argmin()]
    assert [values["commonest_share"], values["rarest_share"]] == pytest.approx([share.max(), share.min()])
    assert values["examples_per_class"] >= 1
    counts = values["tbl-counts"]
    assert all(c in counts for c in CLASSES) and f"{sizes['train']:,}" in counts


def check_model(values: dict) -> None:
    """Chapter 1's glued parameter counts and shapes against a freshly built report CNN."""
    model = models.build("report")
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert values["total"] == model.count_params() == trainable + frozen
    assert (values["trainable"], values["non_trainable"]) == (trainable, frozen)
    assert (values["total"], values["trainable"], values["non_trainable"]) == (319_975, 318_055, 1_920)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert values["n_layers"] == len(model.layers)
    assert values["n_conv"] == kinds.count("Conv2D")
    assert values["filters"] == " → ".join(str(f) for f, _ in models.REPORT_CONV)
    assert values["flat"] == str(model.get_layer("flatten").output.shape[-1])
    assert values["dropout"] == models.DROPOUT
    biggest = max(model.layers, key=lambda layer: layer.count_params())
    assert (values["biggest"], values["biggest_params"]) == (biggest.name, biggest.count_params())
    assert "tbl-layers" in values and all(layer.name in values["tbl-layers"] for layer in model.layers)


def check_history(values: dict, run_dir: Path, data) -> None:
    """Chapter 2's glued last epoch, best epochs and comparison against the run's history.csv and the original."""
    history = pd.read_csv(run_dir / "history.csv", index_col="epoch")
    last = history.iloc[-1]
    assert values["scored_epoch"] == values["epochs"] == history.index[-1]
    for key in ("accuracy", "val_loss", "val_accuracy"):
        assert values[f"final_{key}"] == pytest.approx(last[key])
    for key in ("accuracy", "val_accuracy"):
        assert values[f"orig_{key}"] == original.FINAL_EPOCH[key]
    assert values["best_epoch"] == history["val_accuracy"].idxmax()
    assert values["best_val_accuracy"] == pytest.approx(history["val_accuracy"].max())
    assert values["lowest_loss_epoch"] == history["val_loss"].idxmin()
    assert values["gap"] == pytest.approx(prose.points(last["accuracy"], last["val_accuracy"]))  # as printed
    assert values["chance"] == pytest.approx(np.bincount(data.y["val"]).max() / len(data.y["val"]))
    assert values["n_train"] == len(data.y["train"])
    assert f"{last['val_accuracy']:.4f}" in values["tbl-original"]
    meta = json.loads((run_dir / "meta.json").read_text())
    settings = values["tbl-settings"]  # the original's stated settings, "not stated" for the rest, the run's own
    for stated in original.STATED.values():
        assert stated in settings
    assert settings.count("not stated") == len(original.UNSTATED)
    assert "| epochs " in settings and f" {history.index[-1]} " in settings
    assert f" {meta['config']['batch_size']} " in settings and f"({len(data.y['val']):,})" in settings
    config = meta["config"]  # the schedule row: a step inside the run is spelled out, one after it is no step
    drops = config["schedule"] == "step" and config["decay_at"] < history.index[-1]
    assert (f" {config['learning_rate']:g} to epoch {config['decay_at']}, then " in settings) == drops
    assert values["decay_at"] == config["decay_at"]
    assert values["train_vs_original"] == prose.compare(last["accuracy"], original.FINAL_EPOCH["accuracy"])
    printed = float(f"{last['accuracy']:.3f}")  # the gap in points is the one the printed numbers give
    printed_original = float(f"{original.FINAL_EPOCH['accuracy']:.3f}")  # 0.760, as the page prints it
    assert values["train_diff"] == pytest.approx(100 * abs(printed - printed_original))
    legs = [str(leg["after_epoch"]) for leg in meta.get("continued", [])]
    assert (f"restarted after epoch{'s' if len(legs) > 1 else ''} {prose.join(legs)}" if legs
            else "kept throughout") in settings

@pytest.mark.book
def test_intro_glues_the_data_counts(built_book):
    root = built_book[0].parent.parent
    check_intro(glued(executed_notebook(root, "intro")), book.book_data(verbose=False))


@pytest.mark.book
def test_chapter_1_glues_the_parameter_counts_of_the_model(built_book):
    check_model(glued(executed_notebook(built_book[0].parent.parent, "01_model")))


@pytest.mark.book
def test_chapter_2_glues_the_last_epoch_of_the_run_history(built_book):
    root = built_book[0].parent.parent
    data = book.book_data(verbose=False)
    check_history(glued(executed_notebook(root, "02_history")), shown_run_dir(root, data), data)
