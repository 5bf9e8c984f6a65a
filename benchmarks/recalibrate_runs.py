"""Score saved runs on PublicTest before and after recalibrating their BatchNorm statistics.

    python -m benchmarks.recalibrate_runs --data data/fer2013.csv --runs .cache/runs/report-* runs/gpu/* --out bn.jsonl

A run is a folder `training.save_run` wrote (model.weights.h5, history.csv, meta.json): the training cache's,
`python -m fer_utils train`'s or `python -m benchmarks.gpu_recipes runs`'. Each is scored as saved, then again after
`training.recalibrate_batchnorm` on the training images: one JSON line per run, the same run before and after.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks.train_recipe import val_scores
from fer_utils import data as fer_data
from fer_utils import training

SCORES = ("accuracy", "accuracy_tta", "accuracy_tta10", "macro_f1", "macro_f1_tta10")


def main() -> None:
    """Score each run as saved and recalibrated; one JSON line each."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recalibrate_runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the FER2013 file the runs trained on")
    parser.add_argument("--runs", nargs="+", required=True, help="run folders")
    parser.add_argument("--out", required=True, help="JSON lines file to write")
    args = parser.parse_args()

    data = fer_data.load(args.data, verbose=False)
    x_train = fer_data.scale(data.x["train"])
    rows = []
    for folder in map(Path, args.runs):
        run = training.load_run(folder)
        if run.meta["data_fingerprint"] != data.fingerprint:
            raise SystemExit(f"{folder}: trained on data {run.meta['data_fingerprint']}, not on {args.data} "
                             f"({data.fingerprint}); recalibrate a run on its own data.")
        before = val_scores(run.model, data)
        start = time.perf_counter()
        training.recalibrate_batchnorm(run.model, x_train)
        seconds = time.perf_counter() - start
        after = val_scores(run.model, data)
        rows.append({"run": str(folder), "config": run.meta["config"], "epochs": run.meta["epochs_run"],
                     "recalibration_seconds": round(seconds, 1),
                     **{f"{key}_before": before[key] for key in SCORES},
                     **{f"{key}_after": after[key] for key in SCORES},
                     "recall_before": before["recall"], "recall_after": after["recall"]})
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("config", "recall_before", "recall_after")}),
              flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
