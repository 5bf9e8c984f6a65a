"""What every chapter shares: its data and runs, where they came from, and glue that JupyterLab shows too.

A chapter starts with two cells: `data, runs = chapter.load(report=chapter.REPORT)` (removed from the page; in
JupyterLab it shows what was loaded or trained) and `chapter.notes(data, runs)` (its output, the stand-in warning
and which runs the page shows, is on the page). Its other cells compute what the next paragraph quotes and end in
`chapter.glue_values(...)` (the prose's numbers, a table in JupyterLab) or `chapter.glue_table(...)` (a table
that a `{table}` directive in the Markdown numbers).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fer_utils import book
from fer_utils.data import FerData

STAND_IN_NOTE = ("**Warning: the synthetic stand-in.** This page ran on procedurally drawn faces, not on FER2013, "
                 "so its numbers describe the stand-in; the [introduction](intro.ipynb) says how to build it on the "
                 "real data.")
INJECTED_NOTE = ("**This chapter's copy of the stand-in has flaws of its own.** Exact and near copies of training "
                 "images (every third one relabelled) and blank images were injected into it "
                 "(`fer_utils.quality.INJECTED`), so that the checks have something to find. Besides the injected "
                 "copies, its near pairs include different drawn faces that share the stand-in's one template.")
SPLIT_WORDS = {"test": "test", "val": "validation"}
SOURCE_WORDS = {"kaggle-csv": "the Kaggle CSV", "image-folder": "the image folders"}  # FerData.source in words
REPORT = ("report", book.RECIPE)  # the report CNN as chapters 2 to 5 show it: load(report=REPORT)
SIMPLE = ("simple", "augmented")  # the simple CNN as chapter 4 shows it: load(simple=SIMPLE)


def load(**runs: tuple[str, str]) -> tuple[FerData, dict]:
    """The book's data and the named runs ({label: (model, recipe)}): shipped, cached, or trained now."""
    data = book.book_data(verbose=False)
    return data, {label: book.book_run(data, model, recipe) for label, (model, recipe) in runs.items()}


def notes(data: FerData, runs: dict, injected: bool = False):
    """Where the page's data and runs come from, as Markdown that JupyterLab and the book render alike; None when
    there is nothing to say (real data, no runs), so that the cell shows nothing. `injected`: the page's copy of
    the data has flaws added (chapter 8's stand-in)."""
    from IPython.display import Markdown

    lines = [STAND_IN_NOTE] if data.is_synthetic else []
    lines += [INJECTED_NOTE] if injected else []
    lines += [f"**{run.meta['model'].capitalize()} CNN, {book.recipe_name(run.meta['config'])} recipe.** "
              f"{book.provenance(run)}" for run in runs.values()]
    return Markdown("\n\n".join(f"> {line}" for line in lines)) if lines else None  # None: no output at all


def data_name(data: FerData) -> str:
    """'the synthetic stand-in' or 'FER2013 (the Kaggle CSV)': the data and the form it came in."""
    return "the synthetic stand-in" if data.is_synthetic else f"FER2013 ({SOURCE_WORDS.get(data.source, data.source)})"


def glue_values(**values) -> pd.DataFrame:
    """Glue each value for the prose, hidden, and return them as a table that JupyterLab shows. NumPy scalars are
    glued as Python numbers: their repr, `np.float64(0.62)`, is not a number that a `{glue:text}` format can read."""
    from myst_nb import glue

    values = {key: value.item() if isinstance(value, np.generic) else value for key, value in values.items()}
    for key, value in values.items():
        glue(key, value, display=False)
    return pd.DataFrame({"value": {key: getattr(value, "data", value) for key, value in values.items()}})


def glue_table(name: str, frame: pd.DataFrame, index: bool = True, **formats) -> pd.DataFrame:
    """Glue `frame` as a Markdown table for the page's `{table}` directive (tabulate `formats`); return it."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(frame.astype(object).to_markdown(index=index, **formats)), display=False)
    return frame
