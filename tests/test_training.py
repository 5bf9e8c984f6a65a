"""Training: it learns, it is reproducible from one seed, and its cache hits, misses and never lies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fer_utils import training
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
    assert run.meta["dtype_policy"] == training.dtype_policy() and run.meta["resumed_at"] == []
    assert run.meta["commit"] is None or len(run.meta["commit"].split("+")[0]) == 40


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


def test_recipes_are_one_call_away():
    assert training.RECIPES["report"] == TrainConfig(epochs=200, schedule="step", decay_at=106)  # as shipped
    assert (training.REPORT.learning_rate, training.REPORT.beta_1, training.REPORT.beta_2) == (1e-3, 0.9, 0.99)
    assert training.AUGMENTED.augment and training.AUGMENTED.schedule == "cosine"
    assert training.AUGMENTED.recalibrate_bn and training.AUGMENTED.input_norm == "per_image"
    with pytest.raises(ValueError, match="unknown schedule"):
        training._learning_rate(QUICK.replace(schedule="linear"), 10)


@pytest.mark.parametrize("step, rate", [(0, 1e-3), (2 * 7 - 1, 1e-3), (2 * 7, 1e-4), (5 * 7, 1e-4)])
def test_the_step_schedule_drops_to_a_tenth_after_its_epoch(step, rate):
    schedule = training._learning_rate(TrainConfig(epochs=5, schedule="step", decay_at=2), steps=5 * 7)
    assert float(schedule(step)) == pytest.approx(rate)  # step 14 is the first of epoch 3 (7 steps an epoch)


def test_a_finished_run_continues_with_its_history_data_order_and_schedule(tiny_synthetic, tmp_path):
    config = QUICK.replace(epochs=3, schedule="step", decay_at=2)
    training.save_run(training.fit("report", tiny_synthetic, config.replace(epochs=2), seed=3, verbose=0),
                      tmp_path / "two")
    two = training.load_run(tmp_path / "two")
    more = training.fit("report", tiny_synthetic, config, seed=3, verbose=0, backup_dir=tmp_path / ".more.resume",
                        start_from=two)
    assert list(more.history.index) == [1, 2, 3]
    np.testing.assert_array_equal(more.history.iloc[:2].to_numpy(), two.history.to_numpy())
    assert more.meta["continued"] == [{"from": str(tmp_path / "two"), "after_epoch": 2, "optimizer": "fresh moments"}]
    assert more.meta["seconds"] > two.meta["seconds"] and more.meta["epochs_run"] == 3
    unbacked = training.fit("report", tiny_synthetic, config, seed=3, verbose=0, start_from=two)  # no resume folder
    np.testing.assert_array_equal(unbacked.history.to_numpy(), more.history.to_numpy())
    saved = training.fit("report", tiny_synthetic, config, seed=3, verbose=0, backup_dir=tmp_path / ".more.resume")
    assert saved.meta["resumed_at"] == []  # its backup held every epoch: saved, not resumed
    assert saved.meta["epochs_run"] == 3
    optimizer = more.model.optimizer
    assert int(optimizer.iterations) == 3 * 4 and float(optimizer.learning_rate) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="already ran 2 epochs"):
        training.fit("report", tiny_synthetic, config.replace(epochs=2), seed=3, verbose=0, start_from=two)
    with pytest.raises(ValueError, match="cannot continue as a simple CNN"):
        training.fit("simple", tiny_synthetic, config, seed=3, verbose=0, start_from=two)


def test_the_dtype_policy_and_every_config_field_enter_the_cache_key(tiny_synthetic):
    key = training.run_key("report", tiny_synthetic, QUICK, 3)
    assert key == training.run_key("report", tiny_synthetic, QUICK, 3, policy="float32")  # a CPU trains in float32
    assert training.run_key("report", tiny_synthetic, QUICK, 3, policy="mixed_float16") != key
    for change in ({"augmentation": "flip"}, {"recalibrate_bn": True}, {"input_norm": "per_image"},
                   {"label_smoothing": 0.1}):
        assert training.run_key("report", tiny_synthetic, QUICK.replace(**change), 3) != key


def test_augmenter_applies_only_the_named_transforms():
    images = np.random.default_rng(0).random((32, 48, 48, 1), dtype=np.float32)
    flip = training.augmenter(0, "flip")
    assert [layer.name.split("_")[0] for layer in flip.layers] == ["random"] and len(flip.layers) == 1
    out = np.asarray(flip(images, training=True))
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    same = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(m or s for m, s in zip(mirrored, same)) and 0 < sum(mirrored) < len(images)
    assert len(training.augmenter(0, "flip, shift").layers) == 2
    assert len(training.augmenter(0).layers) == len(training.TRANSFORMS)
    with pytest.raises(ValueError, match="unknown transforms.*'crop'"):
        training.augmenter(0, "flip,crop")


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


def test_recipe_with_recalibration_recalibrates_and_records_its_cost(tiny_synthetic):
    import keras

    from fer_utils.data import scale

    def moving_variances(model) -> list[np.ndarray]:
        return [layer.moving_variance.numpy().copy() for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)]

    run = training.fit("report", tiny_synthetic, QUICK.replace(epochs=1, recalibrate_bn=True), seed=3, verbose=0)
    plain = training.fit("report", tiny_synthetic, QUICK.replace(epochs=1), seed=3, verbose=0)
    assert run.meta["config"]["recalibrate_bn"] and isinstance(run.meta["recalibration_seconds"], float)
    assert plain.meta["recalibration_seconds"] == 0
    # The same training, then the statistics of the training images: recalibrating the plain run gives the same.
    training.recalibrate_batchnorm(plain.model, scale(tiny_synthetic.x["train"]))
    for a, b in zip(moving_variances(run.model), moving_variances(plain.model)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_input_norm_builds_the_model_that_standardises_each_image(tiny_synthetic):
    run = training.fit("report", tiny_synthetic, QUICK.replace(epochs=1, input_norm="per_image"), seed=3, verbose=0)
    assert run.model.get_layer("standardize") and run.meta["config"]["input_norm"] == "per_image"
    assert np.isfinite(run.history["loss"]).all()


RESUMABLE = """
import os, signal, sys
import numpy as np
from fer_utils import training
from fer_utils.synthetic import make_synthetic

kill_after = int(sys.argv[2])
if kill_after:  # the process dies, as under SIGKILL, right after the backup of that epoch is written
    from fer_utils import resume
    write = resume.ResumeState.on_epoch_end
    def write_then_die(self, epoch, logs=None):
        write(self, epoch, logs)
        if epoch + 1 == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
    resume.ResumeState.on_epoch_end = write_then_die
config = training.AUGMENTED.replace(epochs=3, batch_size=64)
run = training.train("report", make_synthetic(seed=1, scale=0.05), config, seed=3, cache_dir=sys.argv[1], verbose=0)
np.savez(os.path.join(sys.argv[1], f"weights-{kill_after}.npz"), *run.model.get_weights())
"""


def test_a_killed_run_resumes_at_its_last_epoch_and_ends_as_if_never_stopped(tmp_path):
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "resumable.py"
    script.write_text(RESUMABLE)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    walls = []

    def run(cache, kill_after: int) -> subprocess.CompletedProcess:
        began = time.perf_counter()
        done = subprocess.run([sys.executable, str(script), str(cache), str(kill_after)], capture_output=True,
                              text=True, env=env, timeout=600)
        walls.append(time.perf_counter() - began)
        return done

    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert run(whole, 0).returncode == 0
    killed = run(stopped, 2)
    assert killed.returncode == -9  # SIGKILL: nothing ran after the second epoch's backup
    assert [p.name for p in stopped.iterdir() if not p.name.startswith(".")] == []  # no run in the cache
    (backup,) = stopped.iterdir()
    assert backup.name.endswith(".resume") and json.loads((backup / "state.json").read_text())["epoch"] == 2
    resumed = run(stopped, 0)
    assert resumed.returncode == 0 and "after epoch 2" in resumed.stdout
    assert not backup.exists()  # the finished run replaced its backup
    (saved,) = [p for p in stopped.iterdir() if p.is_dir()]
    meta, history = json.loads((saved / "meta.json").read_text()), (saved / "history.csv").read_text()
    ((reference,),) = [[p for p in whole.iterdir() if p.is_dir()]]
    assert meta["resumed_at"] == [2] and meta["epochs_run"] == 3
    assert json.loads((reference / "meta.json").read_text())["seconds"] < walls[0]  # training time, counted once
    assert history == (reference / "history.csv").read_text()  # all three epochs, the first two from the backup
    with np.load(whole / "weights-0.npz") as a, np.load(stopped / "weights-0.npz") as b:
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])  # the same final weights, bit for bit


@pytest.mark.parametrize("cut", ["between the renames", "before the renames", "while writing"])
def test_a_stop_during_a_backup_keeps_the_newest_complete_epoch(tmp_path, cut):
    from fer_utils.resume import ResumeState, epoch_of

    def backup(folder: Path, epoch: int, complete: bool = True) -> None:
        folder.mkdir()
        (folder / "state.json").write_text(json.dumps({"epoch": epoch}) if complete else '{"epo')

    state = ResumeState(tmp_path / ".run.resume", [])
    if cut != "between the renames":
        backup(state.dir, 4)
    backup(tmp_path / ".run.resume.tmpold", 4)
    backup(tmp_path / ".run.resume.tmpk3j2", 5, complete=cut != "while writing")
    state.recover()
    assert [p.name for p in tmp_path.iterdir()] == [".run.resume"]
    assert epoch_of(state.dir) == (4 if cut == "while writing" else 5)
