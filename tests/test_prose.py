"""fer_utils.prose: joins, comparisons and ranks, every branch, with FER2013-like values and the stand-in's."""

import pytest

from fer_utils import prose


def test_join():
    assert prose.join([]) == "none"
    assert prose.join([], empty="nothing") == "nothing"
    assert prose.join(["fear"]) == "fear"
    assert prose.join(["fear", "sad"]) == "fear and sad"
    assert prose.join(["24", "12", "6", "3"]) == "24, 12, 6 and 3"


def test_epochs():
    assert prose.epochs([106]) == "epoch 106"
    assert prose.epochs([106, 120]) == "epochs 106 and 120"  # the shipped report run's two continuations
    assert prose.epochs([12, 66, 90]) == "epochs 12, 66 and 90"


@pytest.mark.parametrize("value, reference, words", [
    (0.610, 0.651, "below"),  # FER2013: the report recipe's PublicTest accuracy against the original's
    (0.661, 0.651, "above"),  # FER2013: the augmented recipe over ten views
    (0.653, 0.651, "level with"),  # within half a point
    (0.9104, 0.651, "above"),  # the stand-in's validation accuracy
])
def test_compare(value, reference, words):
    assert prose.compare(value, reference) == words


@pytest.mark.parametrize("value, reference, words", [
    (0.061, 0.032, "more often than"),  # FER2013-like: pairs sharing an action unit confused more
    (0.010, 0.074, "less often than"),  # the stand-in
    (0.030, 0.032, "about as often as"),
])
def test_how_often(value, reference, words):
    assert prose.how_often(value, reference) == words


def test_rank():
    assert prose.rank(1) == "the lowest"
    assert prose.rank(2) == "the second lowest"
    assert prose.rank(3, "most spread") == "the third most spread"
    assert prose.rank(5) == "the 5th lowest"
    with pytest.raises(ValueError):
        prose.rank(0)


def test_points_are_the_difference_a_reader_computes_from_the_printed_values():
    assert prose.points(0.6543, 0.6612) == pytest.approx(-0.7)  # printed 0.654 and 0.661; unrounded, -0.69
    assert prose.points(0.6353, 0.651) == pytest.approx(-1.6)
    assert prose.points(0.6049, 0.6354, decimals=2) == pytest.approx(-4.0)  # printed 0.60 and 0.64
