"""Training throughput of the report and simple CNNs, against this machine's own matmul limit.

    python -m benchmarks.train_throughput                 # CPU paths side by side, report + simple CNN
    python -m benchmarks.train_throughput --quick         # the before/now pair only
    python -m benchmarks.train_throughput --data data/fer2013.csv --steps 10 --repeats 5
    python -m benchmarks.train_throughput --quick --torch  # + the same network in PyTorch, as a reference

Every configuration is prepared in long-lived worker processes (one per environment: oneDNN on/off,
thread settings, op determinism), and the timed rounds are interleaved across all of them, so that a
machine shared with other jobs slows every path alike. A round is one `model.fit` over `--steps` batches,
as training runs; a clock reading at the end of every step gives step times (the first of each round,
which carries fit's start-up, is left out, as it is amortised over a real epoch's 225 steps), and the
figures are medians over all rounds' steps. Each round also times a float32 matmul, the machine's limit:
the ratio is (images/s x training FLOP per image) / matmul FLOP/s. Training FLOP per image are counted
from the model's Conv2D and Dense layers: forward, weight gradient and input gradient (none for the
first layer). Besides wall-clock images/s, images per CPU-second of the worker are given: on a loaded
machine that figure tracks the work a path needs rather than the share of the CPU it was given.

`--torch` adds the report CNN written in PyTorch (same layers, parameter counts, FLOPs, optimiser and loss),
timed in its own worker in the same interleaved rounds, in the default and the channels-last layout: a
reference for what another framework does on the same machine. PyTorch is not a requirement of the project;
install it for this (`pip install torch --index-url https://download.pytorch.org/whl/cpu`). Its steps take
ready tensors, so it pays no input pipeline. PyTorch is only ever imported in a process without TensorFlow (its
worker runs with KERAS_BACKEND=torch): importing it beside TensorFlow can crash the process.

Prints one JSON line per configuration; the last line is the headline for the report CNN.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import time
from dataclasses import asdict, dataclass, replace

FER_TRAIN_IMAGES = 28_709  # FER2013 "Training" rows: one real epoch
MATMUL_N = 2048


@dataclass(frozen=True)
class Setup:
    """One way to train: the model, batch size, input pipeline and options, in one worker environment."""

    name: str
    model: str = "report"
    batch: int = 128
    feed: str = "tfdata"  # "numpy": model.fit(arrays); "tfdata": to_dataset; "tensors": PyTorch's
    env: str = "default"  # a key of ENVIRONMENTS
    batch_norm: str | None = None  # None: as fer_utils.models builds it; "keras": Keras' own; "fused": one tf kernel
    jit: bool = False  # XLA jit_compile
    policy: str = "float32"  # Keras dtype policy, e.g. "mixed_bfloat16" (changes the maths: opt-in only)
    augment: bool = False  # the augmented recipe's augmentation map
    layout: str = "channels_first"  # PyTorch setups only: "channels_first" (NCHW) or "channels_last"


# Worker environments: extra environment variables, intra/inter-op threads (0 = TensorFlow's choice),
# and whether op determinism is on (fer_utils.training.set_seed turns it on).
ENVIRONMENTS = {
    "default": ({}, 0, 0, True),
    "inter1": ({}, 0, 1, True),
    "no-determinism": ({}, 0, 0, False),
    "onednn-off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, 0, 0, True),
    "torch": ({"KERAS_BACKEND": "torch"}, 0, 0, True),  # a PyTorch worker: no TensorFlow in it
}
TORCH_SETUPS = (Setup("PyTorch (reference), NCHW", feed="tensors", env="torch"),
                Setup("PyTorch (reference), channels-last", feed="tensors", env="torch", layout="channels_last"))


def plan(models: list[str], batches: list[int], quick: bool) -> list[Setup]:
    """The configurations to time: the old path, fer_utils' path now, and variants of it."""
    before = Setup("before: model.fit(numpy arrays), Keras BatchNorm", feed="numpy", batch_norm="keras")
    now = Setup("now: fer_utils.training path")
    if quick:
        return [before, now]
    keras_bn, fused = replace(now, batch_norm="keras"), replace(now, batch_norm="fused")
    setups = [before, now,
             replace(keras_bn, name="tf.data pipeline, Keras BatchNorm"),
             replace(fused, name="tf.data pipeline, fused BatchNorm"),
             replace(keras_bn, name="Keras BatchNorm, inter-op threads 1", env="inter1"),
             replace(fused, name="fused BatchNorm, inter-op threads 1", env="inter1"),
             replace(now, name="op determinism off", env="no-determinism"),
             replace(now, name="oneDNN off", env="onednn-off"),
             replace(keras_bn, name="XLA jit_compile, Keras BatchNorm", jit=True),
             replace(fused, name="XLA jit_compile, fused BatchNorm", jit=True),
             replace(keras_bn, name="mixed_bfloat16 (opt-in: changes the maths)", policy="mixed_bfloat16"),
             replace(fused, name="mixed_bfloat16 + fused BatchNorm (opt-in)", policy="mixed_bfloat16"),
             replace(keras_bn, name="augmentation (augmented recipe), Keras BatchNorm", augment=True),
             replace(fused, name="augmentation (augmented recipe), fused BatchNorm", augment=True)]
    for model in models:
        for batch in batches:
            for bn in ("keras", "fused"):
                if not (model == "report" and batch == 128):
                    setups.append(replace(now, name=f"{model} CNN, batch {batch}, {bn} BatchNorm", model=model,
                                         batch=batch, batch_norm=bn))
    return setups


# ---------------------------------------------------------------------------------------------- worker side


def with_batchnorm(model, kind: str):
    """A copy of `model` with the same weights and every BatchNormalization of `kind`: "keras" or "fused"."""
    import keras

    from fer_utils.models import BatchNormalization

    target = {"keras": keras.layers.BatchNormalization, "fused": BatchNormalization}[kind]

    def clone(layer):
        cls = target if isinstance(layer, keras.layers.BatchNormalization) else layer.__class__
        return cls.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def train_flops(macs: list[int]) -> tuple[float, float]:
    """(training, forward) FLOP per image from the multiply-adds of each Conv2D and Dense layer, in order."""
    forward = 2.0 * sum(macs)
    backward = 2.0 * macs[0] + 4.0 * sum(macs[1:])  # weight gradients, plus input gradients after the first layer
    return forward + backward, forward


def train_flops_per_image(model) -> tuple[float, float]:
    """(training, forward) FLOP per image of a Keras model's Conv2D and Dense layers."""
    import keras

    macs = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            out, k = layer.output.shape, layer.kernel.shape
            macs.append(out[1] * out[2] * k[0] * k[1] * k[2] * k[3])
        elif isinstance(layer, keras.layers.Dense):
            macs.append(layer.kernel.shape[0] * layer.kernel.shape[1])
    return train_flops(macs)


class Trainer:
    """A compiled model and its input, ready to time `steps` training steps through model.fit."""

    def __init__(self, setup: Setup, x, y, steps: int):
        import keras

        from fer_utils import data as fer_data
        from fer_utils import models, training

        keras.mixed_precision.set_global_policy(setup.policy)
        keras.utils.set_random_seed(0)
        model = models.build(setup.model)
        if setup.batch_norm:
            model = with_batchnorm(model, setup.batch_norm)
        model.compile(optimizer=keras.optimizers.Adam(1e-3, 0.9, 0.99), loss=keras.losses.CategoricalCrossentropy(),
                      metrics=["accuracy"], jit_compile=setup.jit)
        keras.mixed_precision.set_global_policy("float32")
        n = steps * setup.batch
        self.model, self.setup = model, setup
        self.flops, self.forward_flops = train_flops_per_image(model)
        if setup.feed == "numpy":
            self.inputs = (fer_data.scale(x[:n]), keras.utils.to_categorical(y[:n], len(fer_data.CLASSES)))
        else:
            augment = training.augmenter(0, training.AUGMENTED.augmentation) if setup.augment else None
            self.inputs = (training._one_hot(fer_data.to_dataset(x[:n], y[:n], setup.batch, shuffle=True, seed=0,
                                                                 augment=augment)),)
        self.images = n

    def epoch(self) -> list[tuple[float, float]]:
        """One pass over the prepared images (`steps` steps); (wall, CPU) seconds of the steps after the first."""
        import keras

        ends = []

        class StepClock(keras.callbacks.Callback):
            """Clock readings at the end of every training step."""

            def on_train_batch_end(self, batch, logs=None):
                ends.append((time.perf_counter(), time.process_time()))

        if self.setup.feed == "numpy":
            self.model.fit(*self.inputs, batch_size=self.setup.batch, shuffle=True, epochs=1, verbose=0,
                           callbacks=[StepClock()])
        else:
            self.model.fit(*self.inputs, epochs=1, verbose=0, callbacks=[StepClock()])
        return step_times(ends)


def step_times(ends: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of each step from the clock readings at step ends; the first step has none."""
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(ends, ends[1:])]


def torch_report_cnn():
    """The report CNN in PyTorch: fer_utils.models' layers in the same order, sizes and BatchNorm momentum."""
    from torch import nn

    from fer_utils.models import BN_MOMENTUM, CLASSES, DROPOUT, INPUT_SHAPE, REPORT_CONV, REPORT_DENSE

    def norm(kind, width: int):
        return kind(width, eps=1e-3, momentum=1 - BN_MOMENTUM)  # Keras' epsilon; torch counts momentum the other way

    layers, channels, side = [], INPUT_SHAPE[-1], INPUT_SHAPE[0]
    for filters, kernel in REPORT_CONV:
        layers += [nn.Conv2d(channels, filters, kernel, padding="same"), norm(nn.BatchNorm2d, filters), nn.ReLU(),
                   nn.MaxPool2d(2), nn.Dropout(DROPOUT)]
        channels, side = filters, side // 2
    width = channels * side * side
    layers.append(nn.Flatten())
    for units in REPORT_DENSE:
        layers += [nn.Linear(width, units), norm(nn.BatchNorm1d, units), nn.ReLU(), nn.Dropout(DROPOUT)]
        width = units
    return nn.Sequential(*layers, nn.Linear(width, len(CLASSES)))  # the softmax is inside the loss


def torch_parameter_counts(model) -> tuple[int, int]:
    """(trainable parameters, BatchNorm running statistics) of a PyTorch model, counted as Keras counts them."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    running = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable, running


class TorchTrainer:
    """The report CNN in PyTorch with Adam(1e-3, 0.9, 0.99) and cross-entropy, ready to time `steps` steps."""

    def __init__(self, setup: Setup, x, y, steps: int):
        import torch

        from fer_utils import data as fer_data

        torch.manual_seed(0)
        layout = torch.channels_last if setup.layout == "channels_last" else torch.contiguous_format
        self.model = torch_report_cnn().to(memory_format=layout).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-7)
        self.loss = torch.nn.CrossEntropyLoss()
        n = steps * setup.batch
        images = torch.from_numpy(fer_data.scale(x[:n])).permute(0, 3, 1, 2)  # NHWC to NCHW
        self.x = images.contiguous(memory_format=layout)
        self.y = torch.from_numpy(y[:n].astype("int64"))
        self.setup, self.images, self.layout = setup, n, layout
        self.flops, self.forward_flops = torch_train_flops_per_image(self.model, self.x[:1])

    def epoch(self) -> list[tuple[float, float]]:
        """One shuffled pass over the prepared images; (wall, CPU) seconds of each step but the first."""
        import torch

        order = torch.randperm(self.images)
        ends = []
        for start in range(0, self.images, self.setup.batch):
            batch = order[start:start + self.setup.batch]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self.model(self.x[batch].contiguous(memory_format=self.layout)), self.y[batch])
            loss.backward()
            self.optimizer.step()
            ends.append((time.perf_counter(), time.process_time()))
        return step_times(ends)


def torch_train_flops_per_image(model, image) -> tuple[float, float]:
    """(training, forward) FLOP per image of a PyTorch model's Conv2d and Linear layers, from one forward pass."""
    import torch

    macs = []

    def count(layer, inputs, output):
        if isinstance(layer, torch.nn.Conv2d):
            macs.append(output.shape[2] * output.shape[3] * layer.weight.numel())  # (out, in, kh, kw) per pixel
        else:
            macs.append(layer.weight.numel())

    counted = (torch.nn.Conv2d, torch.nn.Linear)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, counted)]
    with torch.no_grad():
        model.eval()(image)
    model.train()
    for hook in hooks:
        hook.remove()
    return train_flops(macs)


def matmul_rate(repeats: int = 3) -> tuple[float, float]:
    """(FLOP per wall second, FLOP per CPU second) of a float32 MATMUL_N^3 matmul, best of `repeats`."""
    import tensorflow as tf

    a = tf.random.stateless_normal((MATMUL_N, MATMUL_N), (1, 2))
    product = tf.function(lambda a: tf.matmul(a, a))
    product(a).numpy()
    best = (0.0, 0.0)
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        product(a).numpy()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        flop = 2.0 * MATMUL_N ** 3
        best = max(best, (flop / wall, flop / max(cpu, 1e-9)))
    return best


def worker(env: str, data_path: str | None, steps: int, conn) -> None:
    """Serve the parent's requests (see `serve`) with TensorFlow trainers, or PyTorch ones in env "torch"."""
    if env == "torch":
        return serve(conn, lambda setup: TorchTrainer(setup, *load_images(data_path), steps))
    _, intra, inter, determinism = ENVIRONMENTS[env]
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    if determinism:
        tf.config.experimental.enable_op_determinism()
    x, y = load_images(data_path)
    serve(conn, lambda setup: Trainer(setup, x, y, steps))


def serve(conn, make_trainer) -> None:
    """Answer ('add', Setup), ('time', name), ('matmul',), ('device',), ('version',) until ('quit',)."""
    trainers = {}
    while True:
        request = conn.recv()
        if request[0] == "quit":
            return
        try:
            if request[0] == "add":
                setup = request[1]
                trainer = make_trainer(setup)
                trainer.epoch()  # compile and warm up
                trainers[setup.name] = trainer
                conn.send({"flops": trainer.flops, "forward_flops": trainer.forward_flops, "images": trainer.images})
            elif request[0] == "time":
                conn.send({"steps": trainers[request[1]].epoch()})
            elif request[0] == "matmul":
                wall_rate, cpu_rate = matmul_rate()
                conn.send({"wall": wall_rate, "cpu": cpu_rate})
            elif request[0] == "device":
                import tensorflow as tf

                from fer_utils.training import device_name

                conn.send({"device": device_name(), "tensorflow": tf.__version__})
            elif request[0] == "version":
                import torch

                conn.send({"torch": torch.__version__, "threads": torch.get_num_threads()})
        except Exception as error:  # report to the parent, keep serving
            conn.send({"error": f"{type(error).__name__}: {error}"})


def load_images(data_path: str | None):
    """Training images and labels: FER2013's from `data_path`, else random images of FER shape."""
    import numpy as np

    if data_path:
        from fer_utils import data as fer_data

        data = fer_data.load(data_path, verbose=False)
        return data.x["train"], data.y["train"]
    rng = np.random.default_rng(0)
    n = 2048 * 8
    return rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n)


# ---------------------------------------------------------------------------------------------- parent side


class Worker:
    """A worker process for one environment, driven through a pipe."""

    def __init__(self, env: str, data_path: str | None, steps: int):
        extra = ENVIRONMENTS[env][0]
        saved = {k: os.environ.get(k) for k in extra}
        os.environ.update(extra)  # a spawned child takes the environment as it is at start()
        self.conn, child = mp.Pipe()
        self.process = mp.get_context("spawn").Process(target=worker, args=(env, data_path, steps, child), daemon=True)
        self.process.start()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value

    def ask(self, *request) -> dict:
        """Send one request and wait for its answer."""
        self.conn.send(request)
        answer = self.conn.recv()
        if "error" in answer:
            raise RuntimeError(f"{request}: {answer['error']}")
        return answer

    def close(self) -> None:
        """Stop the worker."""
        self.conn.send(("quit",))
        self.process.join(30)


def main() -> None:
    """Time every configuration in interleaved rounds; print JSON lines, the headline last."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["report", "simple"], choices=["report", "simple"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 128, 256])
    parser.add_argument("--steps", type=int, default=6, help="training steps per timed round")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; medians are reported")
    parser.add_argument("--data", default=None, help="FER2013 file (default: random images of FER shape)")
    parser.add_argument("--quick", action="store_true", help="only the before/now pair for the report CNN")
    parser.add_argument("--only", nargs="*", default=None, help="only configurations whose name contains one of these")
    parser.add_argument("--torch", action="store_true", help="also time the report CNN in PyTorch (installed apart)")
    args = parser.parse_args()

    setups = plan(args.models, args.batch_sizes, args.quick)
    if args.only:
        setups = setups[:2] + [s for s in setups[2:] if any(word in s.name for word in args.only)]
    setups += list(TORCH_SETUPS) if args.torch else []
    workers = {env: Worker(env, args.data, args.steps) for env in dict.fromkeys(s.env for s in setups)}
    try:
        info = workers["default"].ask("device")
        if args.torch:
            info.update(workers["torch"].ask("version"))
        shapes = {s.name: workers[s.env].ask("add", s) for s in setups}
        times = {s.name: [] for s in setups}
        matmul = []
        for _ in range(args.repeats):
            matmul.append(workers["default"].ask("matmul"))
            for s in setups:
                times[s.name].append(workers[s.env].ask("time", s.name))
        matmul.append(workers["default"].ask("matmul"))
    finally:
        for w in workers.values():
            w.close()

    limit_wall = statistics.median(m["wall"] for m in matmul)
    limit_cpu = statistics.median(m["cpu"] for m in matmul)
    rows = []
    for s in setups:
        batch, flops = s.batch, shapes[s.name]["flops"]
        steps = [step for t in times[s.name] for step in t["steps"]]
        wall = statistics.median(w for w, _ in steps)
        cpu = statistics.median(c for _, c in steps)
        rows.append({"config": s.name, **{k: v for k, v in asdict(s).items() if k != "name"},
                     "images_per_s": round(batch / wall, 1), "images_per_cpu_s": round(batch / cpu, 1),
                     "images_per_s_fastest_step": round(batch / min(w for w, _ in steps), 1),
                     "cores_busy": round(cpu / wall, 2), "steps_timed": len(steps),
                     "train_mflop_per_image": round(flops / 1e6, 1),
                     "forward_mflop_per_image": round(shapes[s.name]["forward_flops"] / 1e6, 1),
                     "gflop_per_s": round(batch / wall * flops / 1e9, 1),
                     "matmul_gflop_per_s": round(limit_wall / 1e9, 1),
                     "matmul_gflop_per_cpu_s": round(limit_cpu / 1e9, 1),
                     "ratio_to_matmul": round(batch / wall * flops / limit_wall, 3),
                     "ratio_to_matmul_cpu_time": round(batch / cpu * flops / limit_cpu, 3),
                     "seconds_per_fer2013_epoch": round(FER_TRAIN_IMAGES * wall / batch, 1)})
    reference = rows[0]
    for row in rows:
        row["speedup_vs_before"] = round(row["images_per_s"] / reference["images_per_s"], 2)
        row["speedup_vs_before_cpu_time"] = round(row["images_per_cpu_s"] / reference["images_per_cpu_s"], 2)
        print(json.dumps(row))
    now = rows[1]
    fastest = max((r for r in rows if r["model"] == "report" and r["batch"] == 128 and r["policy"] == "float32"
                   and not r["augment"] and r["env"] != "torch"), key=lambda r: r["images_per_cpu_s"])
    torch_rows = [r for r in rows if r["env"] == "torch"]
    torch_best = max(torch_rows, key=lambda r: r["images_per_s"]) if torch_rows else None
    print(json.dumps({
        "headline": "report CNN, batch 128, fer_utils training path", "device": info["device"],
        "tensorflow": info["tensorflow"], "data": args.data or "random images of FER shape",
        "steps_per_round": args.steps, "rounds": args.repeats, "train_mflop_per_image": now["train_mflop_per_image"],
        "matmul_gflop_per_s": now["matmul_gflop_per_s"], "matmul_gflop_per_cpu_s": now["matmul_gflop_per_cpu_s"],
        "matmul_limit_images_per_s": round(limit_wall / (now["train_mflop_per_image"] * 1e6), 1),
        **{k: now[k] for k in ("images_per_s", "images_per_cpu_s", "speedup_vs_before", "speedup_vs_before_cpu_time",
                               "ratio_to_matmul", "ratio_to_matmul_cpu_time", "seconds_per_fer2013_epoch")},
        "images_per_s_before": reference["images_per_s"], "images_per_cpu_s_before": reference["images_per_cpu_s"],
        "fastest_float32_config": fastest["config"],
        **{f"fastest_{k}": fastest[k] for k in ("images_per_s", "images_per_cpu_s", "speedup_vs_before_cpu_time",
                                                "ratio_to_matmul_cpu_time", "seconds_per_fer2013_epoch")},
        **({"torch": info["torch"], "torch_fastest_config": torch_best["config"],
            "torch_images_per_s": torch_best["images_per_s"], "torch_images_per_cpu_s": torch_best["images_per_cpu_s"],
            "now_vs_torch": round(now["images_per_s"] / torch_best["images_per_s"], 2),
            "now_vs_torch_cpu_time": round(now["images_per_cpu_s"] / torch_best["images_per_cpu_s"], 2)}
           if torch_best else {})}))


if __name__ == "__main__":
    main()
