"""Train a model on FER data reproducibly, on the best device present, with a results cache."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fer_utils.data import CLASSES, PROJECT_ROOT, VAL_FRACTION, DataError, FerData, scale, to_dataset

CACHE_DIR = PROJECT_ROOT / ".cache" / "runs"
CACHE_VERSION = 2  # bump when training code changes what a cached run means
# The augmentation's ranges: shift and zoom as shares of the image side, rotation in degrees.
SHIFT, ROTATION_DEGREES, ZOOM = 0.1, 10, 0.1
COSINE_FLOOR = 0.01  # cosine decay ends at this share of the initial learning rate
STEP_FACTOR = 0.1  # the step schedule multiplies the learning rate by this after epoch `decay_at`
TRANSFORMS = ("flip", "shift", "rotate", "zoom")  # what `augmenter` can apply, in the order it applies them
RUN_FILES = ("model.weights.h5", "history.csv", "meta.json")  # a saved run: weights without optimizer state


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run besides the model, the data and the seed."""

    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.99
    augment: bool = False
    augmentation: str = ",".join(TRANSFORMS)  # the transforms `augment` applies, a comma-separated subset
    label_smoothing: float = 0.0
    schedule: str = "constant"  # "constant", "cosine", or "step" (a tenth of the rate after epoch `decay_at`)
    decay_at: int = 0  # the step schedule's last epoch at the full rate
    recalibrate_bn: bool = False  # after training, set BatchNorm statistics from the training set (inference mode)
    input_norm: str = "scale"  # "per_image": the model standardises each image first (models.INPUT_NORMS)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# The original report's recipe: Adam(1e-3, 0.9, 0.99) on plain cross-entropy, no augmentation.
REPORT = TrainConfig(epochs=200, schedule="step", decay_at=106)  # as the shipped run trained (benchmarks/RESULTS.md)
# Each image standardised, flips, cosine decay over 130 epochs, label smoothing, BatchNorm statistics
# recalibrated, last epoch scored (benchmarks/RESULTS.md measures it).
AUGMENTED = TrainConfig(epochs=130, augment=True, augmentation="flip", label_smoothing=0.1, schedule="cosine",
                        recalibrate_bn=True, input_norm="per_image")
RECIPES = {"report": REPORT, "augmented": AUGMENTED}


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


def dtype_policy() -> str:
    """The Keras dtype policy training uses here: mixed_float16 on a GPU, float32 on a CPU."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"


def run_key(model_name: str, data: FerData, config: TrainConfig, seed: int, policy: str | None = None) -> str:
    """Cache key: a hash of the model name, data fingerprint, config, seed, dtype policy and cache version."""
    key = {"model": model_name, "data": data.fingerprint, "config": dataclasses.asdict(config), "seed": seed,
           "policy": policy or dtype_policy(), "version": CACHE_VERSION}
    blob = json.dumps(key, sort_keys=True)
    return f"{model_name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def train(model_name: str, data: FerData, config: TrainConfig = REPORT, seed: int = 0,
          cache_dir: Path | None = CACHE_DIR, verbose: int | None = None, command: str | None = None) -> Run:
    """Train (or load from the cache) `model_name` on `data` and return the run; an interrupted run resumes."""
    if cache_dir is None:
        return fit(model_name, data, config, seed, verbose, command=command)
    target = Path(cache_dir) / run_key(model_name, data, config, seed)
    if (target / "meta.json").exists():
        run = load_run(target)
        print(f"Loaded cached run {target.name}: {run.meta['epochs_run']} epochs, "
              f"best val_accuracy {run.meta['best_val_accuracy']:.3f} (trained on {run.meta['device']}).")
        return run
    run = fit(model_name, data, config, seed, verbose, backup_dir=resume_dir(target), command=command)
    save_run(run, target)
    return run


def resume_dir(target: Path) -> Path:
    """Where the run to be saved at `target` keeps its last finished epoch while it trains: a hidden sibling."""
    target = Path(target)
    return target.parent / f".{target.name}.resume"


def fit(model_name: str, data: FerData, config: TrainConfig, seed: int = 0, verbose: int | None = None,
        backup_dir: Path | None = None, command: str | None = None, start_from: Run | None = None) -> Run:
    """Build and train a fresh model, resuming from `backup_dir` when an earlier attempt left an epoch there.

    `start_from` continues a finished run of the same model and data for the epochs it has not run: its weights,
    history and data order carry on, while the optimizer's moments (which saved runs leave out) start afresh.
    """
    import keras

    from fer_utils.models import build

    check_trainable(data)
    if start_from is not None:
        check_continuable(start_from, model_name, data, config)
    set_seed(seed)
    policy = dtype_policy()
    with precision_policy(policy):
        device = device_name()
        print(f"Training {model_name} on {device} ({policy}): {len(data.y['train']):,} images, "
              f"{config.epochs} epochs of batch {config.batch_size}.")
        steps = config.epochs * int(np.ceil(len(data.y["train"]) / config.batch_size))
        model = compile_model(build(model_name, config.input_norm), config, steps)
        augment = augmenter(seed, config.augmentation) if config.augment else None
        targets = np.eye(len(CLASSES), dtype=np.float32)[data.y["train"]]  # one-hot rows, for label smoothing
        train_ds = to_dataset(data.x["train"], targets, config.batch_size, shuffle=True, seed=seed, augment=augment)
        val_ds = _one_hot(to_dataset(data.x["val"], data.y["val"], 512))
        callbacks = [keras.callbacks.TerminateOnNaN()]
        state = None
        if backup_dir is not None:
            from fer_utils.resume import ResumeState

            state = ResumeState(backup_dir, [model, augment])
            callbacks.append(state)
        start = state.restore(model, train_ds) if state else 0
        if state and start >= config.epochs:
            state.resumed_at.pop()  # nothing left to train: the run is only saved, not resumed
        if start_from is not None and not start:
            start = carry_on(start_from, model, train_ds, state)
        began = time.perf_counter()
        # shuffle=False: the dataset shuffles itself (seeded); Keras would ignore its own flag with a UserWarning
        model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=start, callbacks=callbacks,
                  verbose=_verbosity(verbose), shuffle=False)
        seconds = state.seconds if state else time.perf_counter() - began  # the state counts earlier attempts too
        frame = state.history if state else history_frame(model.history)
        if start_from is not None and not state:
            frame = pd.concat([start_from.history, frame.set_axis(frame.index + len(start_from.history))])
            seconds += start_from.meta["seconds"]
        recalibration_seconds = 0.0
        if config.recalibrate_bn:
            began = time.perf_counter()
            recalibrate_batchnorm(model, scale(data.x["train"]))
            recalibration_seconds = time.perf_counter() - began
    meta = {"model": model_name, "config": dataclasses.asdict(config), "seed": seed,
            "command": command or shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "commit": git_commit(), "data_source": data.source, "data_path": data.path,
            "data_fingerprint": data.fingerprint, "device": device, "dtype_policy": policy,
            "seconds": round(seconds, 1), "epochs_run": len(frame),
            "seconds_per_epoch": round(seconds / len(frame), 1),
            "recalibration_seconds": round(recalibration_seconds, 1),
            "resumed_at": state.resumed_at if state else [],
            **({"continued": [*start_from.meta.get("continued", []),
                              {"from": str(start_from.path), "after_epoch": len(start_from.history),
                               "optimizer": "fresh moments"}]} if start_from is not None else {}),
            "best_epoch": int(frame["val_accuracy"].idxmax()),
            "best_val_accuracy": float(frame["val_accuracy"].max()),
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "tensorflow": tf_version(), "python": sys.version.split()[0]}
    return Run(model, frame, meta)


def check_continuable(run: Run, model_name: str, data: FerData, config: TrainConfig) -> None:
    """Raise a ValueError unless `config` can continue `run`: same model, data and input, fewer epochs done."""
    done, where = len(run.history), run.path or "the run"
    if run.meta["model"] != model_name or run.meta["config"]["input_norm"] != config.input_norm:
        raise ValueError(f"{where}: a {run.meta['model']} CNN ({run.meta['config']['input_norm']} input) cannot "
                         f"continue as a {model_name} CNN ({config.input_norm} input).")
    if run.meta["data_fingerprint"] != data.fingerprint:
        raise ValueError(f"{where}: trained on other data ({run.meta['data_fingerprint']}, here {data.fingerprint}).")
    if done >= config.epochs:
        raise ValueError(f"{where}: already ran {done} epochs; ask for more than that with --epochs.")


def carry_on(run: Run, model, train_ds, state) -> int:
    """Load a finished `run` into `model` to continue it; return the epoch to start from."""
    from fer_utils.resume import replay_shuffles

    done = len(run.history)
    model.optimizer.build(model.trainable_variables)
    model.set_weights(run.model.get_weights())
    model.optimizer.iterations.assign(done * len(train_ds))  # the schedule goes on where the run stopped
    replay_shuffles(train_ds, done)  # the data order goes on too
    if state is not None:
        state.history, state.seconds = run.history.copy(), run.meta["seconds"]
    print(f"Continuing {run.path} after epoch {done}, with fresh optimizer moments.")
    return done


def check_trainable(data: FerData) -> None:
    """Raise a DataError, before any training, when `data` has no training or no validation images."""
    sizes, where = data.sizes(), data.path or data.source
    if not len(data.y["train"]):
        raise DataError(f"{where}: no training images ({sizes}); add Usage 'Training' rows or train/<class>/ images.")
    if not len(data.y["val"]):
        raise DataError(
            f"{where}: no validation images ({sizes}), and training scores every epoch on them. Add PublicTest rows "
            "(Usage 'PublicTest'), a labelled test.csv beside the challenge's train.csv, or PublicTest_ images in "
            f"the image folder; or, where validation is carved from training ({VAL_FRACTION:.0%} of each class), at "
            f"least {_smallest_carved_class()} training images in some class.")


def _smallest_carved_class() -> int:
    """The fewest images a class needs for the validation carve-out (a rounded VAL_FRACTION of it) to hold one."""
    return next(n for n in range(1, 1000) if round(n * VAL_FRACTION) >= 1)


def git_commit() -> str | None:
    """The repository's HEAD commit, with '+changes' when tracked files differ from it; None outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def tf_version() -> str:
    """TensorFlow's version."""
    import tensorflow as tf

    return tf.__version__


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
def precision_policy(policy: str):
    """Build and train under a Keras dtype policy ('float32', 'mixed_float16', ...), then restore float32."""
    import keras

    keras.mixed_precision.set_global_policy(policy)
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
    """The optimiser's learning rate: constant, cosine decay over all training steps, or a step down after an epoch."""
    import keras

    if config.schedule == "constant":
        return config.learning_rate
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(config.learning_rate, steps, alpha=COSINE_FLOOR)
    if config.schedule == "step":  # the step counter is 0-based: step decay_at * steps_per_epoch opens the next epoch
        boundary = config.decay_at * (steps // config.epochs) - 1
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            [boundary], [config.learning_rate, config.learning_rate * STEP_FACTOR])
    raise ValueError(f"unknown schedule {config.schedule!r}; use 'constant' or 'cosine'")


def augmenter(seed: int, transforms: str = TrainConfig.augmentation):
    """Seeded random transforms, a comma-separated subset of TRANSFORMS: flip, shift, rotate, zoom."""
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
    }
    return keras.Sequential([make[t]() for t in TRANSFORMS if t in wanted], name="augment")


def _one_hot(ds):
    """Labels to one-hot vectors, as the loss (with label smoothing) expects."""
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, len(CLASSES))), num_parallel_calls=tf.data.AUTOTUNE)


def _verbosity(verbose: int | None) -> int:
    """Keras verbosity: a progress bar in a terminal, one line per epoch elsewhere."""
    if verbose is not None:
        return verbose
    return 1 if sys.stdout.isatty() else 2


def save_run(run: Run, target: Path) -> None:
    """Write a run's weights (no optimizer state), history and metadata atomically: complete or not at all."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        weights_only(run.model).save_weights(tmp / "model.weights.h5")
        run.history.to_csv(tmp / "history.csv")
        (tmp / "meta.json").write_text(json.dumps(run.meta, indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(resume_dir(target), ignore_errors=True)  # the finished run replaces its last backup
    run.path = target


def weights_only(model):
    """An uncompiled copy of `model` with its weights: saving it leaves the optimizer's state out."""
    from fer_utils.models import build

    copy = build(*_architecture(model))
    copy.set_weights(model.get_weights())
    return copy


def _architecture(model) -> tuple[str, str]:
    """The (name, input_norm) that `models.build` takes to rebuild `model`."""
    name = {"report_cnn": "report", "simple_cnn": "simple"}[model.name]
    return name, "per_image" if any(layer.name == "standardize" for layer in model.layers) else "scale"


def load_run(path: Path) -> Run:
    """A run saved by `save_run` (or the CLI's `train`): the model rebuilt from its metadata, then its weights."""
    from fer_utils.models import build

    path = Path(path)
    missing = [name for name in RUN_FILES if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(f"{path}: not a saved run (missing {', '.join(missing)}); "
                                "train one with `python -m fer_utils train`.")
    meta = json.loads((path / "meta.json").read_text())
    model = build(meta["model"], meta["config"]["input_norm"])
    model.load_weights(path / "model.weights.h5")
    history = pd.read_csv(path / "history.csv", index_col="epoch")
    return Run(model, history, meta, path)
