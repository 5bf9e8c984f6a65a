"""Train fer_utils recipes side by side on one GPU through Keras' JAX backend, and time training steps there.

For a GPU machine with JAX but no TensorFlow. The model (fer_utils.models), the recipes (fer_utils.training's
TrainConfig: optimiser, schedule, augmentation layers, label smoothing) and the scoring (fer_utils.evaluation)
are the package's own; only the input feed differs: arrays on the device, augmentation in the training graph.
Weights come back as `.weights.h5`, which the TensorFlow backend loads into `fer_utils.models.build(...)`.

    python benchmarks/gpu_recipes.py pack --data data/fer2013.csv --out .gpu/fer2013.npz.xz
    KERAS_BACKEND=jax python benchmarks/gpu_recipes.py throughput --arrays .gpu/fer2013.npz.xz
    KERAS_BACKEND=jax python benchmarks/gpu_recipes.py runs --arrays .gpu/fer2013.npz.xz --out runs/gpu \\
        --budget 400 --run plain: --run flip:augment=true,augmentation=flip
    python benchmarks/gpu_recipes.py score --data data/fer2013.csv --out runs/gpu

`runs` starts one worker process per `--run NAME:FIELD=VALUE,...` (changes to the report recipe). All
workers first compile and train one epoch, wait for each other, then time a few calibration epochs all at
once; the epochs of the real runs, the same for all, are then what fits in `--budget` seconds at the
slowest worker's pace plus 10% (at most `--max-epochs`). A run still going at the deadline stops after
that epoch. Each worker scores its last epoch on the validation split (PublicTest), plain and with flip
TTA, and prints one JSON line. `score` loads the weights back under this machine's backend (TensorFlow)
and scores them again on the original data file.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import json
import lzma
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fer_utils import data as fer_data  # noqa: E402
from fer_utils import models, training  # noqa: E402
from train_recipe import parse_value, val_scores  # noqa: E402

PACE_MARGIN = 1.1  # epochs of the real runs are planned at the calibrated pace plus this margin
MATMUL_KEY = {"float32": "float32_flops", "mixed_bfloat16": "bfloat16_flops"}  # the limit each precision meets


def pack(data_path: str, out: str) -> None:
    """Write the train and val splits of a FER2013 file as one xz-compressed .npz (about 57 MB for FER2013)."""
    data = fer_data.load(data_path)
    buffer = io.BytesIO()
    np.savez(buffer, fingerprint=data.fingerprint, source=data.source,
             **{f"{a}_{s}": getattr(data, a)[s] for a in ("x", "y") for s in fer_data.SPLITS})
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{out}.part")
    tmp.write_bytes(lzma.compress(buffer.getvalue(), preset=6))
    os.replace(tmp, out)
    print(f"{out}: {Path(out).stat().st_size / 1e6:.1f} MB, fingerprint {data.fingerprint}")


def unpack(path: str) -> fer_data.FerData:
    """The FerData that `pack` wrote; its fingerprint is checked against the one stored."""
    with np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes()))) as arrays:
        data = fer_data.FerData({s: arrays[f"x_{s}"] for s in fer_data.SPLITS},
                                {s: arrays[f"y_{s}"] for s in fer_data.SPLITS}, str(arrays["source"]), path)
        if data.fingerprint != str(arrays["fingerprint"]):
            raise fer_data.DataError(f"{path}: fingerprint {data.fingerprint} != stored {arrays['fingerprint']}")
    return data


def model_inputs(data: fer_data.FerData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split as the model takes it: scaled (N, 48, 48, 1) images and one-hot labels."""
    return fer_data.scale(data.x[split]), keras.utils.to_categorical(data.y[split], len(fer_data.CLASSES))


def parse_run(text: str) -> tuple[str, dict]:
    """'flip:augment=true,augmentation=flip+shift' -> ('flip', {'augment': True, 'augmentation': 'flip,shift'})."""
    name, _, changes = text.partition(":")
    fields = dict(item.split("=", 1) for item in filter(None, changes.split(",")))
    return name, {k: parse_value(v.replace("+", ",")) for k, v in fields.items()}


def compiled(config: training.TrainConfig, steps: int, seed: int):
    """(model, trainer): the report CNN, and the same CNN behind the recipe's augmentation layers, compiled."""
    model = models.build("report", config.input_norm)
    inputs = keras.Input(models.INPUT_SHAPE)
    augmented = training.augmenter(seed, config.augmentation)(inputs) if config.augment else inputs
    return model, training.compile_model(keras.Model(inputs, model(augmented)), config, steps)


class Deadline(keras.callbacks.Callback):
    """Stops training at the end of the first epoch past `at` (a time.time() reading)."""

    def __init__(self, at: float):
        super().__init__()
        self.at, self.hit = at, False

    def on_epoch_end(self, epoch, logs=None):
        if time.time() > self.at:
            self.hit = self.model.stop_training = True


class EpochClock(keras.callbacks.Callback):
    """Wall seconds of each epoch, validation included."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def worker(args) -> None:
    """Train one recipe for `--epochs` (or calibrate), score it, save weights and history, print a JSON line."""
    data = unpack(args.arrays)
    name, changes = parse_run(args.run[0])
    config = training.REPORT.replace(**changes, epochs=args.epochs)
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), val = model_inputs(data, "train"), model_inputs(data, "val")
    steps = config.epochs * math.ceil(len(x_train) / config.batch_size)
    with training.precision_policy(config.precision):
        model, trainer = compiled(config, steps, args.seed)
        fit = functools.partial(trainer.fit, x_train, y_train, batch_size=config.batch_size, shuffle=True,
                                validation_data=val, validation_batch_size=512, verbose=0,
                                class_weight=training.class_weights(data.y["train"]) if config.class_weight else None)
        if args.calibrate:  # compile and warm up, then time epochs only once every worker is training too
            fit(epochs=1)
            barrier(Path(args.out) / ".calibration", args.workers)
        deadline, clock = Deadline(args.deadline), EpochClock()
        start = time.perf_counter()
        history = fit(epochs=config.epochs, callbacks=[keras.callbacks.TerminateOnNaN(), deadline, clock])
        seconds = time.perf_counter() - start
        if config.recalibrate_bn and not args.calibrate:
            training.recalibrate_batchnorm(model, x_train)
    frame = training.history_frame(history).assign(seconds=clock.seconds)
    timed = clock.seconds[0 if args.calibrate else 1:] or clock.seconds  # a real run's first epoch compiles
    result = {"name": name, "changes": changes, "config": dataclasses.asdict(config), "epochs_run": len(frame),
              "stopped_at_deadline": deadline.hit, "train_seconds": round(seconds, 1),
              "seconds_per_epoch": round(float(np.median(timed)), 2),
              "device": device(), "backend": keras.backend.backend(), "fingerprint": data.fingerprint}
    if not args.calibrate:
        result.update(val_scores(model, data), best_epoch=int(frame["val_accuracy"].idxmax()),
                      best_val_accuracy=float(frame["val_accuracy"].max()))
        out = Path(args.out) / name
        out.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(out / "model.weights.h5"))
        frame.round(5).to_csv(out / "history.csv")
        (out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result), flush=True)


def barrier(folder: Path, workers: int, timeout: float = 300) -> None:
    """Wait until `workers` processes have called this with the same folder (or `timeout` seconds pass)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    end = time.time() + timeout
    while len(list(folder.iterdir())) < workers and time.time() < end:
        time.sleep(0.2)


def device() -> str:
    """The accelerator JAX (or the backend) trains on, in words."""
    try:
        import jax

        d = jax.devices()[0]
        return f"{d.platform.upper()} ({d.device_kind})"
    except ImportError:
        return training.device_name()


def spawn(args, run: str, epochs: int, deadline: float, calibrate: bool) -> subprocess.Popen:
    """Start one worker for `run`."""
    command = [sys.executable, __file__, "worker", "--arrays", args.arrays, "--out", args.out, "--run", run,
               "--epochs", str(epochs), "--deadline", str(deadline), "--seed", str(args.seed),
               "--workers", str(len(args.run))]
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # many processes share the GPU
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_deterministic_ops=true".strip()}
    command += ["--calibrate"] if calibrate else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def collect(processes: list[subprocess.Popen], timeout: float) -> list[dict]:
    """The JSON line each worker printed last; a worker that failed or ran out of time is reported and skipped."""
    results = []
    for p in processes:
        try:
            out, _ = p.communicate(timeout=max(1.0, timeout - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if p.returncode or not lines:
            print(json.dumps({"failed": p.args, "returncode": p.returncode}), flush=True)
            continue
        results.append(json.loads(lines[-1]))
    return results


def runs(args) -> None:
    """Calibrate all runs side by side, choose the common epoch count that fits the budget, train them all."""
    start = time.time()
    shutil.rmtree(Path(args.out) / ".calibration", ignore_errors=True)
    calibration = collect([spawn(args, run, args.calibration_epochs, math.inf, True) for run in args.run],
                          start + args.budget / 2)
    shutil.rmtree(Path(args.out) / ".calibration", ignore_errors=True)
    if len(calibration) < len(args.run):
        sys.exit("calibration failed")
    pace = max(r["seconds_per_epoch"] for r in calibration) * PACE_MARGIN
    setup = time.time() - start - pace * (args.calibration_epochs + 1)  # start-up, data, compilation: paid again
    left = args.budget - (time.time() - start) - setup - args.reserve
    epochs = max(1, min(args.max_epochs, int(left / pace)))
    print(json.dumps({"calibration_pace_s": pace, "setup_s": round(setup, 1), "epochs": epochs,
                      "seconds_left": round(left, 1)}), flush=True)
    deadline = start + args.budget - args.reserve
    results = collect([spawn(args, run, epochs, deadline, False) for run in args.run], deadline + args.reserve)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(results, indent=2))
    for r in results:
        print(f"{r['name']:>22}: acc {r['accuracy']:.4f}  tta {r['accuracy_tta']:.4f}  macro-F1 {r['macro_f1']:.4f}"
              f"  epochs {r['epochs_run']}  {r['seconds_per_epoch']} s/epoch")


def throughput(args) -> None:
    """A real FER2013 epoch of the report recipe; images/s of training steps at several batch sizes and precisions."""
    import train_throughput

    data = unpack(args.arrays)
    x, y = model_inputs(data, "train")
    keras.utils.set_random_seed(0)
    _, trainer = compiled(training.REPORT, 1000, 0)
    clock = EpochClock()
    trainer.fit(x, y, batch_size=training.REPORT.batch_size, epochs=3, validation_batch_size=512, verbose=0,
                validation_data=model_inputs(data, "val"), callbacks=[clock])
    print(json.dumps({"fer2013_epoch_s": [round(s, 2) for s in clock.seconds], "recipe": "report, batch 128",
                      "validation": True, "alone_on_device": True}), flush=True)
    rates = matmul_rates()
    print(json.dumps({"device": device(), **rates}), flush=True)
    for precision in ("float32", "mixed_bfloat16"):
        for batch in args.batches:
            config = training.REPORT.replace(batch_size=batch, precision=precision)
            keras.utils.set_random_seed(0)
            with training.precision_policy(precision):
                model, trainer = compiled(config, 1000, 0)
            flops, _ = train_throughput.train_flops_per_image(model)
            n = min(len(x), batch * max(args.steps, 1))
            clock = EpochClock()
            trainer.fit(x[:n], y[:n], batch_size=batch, epochs=1 + args.repeats, verbose=0, callbacks=[clock])
            images = n / float(np.median(clock.seconds[1:]))
            print(json.dumps({"precision": precision, "batch": batch, "images_per_s": round(images),
                              "share_of_matmul_limit": round(images * flops / rates[MATMUL_KEY[precision]], 3),
                              "train_mflop_per_image": round(flops / 1e6, 1)}), flush=True)


def matmul_rates(n: int = 8192, repeats: int = 5) -> dict:
    """FLOP/s of an n^3 matmul on the default device: float32 (full precision) and bfloat16."""
    import jax
    import jax.numpy as jnp

    rates = {}
    for name, dtype, precision in (("float32_flops", jnp.float32, "highest"), ("bfloat16_flops", jnp.bfloat16, None)):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        product = jax.jit(lambda a: jnp.matmul(a, a, precision=precision))
        product(a).block_until_ready()
        start = time.perf_counter()
        for _ in range(repeats):
            product(a).block_until_ready()
        rates[name] = 2 * n ** 3 * repeats / (time.perf_counter() - start)
    return rates


def score(args) -> None:
    """Score each run's weights under this machine's backend on `--data`, beside what the GPU worker measured."""
    data = fer_data.load(args.data)
    rows = []
    for result_file in sorted(Path(args.out).glob("*/result.json")):
        result = json.loads(result_file.read_text())
        if result["fingerprint"] != data.fingerprint:
            raise fer_data.DataError(f"{args.data}: fingerprint {data.fingerprint}, but {result_file} was trained "
                                     f"on {result['fingerprint']}")
        model = models.build("report", result["config"].get("input_norm", "scale"))
        model.load_weights(str(result_file.parent / "model.weights.h5"))
        here = val_scores(model, data)
        rows.append({"name": result["name"], "epochs": result["epochs_run"], "accuracy": here["accuracy"],
                     "accuracy_gpu": result["accuracy"], "accuracy_tta": here["accuracy_tta"],
                     "macro_f1": here["macro_f1"], "macro_f1_gpu": result["macro_f1"],
                     "backend": keras.backend.backend(), "device": training.device_name()})
        print(json.dumps(rows[-1]), flush=True)
    (Path(args.out) / f"score_{keras.backend.backend()}.json").write_text(json.dumps(rows, indent=2))


def main() -> None:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pack", "throughput", "runs", "worker", "score"])
    parser.add_argument("--data", help="FER2013 file or folder (pack, score)")
    parser.add_argument("--arrays", help="the file `pack` wrote")
    parser.add_argument("--out", default="runs/gpu",
                        help="folder of weights and results (runs, score); the file to write (pack)")
    parser.add_argument("--run", action="append", default=[], metavar="NAME:FIELD=VALUE,...",
                        help="a recipe: changes to the report recipe; '+' separates transforms")
    parser.add_argument("--budget", type=float, default=400, help="seconds for calibration and training (runs)")
    parser.add_argument("--reserve", type=float, default=45, help="seconds kept for scoring and saving (runs)")
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--calibration-epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--steps", type=int, default=40, help="training steps per timed epoch (throughput)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=math.inf)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="workers that calibrate together (worker)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.data, args.out)
    else:
        {"throughput": throughput, "runs": runs, "worker": worker, "score": score}[args.command](args)


if __name__ == "__main__":
    main()
