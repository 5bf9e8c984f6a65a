"""Train a model on FER data reproducibly, on the best device present, with a results cache."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.data import CLASSES, PROJECT_ROOT, FerData, scale, to_dataset

CACHE_DIR = PROJECT_ROOT / ".cache" / "runs"
CACHE_VERSION = 1  # bump when training code changes what a cached run means
# The augmentation's ranges: shift and zoom as shares of the image side, rotation in degrees.
SHIFT, ROTATION_DEGREES, ZOOM = 0.1, 10, 0.1
# Random erasing (Zhong et al. 2017): half the images get one patch of 2-33% of the image replaced by noise.
ERASE_PROBABILITY, ERASE_AREA = 0.5, (0.02, 0.33)
COSINE_FLOOR = 0.01  # cosine decay ends at this share of the initial learning rate
GEOMETRIC = "flip,shift,rotate,zoom"  # the default augmentation: the original four transforms, no erasing
TRANSFORMS = (*GEOMETRIC.split(","), "erase")  # what `augmenter` can apply, in the order it applies them
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run besides the model, the data and the seed."""

    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.99
    augment: bool = False
    label_smoothing: float = 0.0
    schedule: str = "constant"  # "constant" or "cosine"
    early_stopping: int = 0  # patience in epochs on val accuracy; 0 trains all epochs
    class_weight: bool = False  # weight classes by inverse frequency
    augmentation: str = GEOMETRIC  # the transforms `augment` applies, a comma-separated subset of TRANSFORMS
    precision: str = "float32"  # or "mixed_bfloat16": bfloat16 maths, float32 weights (about 2x on AMX CPUs)
    recalibrate_bn: bool = False  # after training, set BatchNorm statistics from the training set (inference mode)
    distillation: float = 0.0  # share of each training target taken from a teacher's probabilities (0: labels only)
    input_norm: str = "scale"  # "per_image": the model standardises each image first (models.INPUT_NORMS)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# The original report's recipe: Adam(1e-3, 0.9, 0.99) on plain cross-entropy, no augmentation.
REPORT = TrainConfig(epochs=40)
# Each image standardised, flips, cosine decay over 130 epochs, label smoothing, BatchNorm statistics recalibrated,
# last epoch scored: the best finished recipe measured on FER2013 (benchmarks/RESULTS.md, runs r1, s1, t1: PublicTest
# 0.644-0.649, macro-F1 0.606-0.613; 0.648-0.661 over ten test-time views).
AUGMENTED = TrainConfig(epochs=130, augment=True, augmentation="flip", label_smoothing=0.1, schedule="cosine",
                        recalibrate_bn=True, input_norm="per_image")
RECIPES = {"report": REPORT, "augmented": AUGMENTED}
# TrainConfig fields added after cache version 1: left out of the cache key while at their defaults.
FIELDS_AFTER_V1 = ("augmentation", "precision", "recalibrate_bn", "distillation", "input_norm")


@dataclass
class Run:
    """A trained model with its per-epoch history and what produced it."""

    model: object
    history: pd.DataFrame
    meta: dict
    path: Path | None = None


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and make TensorFlow's ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def device_name() -> str:
    """'GPU x N (name)' when TensorFlow sees GPUs, else the CPU's description."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU x {len(gpus)} ({details.get('device_name', 'unknown')})"
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def run_key(model_name: str, data: FerData, config: TrainConfig, seed: int, teacher: np.ndarray | None = None) -> str:
    """Cache key: a hash of the model name, data fingerprint, config, seed, code version and any teacher targets."""
    default = TrainConfig()
    fields = {k: v for k, v in dataclasses.asdict(config).items()
              if k not in FIELDS_AFTER_V1 or v != getattr(default, k)}  # runs cached before they existed stay valid
    key = {"model": model_name, "data": data.fingerprint, "config": fields, "seed": seed, "version": CACHE_VERSION}
    if teacher is not None:
        key["teacher"] = targets_fingerprint(teacher)
    blob = json.dumps(key, sort_keys=True)
    return f"{model_name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def train(model_name: str, data: FerData, config: TrainConfig = REPORT, seed: int = 0,
          cache_dir: Path | None = CACHE_DIR, verbose: int | None = None, teacher: np.ndarray | None = None) -> Run:
    """Train (or load from the cache) `model_name` on `data` and return the run."""
    target = Path(cache_dir) / run_key(model_name, data, config, seed, teacher) if cache_dir else None
    if target is not None and (target / "meta.json").exists():
        run = load_run(target)
        print(f"Loaded cached run {target.name}: {run.meta['epochs_run']} epochs, "
              f"best val_accuracy {run.meta['best_val_accuracy']:.3f} (trained on {run.meta['device']}).")
        return run
    run = fit(model_name, data, config, seed, verbose, teacher)
    if target is not None:
        save_run(run, target)
    return run


def fit(model_name: str, data: FerData, config: TrainConfig, seed: int = 0, verbose: int | None = None,
        teacher: np.ndarray | None = None) -> Run:
    """Build and train a fresh model; no cache. `teacher`: class probabilities per training image, to distil."""
    import keras
    import tensorflow as tf

    from fer_utils.models import build

    targets = training_targets(data.y["train"], teacher, config.distillation)
    set_seed(seed)
    gpus = tf.config.list_physical_devices("GPU")
    with precision_policy("mixed_float16" if gpus else config.precision):
        strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
        device = device_name()
        print(f"Training {model_name} on {device}: {len(data.y['train']):,} images, "
              f"up to {config.epochs} epochs of batch {config.batch_size}.")
        steps = config.epochs * int(np.ceil(len(data.y["train"]) / config.batch_size))
        with strategy.scope():
            model = compile_model(build(model_name, config.input_norm), config, steps)
        train_ds = to_dataset(data.x["train"], targets, config.batch_size, shuffle=True, seed=seed,
                              augment=augmenter(seed, config.augmentation) if config.augment else None)
        val_ds = _one_hot(to_dataset(data.x["val"], data.y["val"], 512))
        callbacks = [keras.callbacks.TerminateOnNaN()]
        if config.early_stopping:
            callbacks.append(keras.callbacks.EarlyStopping("val_accuracy", patience=config.early_stopping,
                                                           mode="max", restore_best_weights=True))
        start = time.perf_counter()
        history = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=callbacks,
                            class_weight=class_weights(data.y["train"]) if config.class_weight else None,
                            verbose=_verbosity(verbose))
        seconds = time.perf_counter() - start
        recalibration_seconds = 0.0
        if config.recalibrate_bn:
            recalibrate_batchnorm(model, scale(data.x["train"]))
            recalibration_seconds = time.perf_counter() - start - seconds
    frame = history_frame(history)
    meta = {"model": model_name, "config": dataclasses.asdict(config), "seed": seed,
            "data_source": data.source, "data_path": data.path, "data_fingerprint": data.fingerprint,
            "device": device, "seconds": round(seconds, 1), "epochs_run": len(frame),
            "seconds_per_epoch": round(seconds / len(frame), 1),
            "recalibration_seconds": round(recalibration_seconds, 1),
            "best_epoch": int(frame["val_accuracy"].idxmax()),
            "best_val_accuracy": float(frame["val_accuracy"].max()),
            "teacher": None if teacher is None else targets_fingerprint(teacher),
            "tensorflow": tf.__version__, "python": sys.version.split()[0]}
    return Run(model, frame, meta)


def training_targets(labels: np.ndarray, teacher: np.ndarray | None = None, share: float = 0.0) -> np.ndarray:
    """One target row per image: the one-hot label, with `share` of it replaced by the teacher's probabilities."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"distillation share {share} is not between 0 and 1")
    if share and teacher is None:
        raise ValueError(f"distillation {share} asks for a teacher's probabilities, and none were given")
    if teacher is not None and not share:
        raise ValueError("teacher probabilities were given but distillation is 0: set TrainConfig(distillation=...)")
    one_hot = np.eye(len(CLASSES), dtype=np.float32)[labels]
    if teacher is None:
        return one_hot
    teacher = np.asarray(teacher, dtype=np.float32)
    if teacher.shape != one_hot.shape:
        raise ValueError(f"teacher probabilities have shape {teacher.shape}; the training split needs {one_hot.shape}")
    if not np.allclose(teacher.sum(axis=1), 1.0, atol=1e-3) or teacher.min() < 0:
        raise ValueError("teacher rows must be probabilities (non-negative, summing to 1)")
    return (1.0 - share) * one_hot + share * teacher


def targets_fingerprint(targets: np.ndarray) -> str:
    """A short hash of teacher targets (to 6 decimals), for cache keys and run metadata."""
    rounded = np.round(np.asarray(targets, dtype=np.float64), 6)
    return hashlib.sha256(rounded.tobytes() + str(rounded.shape).encode()).hexdigest()[:16]


def recalibrate_batchnorm(model, x: np.ndarray, batch_size: int = 256):
    """Set each BatchNorm layer's moving mean and variance to its input's statistics over `x`, in inference mode.

    Training leaves running averages of the last few batches (momentum 0.9), taken with dropout on; at
    prediction time dropout is off, which shifts the variance that the next BatchNorm sees. One pass over
    the training images, layer by layer, replaces those averages with the statistics prediction meets.
    """
    import keras
    from keras import ops

    for layer in (layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)):
        inputs = ops.cast(layer.input, "float32")
        per_image = [inputs, ops.square(inputs)]
        axes = tuple(range(1, len(inputs.shape) - 1))  # height and width of conv features; none for Dense
        if axes:
            per_image = [ops.mean(tensor, axis=axes) for tensor in per_image]
        probe = keras.Model(model.inputs, per_image)
        mean, mean_square = (np.mean(m, axis=0, dtype=np.float64)
                             for m in probe.predict(x, batch_size=batch_size, verbose=0))
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(mean_square - mean ** 2, 0).astype(np.float32))
    return model


def history_frame(history) -> pd.DataFrame:
    """Keras' History as a DataFrame, one row per epoch, indexed from 1."""
    frame = pd.DataFrame(history.history).rename_axis("epoch")
    frame.index = frame.index + 1
    return frame


@contextlib.contextmanager
def precision_policy(precision: str):
    """Build and train under a Keras dtype policy ('float32', 'mixed_bfloat16', 'mixed_float16'), then restore float32."""
    import keras

    if precision not in PRECISIONS + ("mixed_float16",):
        raise ValueError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def compile_model(model, config: TrainConfig, steps: int):
    """`model` compiled as the recipe trains it: Adam on cross-entropy (label smoothing), accuracy, over `steps`."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(_learning_rate(config, steps), config.beta_1, config.beta_2),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                  metrics=["accuracy"])
    return model


def _learning_rate(config: TrainConfig, steps: int):
    """The optimiser's learning rate: constant, or cosine decay over all training steps."""
    import keras

    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=COSINE_FLOOR)
    raise ValueError(f"unknown schedule {config.schedule!r}; use 'constant' or 'cosine'")


def augmenter(seed: int, transforms: str = GEOMETRIC):
    """Seeded random transforms, a comma-separated subset of TRANSFORMS: flip, shift, rotate, zoom, erase."""
    import keras
    from keras import layers

    wanted = [t.strip() for t in transforms.split(",") if t.strip()]
    unknown = sorted(set(wanted) - set(TRANSFORMS))
    if unknown:
        raise ValueError(f"unknown transforms {unknown}; choose from {TRANSFORMS}")
    make = {
        "flip": lambda: layers.RandomFlip("horizontal", seed=seed),
        "shift": lambda: layers.RandomTranslation(SHIFT, SHIFT, fill_mode="nearest", seed=seed + 1),
        "rotate": lambda: layers.RandomRotation(ROTATION_DEGREES / 360, fill_mode="nearest", seed=seed + 2),
        "zoom": lambda: layers.RandomZoom(ZOOM, fill_mode="nearest", seed=seed + 3),
        "erase": lambda: layers.RandomErasing((ERASE_PROBABILITY, ERASE_PROBABILITY), ERASE_AREA,
                                              value_range=(0, 1), seed=seed + 4),
    }
    return keras.Sequential([make[t]() for t in TRANSFORMS if t in wanted], name="augment")


def describe_augmentation(transforms: str) -> str:
    """The transforms in words, for prose: 'mirrored left-right and shifted by up to 10% of the image'."""
    phrases = {"flip": "mirrored left-right", "shift": f"shifted by up to {SHIFT:.0%} of the image",
               "rotate": f"rotated by up to {ROTATION_DEGREES} degrees", "zoom": f"zoomed by up to {ZOOM:.0%}",
               "erase": f"{ERASE_PROBABILITY:.0%} of them partly covered by a noise patch "
                        f"({ERASE_AREA[0]:.0%}-{ERASE_AREA[1]:.0%} of the image)"}
    chosen = [phrases[t] for t in TRANSFORMS if t in [w.strip() for w in transforms.split(",")]]
    return ", ".join(chosen[:-1]) + (" and " if len(chosen) > 1 else "") + chosen[-1]


def _one_hot(ds):
    """Labels to one-hot vectors, so label smoothing works."""
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, len(CLASSES))), num_parallel_calls=tf.data.AUTOTUNE)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency class weights that average to 1 over the training set."""
    counts = np.bincount(labels, minlength=len(CLASSES)).astype(float)
    weights = len(labels) / (len(CLASSES) * np.maximum(counts, 1))
    return {i: float(w) for i, w in enumerate(weights)}


def _verbosity(verbose: int | None) -> int:
    """Keras verbosity: a progress bar in a terminal, one line per epoch elsewhere."""
    if verbose is not None:
        return verbose
    return 1 if sys.stdout.isatty() else 2


def save_run(run: Run, target: Path) -> None:
    """Write a run's weights, history and metadata, atomically: the folder appears complete or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        run.model.save(tmp / "model.keras")
        run.history.to_csv(tmp / "history.csv")
        (tmp / "meta.json").write_text(json.dumps(run.meta, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    run.path = target


def load_run(path: Path) -> Run:
    """A run saved by `save_run` (or the CLI's `train`)."""
    import keras

    import fer_utils.models  # noqa: F401  registers fer_utils>BatchNormalization for load_model

    path = Path(path)
    if not (path / "meta.json").exists():
        raise FileNotFoundError(f"{path}: not a saved run (no meta.json); train one with `python -m fer_utils train`.")
    model = keras.models.load_model(path / "model.keras")
    history = pd.read_csv(path / "history.csv", index_col="epoch")
    return Run(model, history, json.loads((path / "meta.json").read_text()), path)
