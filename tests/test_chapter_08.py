"""Chapter 8 computes its tables and numbers in its own cells; this test checks what the built book glued against
values computed here independently (scikit-learn and NumPy, from the runs the build used; nothing trains)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import executed_notebook, glued, shown_run

from fer_utils import book, evaluation, quality
from fer_utils.data import CLASSES, stratified_split


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int) -> float:
    """ECE written out again: bins (k/bins, (k+1)/bins] of the top-class confidence, gaps weighted by their images."""
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return sum(abs(correct[which == k].mean() - confidence[which == k].mean()) * np.sum(which == k)
               for k in range(bins) if np.any(which == k)) / len(y)


def check_quality(values: dict, root: Path) -> None:
    """Chapter 8's glued duplicate counts, twin scores and calibration against values computed here."""
    from sklearn.metrics import accuracy_score, log_loss

    original = book.book_data(verbose=False)
    data, injected = quality.chapter_data(original, book.seed())
    found, held = quality.audit(data), data.held_out
    near = found.pairs[found.pairs["near"]]
    twins = quality.twins(found, held)
    assert values["near_pairs"] == int((~near["identical"]).sum())
    assert values["n_held"] == len(data.y[held]) and values["n_blank"] == int((found.flags["kind"] == "blank").sum())
    assert values["held_twins"] == int((twins["twin"] != "").sum())
    assert values["held_conflicts"] == int(twins["conflict"].sum())
    shares = np.bincount(data.y["train"], minlength=len(CLASSES)) / len(data.y["train"])
    assert values["chance_conflict"] == pytest.approx(1 - np.sum(shares ** 2))

    has_test = len(data.y["test"]) > 0
    fit, measure = stratified_split(data.y["val"], 0.5, book.seed())
    fit_x, fit_y = (data.x["val"], data.y["val"]) if has_test else (data.x["val"][fit], data.y["val"][fit])
    measure_x, measure_y = (data.x["test"], data.y["test"]) if has_test else (data.x["val"][measure],
                                                                               data.y["val"][measure])
    for recipe in ("report", "augmented"):
        model = shown_run(root, original, "report", recipe).model
        predicted = evaluation.predict(model, data.x[held]).argmax(axis=1)
        with_twin = twins["twin"].to_numpy() != ""
        assert values[f"{recipe}_all_acc"] == pytest.approx(accuracy_score(data.y[held], predicted))
        assert values[f"{recipe}_rest_acc"] == pytest.approx(accuracy_score(data.y[held][~with_twin],
                                                                            predicted[~with_twin]))
        probs = evaluation.predict(model, measure_x)
        assert values[f"{recipe}_before_acc"] == pytest.approx(accuracy_score(measure_y, probs.argmax(axis=1)))
        assert values[f"{recipe}_before_ece"] == pytest.approx(expected_calibration_error(probs, measure_y,
                                                                                          values["ece_bins"]))
        assert values[f"{recipe}_before_nll"] == pytest.approx(
            log_loss(measure_y, probs, labels=np.arange(len(CLASSES))), rel=1e-4)
        t = values[f"{recipe}_after_t"]  # the fitted temperature minimises the NLL on the fitting images
        nll = [log_loss(fit_y, quality.temper(evaluation.predict(model, fit_x), t * f), labels=np.arange(7))
               for f in (0.9, 1.0, 1.1)]
        assert nll[1] <= min(nll[0], nll[2]) + 1e-9


@pytest.mark.book
def test_chapter_8_glues_what_its_data_and_runs_give(built_book):
    root = built_book[0].parent.parent
    check_quality(glued(executed_notebook(root, "08_quality")), root)
