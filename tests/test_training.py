"""Training: it learns, it is reproducible from one seed, and its cache hits, misses and never lies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_utils import models, training
from fer_utils.training import TrainConfig

QUICK = TrainConfig(epochs=2, batch_size=64)


@pytest.fixture(scope="module")
def first_run(tiny_synthetic, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return training.train("report", tiny_synthetic, QUICK, seed=3, cache_dir=cache, verbose=0), cache


def test_short_training_lowers_the_loss(first_run):
    run, _ = first_run
    assert list(run.history.columns) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert run.history["loss"].iloc[-1] < run.history["loss"].iloc[0]
    assert run.meta["epochs_run"] == 2 and run.meta["device"].startswith(("CPU", "GPU"))


def test_two_seeded_runs_are_identical(first_run, tiny_synthetic):
    run, _ = first_run
    again = training.fit("report", tiny_synthetic, QUICK, seed=3, verbose=0)
    np.testing.assert_array_equal(run.history.to_numpy(), again.history.to_numpy())
    for a, b in zip(run.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cache_hit_loads_the_same_model(first_run, tiny_synthetic, monkeypatch):
    run, cache = first_run
    monkeypatch.setattr(training, "fit", lambda *a, **k: pytest.fail("a cache hit must not retrain"))
    loaded = training.train("report", tiny_synthetic, QUICK, seed=3, cache_dir=cache, verbose=0)
    assert loaded.meta == json.loads(json.dumps(run.meta))
    x = np.random.default_rng(0).random((4, 48, 48, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), run.model.predict(x, verbose=0), rtol=1e-6)


def test_any_change_is_a_cache_miss(first_run, tiny_synthetic):
    _, cache = first_run
    key = training.run_key("report", tiny_synthetic, QUICK, 3)
    assert (cache / key / "meta.json").exists()
    assert training.run_key("report", tiny_synthetic, QUICK, 4) != key
    assert training.run_key("simple", tiny_synthetic, QUICK, 3) != key
    assert training.run_key("report", tiny_synthetic, QUICK.replace(epochs=3), 3) != key
    changed = training.FerData({**tiny_synthetic.x}, {**tiny_synthetic.y}, "synthetic", None)
    changed.x["train"] = changed.x["train"].copy()
    changed.x["train"][0, 0, 0] ^= 1
    assert training.run_key("report", changed, QUICK, 3) != key


def test_interrupted_save_leaves_nothing_that_looks_complete(first_run, tmp_path, monkeypatch):
    run, _ = first_run
    target = tmp_path / "runs" / "report-x"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run.history, "to_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        training.save_run(run, target)
    assert not target.exists()
    assert list((tmp_path / "runs").iterdir()) == []  # no half-written temporary folder either


def test_class_weights_favour_rare_classes():
    weights = training.class_weights(np.array([0] * 90 + [1] * 10 + list(range(2, 7)) * 20))
    assert weights[1] > weights[0] > 0
    assert np.average(list(weights.values()), weights=[90, 10] + [20] * 5) == pytest.approx(1.0)


def test_recipes_are_one_call_away():
    assert training.RECIPES["report"] == TrainConfig(epochs=40)
    assert (training.REPORT.learning_rate, training.REPORT.beta_1, training.REPORT.beta_2) == (1e-3, 0.9, 0.99)
    assert training.AUGMENTED.augment and training.AUGMENTED.schedule == "cosine"
    assert training.AUGMENTED.recalibrate_bn and training.AUGMENTED.input_norm == "per_image"
    with pytest.raises(ValueError, match="unknown schedule"):
        training._learning_rate(QUICK.replace(schedule="linear"), 10)


def test_new_config_fields_at_their_defaults_keep_old_cache_keys(tiny_synthetic):
    import dataclasses
    import hashlib

    v1_fields = {k: v for k, v in dataclasses.asdict(QUICK).items() if k not in training.FIELDS_AFTER_V1}
    blob = json.dumps({"model": "report", "data": tiny_synthetic.fingerprint, "config": v1_fields, "seed": 3,
                       "version": 1}, sort_keys=True)
    assert training.run_key("report", tiny_synthetic, QUICK, 3) == f"report-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"
    for change in ({"augmentation": "flip"}, {"precision": "mixed_bfloat16"}, {"recalibrate_bn": True},
                   {"distillation": 0.5}, {"input_norm": "per_image"}):
        assert training.run_key("report", tiny_synthetic, QUICK.replace(**change), 3) != training.run_key(
            "report", tiny_synthetic, QUICK, 3)


def test_augmenter_applies_only_the_named_transforms():
    images = np.random.default_rng(0).random((32, 48, 48, 1), dtype=np.float32)
    flip = training.augmenter(0, "flip")
    assert [layer.name.split("_")[0] for layer in flip.layers] == ["random"] and len(flip.layers) == 1
    out = np.asarray(flip(images, training=True))
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    same = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(m or s for m, s in zip(mirrored, same)) and 0 < sum(mirrored) < len(images)
    assert len(training.augmenter(0, "flip, shift").layers) == 2
    assert len(training.augmenter(0).layers) == len(training.GEOMETRIC.split(","))  # the default leaves out erasing
    assert len(training.augmenter(0, ",".join(training.TRANSFORMS)).layers) == len(training.TRANSFORMS)
    with pytest.raises(ValueError, match="unknown transforms.*'crop'"):
        training.augmenter(0, "flip,crop")


def test_random_erasing_covers_one_patch_in_about_half_the_images_and_repeats_with_its_seed():
    images = np.random.default_rng(0).random((200, 48, 48, 1), dtype=np.float32)
    erased = np.asarray(training.augmenter(0, "erase")(images, training=True))
    share = (erased != images).reshape(len(images), -1).mean(axis=1)
    assert 0.35 < (share > 0).mean() < 0.65  # ERASE_PROBABILITY 0.5
    assert share.max() <= training.ERASE_AREA[1] + 0.01 and 0 < share[share > 0].min()
    np.testing.assert_array_equal(erased, training.augmenter(0, "erase")(images, training=True))
    assert not np.array_equal(erased, training.augmenter(1, "erase")(images, training=True))


def test_recalibrated_batchnorm_holds_the_statistics_of_its_inputs_at_prediction(first_run, tiny_synthetic):
    import keras

    from fer_utils.data import scale

    model = keras.models.clone_model(first_run[0].model)
    model.set_weights(first_run[0].model.get_weights())
    x = scale(tiny_synthetic.x["train"][:300])
    training.recalibrate_batchnorm(model, x, batch_size=64)  # batches that do not divide 300
    for layer in [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]:
        inputs = keras.Model(model.inputs, layer.input).predict(x, verbose=0)
        inputs = inputs.reshape(-1, inputs.shape[-1]).astype(np.float64)
        np.testing.assert_allclose(layer.moving_mean.numpy(), inputs.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(layer.moving_variance.numpy(), inputs.var(0), rtol=1e-3, atol=1e-5)
    before = first_run[0].model.get_layer("bn2").moving_variance.numpy()
    assert not np.allclose(model.get_layer("bn2").moving_variance.numpy(), before)  # training's averages replaced
    kept = [w.copy() for w in model.get_weights()]
    training.recalibrate_batchnorm(model, x)
    for a, b in zip(kept, model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)  # a second pass changes nothing


def test_recipe_with_recalibration_records_its_cost(tiny_synthetic):
    run = training.fit("report", tiny_synthetic, QUICK.replace(epochs=1, recalibrate_bn=True), seed=3, verbose=0)
    assert run.meta["config"]["recalibrate_bn"] and run.meta["recalibration_seconds"] > 0
    assert training.fit("report", tiny_synthetic, QUICK.replace(epochs=1), seed=3, verbose=0).meta[
        "recalibration_seconds"] == 0


def test_input_norm_builds_the_model_that_standardises_each_image(tiny_synthetic):
    run = training.fit("report", tiny_synthetic, QUICK.replace(epochs=1, input_norm="per_image"), seed=3, verbose=0)
    assert run.model.get_layer("standardize") and run.meta["config"]["input_norm"] == "per_image"
    assert np.isfinite(run.history["loss"]).all()


def test_bfloat16_training_is_opt_in_and_leaves_float32_behind(tiny_synthetic):
    import keras

    run = training.fit("report", tiny_synthetic, QUICK.replace(epochs=1, precision="mixed_bfloat16"), seed=3, verbose=0)
    assert run.model.get_layer("conv2").compute_dtype == "bfloat16"
    assert run.model.get_layer("conv2").kernel.dtype == "float32"  # weights stay float32
    with training.precision_policy("mixed_bfloat16"):
        standardize = models.build("report", "per_image").get_layer("standardize")
    assert standardize.compute_dtype == "float32"  # per-image mean and std in float32, not bfloat16
    assert run.model.output.dtype == "float32" and np.isfinite(run.history["loss"]).all()
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        training.fit("report", tiny_synthetic, QUICK.replace(precision="float16"), verbose=0)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_augmentation_is_described_in_the_order_it_is_applied():
    assert training.describe_augmentation("shift,flip") == "mirrored left-right and shifted by up to 10% of the image"
    assert training.describe_augmentation("zoom") == "zoomed by up to 10%"
    assert training.describe_augmentation(training.GEOMETRIC).count(",") == 2
    assert training.describe_augmentation("flip,erase") == (
        "mirrored left-right and 50% of them partly covered by a noise patch (2%-33% of the image)")


def test_distillation_targets_mix_the_label_with_the_teachers_probabilities():
    labels = np.array([0, 3, 6])
    teacher = np.full((3, 7), 1 / 7)
    np.testing.assert_array_equal(training.training_targets(labels), np.eye(7)[labels])
    mixed = training.training_targets(labels, teacher, 0.25)
    np.testing.assert_allclose(mixed, 0.75 * np.eye(7)[labels] + 0.25 / 7, rtol=1e-6)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="none were given"):
        training.training_targets(labels, None, 0.5)
    with pytest.raises(ValueError, match="distillation is 0"):
        training.training_targets(labels, teacher, 0.0)
    with pytest.raises(ValueError, match=r"shape \(2, 7\).*\(3, 7\)"):
        training.training_targets(labels, teacher[:2], 0.5)
    with pytest.raises(ValueError, match="probabilities"):
        training.training_targets(labels, teacher * 2, 0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        training.training_targets(labels, teacher, 1.5)


def test_a_teacher_changes_what_is_learned_and_the_cache_key(first_run, tiny_synthetic):
    from fer_utils.evaluation import predict

    teacher = predict(first_run[0].model, tiny_synthetic.x["train"], tta=True)
    assert teacher.shape == (len(tiny_synthetic.y["train"]), 7)
    np.testing.assert_allclose(teacher.sum(axis=1), 1.0, rtol=1e-5)
    config = QUICK.replace(epochs=1, distillation=1.0)
    student = training.fit("report", tiny_synthetic, config, seed=3, verbose=0, teacher=teacher)
    assert student.meta["teacher"] == training.targets_fingerprint(teacher)
    plain = training.fit("report", tiny_synthetic, QUICK.replace(epochs=1), seed=3, verbose=0)
    assert plain.meta["teacher"] is None
    assert not np.allclose(student.model.get_weights()[0], plain.model.get_weights()[0])
    key = training.run_key("report", tiny_synthetic, config, 3, teacher)
    assert key != training.run_key("report", tiny_synthetic, config, 3)
    assert key != training.run_key("report", tiny_synthetic, config, 3, np.roll(teacher, 1, axis=1))
