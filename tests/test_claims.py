"""Where a chapter's words follow its numbers, the line that picks them is run here on both outcomes.

Each claim is a line (or a short block) of a chapter's code cell that compares a number with a threshold the prose
states; the test runs that very code, taken from the notebook, on made-up inputs on either side of the threshold.
No book build is needed.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from fer_utils import prose  # the chapters call it; the claims run with it
from fer_utils.data import CLASSES

BOOK = Path(__file__).resolve().parent.parent / "book"


def claim_code(page: str, first: str, through: str | None = None) -> str:
    """The lines of `page`'s code from the one starting with `first` to the one starting with `through` (or just
    it), and the indented lines after that one."""
    for cell in nbformat.read(BOOK / f"{page}.ipynb", as_version=4).cells:
        lines = cell.source.splitlines() if cell.cell_type == "code" else []
        starts = [i for i, line in enumerate(lines) if line.startswith(first)]
        if starts:
            end = next(i for i in range(starts[0], len(lines)) if lines[i].startswith(through or first))
            if through:  # a block: its last statement's indented lines too
                end = next((i - 1 for i in range(end + 1, len(lines)) if not lines[i].startswith(" ")), len(lines) - 1)
            return textwrap.dedent("\n".join(lines[starts[0]:end + 1]))
    raise AssertionError(f"{page}: no code line starts with {first!r}")


def run_claim(page: str, first: str, name: str, through: str | None = None, **inputs):
    """Run the claim's code with `inputs` and return the variable `name` it sets."""
    namespace = {"prose": prose, "CLASSES": CLASSES, "np": np, "pd": pd, **inputs}
    exec(claim_code(page, first, through), namespace)
    return namespace[name]


@pytest.mark.parametrize("sharing_extra, words", [(0.0, "no evidence for it"), (0.2, "evidence for it")])
def test_chapter_3_calls_the_shared_action_units_evidence_only_under_its_level(sharing_extra, words):
    sharing = np.array([True, False] * 21)  # 42 ordered pairs, half sharing an action unit
    shares = np.linspace(0.0, 0.1, 42) + np.where(sharing, sharing_extra, 0.0)
    off = pd.DataFrame({"true": ["angry"] * 42, "predicted": ["sad"] * 42, "share": shares})
    book = type("Book", (), {"seed": staticmethod(lambda: 0)})
    found = run_claim("03_confusion", "pair_shares = ", "share_found", through="share_found = ", off=off,
                      sharing=sharing, book=book)
    assert found == words


@pytest.mark.parametrize("fear, angry, happy, words, rank", [
    (1.3, 0.9, 0.9, "agrees with", "the most spread"), (1.0, 0.9, 1.3, "does not bear out", "the second most spread"),
    (1.3, 1.297, 0.9, "agrees only in part with", "tied with angry for the most spread"),  # session 3: 1.08, 1.08
    (1.297, 1.3, 0.9, "agrees only in part with", "tied with angry for the most spread"),  # FER2013: angry ahead
    (1.3, 1.31, 0.9, "does not bear out", "the second most spread"),  # angry ahead as printed
])
def test_chapter_3_says_whether_fear_varies_most_as_the_original_found(fear, angry, happy, words, rank):
    spread = pd.Series(0.9, index=list(CLASSES))
    spread["fear"], spread["angry"], spread["happy"] = fear, angry, happy
    assert run_claim("03_confusion", "printed = ", "fear_verdict", through="fear_verdict = (", spread=spread) == words
    assert run_claim("03_confusion", "printed = ", "fear_rank", through="fear_rank = fear_rank", spread=spread) == rank


@pytest.mark.parametrize("au_p, words", [(0.26, "does not show"), (0.049, "shows")])  # FER2013: 0.26
def test_chapter_4_calls_the_action_unit_match_evidence_only_under_its_level(au_p, words):
    matches = np.array([0.0] * 5 + [1 - au_p, au_p])  # 6 matches; at least that many at random with probability au_p
    assert run_claim("04_saliency", "au_p = ", "au_evidence", through="au_evidence = ", matches_at_random=matches,
                     au_match=6) == words


@pytest.mark.parametrize("surprise, leaders, simple", [
    (1.71, "happy", "1.5"),  # 1.7 against 1.8 as printed: happy alone
    (1.76, "happy and surprise", "1.5 and 1.2, in that order"),  # FER2013: 1.8 and 1.8
])
def test_chapter_4_names_every_expression_the_mouth_leads_as_printed(surprise, leaders, simple):
    mouth = pd.Series(1.0, index=list(CLASSES))
    mouth["happy"], mouth["surprise"] = 1.82, surprise
    report = pd.DataFrame({"mouth": mouth})
    lift = {"simple": pd.DataFrame({"mouth": pd.Series(1.0, index=list(CLASSES))}).assign(
        mouth=lambda d: d.mouth.where(d.index != "happy", 1.5).where(d.index != "surprise", 1.2))}
    names = run_claim("04_saliency", "mouth_leads = ", "mouth_leads", through="eyes_mouth = ", report=report,
                      eye_brow=mouth, lift=lift)
    assert prose.join(names) == leaders
    assert run_claim("04_saliency", "mouth_leads = ", "mouth_simple", through="eyes_mouth = ", report=report,
                     eye_brow=mouth, lift=lift) == simple


@pytest.mark.parametrize("leaders, words", [
    (["mouth"] * 7, "the mouth for all 7 of them"),
    (["mouth"] * 4 + ["eyes"] * 2 + ["nose"], "not the same for all of them: the mouth for 4, the eyes for 2 and the "
                                              "nose for 1"),
])
def test_chapter_4_says_whether_one_feature_leads_every_expression(leaders, words):
    top = {"report": pd.Series(leaders, index=list(CLASSES))}
    assert run_claim("04_saliency", "favoured = ", "favoured_words", through="favoured_words = (", top=top) == words


@pytest.mark.parametrize("r, words", [(0.02, "does not bear out"), (-0.05, "does not bear out"),
                                      (0.35, "is consistent with")])
def test_chapter_4_weighs_the_originals_brightness_guess_at_its_threshold(r, words):
    assert run_claim("04_saliency", "bright_verdict =", "bright_verdict", bright={"report": r}, faint=0.1) == words


@pytest.mark.parametrize("moved, words", [(0.007, "barely move"), (0.08, "move")])
def test_chapter_7_says_whether_standardising_moves_the_shares(moved, words):
    assert run_claim("07_beyond", "std_moved_words =", "std_moved_words", moved=moved, little=0.05) == words
    remedy = run_claim("07_beyond", "std_remedy = (", "std_remedy", through="std_remedy = (", moved=moved, little=0.05)
    assert remedy.startswith(("barely moves", "moves")) and ("does not bear" in remedy) == (words == "barely move")


@pytest.mark.parametrize("losses, start", [
    ([1.0, 0.9, 0.8], "it was still falling"),  # lowest in the last epoch
    ([1.0, 0.8, 0.805, 0.807], "it ended within a hair"),  # FER2013 after the step: 0.997 at 108, 1.004 at 120
    ([1.0, 0.8, 0.85], "it rose only in the last epoch or two"),  # the stand-in: one or two epochs after the lowest
    ([1.0, 0.8, 0.85, 0.86], "it rose only in the last epoch or two"),
    ([1.0, 0.8, 0.9, 0.95, 1.0], "it rose afterwards while the training loss kept falling"),  # overfitting
])
def test_chapter_2_says_what_validation_loss_did_after_its_lowest(losses, start):
    history = pd.DataFrame({"val_loss": losses, "loss": np.linspace(1, 0.5, len(losses))},
                           index=range(1, len(losses) + 1))
    lowest = int(history["val_loss"].idxmin())
    trend = run_claim("02_history", "after = len(history)", "trend", through="trend = (", history=history,
                      lowest=lowest, last=history.iloc[-1])
    assert trend.startswith(start)
    flat = history.assign(loss=0.5)  # the training loss fell no further after the lowest
    if start.startswith("it rose afterwards"):
        assert run_claim("02_history", "after = len(history)", "trend", through="trend = (", history=flat,
                         lowest=lowest, last=flat.iloc[-1]) == "it rose afterwards while the training loss stalled"


@pytest.mark.parametrize("low, mistaken, words", [
    (["fear", "angry"], {}, "this build finds the same two, both"),  # FER2013
    (["angry", "fear"], {"angry": "neutral"}, "this build finds the same two, not both"),
    (["disgust", "fear"], {}, "this build finds one of the two"),
    (["sad", "neutral"], {}, "this build finds neither"),  # the stand-in
])
def test_chapter_3_compares_its_worst_classes_with_the_originals(low, mistaken, words):
    mistaken = pd.Series({**dict.fromkeys(CLASSES, "sad"), **mistaken})
    finding = run_claim("03_confusion", "original_low = ", "finding", through="finding = (", low=pd.Index(low),
                        mistaken=mistaken)
    assert finding.startswith(words)


@pytest.mark.parametrize("ratio, words", [(1.8, "well above"), (1.398, "well above"), (1.394, "a little above"),
                                          (1.0, "about"), (0.6, "below")])
def test_chapter_4_reads_ratios_to_area_on_one_scale_as_printed(ratio, words):
    against_area = run_claim("04_saliency", "scale = {", "against_area", through="ratio_scale =")
    assert against_area(ratio) == words  # 1.398 is printed 1.40: one word for one number
    scale = run_claim("04_saliency", "scale = {", "ratio_scale", through="ratio_scale =")
    assert scale == "1.4 or more well above, 1.1 or more a little above, 0.9 or more about, less below"


@pytest.mark.parametrize("gaps, words", [
    ([], "too few mistakes"), ([0.01, -0.02], "about as much when wrong"), ([0.05, 0.04], "less when wrong"),
    ([-0.05, -0.06], "more when wrong"), ([0.05, -0.06], "more when right for one model"),
])
def test_chapter_4_compares_where_the_models_look_when_right_and_wrong(gaps, words):
    assert run_claim("04_saliency", "right_wrong_words = (", "right_wrong_words", through="right_wrong_words = (",
                     gaps=gaps, same_level=0.03).startswith(words)


@pytest.mark.parametrize("same, other, words", [(0.55, 0.20, "clearly"), (0.25, 0.20, "hardly")])
def test_chapters_4_and_7_say_whether_maps_of_the_same_face_are_more_alike(same, other, words):
    assert run_claim("04_saliency", "smooth_alike =", "smooth_alike", corr_smooth=same, corr_smooth_other=other,
                     margin=0.1).startswith(words)
    assert run_claim("07_beyond", "std_words =", "std_words", same=same, other=other, margin=0.1).startswith(words)


def test_chapter_4_says_per_model_what_smoothgrad_does_to_the_border():
    moves = {"report": 0.10, "simple": -0.05, "other": 0.01}  # FER2013 moved one model's border share by 10 points
    overall = {key: {"border": 0.2 + (moves[key[0]] if key[1] == "smooth" else 0)}
               for key in [(k, m) for k in moves for m in ("smooth", "vanilla")]}
    words = run_claim("04_saliency", "border_words = {}", "border_words", through="for k in runs:", runs=moves,
                      overall=overall, still=0.02)
    assert words == {"report": "adds mass on the border", "simple": "takes mass off the border",
                     "other": "leaves the border's share about where it was"}


@pytest.mark.parametrize("scores, words", [((0.30, 0.55, 0.71), "rises at each step"),
                                           ((0.30, 0.75, 0.71), "does not rise at each step")])
def test_chapter_5_says_whether_neighbours_agree_more_at_every_stage(scores, words):
    agreement = dict(zip(("pixels", "last_conv", "embedding"), scores))
    assert run_claim("05_filters", "pixels, last_conv, embedded =", "knn_words", through="knn_words =",
                     agreement=agreement) == words


@pytest.mark.parametrize("held, words", [("test", "the 3,589 test images, on which nothing was chosen"),
                                         ("val", "the validation images, on which the recipes were chosen")])
def test_chapter_7_names_the_split_of_its_headline_and_whether_anything_was_chosen_on_it(held, words):
    data = type("Data", (), {"y": {"test": np.zeros(3589), "val": np.zeros(3589)}})()
    assert run_claim("07_beyond", "held_words = (", "held_words", through="held_words = (", held=held,
                     data=data).startswith(words)


@pytest.mark.parametrize("ensemble, best, shared, start", [
    (0.93, 0.92, 0.53, "enough mistakes differ"),  # the stand-in: a point above
    (0.646, 0.649, 0.80, "their mistakes overlap too much"),  # FER2013
    (0.60, 0.61, 0.40, "most of its mistakes are its own"),
])
def test_chapter_7_says_why_averaging_did_or_did_not_help(ensemble, best, shared, start):
    assert run_claim("07_beyond", "level = prose.LEVEL", "averaging", through="averaging = (",
                     together={"accuracy": ensemble}, best=best, shared=shared).startswith(start)


@pytest.mark.parametrize("confidence, accuracy, temperature, words", [
    (0.74, 0.61, 1.6, ("over-confident", "softens")),  # FER2013-like, report recipe
    (0.55, 0.65, 0.7, ("under-confident", "sharpens")),  # label smoothing
    (0.905, 0.90, 1.01, ("about as confident as it is accurate", "softens")),  # the stand-in
    (0.6501, 0.6599, 0.94, ("under-confident", "sharpens")),  # FER2013, augmented: printed 0.650 and 0.660
    (0.6504, 0.6594, 0.94, ("about as confident as it is accurate", "sharpens")),  # printed 0.650 and 0.659
])
def test_chapter_8_says_whether_a_network_is_over_or_under_confident(confidence, accuracy, temperature, words):
    before = pd.DataFrame({"mean confidence": [confidence], "accuracy": [accuracy]}, index=["report"])
    after = pd.DataFrame({"temperature": [temperature]}, index=["report"])
    namespace = {"before": before, "after": after}
    exec(claim_code("08_quality", "close = 0.01", "def temperature_words"), namespace)
    assert (namespace["confidence_words"]("report"), namespace["temperature_words"]("report")) == words


@pytest.mark.parametrize("ece_after, words", [(0.0324, "raises ECE to"), (0.0204, "lowers ECE to"),
                                              (0.0284, "leaves ECE at")])  # FER2013's augmented run: 0.028 to 0.032
def test_chapter_8_says_which_way_temperature_scaling_moves_a_metric_as_printed(ece_after, words):
    before = pd.DataFrame({"ECE": [0.0281]}, index=["augmented"])
    after = pd.DataFrame({"ECE": [ece_after]}, index=["augmented"])
    change_words = run_claim("08_quality", "def change_words", "change_words", through="def change_words",
                             before=before, after=after)
    assert change_words("augmented", "ECE") == words


@pytest.mark.parametrize("has_test, words", [(True, "measured on the test split"),
                                             (False, "half the validation split")])
def test_chapter_8_says_where_the_temperature_was_fitted_and_measured(has_test, words):
    clause = run_claim("08_quality", "calibration_clause = (", "calibration_clause", through="calibration_clause = (",
                       has_test=has_test)
    assert words in clause and not any(c.isdigit() for c in clause)


@pytest.mark.parametrize("on_carved, ours, explains, words", [
    (0.655, 0.635, "may explain part of", "on a carved split the original's figure sits nearer"),  # carving flatters 2
    (0.655, 0.650, "does not explain", "on a carved split the original's figure sits farther"),  # ours is there
    (0.640, 0.620, "does not explain", "the two footings differ by under a point"),  # FER2013: 0.3 points
])
def test_chapter_2_infers_whether_the_originals_footing_explains_the_difference(on_carved, ours, explains, words):
    inputs = dict(on_carved=on_carved, on_public=0.635, orig={"val_accuracy": 0.651}, last={"val_accuracy": ours})
    explained = run_claim("02_history", "flatter = 0.01", "footing_explains", through="likely_footing = (", **inputs)
    assert explained == explains
    assert run_claim("02_history", "flatter = 0.01", "likely_footing", through="likely_footing = (",
                     **inputs).startswith(words)


def test_chapter_7_names_the_augmentation_in_the_order_it_is_applied():
    from fer_utils import training

    recipe = training.TrainConfig(augmentation="shift,flip")
    words = run_claim("07_beyond", "phrases = {", "augmentation", through="augmentation =", training=training,
                      augmented=recipe)
    assert words == "mirrored left-right and shifted by up to 10% of the image"


@pytest.mark.parametrize("augmented, held, words", [
    (0.67, "test", "Yes"), (0.67, "val", "Perhaps"),  # 3.5 points over chapter 2's run, 1.9 over the original
    (0.656, "val", "Better than chapter 2's run, not clearly than the original"),  # FER2013: +2.1 and +0.5 points
    (0.645, "test", "Not clearly: the gain"), (0.645, "val", "Not clearly: the gain"),  # +1.0 within 1.3
    (0.625, "test", "Not clearly: the gain"), (0.495, "test", "No: it does worse"),  # the stand-in: -14 points
])
def test_chapter_7_answers_its_question_against_the_sampling_margin(augmented, held, words):
    data = type("Data", (), {"y": {held: np.zeros(3589)}})()  # the margin at 0.635 on 3,589 images: 1.6 points
    answer = run_claim("07_beyond", "p = held_acc", "clear_answer", through="clear_answer = (",
                       held_acc={"report": 0.635, "augmented": augmented}, data=data, held=held, orig=0.651,
                       paired_margin=0.013)  # FER2013: 1.3 points for the difference on the same images
    assert answer.startswith(words)


@pytest.mark.parametrize("words, sentence", [
    ({"report": "adds mass on the border", "simple": "adds mass on the border"}, "adds mass on the border for both"),
    ({"report": "adds mass on the border", "simple": "takes mass off the border"},
     "adds mass on the border for the report CNN and takes mass off the border for the simple CNN"),
])
def test_chapter_4_says_once_what_smoothgrad_does_to_both_models(words, sentence):
    assert run_claim("04_saliency", "same_move = ", "border_sentence", through="border_sentence = (",
                     border_words=words).startswith(sentence)


@pytest.mark.parametrize("beyond, copies", [(0.25, True), (0.60, False)])  # FER2013: 25% at 6 bits, chance 0.83
def test_chapter_8_says_whether_the_pairs_just_beyond_its_threshold_are_copies(beyond, copies):
    shares = np.array([0.14, 0.015, 0.14, 0.25, 0.17, 0.11, 0.175])
    assert run_claim("08_quality", "chance = 1 -", "copies_beyond", through="copies_beyond =", shares=shares,
                     beyond=beyond) == copies
