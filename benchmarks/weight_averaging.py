"""Continue a finished run at a constant learning rate and score its weights three ways: as they end, their
exponential moving average (Keras' `use_ema`), and their plain average over epoch ends (stochastic weight averaging).

    python benchmarks/weight_averaging.py --data FER2013.csv.gz --run .cache/runs/report-... --lr 2e-4 --epochs 20 --out w.json

The run keeps its recipe (augmentation, label smoothing, batch size); each set of weights has its BatchNorm
statistics recalibrated on the training images before it is scored on the validation split (PublicTest).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from fer_utils import data as fer_data
from fer_utils import training
from train_recipe import val_scores

EMA_MOMENTUM = 0.999  # about 1,000 steps, 4-5 epochs of FER2013 at batch 128


class EpochAverage(keras.callbacks.Callback):
    """Keeps the running mean of the model's weights at each epoch's end, and the last epoch's weights."""

    def on_train_begin(self, logs=None):
        self.total, self.count, self.last = None, 0, None

    def on_epoch_end(self, epoch, logs=None):
        self.last = self.model.get_weights()
        weights = [w.astype(np.float64) for w in self.last]
        self.total = weights if self.total is None else [a + b for a, b in zip(self.total, weights)]
        self.count += 1

    @property
    def mean(self) -> list[np.ndarray]:
        """The average weights, in the model's float32."""
        return [(w / self.count).astype(np.float32) for w in self.total]


def main() -> None:
    """Train the tail, then recalibrate and score the last, EMA and epoch-averaged weights."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the FER2013 file the run trained on")
    parser.add_argument("--run", required=True, help="a run folder `training.save_run` wrote")
    parser.add_argument("--lr", type=float, default=2e-4, help="constant learning rate of the tail")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of the tail")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()

    data = fer_data.load(args.data, verbose=False)
    training.set_seed(args.seed)  # before loading: the dropout layers draw their seeds as the model is rebuilt
    run = training.load_run(Path(args.run))
    if run.meta["data_fingerprint"] != data.fingerprint:
        raise SystemExit(f"{args.run}: trained on data {run.meta['data_fingerprint']}, not {data.fingerprint}")
    config = training.TrainConfig(**run.meta["config"])
    model = run.model
    model.compile(optimizer=keras.optimizers.Adam(args.lr, config.beta_1, config.beta_2, use_ema=True,
                                                  ema_momentum=EMA_MOMENTUM),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing))
    targets = training.training_targets(data.y["train"])
    batches = fer_data.to_dataset(data.x["train"], targets, config.batch_size, shuffle=True, seed=args.seed,
                                  augment=training.augmenter(args.seed, config.augmentation) if config.augment else None)
    average = EpochAverage()
    start = time.perf_counter()
    model.fit(batches, epochs=args.epochs, callbacks=[average], verbose=2)
    seconds = time.perf_counter() - start
    ema = model.get_weights()  # fit ends by writing the EMA into the trainable weights
    x_train = fer_data.scale(data.x["train"])
    scores = {}
    for name, weights in (("last", average.last), ("ema", ema), ("epoch_average", average.mean)):
        model.set_weights(weights)
        training.recalibrate_batchnorm(model, x_train)
        scores[name] = {k: v for k, v in val_scores(model, data).items() if k != "recall"}
        print(json.dumps({name: scores[name]}), flush=True)
    Path(args.out).write_text(json.dumps({"run": args.run, "lr": args.lr, "epochs": args.epochs, "seed": args.seed,
                                          "ema_momentum": EMA_MOMENTUM, "seconds": round(seconds, 1),
                                          "scores": scores}, indent=2))


if __name__ == "__main__":
    main()
