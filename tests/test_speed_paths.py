"""The throughput benchmark (`python -m benchmarks.train_throughput`): its faster paths compute what the plain ones
do, it counts FLOPs right, its PyTorch reference is the same network, and it runs end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from benchmarks import train_throughput as bench
from fer_utils import data as fer_data
from fer_utils import models
from fer_utils.data import PROJECT_ROOT

STEPS, BATCH = 4, 16


def short_run(batch_norm: str, seed: int = 0) -> tuple[list[float], keras.Model]:
    """The report CNN with `batch_norm` layers, trained for STEPS fixed batches; the losses and the model."""
    keras.utils.set_random_seed(seed)
    model = bench.with_batchnorm(models.build("report"), batch_norm)
    model.compile(keras.optimizers.Adam(1e-3, 0.9, 0.99), keras.losses.CategoricalCrossentropy())
    rng = np.random.default_rng(seed)
    x = fer_data.scale(rng.integers(0, 256, (STEPS * BATCH, 48, 48), dtype=np.uint8))
    y = keras.utils.to_categorical(rng.integers(0, 7, STEPS * BATCH), 7)
    losses = [float(model.train_on_batch(x[i:i + BATCH], y[i:i + BATCH]))
              for i in range(0, len(x), BATCH)]
    return losses, model


@pytest.fixture(scope="module")
def runs():
    return {kind: short_run(kind) for kind in ("keras", "fused")}


def test_fused_batchnorm_is_a_batchnorm_with_the_same_config():
    model = bench.with_batchnorm(models.build("report"), "fused")
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 6 and all(type(layer) is models.BatchNormalization for layer in norms)
    assert {layer.momentum for layer in norms} == {models.BN_MOMENTUM}
    plain = bench.with_batchnorm(models.build("report"), "keras")
    assert all(type(layer) is keras.layers.BatchNormalization for layer in plain.layers if "bn" in layer.name)


def gradients(batch_norm: str) -> dict[str, np.ndarray]:
    """One training-mode gradient of the report CNN with `batch_norm` layers, by weight name."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = bench.with_batchnorm(models.build("report"), batch_norm)
    rng = np.random.default_rng(0)
    x = fer_data.scale(rng.integers(0, 256, (32, 48, 48), dtype=np.uint8))
    y = keras.utils.to_categorical(rng.integers(0, 7, 32), 7)
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.categorical_crossentropy(y, model(x, training=True)))
    return {w.path: g.numpy() for w, g in zip(model.trainable_weights, tape.gradient(loss, model.trainable_weights))}


def test_fused_batchnorm_gradients_match_keras():
    plain, fused = gradients("keras"), gradients("fused")
    scale = max(np.abs(g).max() for g in plain.values())
    for name, g in plain.items():
        np.testing.assert_allclose(fused[name], g, rtol=0, atol=1e-4 * scale, err_msg=name)
        if name.endswith("/bias") and name != "predictions/bias":  # a bias before BatchNorm: exactly 0 in theory
            assert np.abs(g).max() < 1e-4 * scale and np.abs(fused[name]).max() < 1e-4 * scale


def test_fused_batchnorm_trains_like_keras_within_float_tolerance(runs):
    (keras_losses, keras_model), (fused_losses, fused_model) = runs["keras"], runs["fused"]
    assert keras_losses[-1] != keras_losses[0]
    np.testing.assert_allclose(fused_losses, keras_losses, rtol=1e-4)
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            other = fused_model.get_layer(layer.name).moving_variance.numpy()
            np.testing.assert_allclose(other, layer.moving_variance.numpy(), rtol=1e-4)
    # Biases feeding a BatchNorm have float-noise gradients that Adam scales up to the learning rate, so
    # weights and moving means drift apart by ~1e-3 on any change of summation order; the function does not.
    probe = fer_data.scale(np.random.default_rng(9).integers(0, 256, (32, 48, 48), dtype=np.uint8))
    np.testing.assert_allclose(fused_model.predict(probe, verbose=0), keras_model.predict(probe, verbose=0),
                               atol=1e-3)


def test_fused_batchnorm_is_reproducible_bit_for_bit(runs):
    losses, model = runs["fused"]
    again_losses, again = short_run("fused")
    assert again_losses == losses
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_flops_per_image_of_the_report_cnn():
    macs = [48 * 48 * 9 * 1 * 32, 24 * 24 * 25 * 32 * 64, 12 * 12 * 9 * 64 * 64, 6 * 6 * 9 * 64 * 32,
            288 * 256, 256 * 512, 512 * 7]
    training, forward = bench.train_flops_per_image(models.build("report"))
    assert forward == 2 * sum(macs)
    assert training == 3 * forward - 2 * macs[0]  # no input gradient for the first conv


def test_flops_count_forward_weight_and_input_gradients():
    assert bench.train_flops([10, 100]) == (2 * 110 + 2 * 10 + 4 * 100, 220)


# Run in a process of its own with Keras on the torch backend: PyTorch imported beside TensorFlow crashes the process.
TORCH_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    try:
        import torch
    except ImportError:
        print(json.dumps({"skip": "PyTorch is not installed"}))
        sys.exit(0)
    from benchmarks import train_throughput as bench
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8), rng.integers(0, 7, 64)
    trainer = bench.TorchTrainer(bench.replace(bench.TORCH_SETUPS[1], batch=16), x, y, steps=4)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    steps = trainer.epoch()
    print(json.dumps({"counts": bench.torch_parameter_counts(bench.torch_report_cnn()),
                      "flops": [trainer.flops, trainer.forward_flops],
                      "channels_last": trainer.x.is_contiguous(memory_format=torch.channels_last),
                      "steps_timed": len(steps),
                      "all_trained": all(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())),
                      "tensorflow_loaded": "tensorflow" in sys.modules}))
""")


def test_torch_reference_is_the_report_cnn():
    """The PyTorch reference has the Keras model's parameter counts and FLOPs, and its steps train."""
    done = subprocess.run([sys.executable, "-c", TORCH_CHECK], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "torch"})
    assert done.returncode == 0, done.stderr[-3000:]
    check = json.loads(done.stdout.splitlines()[-1])
    if "skip" in check:
        pytest.skip(check["skip"])
    keras_model = models.build("report")
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    assert check["counts"] == [trainable, keras_model.count_params() - trainable] == [318_055, 1_920]
    assert tuple(check["flops"]) == bench.train_flops_per_image(keras_model)
    assert check["channels_last"] and check["all_trained"] and check["steps_timed"] == 3
    assert not check["tensorflow_loaded"]


def test_quick_benchmark_times_both_paths_against_the_matmul_limit():
    """`python -m benchmarks.train_throughput --quick` runs end to end: two paths, then the headline."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.train_throughput", "--quick", "--models", "report",
                           "--steps", "3", "--repeats", "2"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    *rows, headline = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [row["feed"] for row in rows] == ["numpy", "tfdata"]
    assert all(row["steps_timed"] == 2 * 2 for row in rows)  # each round's first step is left out
    before, now = rows
    for row in rows:  # the derived fields follow from images/s, the FLOPs per image and the matmul's rate
        per_s, mflop = row["images_per_s"], row["train_mflop_per_image"]
        assert row["gflop_per_s"] == pytest.approx(per_s * mflop / 1e3, rel=0.02, abs=0.1)
        assert row["ratio_to_matmul"] == pytest.approx(per_s * mflop / (row["matmul_gflop_per_s"] * 1e3), rel=0.05,
                                                       abs=2e-3)
        assert row["seconds_per_fer2013_epoch"] == pytest.approx(bench.FER_TRAIN_IMAGES / per_s, rel=0.01)
        assert row["cores_busy"] == pytest.approx(per_s / row["images_per_cpu_s"], rel=0.02, abs=0.01)
        assert row["speedup_vs_before"] == pytest.approx(per_s / before["images_per_s"], abs=0.01)
    assert before["speedup_vs_before"] == 1.0
    assert headline["headline"].startswith("report CNN") and "torch" not in headline
    assert headline["train_mflop_per_image"] == round(bench.train_flops_per_image(models.build("report"))[0] / 1e6, 1)
    assert {key: headline[key] for key in ("images_per_s", "speedup_vs_before", "ratio_to_matmul")} == \
        {key: now[key] for key in ("images_per_s", "speedup_vs_before", "ratio_to_matmul")}  # the current path's row
    assert headline["images_per_s_before"] == before["images_per_s"]
    assert headline["matmul_limit_images_per_s"] == pytest.approx(
        headline["matmul_gflop_per_s"] * 1e3 / headline["train_mflop_per_image"], rel=0.02)
