"""Chapters 3 and 5 compute their numbers in their own cells; these tests check what the built book glued against
values computed here independently, with scikit-learn and NumPy, from the run the build used (nothing trains)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import executed_notebook, glued, shown_run

from fer_utils import book, evaluation, explain, facs, models
from fer_utils.data import CLASSES


def check_confusion(values: dict, run, data) -> None:
    """Chapter 3's glued scores and confusion-matrix readings against scikit-learn on the evaluation split."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

    x, y = data.x[data.held_out], data.y[data.held_out]
    pred = evaluation.predict(run.model, x).argmax(axis=1)
    labels = np.arange(len(CLASSES))
    assert values["n_eval"] == len(y)
    assert values["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert values["macro_f1"] == pytest.approx(f1_score(y, pred, labels=np.unique(y), average="macro"))

    shares = confusion_matrix(y, pred, labels=labels, normalize="true")
    off = np.where(np.eye(len(CLASSES), dtype=bool), -1.0, shares)
    true, predicted = CLASSES.index(values["top_true"]), CLASSES.index(values["top_predicted"])
    assert values["top_share"] == pytest.approx(off.max()) == pytest.approx(shares[true, predicted])
    assert values["top_shared"] == facs.shared_actions(values["top_true"], values["top_predicted"])
    assert values["fear_as_sad"] == pytest.approx(shares[CLASSES.index("fear"), CLASSES.index("sad")])
    assert values["tbl-pairs"].splitlines()[2].startswith(f"| {values['top_true']} → {values['top_predicted']} ")
    sinks = np.bincount(off.argmax(axis=1), minlength=len(CLASSES))  # how many classes take each for their mistake
    assert values["sink_count"] == sinks.max() and sinks[CLASSES.index(values["sink"])] == sinks.max()
    happy = next(row for row in values["tbl-actions"].splitlines() if row.startswith("| happy "))
    assert "AU6 cheek raiser and AU12 lip corner puller" in happy

    recall = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    assert [values["low_1_recall"], values["low_2_recall"]] == pytest.approx(sorted(recall)[:2])
    for key in ("low_1", "low_2"):
        i = CLASSES.index(values[key])
        assert values[f"{key}_recall"] == pytest.approx(recall[i])
        assert values[f"{key}_as"] == CLASSES[int(off[i].argmax())]

    features = explain.layer_outputs(run.model, x, explain.EMBEDDING_LAYER)
    from sklearn.metrics import pairwise_distances  # scikit-learn's scaling and distances, not the chapter's NumPy
    from sklearn.preprocessing import normalize

    unit = normalize(features)  # each row to unit length
    spread = {c: pairwise_distances(unit[y == i], unit[y == i].mean(axis=0, keepdims=True)).mean()
              for i, c in enumerate(CLASSES) if np.any(y == i)}
    assert values["fear_spread"] == pytest.approx(spread["fear"] / np.mean(list(spread.values())), rel=1e-4)
    assert values["fear_verdict"].startswith("agrees") == (max(spread, key=spread.get) == "fear")


def check_filters(values: dict, model) -> None:
    """Chapter 5's glued description of the last convolution layer against the model itself."""
    conv = model.get_layer(models.LAST_CONV["report"])
    maps = model.get_layer(explain.FEATURE_LAYER["report"]).output.shape
    assert values["last_conv"] == conv.name
    assert values["n_filters"] == conv.filters == maps[-1]
    assert values["kernel"] == "×".join(map(str, conv.kernel_size))
    assert values["in_channels"] == conv.input.shape[-1]
    assert values["map_size"] == f"{maps[1]}×{maps[2]}"
    assert values["n_dense_hidden"] == len(models.REPORT_DENSE)
    assert values["embed_units"] == model.get_layer(explain.EMBEDDING_LAYER).output.shape[-1]
    assert 0 <= values["n_selective"] <= values["n_filters"]
    assert 0 < values["features_area"] < 1 and 0 <= values["fmap_features"] <= 1


@pytest.mark.book
def test_chapter_3_glues_the_scores_scikit_learn_computes(built_book):
    root = built_book[0].parent.parent
    data = book.book_data(verbose=False)
    check_confusion(glued(executed_notebook(root, "03_confusion")), shown_run(root, data), data)


@pytest.mark.book
def test_chapter_5_glues_the_last_convolution_layer_of_the_model(built_book):
    root = built_book[0].parent.parent
    check_filters(glued(executed_notebook(root, "05_filters")), shown_run(root, book.book_data(verbose=False)).model)
