"""Chapter 6 proves its derivations in its own cells (SymPy `assert`s, TensorFlow comparisons). These tests check what
the built book glued against values computed here independently, and that a wrong hand-derived formula in a copy of
the chapter makes its execution fail, as it fails the book build."""

from __future__ import annotations

import itertools
from pathlib import Path

import nbformat
import pytest
from conftest import executed_notebook, glued

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "06_math.ipynb"

# One hand-derived formula per problem, as the chapter writes it, and a wrong version of it.
WRONG_FORMULAS = {
    "conv output length": ("W_out = sp.floor((W + 2 * p - k) / s) + 1", "W_out = sp.floor((W + p - k) / s) + 1"),
    "batch-norm dl/dsigma^2": ("d_var = -sum(d * (xj - mu)", "d_var = -sum(2 * d * (xj - mu)"),
    "single softmax term": ("-y[t] * (1 - yhat[t])) for t", "y[t] * (1 - yhat[t])) for t"),
}


def positions(size: int, kernel: int, stride: int, pad: int) -> int:
    """Where a kernel can start along a padded axis, counted by sliding it (no formula)."""
    padded = size + 2 * pad
    return len(range(0, padded - kernel + 1, stride))


def test_chapter_holds_each_formula_the_wrong_versions_replace():
    source = "\n".join(cell.source for cell in nbformat.read(CHAPTER, as_version=4).cells if cell.cell_type == "code")
    for right, _ in WRONG_FORMULAS.values():
        assert source.count(right) == 1, right
    meta = nbformat.read(CHAPTER, as_version=4).metadata
    assert meta["fer"] == {"depends_on": ["code"]}


@pytest.mark.book
def test_glued_numbers_match_independent_counts(built_book):
    html, _ = built_book
    values = glued(executed_notebook(html.parent.parent, "06_math"))
    small = [c for c in itertools.product(range(1, 17), range(1, 6), range(1, 5), range(3)) if c[1] <= c[0] + 2 * c[3]]
    assert values["conv_counting"] == len(small)
    assert all(positions(*c) == (c[0] + 2 * c[3] - c[1]) // c[2] + 1 for c in small)
    assert values["conv_grid"] == 3**4 and values["conv_tf_diff"] == 0  # every size, kernel, stride and padding
    assert values["bn_m"] == 4 and values["bn_total"] == 4 + 1 + 1 + 4 + 4 + 1 + 1  # xhat, var, mu, x, compact, γ, β
    assert values["bn_tf_cases"] == 4 * 5 + 5 + 5 and values["bn_update_cases"] == 4 * 5
    assert values["classes"] == 7 and values["sm_tf_cases"] == 32 * 7
    diffs = [values[key] for key in ("bn_tf_diff", "bn_update_diff", "sm_tf_diff")]
    assert values["max_diff"] == max(diffs) and 0 <= values["max_diff"] < values["tol"] <= 1e-9
    assert values["n_symbolic"] == 1 + values["bn_local_total"] + values["bn_total"] + 7 * 7 + 3 * 7 + 1
    assert values["tbl-conv-grid"].count("|\n") >= 5  # a header, a rule and the four grid parameters


@pytest.mark.book
@pytest.mark.parametrize("name", sorted(WRONG_FORMULAS))
def test_a_wrong_formula_fails_the_chapter(name, tmp_path):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    right, wrong = WRONG_FORMULAS[name]
    nb = nbformat.read(CHAPTER, as_version=4)
    altered = [cell for cell in nb.cells if cell.cell_type == "code" and right in cell.source]
    assert len(altered) == 1, f"{name}: the chapter no longer holds {right!r}"
    altered[0].source = altered[0].source.replace(right, wrong)
    resources = {"metadata": {"path": str(CHAPTER.parent)}}
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources)
    with pytest.raises(CellExecutionError, match="AssertionError"):
        client.execute()
