"""What every chapter does first, and the numbers each chapter's prose quotes.

A chapter's first code cell is `ch = chapter.start(report=("report", "report"))`: it keeps TensorFlow's start-up
chatter out of the page, loads the book's data and the runs the chapter shows (`book.book_run`), and glues what
the chapters share: the data's name, the evaluation split, the seed, the device, and `run_notes`, the stand-in
warning (when the data is synthetic) followed by `book.provenance` of every run shown. A chapter shows them with

    ```{glue:md} run_notes
    :format: myst
    ```

The `*_facts` functions compute, per chapter, the values its prose quotes, as {glue key: value} dicts for
`Chapter.glue`; the words that change with those values come from `fer_utils.prose`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow loads: keep its start-up chatter out

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fer_utils import book, original, prose
from fer_utils.data import CLASSES, IMAGE_SIZE, FerData

STAND_IN = (":::{warning}\nThis chapter ran on the synthetic stand-in of procedurally drawn faces, not on FER2013: "
            "its numbers describe the stand-in. The {doc}`introduction <intro>` says how to build the book on the "
            "real data.\n:::")
INTRO_STAND_IN = """:::{{admonition}} This build used the synthetic stand-in, not FER2013
:class: warning
No FER2013 file was found, so every number and figure in this book comes from {n:,} procedurally drawn faces
made by `fer_utils.synthetic`. The pipeline is the real one; the results are not FER2013's, and the training
budgets are the stand-in's short ones.

**To build the real report**, put the Kaggle `fer2013.csv` (or `fer2013.csv.gz`, the course's `train.csv`, or
the Kaggle image folder) into `data/`, or point the `FER_DATA` environment variable at it, and run
`jb build book/` again. `data/README.md` lists the forms that are recognised.
:::"""
INTRO_REAL = """:::{{admonition}} This build used FER2013
:class: note
Read from `{path}` ({source}). {notes}
:::"""
SPLIT_WORDS = {"test": "test", "val": "validation"}


@dataclass
class Chapter:
    """A chapter's data and runs, and a way to glue values for its prose."""

    data: FerData
    runs: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """The book's seed."""
        return book.seed()

    @property
    def split(self) -> str:
        """The split chapters 3 to 5 score and explain: test when the data has one, else validation."""
        return self.data.held_out

    @property
    def x(self) -> np.ndarray:
        """The images of the evaluation split."""
        return self.data.x[self.split]

    @property
    def y(self) -> np.ndarray:
        """The labels of the evaluation split."""
        return self.data.y[self.split]

    def glue(self, values: dict | None = None, **more) -> None:
        """Glue every value for the prose, without displaying it; strings that hold MyST go in as Markdown."""
        from myst_nb import glue

        for key, value in {**(values or {}), **more}.items():
            glue(key, value, display=False)

    def table(self, frame: pd.DataFrame, caption: str, name: str, **formats) -> None:
        """Show `frame` as a numbered MyST table (`plots.table_markdown`) that {numref}`name` can cite."""
        from IPython.display import Markdown, display

        from fer_utils import plots

        display(Markdown(plots.table_markdown(frame, caption, name, **formats)))


def data_name(data: FerData) -> str:
    """'the synthetic stand-in' or 'FER2013 (its source format)'."""
    return "the synthetic stand-in" if data.is_synthetic else f"FER2013 ({data.source})"


def start(**runs: tuple[str, str]) -> Chapter:
    """Load the data and the named runs ({label: (model, recipe)}) and glue what every chapter shares."""
    from IPython.display import Markdown

    from fer_utils import training

    data = book.book_data(verbose=False)
    ch = Chapter(data, {label: book.book_run(data, model, recipe) for label, (model, recipe) in runs.items()})
    notes = ([STAND_IN] if data.is_synthetic else []) + [
        f"**{model.capitalize()} CNN, {recipe} recipe.** {book.provenance(ch.runs[label])}"
        for label, (model, recipe) in runs.items()]
    ch.glue(data_name=data_name(data), split=SPLIT_WORDS[ch.split], n_eval=int(len(ch.y)), seed=ch.seed,
            device=training.device_name(), run_notes=Markdown("\n\n".join(notes)))
    return ch


def notice(data: FerData) -> str:
    """The introduction's note on the data: how to build on FER2013 when it is the stand-in, else where it came from."""
    if data.is_synthetic:
        return INTRO_STAND_IN.format(n=sum(len(y) for y in data.y.values()))
    return INTRO_REAL.format(path=data.path, source=data.source, notes=" ".join(data.notes))


def intro_facts(data: FerData) -> dict:
    """The introduction's numbers: the data's size, source and balance, and how the book's report CNN is trained."""
    import tensorflow as tf
    from IPython.display import Markdown

    counts = data.counts()
    train = counts.drop("total")["train"]
    config = book.book_config(data, "report", book.RECIPE)
    return {
        "n_images": int(counts.loc["total"].sum()), "n_classes": len(CLASSES), "class_list": prose.join(CLASSES),
        "input_side": IMAGE_SIZE,
        **{f"n_{s}": int(counts.loc["total", s]) for s in ("train", "val", "test")},
        "data_source": data.source, "data_where": data.path or "generated in memory by fer_utils.synthetic",
        "fingerprint": data.fingerprint, "tf_version": tf.__version__, "recipe": book.RECIPE,
        "epochs": int(config.epochs), "rarest": train.idxmin(), "rarest_share": float(train.min() / train.sum()),
        "commonest": train.idxmax(), "commonest_share": float(train.max() / train.sum()),
        "notice": Markdown(notice(data)),
    }


# --- chapter 1 ---------------------------------------------------------------------------------------------------


def model_facts(model, table: pd.DataFrame) -> dict:
    """Chapter 1's numbers, read off `models.layer_table(model)`."""
    from fer_utils import models, training

    total, trainable = int(table["params"].sum()), int(table["trainable"].sum())
    if total != model.count_params():
        raise AssertionError("the layer table must account for every parameter")
    conv = table[table["type"] == "Conv2D"].set_index("layer")
    filters = [int(d.split(", ")[1].split()[0]) for d in conv["details"]]
    pools = table.loc[table["type"] == "MaxPooling2D", "output shape"]
    flatten = table.index[table["type"] == "Flatten"][0]
    dense = table["type"].eq("Dense") | table["layer"].str.startswith("dense")
    biggest = table.loc[table["params"].idxmax()]
    side = conv["details"].map(lambda d: int(d.split("×")[0]))
    big = side.idxmax()
    return {
        "total": total, "trainable": trainable, "non_trainable": total - trainable, "n_layers": len(table),
        "n_conv": len(conv), "n_dense": int((table["type"] == "Dense").sum()), "n_classes": len(CLASSES),
        "input_shape": table["output shape"].iloc[0], "flat": table.loc[flatten, "output shape"],
        "last_map": table.loc[flatten - 1, "output shape"],
        "filters": " → ".join(map(str, filters)), "sides": prose.join(s.split("×")[0] for s in pools),
        "big_kernel_layer": big, "big_kernel": conv.loc[big, "details"].split(",")[0],
        "big_kernel_share": float(conv.loc[big, "params"] / conv["params"].sum()),
        "first_conv": conv.index[0], "first_conv_share": float(conv["params"].iloc[0] / conv["params"].sum()),
        "last_conv": conv.index[-1], "last_conv_input": pools.iloc[-2].rsplit("×", 1)[0],
        "dense_share": float(table.loc[dense, "params"].sum() / total),
        "biggest": biggest["layer"], "biggest_params": int(biggest["params"]),
        "biggest_share": float(biggest["params"] / total),
        "learning_rate": float(training.REPORT.learning_rate), "dropout": float(models.DROPOUT),
    }
