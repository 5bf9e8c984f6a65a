"""How far one retrained epoch of the shipped `report` run moves with float rounding, and with a broken pipeline.

    python -m benchmarks.retrain_spread --data fer2013.csv.gz

Retrains the report recipe's first epoch (seed and settings of the shipped run) once per variant, each in its own
process, and prints each variant's first-epoch metrics beside the shipped history's. The rounding variants change
only the order of floating-point operations, as another CPU does (oneDNN off, one thread); the broken ones change
what is computed (labels shuffled, learning rate x10, BatchNorm statistics never updated). tests/test_fer2013.py's
tolerance sits between the two; benchmarks/RESULTS.md logs the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

# Each variant's environment, applied before TensorFlow loads (a new process per variant).
ROUNDING = {"default": {}, "onednn-off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
            "one-thread": {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}}
BROKEN = ("shuffled-labels", "lr-x10", "no-bn-update")
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def first_epoch(data_path: str, variant: str) -> dict:
    """Train the shipped report run's first epoch under `variant`; its metrics."""
    import dataclasses

    import numpy as np

    from fer_utils import data as fer_data
    from fer_utils import models, shipped, training

    meta = shipped.meta("report")
    data = fer_data.load(data_path, verbose=False)
    config = training.TrainConfig(**meta["config"]).replace(epochs=1)
    if variant == "shuffled-labels":
        labels = np.random.default_rng(0).permutation(data.y["train"])
        data = dataclasses.replace(data, y={**data.y, "train": labels})
    if variant == "lr-x10":
        config = config.replace(learning_rate=config.learning_rate * 10)
    if variant == "no-bn-update":
        models.BN_MOMENTUM = 1.0  # moving statistics keep their initial values: inference sees unnormalised features
    if os.environ.get("TF_NUM_INTRAOP_THREADS"):
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(os.environ["TF_NUM_INTRAOP_THREADS"]))
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["TF_NUM_INTEROP_THREADS"]))
    run = training.fit("report", data, config, seed=meta["seed"], verbose=0)
    return {k: float(run.history[k].iloc[0]) for k in METRICS}


def main(argv: list[str] | None = None) -> int:
    """Run every variant in its own process and print one JSON line each, then the shipped epoch."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.retrain_spread", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 file (Training and PublicTest rows)")
    parser.add_argument("--variants", default=",".join([*ROUNDING, *BROKEN]))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: train one variant
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(first_epoch(args.data, args.one)))
        return 0
    import pandas as pd

    from fer_utils import shipped

    shipped_first = pd.read_csv(shipped.SHIPPED_DIR / "report" / "history.csv", index_col="epoch").loc[1]
    print(json.dumps({"variant": "shipped", **{k: float(shipped_first[k]) for k in METRICS}}), flush=True)
    for variant in args.variants.split(","):
        env = {**os.environ, **ROUNDING.get(variant, {})}
        out = subprocess.run([sys.executable, "-m", "benchmarks.retrain_spread", "--data", args.data, "--one", variant],
                             env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        print(json.dumps({"variant": variant, **json.loads(out)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
