"""Words without judgement that the chapters' sentences need: lists joined, comparisons named, ranks counted.

Where a chapter's words follow its numbers with a threshold (whether a curve still rises, whether maps follow the
light), the chapter decides them in its own cells and states the threshold in its prose; tests/test_claims.py runs
those cells on both outcomes. Nothing here decides a finding.
"""

from __future__ import annotations

from collections.abc import Iterable

ORDINALS = ("", "second", "third")
LEVEL = 0.005  # two shares (accuracies, rates) this close are "level": the book's one scale, stated in its introduction


def join(items: Iterable[str], empty: str = "none") -> str:
    """'a', 'a and b', 'a, b and c'; `empty` when there are none."""
    items = [str(i) for i in items]
    if not items:
        return empty
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def compare(value: float, reference: float, tolerance: float = LEVEL) -> str:
    """'above', 'below' or 'level with' `reference`, level when within `tolerance`."""
    if abs(value - reference) <= tolerance:
        return "level with"
    return "above" if value > reference else "below"


def how_often(value: float, reference: float, tolerance: float = LEVEL) -> str:
    """'more often than', 'less often than' or 'about as often as': a rate against a reference rate."""
    return {"above": "more often than", "below": "less often than", "level with": "about as often as"}[
        compare(value, reference, tolerance)]


def points(value: float, reference: float, decimals: int = 3) -> float:
    """`value` minus `reference` in percentage points, from the two as printed with `decimals` decimals."""
    return 100 * (round(float(value), decimals) - round(float(reference), decimals))


def epochs(numbers: Iterable[int]) -> str:
    """'epoch 106' or 'epochs 106 and 120': the epochs `numbers` names, with the noun's number to match."""
    numbers = [str(n) for n in numbers]
    return f"epoch{'s' if len(numbers) > 1 else ''} {join(numbers)}"


def rank(position: int, direction: str = "lowest") -> str:
    """'the lowest', 'the second lowest', 'the 4th lowest' for position 1, 2, 4 (1 is the extreme)."""
    if position < 1:
        raise ValueError(f"a rank starts at 1, got {position}")
    word = ORDINALS[position - 1] if position <= len(ORDINALS) else f"{position}th"
    return " ".join(w for w in ("the", word, direction) if w)
