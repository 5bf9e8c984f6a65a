"""Evaluation maths on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pytest

from fer_utils.evaluation import Evaluation

# 10 examples: angry(0) x4, disgust(1) x2, happy(3) x4.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 3, 3, 3, 3])
Y_PRED = np.array([0, 0, 0, 1, 0, 0, 3, 3, 3, 6])


def test_accuracy_and_confusion_counts():
    ev = Evaluation(Y_TRUE, Y_PRED)
    assert ev.n == 10 and ev.accuracy == pytest.approx(0.6)
    c = ev.confusion
    assert c.loc["angry", "angry"] == 3 and c.loc["angry", "disgust"] == 1
    assert c.loc["disgust", "angry"] == 2 and c.loc["happy", "neutral"] == 1
    assert int(c.to_numpy().sum()) == 10
    norm = ev.confusion_normalized
    assert norm.loc["disgust", "angry"] == pytest.approx(1.0)
    assert norm.loc["angry"].sum() == pytest.approx(1.0) and norm.loc["fear"].sum() == 0


def test_per_class_scores_and_macro_f1():
    table = Evaluation(Y_TRUE, Y_PRED).per_class
    # angry: tp 3, predicted 5, true 4 -> precision 0.6, recall 0.75, F1 2/3
    assert table.loc["angry", "precision"] == pytest.approx(0.6)
    assert table.loc["angry", "recall"] == pytest.approx(0.75)
    assert table.loc["angry", "f1"] == pytest.approx(2 / 3)
    assert table.loc["disgust", "f1"] == 0 and table.loc["happy", "precision"] == 1
    assert table.loc["happy", "f1"] == pytest.approx(2 * 0.75 / 1.75)
    expected = (2 / 3 + 0 + 2 * 0.75 / 1.75) / 3  # classes absent from y_true do not count
    assert Evaluation(Y_TRUE, Y_PRED).macro_f1 == pytest.approx(expected)


def test_most_confused_and_mistaken_for():
    ev = Evaluation(Y_TRUE, Y_PRED)
    top = ev.most_confused(2)
    assert top.iloc[0][["true", "predicted", "count"]].tolist() == ["disgust", "angry", 2]
    assert top.iloc[0]["share_of_true"] == pytest.approx(1.0)
    assert set(top.iloc[1][["true", "predicted"]]) in ({"angry", "disgust"}, {"happy", "neutral"})
    assert ev.mistaken_for()["disgust"] == "angry" and ev.mistaken_for()["happy"] == "neutral"


def test_summary_is_json_ready():
    summary = Evaluation(Y_TRUE, Y_PRED).summary()
    assert summary["n"] == 10 and summary["recall"]["angry"] == pytest.approx(0.75)
    assert all(isinstance(v, float) for v in summary["recall"].values())
