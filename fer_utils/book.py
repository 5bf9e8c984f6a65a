"""The book's settings in one place: which data, which recipe and how many epochs each chapter's runs use.

Every chapter calls `book_data()` and `book_run(...)`. On FER2013's official release the book shows the runs
that ship with the package (`fer_utils.shipped`); otherwise the training cache makes the second chapter that
asks for a run load it instead of training again. Budget knobs (environment variables):

- `FER_DATA`: the FER2013 file or folder (see data/README.md); unset means data/ or the synthetic stand-in.
- `FER_EPOCHS`: override the number of epochs of every run the book trains.
- `FER_SEED`: the one seed (default 0).
- `FER_RETRAIN`: 1 trains every run instead of using the shipped ones.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from fer_utils import data as fer_data
from fer_utils import prose, shipped, training

# Epochs per (model, recipe): real FER2013 first, then the synthetic stand-in (sized to build in minutes).
EPOCHS = {
    ("report", "augmented"): (130, 6),
    ("report", "report"): (200, 12),
    ("simple", "augmented"): (24, 5),  # its validation accuracy levels off within 24 (benchmarks/RESULTS.md)
}
RECIPE = "report"  # chapters 2-5 answer the assignment with its own recipe; chapter 7 compares the other


def seed() -> int:
    """The book's seed: $FER_SEED or 0."""
    return int(os.environ.get("FER_SEED", "0"))


def book_data(verbose: bool = True) -> fer_data.FerData:
    """The data this build uses, found as `fer_utils.data.load` documents."""
    return fer_data.load(seed=seed(), verbose=verbose)


def book_config(data: fer_data.FerData, model: str = "report", recipe: str = "report") -> training.TrainConfig:
    """The training configuration the book uses for `model` with `recipe` on `data`."""
    real, synthetic = EPOCHS[(model, recipe)]
    epochs = int(os.environ.get("FER_EPOCHS", synthetic if data.is_synthetic else real))
    config = training.RECIPES[recipe].replace(epochs=epochs)
    return config


def book_run(data: fer_data.FerData, model: str = "report", recipe: str = RECIPE) -> training.Run:
    """The run the book shows for `model` and `recipe`: shipped, cached, or trained now (and cached)."""
    config = book_config(data, model, recipe)
    name = shipped.find(data, model, config, seed())
    if name:
        return shipped.load(name)
    return training.train(model, data, config, seed=seed(), command=f"jb build book/ ({model} CNN, {recipe} recipe)")


def provenance(run: training.Run) -> str:
    """One line of Markdown saying which run a page shows, how and when it was trained, and how to retrain it."""
    def count(n: int, unit: str) -> str:
        return f"{n} {unit}" if n == 1 else f"{n} {unit}s"

    meta = run.meta
    how = (f"the *{recipe_name(meta['config'])}* recipe, {count(meta['epochs_run'], 'epoch')}, seed {meta['seed']}, "
           f"{meta['dtype_policy']}, {count(round(meta['seconds'] / 60), 'minute')} on {meta['device']}")
    if shipped.is_shipped(run):
        resumed = f", resumed after {prose.epochs(meta['resumed_at'])}" if meta["resumed_at"] else ""
        if meta.get("continued"):
            legs = [leg["after_epoch"] for leg in meta["continued"]]
            whose = "those epochs'" if len(legs) > 1 else "that epoch's"
            resumed += f", continued after {prose.epochs(legs)} from {whose} weights with fresh optimizer moments"
        return (f"This page shows the shipped run `{Path(run.path).name}` ({how}{resumed}; finished "
                f"{meta['finished']} at commit `{(meta['commit'] or 'unknown')[:12]}`). "
                f"`{shipped.RETRAIN}=1 jb build book/` trains it again instead.")
    where = f"`.cache/runs/{Path(run.path).name}`" if run.path else "memory"
    return f"This page shows a run trained by this build ({how}), kept in {where}."


def recipe_name(config: dict) -> str:
    """The name of the recipe `config` is, epochs aside ('report', 'augmented'), or 'custom'."""
    for name, recipe in training.RECIPES.items():
        if {**config, "epochs": recipe.epochs} == dataclasses.asdict(recipe):
            return name
    return "custom"
