"""Chapters 4 and 7 compute their numbers in their own cells; these tests check what the built book glued against
values computed here independently: accuracies with scikit-learn from the runs' predictions, parameter counts from
freshly built models, and the region shares against the regions' definition (nothing trains: the runs are the
ones the build shipped or cached)."""

from __future__ import annotations

import re
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import executed_notebook, glued, shown_run
from sklearn.metrics import accuracy_score

from fer_utils import book, chapter, evaluation, explain, models, prose, training
from fer_utils.data import CLASSES

BOOK = Path(__file__).resolve().parent.parent / "book"
REGIONS = ("brows", "eyes", "nose", "mouth", "forehead", "rest of face", "border")


def accuracy(run: training.Run, x: np.ndarray, y: np.ndarray) -> float:
    """The run's one-view accuracy, with scikit-learn."""
    return accuracy_score(y, evaluation.predict(run.model, x).argmax(axis=1))


def check_saliency(values: dict, data, runs: dict) -> None:
    """Chapter 4's glued models, accuracies, sample sizes and region shares."""
    x, y = data.x[data.held_out], data.y[data.held_out]
    for k, run in runs.items():
        assert values[f"{k}_accuracy"] == pytest.approx(accuracy(run, x, y))
        assert values[f"{k}_epoch"] == run.meta["epochs_run"]
    assert values["simple_params"] == models.build("simple").count_params()
    assert values["simple_val"] == pytest.approx(accuracy(runs["simple"], data.x["val"], data.y["val"]))
    assert values["simple_val_training"] == pytest.approx(runs["simple"].history["val_accuracy"].iloc[-1])
    assert values["simple_conv"] == prose.join(map(str, models.SIMPLE_CONV))
    assert values["simple_dense"] == models.SIMPLE_DENSE
    assert values["pooled_map"] == "3×3" and values["flat_dense_params"] == 12 * 12 * 128 * 512 + 512
    assert values["n_sample"] == len(explain.sample_per_class(y, values["per_class"], seed=book.seed()))
    areas = explain.region_areas()
    for k in ("report", "simple"):
        assert values[f"{k}_n_right"] + values[f"{k}_n_wrong"] == values["n_sample"]
        assert values[f"{k}_focus"] == pytest.approx(values[f"{k}_vanilla_features"] / values["features_area"])
        assert values[f"{k}_focus_words"] in ("well above", "a little above", "about", "below")
        assert values[f"{k}_vanilla_features"] + values[f"{k}_vanilla_forehead"] + values[f"{k}_vanilla_border"] <= 1
    assert values["report_vanilla_eyes_brows"] + values["report_vanilla_mouth"] <= values["report_vanilla_features"]
    methods = values["tbl-methods"].splitlines()  # | model | map | features | eyes & brows | mouth | forehead | ...
    header = [cell.strip() for cell in methods[0].strip("|").split("|")]
    for row in methods[2:]:  # features, forehead, rest of face and border part the image: their shares sum to 100%
        cells = dict(zip(header, (cell.strip() for cell in row.strip("|").split("|"))))
        parts = [float(cells[r].rstrip("%")) for r in ("features", "forehead", "rest of face", "border")]
        assert sum(parts) == pytest.approx(100, abs=2), row  # each rounded to a whole percent
    assert len(methods) - 2 == 2 * 3 + 1  # two models, three kinds of map, and the uniform map's areas
    assert values["features_area"] == pytest.approx(areas[list(explain.FEATURE_REGIONS)].sum())
    assert values["border_area"] == pytest.approx(areas["border"])
    assert values["forehead_area"] == pytest.approx(areas["forehead"])
    for leaders in (values["mouth_class"], values["eye_class"]):  # one class, or those tied at the decimal printed
        assert set(re.split(r", | and ", leaders)) <= set(CLASSES), leaders
    assert all(c in values["tbl-top-regions"] for c in CLASSES)
    assert "report CNN" in values["tbl-methods"] and "Grad-CAM++" in values["tbl-methods"]


def check_beyond(values: dict, data, runs: dict) -> None:
    """Chapter 7's glued recipe settings, accuracies, the two networks' average and the saliency comparison."""
    x, y = data.x["val"], data.y["val"]
    assert values["n_val"] == len(y)
    assert values["plain_acc"] == pytest.approx(accuracy(runs["report"], x, y))
    assert values["augmented_acc"] == pytest.approx(accuracy(runs["augmented"], x, y))
    assert values["gain_one"] == pytest.approx(prose.points(values["augmented_acc"], values["plain_acc"]))
    assert f"{values['plain_acc']:.3f}" in values["tab-recipes"]
    both = np.mean([evaluation.predict(run.model, x, tta=True) for run in runs.values()], axis=0)
    assert values["ensemble_acc"] == pytest.approx(accuracy_score(y, both.argmax(axis=1)))
    augmented = training.RECIPES["augmented"]
    assert values["smoothing"] == augmented.label_smoothing and values["batch"] == augmented.batch_size
    assert values["n_params"] == models.build("report", input_norm="per_image").count_params()
    assert values["n_params"] == models.build("report").count_params()  # standardising adds no weights
    areas = explain.region_areas()
    assert values["std_features_area"] == pytest.approx(areas[list(explain.FEATURE_REGIONS)].sum())
    for k in ("report", "augmented"):
        assert 0 < values[f"std_{k}_features"] + values[f"std_{k}_forehead"] + values[f"std_{k}_border"] <= 1 + 1e-9
        assert -1 <= values[f"std_{k}_bright"] <= 1
    held = data.held_out  # the headline: one view on the test split, or validation where there is none
    assert values["plain_held_acc"] == pytest.approx(accuracy(runs["report"], data.x[held], data.y[held]))
    assert values["augmented_held_acc"] == pytest.approx(accuracy(runs["augmented"], data.x[held], data.y[held]))
    assert values["gain_held"] == pytest.approx(prose.points(values["augmented_held_acc"], values["plain_held_acc"]))


@pytest.mark.book
def test_chapter_4_glues_what_the_maps_and_runs_give(built_book):
    root, data = built_book[0].parent.parent, book.book_data(verbose=False)
    runs = {"report": shown_run(root, data, *chapter.REPORT), "simple": shown_run(root, data, *chapter.SIMPLE)}
    check_saliency(glued(executed_notebook(root, "04_saliency")), data, runs)


@pytest.mark.book
def test_chapter_7_glues_the_accuracies_scikit_learn_computes(built_book):
    root, data = built_book[0].parent.parent, book.book_data(verbose=False)
    runs = {recipe: shown_run(root, data, "report", recipe) for recipe in ("report", "augmented")}
    check_beyond(glued(executed_notebook(root, "07_beyond")), data, runs)


def recipe_cell() -> str:
    """The cell of chapter 7 that checks the recipes against the chapter's description of them."""
    cells = nbformat.read(BOOK / "07_beyond.ipynb", as_version=4).cells
    return next(c.source for c in cells if c.cell_type == "code" and "assert report ==" in c.source)


@pytest.mark.parametrize("change", [{"batch_size": 64}, {"learning_rate": 3e-4}, {"label_smoothing": 0.0},
                                    {"schedule": "constant"}, {"recalibrate_bn": False}, {"input_norm": "scale"}])
def test_chapter_7_stops_when_the_augmented_recipe_leaves_its_description(monkeypatch, change):
    monkeypatch.setitem(training.RECIPES, "augmented", training.RECIPES["augmented"].replace(**change))
    with pytest.raises(AssertionError):
        exec(recipe_cell(), {"chapter": chapter, "data": types.SimpleNamespace(is_synthetic=True), "runs": {}})


def test_chapter_7_recipe_cell_accepts_the_recipes_as_they_are():
    runs = {"augmented": types.SimpleNamespace(model=models.build("report", input_norm="per_image"))}
    exec(recipe_cell(), {"chapter": chapter, "data": types.SimpleNamespace(is_synthetic=True), "runs": runs})
