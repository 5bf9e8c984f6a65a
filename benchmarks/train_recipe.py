"""Train one recipe on a FER2013 file, score it on the validation split (PublicTest) and write the results as JSON.

    python -m benchmarks.train_recipe --data data/fer2013.csv --recipe augmented --out results/augmented.json
    python -m benchmarks.train_recipe --data data/fer2013.csv --recipe report --set epochs=30 --out results/r.json

`--set FIELD=VALUE` changes one field of the recipe's `fer_utils.training.TrainConfig`. The run goes through the
training cache (`--cache-dir`, by default the book's), so the book built on the same file reuses it.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from benchmarks import training_parser
from fer_utils import data as fer_data
from fer_utils import evaluation, training


def parse_value(text: str):
    """'3' -> 3, '0.1' -> 0.1, 'true' -> True, other text unchanged."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def recipe(name: str, changes: dict) -> training.TrainConfig:
    """`training.RECIPES[name]` with `changes`; an unknown recipe, field or transform stops with what exists."""
    if name not in training.RECIPES:
        raise SystemExit(f"unknown recipe {name!r}; choose from {', '.join(training.RECIPES)}")
    fields = [f.name for f in dataclasses.fields(training.TrainConfig)]
    unknown = sorted(set(changes) - set(fields))
    if unknown:
        raise SystemExit(f"unknown TrainConfig field(s) {', '.join(unknown)}; the fields are {', '.join(fields)}")
    config = training.RECIPES[name].replace(**changes)
    wanted = {t.strip() for t in config.augmentation.split(",") if t.strip()}
    if config.augment and not wanted <= set(training.TRANSFORMS):
        raise SystemExit(f"unknown transform(s) {', '.join(sorted(wanted - set(training.TRANSFORMS)))}; "
                         f"choose from {', '.join(training.TRANSFORMS)}")
    return config


def val_scores(model, data: fer_data.FerData) -> dict:
    """Accuracy, macro-F1 and per-class recall on the validation split (PublicTest); both again with flip TTA
    (2 views) and with flips and 1-pixel shifts (10 views)."""
    plain, flipped, ten = evaluation.evaluate_views(model, data.x["val"], data.y["val"]).values()
    return {"accuracy": plain.accuracy, "macro_f1": plain.macro_f1, "recall": plain.summary()["recall"],
            "accuracy_tta": flipped.accuracy, "macro_f1_tta": flipped.macro_f1,
            "accuracy_tta10": ten.accuracy, "macro_f1_tta10": ten.macro_f1}


def main() -> None:
    """Train (or load from the cache), evaluate on the validation split (PublicTest), write JSON."""
    parser = training_parser("train_recipe", __doc__, "augmented")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one TrainConfig field, e.g. --set epochs=20 --set augment=false")
    parser.add_argument("--cache-dir", type=Path, default=training.CACHE_DIR, help="the training cache to use")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()

    changes = dict(item.split("=", 1) for item in args.set)
    config = recipe(args.recipe, {k: parse_value(v) for k, v in changes.items()})
    data = fer_data.load(args.data, seed=args.seed)
    start = time.perf_counter()
    run = training.train(args.model, data, config, seed=args.seed, cache_dir=args.cache_dir,
                         command=shlex.join(["python", "-m", "benchmarks.train_recipe", *sys.argv[1:]]))
    seconds = time.perf_counter() - start
    result = {
        "recipe": args.recipe, "changes": changes, "model": args.model, "seed": args.seed, "config": run.meta["config"],
        "data": str(args.data), "fingerprint": data.fingerprint, "split": "val (PublicTest)",
        **val_scores(run.model, data),
        "epochs": run.meta["epochs_run"], "best_epoch": run.meta["best_epoch"],
        "train_seconds": run.meta["seconds"], "seconds_this_call": round(seconds, 1),
        "device": run.meta["device"], "run": str(run.path) if run.path else None,
        "history": run.history.round(4).reset_index().to_dict("records"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("recipe", "changes", "accuracy", "macro_f1", "accuracy_tta",
                                              "accuracy_tta10", "epochs", "train_seconds")}))


if __name__ == "__main__":
    main()
