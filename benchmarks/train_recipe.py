"""Train one recipe on a FER2013 file and write its results as JSON.

    python benchmarks/train_recipe.py --data data/fer2013.csv --recipe augmented --out results/augmented.json
    python benchmarks/train_recipe.py --data data/fer2013.csv --recipe report --set epochs=30 --out results/report.json
    python benchmarks/train_recipe.py --data data/fer2013.csv --set distillation=0.5 --teacher teachers.npz --out d.json

With `--teacher` and `distillation` above 0, the run learns from the probabilities `teacher_targets.py` wrote.

The run goes through the training cache, so the book built on the same file reuses it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from fer_utils import data as fer_data
from fer_utils import evaluation, models, training


def parse_value(text: str):
    """'3' -> 3, '0.1' -> 0.1, 'true' -> True, other text unchanged."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def load_run_folder(folder: Path):
    """The model in a run folder, and what trained it (config, epochs, data fingerprint).

    A run folder is one `training.save_run` wrote (model.keras, meta.json) or one `gpu_recipes.py runs` returned
    (model.weights.h5, result.json).
    """
    if (folder / "meta.json").exists():
        run = training.load_run(folder)
        return run.model, {"config": run.meta["config"], "epochs": run.meta["epochs_run"],
                           "fingerprint": run.meta["data_fingerprint"]}
    result = json.loads((folder / "result.json").read_text())
    model = models.build(result.get("model", "report"), result["config"].get("input_norm", "scale"))
    model.load_weights(str(folder / "model.weights.h5"))
    return model, {"config": result["config"], "epochs": result["epochs_run"], "fingerprint": result["fingerprint"]}


def load_teacher(path: str, data: fer_data.FerData) -> np.ndarray:
    """Training-split teacher probabilities from a `teacher_targets.py` file, checked against `data`."""
    with np.load(path) as saved:
        if str(saved["fingerprint"]) != data.fingerprint:
            raise SystemExit(f"{path}: teacher targets for data {saved['fingerprint']}, not {data.fingerprint}; "
                             "write them again with teacher_targets.py on this file.")
        return saved["train"]


def val_scores(model, data: fer_data.FerData) -> dict:
    """Accuracy, macro-F1 and per-class recall on the validation split (PublicTest); both again with flip TTA
    (2 views) and with flips and 1-pixel shifts (10 views)."""
    plain, flipped, ten = evaluation.evaluate_views(model, data.x["val"], data.y["val"]).values()
    return {"accuracy": plain.accuracy, "macro_f1": plain.macro_f1, "recall": plain.summary()["recall"],
            "accuracy_tta": flipped.accuracy, "macro_f1_tta": flipped.macro_f1,
            "accuracy_tta10": ten.accuracy, "macro_f1_tta10": ten.macro_f1}


def main() -> None:
    """Train, evaluate on the validation split (PublicTest), write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 file or folder")
    parser.add_argument("--model", default="report", choices=["report", "simple"])
    parser.add_argument("--recipe", default="augmented", choices=sorted(training.RECIPES))
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one TrainConfig field, e.g. --set epochs=20 --set augment=false")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", help="teacher probabilities (.npz from teacher_targets.py) to distil")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()

    data = fer_data.load(args.data, seed=args.seed)
    changes = dict(item.split("=", 1) for item in args.set)
    config = training.RECIPES[args.recipe].replace(**{k: parse_value(v) for k, v in changes.items()})
    start = time.perf_counter()
    teacher = load_teacher(args.teacher, data) if args.teacher else None
    run = training.train(args.model, data, config, seed=args.seed, teacher=teacher)
    seconds = time.perf_counter() - start
    result = {
        "recipe": args.recipe, "changes": changes, "model": args.model, "config": run.meta["config"],
        "teacher": run.meta.get("teacher"),
        "data": str(args.data), "fingerprint": data.fingerprint, "split": "val (PublicTest)",
        **val_scores(run.model, data),
        "epochs": run.meta["epochs_run"], "best_epoch": run.meta["best_epoch"],
        "train_seconds": run.meta["seconds"], "seconds_this_call": round(seconds, 1),
        "device": run.meta["device"], "history": run.history.round(4).reset_index().to_dict("records"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("recipe", "changes", "accuracy", "macro_f1", "accuracy_tta",
                                              "accuracy_tta10", "epochs", "train_seconds")}))


if __name__ == "__main__":
    main()
