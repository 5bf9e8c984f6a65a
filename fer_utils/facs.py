"""The Facial Action Coding System's prototype expressions: which action units each moves, and where on the face.

A data table, read by chapters 3 and 4 as a hypothesis about which expressions look alike, not as a fact about
the data.
"""

from __future__ import annotations

from fer_utils.prose import join

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


def shared_actions(a: str, b: str) -> str:
    """The prototype action units two expressions share, in words ('brow lowerer (AU 4)'), or 'no action unit'."""
    shared = sorted(set(ACTION_UNITS[a]) & set(ACTION_UNITS[b]))
    return join((f"{AU_NAMES[au]} (AU {au})" for au in shared), empty="no action unit")


def action_regions(expression: str) -> tuple[str, ...]:
    """The face regions where an expression's prototype action units show, in REGIONS order."""
    regions = {AU_REGION[au] for au in ACTION_UNITS[expression]}
    return tuple(r for r in ("brows", "eyes", "nose", "mouth") if r in regions)
