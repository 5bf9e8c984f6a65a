"""The trained FER2013 runs that ship with the package, and when the book may show them instead of training."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from fer_utils.data import CLASSES, FerData
from fer_utils.training import Run, TrainConfig, load_run

SHIPPED_DIR = Path(__file__).resolve().parent / "runs"
# FER2013's official release, in every form (Kaggle CSV, gzipped or not, image folders): Training's images per
# class in CLASSES order, and the size of PublicTest and of PrivateTest (which a copy may leave out).
OFFICIAL_TRAINING = (3995, 436, 4097, 7215, 4830, 3171, 4965)
OFFICIAL_HELD_OUT = 3589
RETRAIN = "FER_RETRAIN"  # set to 1 to train instead of using a shipped run


def is_official_release(data: FerData) -> bool:
    """Whether `data` splits as FER2013's official release: Training's class counts, PublicTest, PrivateTest or none."""
    counts = tuple(int(c) for c in np.bincount(data.y["train"], minlength=len(CLASSES)))
    return (data.source in ("kaggle-csv", "image-folder") and counts == OFFICIAL_TRAINING
            and len(data.y["val"]) == OFFICIAL_HELD_OUT and len(data.y["test"]) in (0, OFFICIAL_HELD_OUT))


def names() -> list[str]:
    """The shipped runs, by name."""
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "meta.json").exists()) if SHIPPED_DIR.is_dir() else []


def meta(name: str) -> dict:
    """A shipped run's metadata, without loading its weights."""
    return json.loads((SHIPPED_DIR / name / "meta.json").read_text())


def load(name: str) -> Run:
    """A shipped run by name ('report', 'augmented')."""
    if name not in names():
        raise FileNotFoundError(f"no shipped run named {name!r}; shipped: {', '.join(names()) or 'none'}")
    return load_run(SHIPPED_DIR / name)


def find(data: FerData, model: str, config: TrainConfig, seed: int) -> str | None:
    """The shipped run that is exactly this training on this data, or None (always None with FER_RETRAIN=1)."""
    if os.environ.get(RETRAIN, "0") not in ("", "0") or not is_official_release(data):
        return None
    wanted = {"model": model, "config": dataclasses.asdict(config), "seed": seed}
    return next((name for name in names() if all(meta(name)[k] == v for k, v in wanted.items())), None)


def is_shipped(run: Run) -> bool:
    """Whether `run` was loaded from the package's shipped runs."""
    return run.path is not None and Path(run.path).resolve().parent == SHIPPED_DIR


def ship(run: Run, name: str, data: FerData, extra: dict | None = None) -> Path:
    """Copy a finished FER2013 run into the package as `name`, with its PublicTest scores (and `extra`) in the
    metadata."""
    from fer_utils.evaluation import evaluate_views
    from fer_utils.training import save_run

    if not is_official_release(data):
        raise ValueError(f"{data.path or data.source}: not FER2013's official release; only its runs ship")
    views = evaluate_views(run.model, data.x["val"], data.y["val"])
    scores = {"accuracy": views["one"].accuracy, "macro_f1": views["one"].macro_f1,
              "accuracy_10_views": views["ten"].accuracy, "macro_f1_10_views": views["ten"].macro_f1}
    target = SHIPPED_DIR / name
    save_run(Run(run.model, run.history, {**run.meta, "publictest": scores, **(extra or {})}), target)
    return target
