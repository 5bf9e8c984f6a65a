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

from fer_utils import prose
from fer_utils.data import CLASSES

BOOK = Path(__file__).resolve().parent.parent / "book"


def claim_code(page: str, first: str, last: str | None = None) -> str:
    """The lines of `page`'s code from the one starting with `first` to the one starting with `last` (or just it)."""
    for cell in nbformat.read(BOOK / f"{page}.ipynb", as_version=4).cells:
        lines = cell.source.splitlines() if cell.cell_type == "code" else []
        starts = [i for i, line in enumerate(lines) if line.startswith(first)]
        if starts:
            end = next(i for i in range(starts[0], len(lines)) if lines[i].startswith(last or first))
            if last:  # a block: its last statement's indented lines too
                end = next((i - 1 for i in range(end + 1, len(lines)) if not lines[i].startswith(" ")), len(lines) - 1)
            return textwrap.dedent("\n".join(lines[starts[0]:end + 1]))
    raise AssertionError(f"{page}: no code line starts with {first!r}")


def run_claim(page: str, first: str, name: str, last: str | None = None, **inputs):
    """Run the claim's code with `inputs` and return the variable `name` it sets."""
    namespace = {"prose": prose, "CLASSES": CLASSES, "np": np, "pd": pd, **inputs}
    exec(claim_code(page, first, last), namespace)
    return namespace[name]


@pytest.mark.parametrize("most_spread, words", [("fear", "agrees with"), ("happy", "does not bear out")])
def test_chapter_3_says_whether_fear_varies_most_as_the_original_found(most_spread, words):
    spread = pd.Series(0.9, index=list(CLASSES))
    spread[most_spread] = 1.3
    assert run_claim("03_confusion", "fear_verdict =", "fear_verdict", spread=spread) == words


@pytest.mark.parametrize("leaders, words", [
    (["mouth"] * 7, "the mouth for all 7 of them"),
    (["mouth"] * 4 + ["eyes"] * 2 + ["nose"], "not the same for all of them: the mouth for 4, the eyes for 2 and the "
                                              "nose for 1"),
])
def test_chapter_4_says_whether_one_feature_leads_every_expression(leaders, words):
    top = {"report": pd.Series(leaders, index=list(CLASSES))}
    assert run_claim("04_saliency", "favoured = ", "favoured_words", last="else:", top=top) == words


@pytest.mark.parametrize("r, words", [(0.02, "does not bear out"), (-0.05, "does not bear out"),
                                      (0.35, "is consistent with")])
def test_chapter_4_weighs_the_originals_brightness_guess_at_its_threshold(r, words):
    assert run_claim("04_saliency", "bright_verdict =", "bright_verdict", bright={"report": r}, faint=0.1) == words


@pytest.mark.parametrize("moved, words", [(0.007, "barely move"), (0.08, "move")])
def test_chapter_7_says_whether_standardising_moves_the_shares(moved, words):
    assert run_claim("07_beyond", "std_moved_words =", "std_moved_words", moved=moved, little=0.05) == words
