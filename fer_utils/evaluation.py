"""Predictions and the numbers that judge them: accuracy, per-class scores, confusion matrix."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.data import CLASSES, PROJECT_ROOT, scale

MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right: the directions `shift` moves a view
PREDICTIONS_DIR = PROJECT_ROOT / ".cache" / "predictions"  # each view's probabilities, by model and input content


def model_digest(model) -> str | None:
    """A digest of all that decides a Keras model's outputs (its layers' kinds and settings, its weights); None
    for anything that is not a Keras model."""
    from keras import Model

    if not isinstance(model, Model):
        return None
    digest = hashlib.sha256()
    for layer in model.layers:
        settings = {k: v for k, v in layer.get_config().items() if k != "name"}
        digest.update(f"{type(layer).__name__}{json.dumps(settings, sort_keys=True, default=str)}".encode())
    for weights in model.get_weights():
        digest.update(f"{weights.dtype}{weights.shape}".encode() + np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def predict_view(model, view: np.ndarray, batch_size: int, digest: str | None,
                 cache_dir: Path | None = PREDICTIONS_DIR) -> np.ndarray:
    """`model.predict` of one view, kept under `cache_dir` by the model's `digest` and the view's bytes, so that
    rerunning a chapter does not predict again; no digest or no `cache_dir` predicts without keeping."""
    if digest is None or cache_dir is None:
        return model.predict(view, batch_size=batch_size, verbose=0)
    view = np.ascontiguousarray(view)
    key = hashlib.sha256(f"{digest}{batch_size}{view.dtype}{view.shape}".encode() + view.tobytes()).hexdigest()
    path = Path(cache_dir) / f"{key[:32]}.npy"
    if path.exists():
        return np.load(path)
    probs = model.predict(view, batch_size=batch_size, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
    np.save(partial, probs)
    os.replace(partial, path)  # a stop mid-write leaves no half-written file under the key
    return probs


def view_probabilities(model, x: np.ndarray, tta: bool = False, shift: int = 0, batch_size: int = 512,
                       cache_dir: Path | None = PREDICTIONS_DIR) -> list[np.ndarray]:
    """Class probabilities (N, 7) of uint8 images, one array per view: the image, its mirror (`tta`), then each
    of those moved `shift` pixels up, down, left and right (5 views, or 10 with `tta`); see `predict_view`."""
    views = [scale(x)]
    if tta:
        views.append(views[0][:, :, ::-1])
    if shift:
        views += [shifted(view, dy * shift, dx * shift) for view in views for dy, dx in MOVES]
    digest = model_digest(model) if cache_dir is not None else None
    return [predict_view(model, view, batch_size, digest, cache_dir) for view in views]


def predict(model, x: np.ndarray, tta: bool = False, shift: int = 0, batch_size: int = 512) -> np.ndarray:
    """Class probabilities (N, 7) for uint8 images, averaged over the views `view_probabilities` makes."""
    return np.asarray(np.mean(view_probabilities(model, x, tta, shift, batch_size), axis=0), dtype=np.float64)


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(N, H, W, C) images moved `dy` pixels down and `dx` right, the uncovered border repeating the edge pixels."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    height, width = images.shape[1:3]
    return padded[:, pad - dy:pad - dy + height, pad - dx:pad - dx + width]


@dataclass
class Evaluation:
    """Scores of predicted labels against true labels over the seven classes."""

    y_true: np.ndarray
    y_pred: np.ndarray

    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.y_true)

    @property
    def accuracy(self) -> float:
        """Share of examples predicted right."""
        return float(np.mean(self.y_true == self.y_pred)) if self.n else float("nan")

    @property
    def confusion(self) -> pd.DataFrame:
        """Counts: rows are true classes, columns predicted classes."""
        counts = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
        np.add.at(counts, (self.y_true, self.y_pred), 1)
        index = pd.Index(CLASSES, name="true")
        return pd.DataFrame(counts, index=index, columns=pd.Index(CLASSES, name="predicted"))

    @property
    def confusion_normalized(self) -> pd.DataFrame:
        """Confusion matrix with each true-class row summing to 1 (rows with no examples stay 0)."""
        counts = self.confusion
        return counts.div(counts.sum(axis=1).replace(0, 1), axis=0)

    @property
    def per_class(self) -> pd.DataFrame:
        """Precision, recall, F1 and support per class."""
        counts = self.confusion.to_numpy().astype(float)
        tp = np.diag(counts)
        precision = np.divide(tp, counts.sum(axis=0), out=np.zeros_like(tp), where=counts.sum(axis=0) > 0)
        recall = np.divide(tp, counts.sum(axis=1), out=np.zeros_like(tp), where=counts.sum(axis=1) > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        return pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                             "support": counts.sum(axis=1).astype(int)}, index=pd.Index(CLASSES, name="class"))

    @property
    def macro_f1(self) -> float:
        """Unweighted mean of the per-class F1 over classes present in the true labels."""
        table = self.per_class
        return float(table.loc[table["support"] > 0, "f1"].mean())

    def summary(self) -> dict:
        """The headline numbers as plain Python values (for JSON)."""
        return {"n": self.n, "accuracy": self.accuracy, "macro_f1": self.macro_f1,
                "recall": {c: float(r) for c, r in self.per_class["recall"].items()}}


def evaluate(model, x: np.ndarray, y: np.ndarray, tta: bool = False, shift: int = 0) -> Evaluation:
    """Predict `x` with `model` (over the views `predict` takes) and score the predictions against `y`."""
    return Evaluation(np.asarray(y), predict(model, x, tta=tta, shift=shift).argmax(axis=1))


def evaluate_views(model, x: np.ndarray, y: np.ndarray) -> dict[str, Evaluation]:
    """Scores of one view, the mirrored pair ("flip") and all ten views, from one prediction of each view."""
    probs, y = view_probabilities(model, x, tta=True, shift=1), np.asarray(y)
    return {name: Evaluation(y, np.mean(probs[:n], axis=0).argmax(axis=1))
            for name, n in (("one", 1), ("flip", 2), ("ten", len(probs)))}


def ensemble(probabilities: list[np.ndarray], y: np.ndarray) -> dict:
    """What averaging models' probabilities gives: their mean pairwise agreement, shared mistakes, the mean's scores."""
    y = np.asarray(y)
    labels = [np.asarray(p).argmax(axis=1) for p in probabilities]
    pairs = [np.mean(a == b) for i, a in enumerate(labels) for b in labels[i + 1:]]
    mean = Evaluation(y, np.mean(probabilities, axis=0).argmax(axis=1))
    return {"models": len(labels), "agreement": float(np.mean(pairs)) if pairs else 1.0,
            "all_wrong": float(np.mean(np.all([label != y for label in labels], axis=0))),
            "accuracy": mean.accuracy, "macro_f1": mean.macro_f1}


def compare_runs(runs: dict, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """One row per named run: accuracy (plain, with flip TTA, over 10 views), macro-F1, epochs, wall time, device."""
    rows = {}
    for name, run in runs.items():
        plain, flipped, ten = evaluate_views(run.model, x, y).values()
        rows[name] = {"accuracy": plain.accuracy, "accuracy (flip TTA)": flipped.accuracy,
                      "accuracy (10 views)": ten.accuracy, "macro-F1": plain.macro_f1,
                      "macro-F1 (10 views)": ten.macro_f1,
                      "epochs": run.meta["epochs_run"], "best epoch": run.meta["best_epoch"],
                      "minutes": run.meta["seconds"] / 60, "device": run.meta["device"]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("recipe")
