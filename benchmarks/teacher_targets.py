"""Average trained runs into a teacher: class probabilities for every training image, to distil into one model.

    python benchmarks/teacher_targets.py --data data/fer2013.csv --runs .cache/runs/report-* --out teachers.npz

Each run's BatchNorm statistics are first recalibrated on a seeded sample of training images (`--recalibrate`,
0 to skip); its probabilities average the image and its mirror. The file holds the teachers' mean
probabilities on the training split (`train`) and the validation split (`val`), the data fingerprint and the
runs. It prints one JSON line per run and one for their average, with PublicTest scores.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from fer_utils import data as fer_data
from fer_utils import evaluation, training
from train_recipe import load_run_folder


def main() -> None:
    """Score each run and their mean on PublicTest; write the mean probabilities on both splits."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the FER2013 file the runs trained on")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders (the teachers)")
    parser.add_argument("--recalibrate", type=int, default=8000,
                        help="training images to recalibrate BatchNorm on (all, if fewer)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help=".npz file to write")
    args = parser.parse_args()

    data = fer_data.load(args.data, verbose=False)
    n_train = len(data.y["train"])
    sample = np.random.default_rng(args.seed).choice(n_train, min(args.recalibrate, n_train), replace=False)
    probabilities = {"train": [], "val": []}
    for folder in map(Path, args.runs):
        model, trained = load_run_folder(folder)
        if trained["fingerprint"] != data.fingerprint:
            raise SystemExit(f"{folder}: trained on data {trained['fingerprint']}, not on {args.data}.")
        if args.recalibrate:
            training.recalibrate_batchnorm(model, fer_data.scale(data.x["train"][sample]))
        for split in probabilities:
            probabilities[split].append(evaluation.predict(model, data.x[split], tta=True))
        alone = evaluation.Evaluation(data.y["val"], probabilities["val"][-1].argmax(axis=1))
        print(json.dumps({"run": str(folder), "val_accuracy_tta": alone.accuracy}), flush=True)
    mean = {split: np.mean(p, axis=0) for split, p in probabilities.items()}
    together = evaluation.ensemble(probabilities["val"], data.y["val"])
    print(json.dumps({"ensemble": len(args.runs), "val_accuracy_tta": together["accuracy"],
                      "val_macro_f1": together["macro_f1"], "val_agreement": together["agreement"],
                      "val_all_wrong": together["all_wrong"],
                      "train_accuracy": float(np.mean(mean["train"].argmax(1) == data.y["train"])),
                      "fingerprint": training.targets_fingerprint(mean["train"])}))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.npz")
    np.savez(partial, train=mean["train"], val=mean["val"], fingerprint=data.fingerprint,
             runs=np.array([str(r) for r in args.runs]), recalibrate=args.recalibrate, seed=args.seed)
    os.replace(partial, out)  # whole or not at all


if __name__ == "__main__":
    main()
