"""fer_utils.prose: every branch of every wording function, with FER2013-like values and the stand-in's."""

import pytest

from fer_utils import prose
from fer_utils.data import CLASSES


def test_join():
    assert prose.join([]) == "none"
    assert prose.join([], empty="nothing") == "nothing"
    assert prose.join(["fear"]) == "fear"
    assert prose.join(["fear", "sad"]) == "fear and sad"
    assert prose.join(["24", "12", "6", "3"]) == "24, 12, 6 and 3"


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
    assert prose.how_often(value, reference, 0.005) == words


def test_rank():
    assert prose.rank(1) == "the lowest"
    assert prose.rank(2) == "the second lowest"
    assert prose.rank(3, "most spread") == "the third most spread"
    assert prose.rank(5) == "the 5th lowest"
    with pytest.raises(ValueError):
        prose.rank(0)


@pytest.mark.parametrize("value, words", [(1.8, "well above"), (1.2, "a little above"), (1.0, "about"),
                                          (0.6, "below")])
def test_ratio(value, words):
    assert prose.ratio(value) == words


@pytest.mark.parametrize("r, start", [(0.62, "follow the image's brightness strongly"), (0.35, "follow the image's "
                                      "brightness moderately"), (0.15, "follow the image's brightness weakly"),
                                      (0.02, "hardly"), (-0.05, "hardly"), (-0.2, "lean away")])
def test_brightness(r, start):
    assert prose.brightness(r).startswith(start)


@pytest.mark.parametrize("epochs, lowest, last, then, start", [
    (40, 40, 0.65, 0.70, "it was still falling"),  # lowest in the last epoch
    (12, 11, 0.40, 0.42, "it rose only in the last epoch,"),  # the stand-in: one or two epochs after the lowest
    (12, 10, 0.40, 0.42, "it rose only over the last two epochs,"),
    (40, 14, 0.65, 0.95, "it rose afterwards while the training loss kept falling"),  # FER2013: overfitting
    (40, 30, 0.80, 0.78, "it rose afterwards, and the training loss fell no further"),
])
def test_loss_trend(epochs, lowest, last, then, start):
    assert prose.loss_trend(epochs, lowest, last, then).startswith(start)


def test_still_rising():
    assert prose.still_rising(6, 6) == prose.still_rising(5, 6) == "was still improving at its end"
    assert prose.still_rising(90, 130) == "had levelled off before its end"


def test_original_finding():
    sad = dict.fromkeys(CLASSES, "sad")
    # FER2013-like: fear and angry lowest, both mostly taken for sad
    assert prose.original_finding(["fear", "angry"], sad) == "the original report's finding exactly"
    assert prose.original_finding(["angry", "fear"], {**sad, "angry": "neutral"}).startswith(
        "the original report's two classes, though")
    # FER2013 often has disgust or fear lowest
    assert prose.original_finding(["disgust", "fear"], sad) == "one of the original report's two classes"
    # the stand-in
    assert prose.original_finding(["sad", "neutral"], sad) == "other classes than the original report's"


def test_every_class_has_prototype_action_units_with_names_and_regions():
    assert set(prose.ACTION_UNITS) == set(CLASSES)
    for units in prose.ACTION_UNITS.values():
        assert all(u in prose.AU_NAMES and u in prose.AU_REGION for u in units)
    assert prose.ACTION_UNITS["neutral"] == ()


def test_shared_actions():
    assert prose.shared_actions("fear", "surprise") == (
        "inner brow raiser (AU 1), outer brow raiser (AU 2), upper lid raiser (AU 5) and jaw drop (AU 26)")
    assert prose.shared_actions("angry", "sad") == "brow lowerer (AU 4)"
    assert prose.shared_actions("happy", "sad") == "no action unit"
    assert prose.shared_actions("sad", "neutral") == "no action unit"  # the stand-in's common pair


def test_action_regions():
    assert prose.action_regions("happy") == ("eyes", "mouth")
    assert prose.action_regions("disgust") == ("nose", "mouth")
    assert prose.action_regions("neutral") == ()


@pytest.mark.parametrize("gaps, start", [
    ([], "too few mistakes"),
    ([0.01, -0.02], "about as much when wrong"),
    ([0.05, 0.04], "less when wrong"),
    ([-0.05, -0.06], "more when wrong"),
    ([0.05, -0.06], "in opposite directions"),
])
def test_mistakes_and_focus(gaps, start):
    assert prose.mistakes_and_focus(gaps).startswith(start)


def test_alike():
    assert prose.alike(0.55, 0.20) == "clearly more alike than"
    assert prose.alike(0.25, 0.20) == "hardly more alike than"


@pytest.mark.parametrize("moves, words", [([-0.05, -0.03], "moves mass off the border"),
                                          ([0.04, 0.06], "spreads mass onto the border"),
                                          ([0.04, -0.01], "leaves the border's share about where it was")])
def test_border_shift(moves, words):
    assert prose.border_shift(moves) == words


def test_rises():
    assert prose.rises([0.30, 0.55, 0.71]) == "rises at every stage"
    assert prose.rises([0.30, 0.75, 0.71]) == "does not rise at every stage"


@pytest.mark.parametrize("ensemble, best, shared, start", [
    (0.93, 0.92, 0.53, "averaging helped"),  # the stand-in: a point above, about half the mistakes shared
    (0.646, 0.649, 0.80, "averaging did not help: most"),  # FER2013: mostly shared mistakes
    (0.60, 0.61, 0.40, "averaging did not help, although"),
])
def test_averaging(ensemble, best, shared, start):
    assert prose.averaging(ensemble, best, shared).startswith(start)


@pytest.mark.parametrize("confidence, accuracy, word", [
    (0.74, 0.61, "over-confident"),  # FER2013-like, report recipe
    (0.55, 0.65, "under-confident"),  # FER2013-like, label-smoothed recipe
    (0.905, 0.90, "about as confident as it is accurate"),  # the stand-in
])
def test_confidence_word(confidence, accuracy, word):
    assert prose.confidence_word(confidence, accuracy) == word


@pytest.mark.parametrize("temperature, word", [(1.6, "softens"), (0.7, "sharpens"), (1.002, "barely changes")])
def test_temperature_word(temperature, word):
    assert prose.temperature_word(temperature) == word


def test_calibration_where_and_injected_note():
    assert "measured on the test split" in prose.calibration_where(True)
    assert "stratified half of the validation split" in prose.calibration_where(False)
    assert prose.injected_note({}) == ""
    assert prose.injected_note({"exact": 12}).startswith("> **This chapter's copy of the stand-in")
    assert not any(c.isdigit() for c in prose.injected_note({"exact": 12}) + prose.calibration_where(False))


def test_ratio_judges_the_value_as_printed():
    assert prose.ratio(1.398) == prose.ratio(1.40) == "well above"  # shown as 1.40: one word for one number
    assert prose.ratio(1.394) == "a little above"
