"""Two readings of the assignment's "simple 3-layer CNN [64, 128, 512]": their size and training speed here.

    python -m benchmarks.simple_readings --out readings.json

- `pooled`: fer_utils' simple CNN: conv blocks of 64 and 128 filters, the 12x12 map max-pooled to 3x3, Dense 512.
- `three_conv`: conv blocks of 64, 128 and 512 filters, a global average over the last map, then the softmax.

Both are timed beside the report CNN, in interleaved rounds on the same random batches (speed does not depend on
the pixels), through Keras' `train_on_batch` at the book's batch size. Prints one JSON object: per model its
parameters, images per second and the seconds an epoch of FER2013's 28,709 training images would take.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TRAINING_IMAGES = 28_709


def three_conv_cnn():
    """The other reading: conv blocks of 64, 128 and 512 filters, global average pooling, softmax."""
    import keras
    from keras import layers

    from fer_utils import models
    from fer_utils.data import CLASSES

    inputs, x = models.model_input()
    for i, filters in enumerate((64, 128, 512), start=1):
        x = models.conv_block(x, filters, 3, i)
    x = layers.GlobalAveragePooling2D(name="average")(x)
    outputs = layers.Dense(len(CLASSES), activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="three_conv_cnn")


def measure(batches: int, rounds: int, batch_size: int = 128, seed: int = 0) -> dict:
    """Images/s of each model's training steps, the median over `rounds` interleaved rounds of `batches` steps."""
    from fer_utils import models, training

    training.set_seed(seed)
    built = {"report": models.build("report"), "pooled": models.build("simple"), "three_conv": three_conv_cnn()}
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, 48, 48, 1), dtype=np.float32)
    y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, batch_size)]
    for model in built.values():
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        model.train_on_batch(x, y)  # build and trace outside the clock
    rates: dict[str, list[float]] = {name: [] for name in built}
    for _ in range(rounds):
        for name, model in built.items():
            began = time.perf_counter()
            for _ in range(batches):
                model.train_on_batch(x, y)
            rates[name].append(batches * batch_size / (time.perf_counter() - began))
    result = {}
    for name, model in built.items():
        rate = float(np.median(rates[name]))
        result[name] = {"params": int(model.count_params()), "images_per_s": round(rate, 1),
                        "seconds_per_fer2013_epoch": round(TRAINING_IMAGES / rate, 1)}
    for name in ("pooled", "three_conv"):
        result[name]["time_vs_report"] = round(result["report"]["images_per_s"] / result[name]["images_per_s"], 2)
    return result


def main(argv: list[str] | None = None) -> None:
    """Measure and print (and write with --out) the JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simple_readings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="training steps per model and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = measure(args.batches, args.rounds)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
