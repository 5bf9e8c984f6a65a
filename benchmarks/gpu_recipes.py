"""Train recipes side by side on one GPU within a time budget, and time training steps there; TensorFlow or JAX.

For any machine with a GPU and TensorFlow or JAX (with JAX alone, run with KERAS_BACKEND=jax); on a CPU it runs
too, slowly, which is how its test runs it. The model (fer_utils.models), the recipes (fer_utils.training's
TrainConfig: optimiser, schedule, augmentation layers, label smoothing, BatchNorm recalibration) and the scores
(fer_utils.evaluation) are the package's own; only the input feed differs from `training.fit`: arrays handed to
`model.fit` and augmentation inside the training graph, no tf.data. Each run is saved as fer_utils saves one
(model.weights.h5, history.csv, meta.json), so `python -m fer_utils evaluate --model FOLDER` and
`python -m benchmarks.recalibrate_runs` load it under any backend.

    python -m benchmarks.gpu_recipes pack --data data/fer2013.csv --out .gpu/fer2013.npz.xz   # one small file
    python -m benchmarks.gpu_recipes throughput --data .gpu/fer2013.npz.xz
    python -m benchmarks.gpu_recipes runs --data .gpu/fer2013.npz.xz --out runs/gpu --budget 900 \\
        --run report: --run augmented:recipe=augmented --run cosine:schedule=cosine,recalibrate_bn=true

`--data` takes what `pack` wrote or any FER file `fer_utils.data.load` reads. A run is `NAME:FIELD=VALUE,...`:
changes to the report recipe (or to `recipe=augmented`), '+' between transforms (`augmentation=flip+shift`).
`runs` starts one worker process per run. All workers first compile and train one epoch, wait for each other,
then time `--calibration-epochs` all at once; every run then gets the same number of epochs, what fits in
`--budget` seconds at the slowest worker's pace plus a margin (at most `--max-epochs`), so a cosine schedule
ends where it was planned to. A run still going at the deadline stops after that epoch. Each worker scores its
last epoch (after recalibration, where the recipe has it) on the validation split (PublicTest), prints one JSON
line and saves the run under `--out/NAME`. `throughput` times a real epoch of the report recipe, then training
steps at each batch size and precision against a matmul at that precision on the same device.
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
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

from benchmarks.train_recipe import parse_value, recipe, val_scores
from benchmarks.train_throughput import train_flops_per_image
from fer_utils import data as fer_data
from fer_utils import models, training

ROOT = Path(__file__).resolve().parent.parent  # workers run from here, so that `benchmarks` imports
PACE_MARGIN = 1.1  # epochs of the real runs are planned at the calibrated pace plus this margin
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policies; bfloat16 lives only here


def pack(data_path: str, out: str) -> None:
    """Write the splits of a FER file as one xz-compressed .npz, with the data's fingerprint."""
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
                                {s: arrays[f"y_{s}"] for s in fer_data.SPLITS}, str(arrays["source"]), str(path))
        if data.fingerprint != str(arrays["fingerprint"]):
            raise fer_data.DataError(f"{path}: fingerprint {data.fingerprint} != stored {arrays['fingerprint']}")
    return data


def load_data(path: str) -> fer_data.FerData:
    """What `pack` wrote, or any FER file or folder `fer_utils.data.load` reads."""
    return unpack(path) if str(path).endswith(".npz.xz") else fer_data.load(path, verbose=False)


def model_inputs(data: fer_data.FerData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split as the model takes it: scaled (N, 48, 48, 1) images and one-hot labels."""
    return fer_data.scale(data.x[split]), keras.utils.to_categorical(data.y[split], len(fer_data.CLASSES))


def parse_run(text: str) -> tuple[str, training.TrainConfig]:
    """'flip:augment=true,augmentation=flip+shift' -> ('flip', the report recipe with those changes).

    `recipe=augmented` starts from that recipe instead; an unknown field or transform stops with a message.
    """
    name, _, changes = text.partition(":")
    fields = {k: parse_value(v.replace("+", ",")) for k, v in
              (item.split("=", 1) for item in filter(None, changes.split(",")))}
    if not name or "epochs" in fields:
        raise SystemExit(f"--run {text}: give NAME:FIELD=VALUE,... without epochs (runs plans them)")
    return name, recipe(str(fields.pop("recipe", "report")), fields)


def compiled(config: training.TrainConfig, steps: int, seed: int):
    """(model, trainer): the report CNN, and the same CNN behind the recipe's augmentation layers, compiled."""
    model = models.build("report", config.input_norm)
    inputs = keras.Input(models.INPUT_SHAPE)
    augmented = training.augmenter(seed, config.augmentation)(inputs) if config.augment else inputs
    return model, training.compile_model(keras.Model(inputs, model(augmented)), config, steps)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend; on TensorFlow also make its ops deterministic, as fer_utils trains."""
    if keras.backend.backend() == "tensorflow":
        training.set_seed(seed)
    else:
        keras.utils.set_random_seed(seed)


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
    """Train one run for `--epochs` (or calibrate), score it, save it as a fer_utils run, print a JSON line."""
    data = load_data(args.data)
    name, config = parse_run(args.run[0])
    config = config.replace(epochs=args.epochs)
    seed_everything(args.seed)
    (x_train, y_train), val = model_inputs(data, "train"), model_inputs(data, "val")
    steps = config.epochs * math.ceil(len(x_train) / config.batch_size)
    with training.precision_policy(args.precision):
        model, trainer = compiled(config, steps, args.seed)
        fit = functools.partial(trainer.fit, x_train, y_train, batch_size=config.batch_size, shuffle=True,
                                validation_data=val, validation_batch_size=512, verbose=0)
        if args.calibrate:  # compile and warm up, then time epochs only once every worker is training too
            fit(epochs=1)
            barrier(Path(args.out) / ".calibration", args.workers)
        deadline, clock = Deadline(args.deadline), EpochClock()
        start = time.perf_counter()
        history = fit(epochs=config.epochs, callbacks=[keras.callbacks.TerminateOnNaN(), deadline, clock])
        seconds = time.perf_counter() - start
        recalibration = time.perf_counter()
        if config.recalibrate_bn and not args.calibrate:
            training.recalibrate_batchnorm(model, x_train)
        recalibration = time.perf_counter() - recalibration
    frame = training.history_frame(history).assign(seconds=clock.seconds)
    timed = clock.seconds[0 if args.calibrate else 1:] or clock.seconds  # a real run's first epoch compiles
    result = {"name": name, "epochs_run": len(frame), "stopped_at_deadline": deadline.hit,
              "seconds": round(seconds, 1), "seconds_per_epoch": round(statistics.median(timed), 2)}
    if not args.calibrate:
        result.update(val_scores(model, data))
        meta = {"model": "report", "config": dataclasses.asdict(config), "seed": args.seed,
                "command": shlex.join(["python", "-m", "benchmarks.gpu_recipes", *sys.argv[1:]]),
                "commit": training.git_commit(), "data_source": data.source, "data_path": data.path,
                "data_fingerprint": data.fingerprint, "device": device(), "backend": keras.backend.backend(),
                "dtype_policy": args.precision, "recalibration_seconds": round(recalibration, 1), "resumed_at": [],
                "best_epoch": int(frame["val_accuracy"].idxmax()),
                "best_val_accuracy": float(frame["val_accuracy"].max()),
                "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "keras": keras.__version__,
                "python": platform.python_version(), **result}
        training.save_run(training.Run(model, frame.round(5), meta), Path(args.out) / name)
    print(json.dumps(result), flush=True)


def barrier(folder: Path, workers: int, timeout: float = 300) -> None:
    """Wait until `workers` processes have called this with the same folder (or `timeout` seconds pass)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(os.getpid())).touch()
    end = time.time() + timeout
    while len(list(folder.iterdir())) < workers and time.time() < end:
        time.sleep(0.2)


def device() -> str:
    """The device the backend computes on, in words."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        return f"{d.platform.upper()} ({d.device_kind})"
    if backend == "tensorflow":
        return training.device_name()
    return f"{backend} ({platform.processor() or platform.machine()})"


def spawn(args, run: str, epochs: int, deadline: float, calibrate: bool) -> subprocess.Popen:
    """Start one worker for `run`, in the repository root, with paths made absolute."""
    command = [sys.executable, "-m", "benchmarks.gpu_recipes", "worker", "--data", str(Path(args.data).resolve()),
               "--out", str(Path(args.out).resolve()), "--run", run, "--epochs", str(epochs), "--deadline",
               str(deadline), "--seed", str(args.seed), "--workers", str(len(args.run)), "--precision", args.precision]
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true",  # shared GPU
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_gpu_deterministic_ops=true".strip()}
    command += ["--calibrate"] if calibrate else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)


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
    if not args.run:
        raise SystemExit("runs: give at least one --run NAME:FIELD=VALUE,...")
    names = [parse_run(run)[0] for run in args.run]  # a bad spec stops here, before any worker starts
    if len(set(names)) < len(names):
        raise SystemExit(f"runs: each --run needs its own name, got {names}")
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
        print(f"{r['name']:>22}: acc {r['accuracy']:.4f}  tta {r['accuracy_tta']:.4f}  10 views "
              f"{r['accuracy_tta10']:.4f}  macro-F1 {r['macro_f1']:.4f}  epochs {r['epochs_run']}  "
              f"{r['seconds_per_epoch']} s/epoch")


def throughput(args) -> None:
    """A real epoch of the report recipe; images/s of training steps at each batch size and precision."""
    data = load_data(args.data)
    x, y = model_inputs(data, "train")
    seed_everything(0)
    _, trainer = compiled(training.REPORT, 1000, 0)
    clock = EpochClock()
    trainer.fit(x, y, batch_size=training.REPORT.batch_size, epochs=1 + args.repeats, validation_batch_size=512,
                verbose=0, validation_data=model_inputs(data, "val"), callbacks=[clock])
    print(json.dumps({"device": device(), "backend": keras.backend.backend(), "recipe": "report",
                      "epoch_s": [round(s, 2) for s in clock.seconds], "first_epoch_compiles": True,
                      "validation": True, "images": len(x)}), flush=True)
    rates = {}
    for precision in args.precisions:
        compute = keras.mixed_precision.DTypePolicy(precision).compute_dtype
        if compute not in rates:
            rates[compute] = matmul_rate(compute, args.matmul_n)
            print(json.dumps({"matmul": compute, "n": args.matmul_n, "gflop_per_s": round(rates[compute] / 1e9, 1)}),
                  flush=True)
        for batch in args.batches:
            seed_everything(0)
            with training.precision_policy(precision):
                model, trainer = compiled(training.REPORT.replace(batch_size=batch), 1000, 0)
            flops, _ = train_flops_per_image(model)
            n = min(len(x), batch * max(args.steps, 1))
            clock = EpochClock()
            trainer.fit(x[:n], y[:n], batch_size=batch, epochs=1 + args.repeats, verbose=0, callbacks=[clock])
            images = n / statistics.median(clock.seconds[1:])
            print(json.dumps({"precision": precision, "batch": batch, "images_per_s": round(images, 1),
                              "share_of_matmul_limit": round(images * flops / rates[compute], 4),
                              "train_mflop_per_image": round(flops / 1e6, 1)}), flush=True)


def matmul_rate(dtype: str, n: int, repeats: int = 3) -> float:
    """FLOP/s of an n x n matmul in `dtype` on the backend's default device and precision, best of `repeats`."""
    a = keras.ops.cast(keras.random.normal((n, n), seed=0), dtype)

    def product() -> float:
        """The product's sum, read back to the host: it waits for the product."""
        return float(keras.ops.convert_to_numpy(keras.ops.cast(keras.ops.sum(keras.ops.matmul(a, a)), "float32")))

    product()  # compile and warm up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        product()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best


def main() -> None:
    """Parse the command line and run one command."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_recipes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["pack", "throughput", "runs", "worker"])
    parser.add_argument("--data", required=True, help="a FER file or folder, or the .npz.xz `pack` wrote")
    parser.add_argument("--out", default="runs/gpu", help="folder of the runs (runs); the file to write (pack)")
    parser.add_argument("--run", action="append", default=[], metavar="NAME:FIELD=VALUE,...",
                        help="a run: changes to the report recipe (or recipe=augmented); '+' separates transforms")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS, help="dtype policy of the runs")
    parser.add_argument("--budget", type=float, default=600, help="seconds for calibration and training (runs)")
    parser.add_argument("--reserve", type=float, default=45, help="seconds kept for scoring and saving (runs)")
    parser.add_argument("--max-epochs", type=int, default=300)
    parser.add_argument("--calibration-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS,
                        help="dtype policies to time (throughput)")
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512, 2048], help="batch sizes (throughput)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per timed epoch (throughput)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs after a warm-up one (throughput)")
    parser.add_argument("--matmul-n", type=int, default=8192, help="side of the timed matmul (throughput)")
    worker_only = parser.add_argument_group("set by `runs` for its workers")
    worker_only.add_argument("--epochs", type=int, default=1)
    worker_only.add_argument("--deadline", type=float, default=math.inf)
    worker_only.add_argument("--calibrate", action="store_true")
    worker_only.add_argument("--workers", type=int, default=1, help="workers that calibrate together")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args.data, args.out)
    else:
        {"throughput": throughput, "runs": runs, "worker": worker}[args.command](args)


if __name__ == "__main__":
    main()
