"""The shipped runs' PublicTest scores and calibration, printed as the Markdown tables of fer_utils/runs/MODEL_CARD.md.

    python -m benchmarks.model_card --data data/fer2013.csv

`--data` is FER2013 with at least Training and PublicTest, in any form `fer_utils.data` reads. Each shipped run
predicts PublicTest with `fer_utils.evaluation.predict`, once with one view and once averaged over ten views (the
image and its mirror, each also moved one pixel four ways: `evaluate --tta --shift 1`), and the script prints
four tables: how each run was made (from its meta.json), accuracy and macro-F1 (checked against the scores its
meta.json records), per-class recall, and calibration: accuracy against mean top-class confidence, the expected
calibration error over `quality.ECE_BINS` (15) equal-width confidence bins, and the negative log-likelihood.
Only aggregate numbers are printed; predictions are kept in `.cache/predictions/` as the book keeps them.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pandas as pd

from benchmarks import data_parser
from fer_utils import data as fer_data
from fer_utils import evaluation, quality, shipped

VIEWS = {"one view": {}, "ten views": {"tta": True, "shift": 1}}
META_KEYS = {("accuracy", "one view"): "accuracy", ("macro_f1", "one view"): "macro_f1",
             ("accuracy", "ten views"): "accuracy_10_views", ("macro_f1", "ten views"): "macro_f1_10_views"}


def calibration(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy of the top class, its mean confidence, the ECE over `quality.ECE_BINS` bins and the mean NLL."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    return {"accuracy": float(np.mean(probs.argmax(axis=1) == y)), "mean_confidence": float(probs.max(axis=1).mean()),
            "ece": quality.ece(probs, y, quality.ECE_BINS), "nll": quality.nll(probs, y)}


def scores(probs: np.ndarray, y: np.ndarray) -> dict:
    """Accuracy, macro-F1, per-class recall and images per class of the top class, then `calibration`."""
    ev = evaluation.Evaluation(np.asarray(y), np.asarray(probs).argmax(axis=1))
    return {**ev.summary(), "support": {c: int(n) for c, n in ev.per_class["support"].items()},
            **calibration(probs, y)}


def disagreements(results: dict[str, dict[str, dict]], metas: dict[str, dict], tolerance: float = 5e-4) -> list[str]:
    """Where a measured accuracy or macro-F1 differs from the PublicTest score the run's meta.json records."""
    found = []
    for name, by_view in results.items():
        recorded = metas[name].get("publictest", {})
        for (score, view), key in META_KEYS.items():
            if key in recorded and not math.isclose(by_view[view][score], recorded[key], abs_tol=tolerance):
                found.append(f"{name}: {key} measured {by_view[view][score]:.4f}, meta.json says {recorded[key]:.4f}")
    return found


def tables(results: dict[str, dict[str, dict]], metas: dict[str, dict]) -> dict[str, str]:
    """The card's Markdown tables, by title, from `scores` per run and view and each run's meta.json."""
    made = pd.DataFrame([{"run": f"`{name}`", "network": f"{meta.get('model', 'report')} CNN",
                          "recipe": meta_recipe(meta), "epochs": meta["epochs_run"],
                          "seed": meta["seed"], "command": f"`{meta['command']}`"} for name, meta in metas.items()])
    headline = pd.DataFrame([{"run": f"`{name}`", "images": by_view["one view"]["n"],
                              **{f"{score.replace('_', '-').replace('macro-f1', 'macro-F1')} ({view})":
                                 f"{by_view[view][score]:.3f}" for view in VIEWS for score in ("accuracy", "macro_f1")}}
                             for name, by_view in results.items()])
    first = next(iter(results.values()))["one view"]
    recall = pd.DataFrame({"class": list(first["recall"]), "images": [str(n) for n in first["support"].values()],
                           **{f"`{name}` ({view})": [f"{r:.3f}" for r in by_view[view]["recall"].values()]
                              for name, by_view in results.items() for view in VIEWS}})
    calib = pd.DataFrame([{"run": f"`{name}`", "views": view, "accuracy": f"{s['accuracy']:.3f}",
                           "mean confidence": f"{s['mean_confidence']:.3f}",
                           "confidence - accuracy": f"{s['mean_confidence'] - s['accuracy']:+.3f}",
                           f"ECE ({quality.ECE_BINS} bins)": f"{s['ece']:.3f}", "NLL": f"{s['nll']:.3f}"}
                          for name, by_view in results.items() for view, s in by_view.items()])
    return {"How each run was made": made.to_markdown(index=False),
            "PublicTest scores": headline.to_markdown(index=False, disable_numparse=True),
            "Per-class recall on PublicTest": recall.to_markdown(index=False, disable_numparse=True),
            "Calibration on PublicTest": calib.to_markdown(index=False, disable_numparse=True)}


def meta_recipe(meta: dict) -> str:
    """The recipe named on a run's command line (`--recipe NAME`), else 'report'."""
    words = meta["command"].split()
    return words[words.index("--recipe") + 1] if "--recipe" in words else "report"


def main() -> None:
    """Score every shipped run on PublicTest; print the card's tables, and stop if a score disagrees with meta.json."""
    args = data_parser("model_card", __doc__).parse_args()

    data = fer_data.load(args.data, verbose=False)
    if not shipped.is_official_release(data):
        raise SystemExit(f"{args.data} is not FER2013's official release (split sizes and class counts differ): "
                         "its 'val' split is not PublicTest, so these would not be the card's scores.")
    x, y = data.x["val"], data.y["val"]
    metas, results = {}, {}
    for name in shipped.names():
        run = shipped.load(name)
        metas[name] = run.meta
        results[name] = {view: scores(evaluation.predict(run.model, x, **options), y)
                         for view, options in VIEWS.items()}
        print(f"scored {name} on {len(y):,} PublicTest images", file=sys.stderr)
    for title, table in tables(results, metas).items():
        print(f"### {title}\n\n{table}\n")
    problems = disagreements(results, metas)
    if problems:
        raise SystemExit("Scores differ from meta.json:\n" + "\n".join(problems))


if __name__ == "__main__":
    main()
