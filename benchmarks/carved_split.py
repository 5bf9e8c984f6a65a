"""How much a validation split carved out of Training flatters the score: one run, scored on both footings.

    python -m fer_utils train --data train.csv --model report --recipe report --epochs N --out runs/carved
    python -m benchmarks.carved_split --run runs/carved --data data/fer2013.csv [--ship]

`train.csv` holds FER2013's Training rows alone (`emotion,pixels`), the form a course hands out, so
`fer_utils.data` carves a stratified 10% of each class (seed 0) out of it to validate on. This script re-carves
the same images from the Training rows of `--data` (FER2013 with PublicTest), checks that the run's last recorded
validation accuracy is the accuracy on them, and scores the run's last epoch on that carved split and on
PublicTest, with one view and with ten. `--along DIR` also scores copies of the run's resume folder taken while it
trained (`DIR/<epoch>/model.weights.h5`), one view each, to show how the gap grows. It prints one JSON line;
`--ship` also copies the run into the package as `carved`, with these scores in its meta.json, for chapter 2.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from fer_utils import data as fer_data
from fer_utils import evaluation, shipped, training

AGREE = 1e-3  # the run's recorded validation accuracy and ours on the re-carved images agree within this


def footings(run: training.Run, data: fer_data.FerData) -> dict:
    """The run's accuracy and macro-F1 on the carved split and on PublicTest, one view and ten."""
    _, carved = fer_data.stratified_split(data.y["train"], fer_data.VAL_FRACTION, run.meta["seed"])
    sets = {"carved": (data.x["train"][carved], data.y["train"][carved]), "publictest": (data.x["val"], data.y["val"])}
    scores = {}
    for name, (x, y) in sets.items():
        views = evaluation.evaluate_views(run.model, x, y)
        scores[name] = {"images": len(y), "accuracy": views["one"].accuracy, "macro_f1": views["one"].macro_f1,
                        "accuracy_10_views": views["ten"].accuracy, "macro_f1_10_views": views["ten"].macro_f1}
    recorded, measured = float(run.history["val_accuracy"].iloc[-1]), scores["carved"]["accuracy"]
    if not math.isclose(measured, recorded, abs_tol=AGREE):
        raise ValueError(f"{run.path}: its last validation accuracy, {recorded:.4f}, is not the {measured:.4f} "
                         "measured on the re-carved images: was it trained on train.csv with this seed?")
    return scores


def along(folder: Path, data: fer_data.FerData, seed: int) -> dict[int, dict[str, float]]:
    """One-view accuracy on the carved split and on PublicTest of each epoch's weights kept in `folder`."""
    from fer_utils.models import build

    _, carved = fer_data.stratified_split(data.y["train"], fer_data.VAL_FRACTION, seed)
    scores = {}
    for snapshot in sorted((p for p in Path(folder).iterdir() if p.name.isdigit()), key=lambda p: int(p.name)):
        model = build("report")
        model.load_weights(snapshot / "model.weights.h5", skip_mismatch=True)  # a backup also holds the optimizer
        scores[int(snapshot.name)] = {
            "carved": evaluation.evaluate(model, data.x["train"][carved], data.y["train"][carved]).accuracy,
            "publictest": evaluation.evaluate(model, data.x["val"], data.y["val"]).accuracy}
    return scores


def main(argv: list[str] | None = None) -> int:
    """Score the run on both footings, print them, and ship it with --ship."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="the folder `train` wrote for the run on train.csv")
    parser.add_argument("--data", required=True, help="FER2013 with Training and PublicTest rows")
    parser.add_argument("--along", help="a folder of the run's resume folders by epoch (DIR/<epoch>/), to score too")
    parser.add_argument("--ship", action="store_true", help="copy the run into the package as `carved`")
    args = parser.parse_args(argv)
    run, data = training.load_run(args.run), fer_data.load(args.data, verbose=False)
    if not shipped.is_official_release(data):
        parser.error(f"{args.data}: not FER2013 with its Training and PublicTest rows")
    scores = footings(run, data)
    gap = scores["carved"]["accuracy"] - scores["publictest"]["accuracy"]
    by_epoch = along(Path(args.along), data, run.meta["seed"]) if args.along else {}
    print(json.dumps({"run": args.run, "epochs": run.meta["epochs_run"], **scores, "gap": gap, "along": by_epoch}))
    if args.ship:
        shipped.ship(run, "carved", data, extra={"carved_validation": scores["carved"], "along": by_epoch})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
