"""The few words of the book that change with its numbers, each chosen by a small pure function.

The chapters' sentences live in their Markdown cells; where a word or a clause must follow the data (which way a
comparison goes, whether a curve still rises), a function here picks it from the numbers the chapter glues beside
it. Each returns a label or at most a clause, never a sentence that states a number, and tests/test_prose.py
exercises every branch with FER2013-like values and the stand-in's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

# Prototype facial actions of each expression, as FACS action units (AU numbers and names: Ekman & Friesen 1978;
# the prototypes: Ekman, Friesen & Hager 2002). Neutral is the face at rest. The book reads them as a hypothesis
# about which expressions look alike, not as a fact about its data.
ACTION_UNITS = {
    "angry": (4, 5, 7, 23),
    "disgust": (9, 15, 16),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "happy": (6, 12),
    "sad": (1, 4, 15),
    "surprise": (1, 2, 5, 26),
    "neutral": (),
}
AU_NAMES = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser", 6: "cheek raiser",
    7: "lid tightener", 9: "nose wrinkler", 12: "lip corner puller", 15: "lip corner depressor",
    16: "lower lip depressor", 20: "lip stretcher", 23: "lip tightener", 26: "jaw drop",
}
# The face region (fer_utils.explain.REGIONS) where each action unit shows.
AU_REGION = {1: "brows", 2: "brows", 4: "brows", 5: "eyes", 6: "eyes", 7: "eyes", 9: "nose", 12: "mouth",
             15: "mouth", 16: "mouth", 20: "mouth", 23: "mouth", 26: "mouth"}
ORDINALS = ("", "second", "third")


def join(items: Iterable[str], empty: str = "none") -> str:
    """'a', 'a and b', 'a, b and c'; `empty` when there are none."""
    items = [str(i) for i in items]
    if not items:
        return empty
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def compare(value: float, reference: float, tolerance: float = 0.005) -> str:
    """'above', 'below' or 'level with' `reference`, level when within `tolerance`."""
    if abs(value - reference) <= tolerance:
        return "level with"
    return "above" if value > reference else "below"


def how_often(value: float, reference: float, tolerance: float = 0.005) -> str:
    """'more often than', 'less often than' or 'about as often as': a rate against a reference rate."""
    return {"above": "more often than", "below": "less often than", "level with": "about as often as"}[
        compare(value, reference, tolerance)]


def rank(position: int, direction: str = "lowest") -> str:
    """'the lowest', 'the second lowest', 'the 4th lowest' for position 1, 2, 4 (1 is the extreme)."""
    if position < 1:
        raise ValueError(f"a rank starts at 1, got {position}")
    word = ORDINALS[position - 1] if position <= len(ORDINALS) else f"{position}th"
    return " ".join(w for w in ("the", word, direction) if w)


def ratio(value: float) -> str:
    """How a share compares with what a uniform spread would give (value = share / area share), judged on the value
    rounded to two decimals, as the pages print it."""
    value = round(value, 2)
    if value >= 1.4:
        return "well above"
    if value >= 1.1:
        return "a little above"
    if value > 0.9:
        return "about"
    return "below"


def brightness(r: float) -> str:
    """What saliency maps do with the light, given their mean correlation `r` with the images' grey levels."""
    if r >= 0.5:
        return "follow the image's brightness strongly"
    if r >= 0.3:
        return "follow the image's brightness moderately"
    if r >= 0.1:
        return "follow the image's brightness weakly"
    if r > -0.1:
        return "hardly follow the image's brightness"
    return "lean away from the bright pixels"


def loss_trend(epochs: int, lowest_epoch: int, last_train_loss: float, train_loss_then: float) -> str:
    """What validation loss did after its lowest epoch, as a clause (epochs count from 1; lowest_epoch <= epochs)."""
    left = epochs - lowest_epoch
    if left == 0:
        return "it was still falling in the last epoch, so more epochs could still help"
    if left <= 2:
        span = "in the last epoch" if left == 1 else "over the last two epochs"
        return f"it rose only {span}, too few to tell noise from the start of overfitting"
    if last_train_loss < train_loss_then:
        return ("it rose afterwards while the training loss kept falling: the model fitted the training images "
                "better without generalising better, the start of overfitting")
    return "it rose afterwards, and the training loss fell no further: the last epochs bought nothing"


def still_rising(peak_epoch: int, epochs: int) -> str:
    """'was still improving at its end' when the peak is in the last two epochs, else 'had levelled off'."""
    return "was still improving at its end" if peak_epoch >= epochs - 1 else "had levelled off before its end"


def original_finding(lowest: Sequence[str], mistaken_for: Mapping[str, str]) -> str:
    """How this build's two lowest-recall classes and their commonest wrong answers compare with the original
    report's finding (fear and angry misjudged most, most often as sad)."""
    found = set(lowest[:2])
    if found == {"fear", "angry"}:
        if all(mistaken_for[c] == "sad" for c in found):
            return "the original report's finding exactly"
        return "the original report's two classes, though not both taken mostly for sad"
    if found & {"fear", "angry"}:
        return "one of the original report's two classes"
    return "other classes than the original report's"


def shared_actions(a: str, b: str) -> str:
    """The prototype action units two expressions share, in words ('brow lowerer (AU 4)'), or 'no action unit'."""
    shared = sorted(set(ACTION_UNITS[a]) & set(ACTION_UNITS[b]))
    return join((f"{AU_NAMES[au]} (AU {au})" for au in shared), empty="no action unit")


def action_regions(expression: str) -> tuple[str, ...]:
    """The face regions where an expression's prototype action units show, in REGIONS order."""
    regions = {AU_REGION[au] for au in ACTION_UNITS[expression]}
    return tuple(r for r in ("brows", "eyes", "nose", "mouth") if r in regions)


def mistakes_and_focus(gaps: Sequence[float]) -> str:
    """What the gap in feature share between right and wrong predictions (right minus wrong, per model) says."""
    if not gaps:
        return "too few mistakes in this sample to compare"
    if max(abs(g) for g in gaps) < 0.03:
        return ("about as much when wrong as when right: the mistakes are not a matter of looking elsewhere but of "
                "reading the same features as another expression")
    if all(g > 0 for g in gaps):
        return "less when wrong: mistakes come with attention drifting off the features"
    if all(g < 0 for g in gaps):
        return "more when wrong: mistakes are not a matter of looking elsewhere"
    return "in opposite directions for the two models, so no single pattern links mistakes to where they look"


def alike(correlation_same: float, correlation_other: float, margin: float = 0.1) -> str:
    """Whether paired maps are 'clearly more alike than' or 'hardly more alike than' maps of different images."""
    return "clearly more alike than" if correlation_same > correlation_other + margin else "hardly more alike than"


def border_shift(moves: Sequence[float], tolerance: float = 0.02) -> str:
    """What SmoothGrad does to the border's share of the mass, given its change for each model."""
    if all(m < -tolerance for m in moves):
        return "moves mass off the border"
    if all(m > tolerance for m in moves):
        return "spreads mass onto the border"
    return "leaves the border's share about where it was"


def rises(values: Sequence[float]) -> str:
    """'rises at every stage' when the values increase strictly, else 'does not rise at every stage'."""
    steady = all(a < b for a, b in zip(values, values[1:]))
    return "rises at every stage" if steady else "does not rise at every stage"


def averaging(ensemble: float, best: float, shared: float, tolerance: float = 0.005) -> str:
    """What averaging two networks did, given its accuracy, the better network's and the share of shared mistakes."""
    if ensemble > best + tolerance:
        return ("averaging helped: enough of the mistakes differ between the two networks for their average to "
                "correct some")
    if shared >= 0.5:
        return "averaging did not help: most of the better network's mistakes are the other's too"
    return "averaging did not help, although most of the better network's mistakes are its own"


# --- chapter 8: data quality and calibration ---------------------------------------------------------------------


def confidence_word(mean_confidence: float, accuracy: float, tolerance: float = 0.01) -> str:
    """'over-confident', 'under-confident' or 'about as confident as it is accurate' (within `tolerance`)."""
    gap = mean_confidence - accuracy
    if abs(gap) < tolerance:
        return "about as confident as it is accurate"
    return "over-confident" if gap > 0 else "under-confident"


def temperature_word(temperature: float) -> str:
    """What a fitted temperature does to the probabilities: 'softens', 'sharpens' or 'barely changes'."""
    if abs(temperature - 1) < 0.005:
        return "barely changes"
    return "softens" if temperature > 1 else "sharpens"


def calibration_where(has_test: bool) -> str:
    """Where a temperature was fitted and where it was measured, as a clause."""
    if has_test:
        return "fitted on the validation split (PublicTest on FER2013) and measured on the test split (PrivateTest)"
    return ("fitted on a stratified half of the validation split (the book's seed) and measured on the other half, "
            "since this data has no test split")


def injected_note(injected: Mapping[str, int]) -> str:
    """Chapter 8's note on the flaws injected into its copy of the stand-in (Markdown), or '' when none were."""
    if not injected:
        return ""
    return ("> **This chapter's copy of the stand-in has flaws of its own.** Exact and near copies of training images "
            "(every third one relabelled) and blank images were injected into it (`fer_utils.quality.INJECTED`), so "
            "that the checks have something to find. Besides the injected copies, its near pairs include different "
            "drawn faces that share the stand-in's one template.")
