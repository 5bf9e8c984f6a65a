"""The two CNNs: exact parameter counts, shapes and names."""

from __future__ import annotations

import numpy as np
import pytest

from fer_utils import models


def _counts(model) -> tuple[int, int, int]:
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return model.count_params(), trainable, frozen


def test_report_cnn_matches_the_report_exactly():
    model = models.report_cnn()
    assert _counts(model) == (319_975, 318_055, 1_920)
    assert model.get_layer("flatten").output.shape[1:] == (288,)
    assert model.output.shape[1:] == (7,)
    assert [model.get_layer(f"conv{i}").kernel.shape[:2] for i in range(1, 5)] == [(3, 3), (5, 5), (3, 3), (3, 3)]
    assert [model.get_layer(f"conv{i}").filters for i in range(1, 5)] == [32, 64, 64, 32]
    assert model.get_layer(models.LAST_CONV["report"]).output.shape[1:] == (6, 6, 32)


def test_simple_cnn_reads_64_128_512():
    model = models.simple_cnn()
    assert [model.get_layer(f"conv{i}").filters for i in (1, 2)] == [64, 128]
    assert model.get_layer("pool_map").output.shape[1:] == (3, 3, 128)  # the dense layer reads a 3x3 pooled map
    assert model.get_layer("dense512").units == 512
    assert model.output.shape[1:] == (7,)
    assert _counts(model) == (671_239, 669_831, 1_408)  # small enough to ship: 2.7 MB of float32 weights


def test_outputs_are_probabilities():
    model = models.build("report")
    probs = np.asarray(model(np.random.default_rng(0).random((3, 48, 48, 1), dtype=np.float32)))
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        models.build("vgg")


def test_batchnorm_uses_the_fused_kernel_on_tensorflow_only(monkeypatch):
    import keras
    import tensorflow as tf

    layer = models.BatchNormalization(momentum=models.BN_MOMENTUM)
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 4)).astype("float32")
    layer.build(x.shape)
    calls = []
    fused = tf.compat.v1.nn.fused_batch_norm
    monkeypatch.setattr(tf.compat.v1.nn, "fused_batch_norm", lambda *a, **k: calls.append(1) or fused(*a, **k))
    on_tf = np.asarray(layer(x, training=True))
    assert calls == [1]
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")  # as the GPU script's JAX backend sees it
    elsewhere = np.asarray(layer(x, training=True))
    assert calls == [1]  # Keras' own BatchNormalization maths, which every backend has
    np.testing.assert_allclose(elsewhere, on_tf, atol=1e-5)


def test_per_image_standardisation_adds_no_weights_and_matches_tensorflow(tmp_path):
    import keras
    import tensorflow as tf

    model = models.build("report", "per_image")
    assert _counts(model) == (319_975, 318_055, 1_920)
    assert model.get_layer("conv1").input is model.get_layer("standardize").output
    x = np.random.default_rng(0).random((3, 48, 48, 1), dtype=np.float32)
    x[2] = 0.5  # a blank image: zeros out, not NaNs
    out = np.asarray(model.get_layer("standardize")(x))
    np.testing.assert_allclose(out, tf.image.per_image_standardization(x).numpy(), atol=1e-5)
    assert np.all(out[2] == 0)
    np.testing.assert_allclose(out[0], np.asarray(model.get_layer("standardize")(x[:1] * 0.5 + 0.2))[0], atol=1e-4)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras").predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-6)
    assert "standardize" not in [layer.name for layer in models.build("report").layers]
    with pytest.raises(ValueError, match="unknown input_norm 'zca'"):
        models.build("simple", "zca")
