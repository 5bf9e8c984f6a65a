"""The benchmarks run as `python -m benchmarks.NAME` from the repository root: train_recipe trains and scores a
recipe, gpu_recipes trains runs side by side (here on the CPU backend) and saves them as fer_utils runs that load
back with the same scores, recalibrate_runs scores saved runs before and after recalibration."""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import gpu_recipes as gpu
from benchmarks import model_card, recalibrate_runs, train_recipe
from benchmarks.train_throughput import train_flops_per_image
from fer_utils import data as fer_data
from fer_utils import models, training
from fer_utils.data import PROJECT_ROOT


def run_module(name: str, *args, env: dict | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    """`python -m benchmarks.NAME ARGS` in the repository root; with `ok`, it must succeed."""
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *map(str, args)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, env=env)
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def json_lines(text: str) -> list[dict]:
    """The JSON objects among printed lines."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_packed_arrays_round_trip_with_their_fingerprint(kaggle_csv, tmp_path):
    packed = tmp_path / "fer.npz.xz"
    gpu.pack(str(kaggle_csv), str(packed))
    original, back = fer_data.load(kaggle_csv, verbose=False), gpu.load_data(str(packed))
    assert back.fingerprint == original.fingerprint
    for split in fer_data.SPLITS:
        np.testing.assert_array_equal(back.x[split], original.x[split])
        np.testing.assert_array_equal(back.y[split], original.y[split])
    assert not list(tmp_path.glob("*.part"))
    assert gpu.load_data(str(kaggle_csv)).fingerprint == original.fingerprint  # a FER file is read as it is


def test_unpack_refuses_arrays_that_do_not_match_their_fingerprint(kaggle_csv, tmp_path):
    packed = tmp_path / "fer.npz.xz"
    gpu.pack(str(kaggle_csv), str(packed))
    with np.load(io.BytesIO(lzma.decompress(packed.read_bytes()))) as arrays:
        changed = {k: arrays[k] for k in arrays.files}
    changed["y_train"] = (changed["y_train"] + 1) % 7
    buffer = io.BytesIO()
    np.savez(buffer, **changed)
    packed.write_bytes(lzma.compress(buffer.getvalue()))
    with pytest.raises(fer_data.DataError, match=r"fer\.npz\.xz: fingerprint"):
        gpu.unpack(str(packed))


def test_run_specs_parse_into_recipes_and_refuse_what_does_not_exist():
    assert gpu.parse_run("plain:") == ("plain", training.REPORT)
    name, config = gpu.parse_run("aug:augment=true,augmentation=flip+shift,label_smoothing=0.1")
    assert name == "aug"
    assert config == training.REPORT.replace(augment=True, augmentation="flip,shift", label_smoothing=0.1)
    assert gpu.parse_run("a:recipe=augmented") == ("a", training.AUGMENTED)
    assert gpu.parse_run("a:recipe=augmented,input_norm=scale")[1] == training.AUGMENTED.replace(input_norm="scale")
    for spec, message in (("x:precision=mixed_bfloat16", "unknown TrainConfig field"),
                          ("x:distillation=0.5", "unknown TrainConfig field"),
                          ("x:augment=true,augmentation=flip+erase", r"unknown transform\(s\) erase"),
                          ("x:recipe=fancy", "unknown recipe 'fancy'"),
                          ("x:epochs=3", "without epochs"), (":augment=true", "without epochs")):
        with pytest.raises(SystemExit, match=message):
            gpu.parse_run(spec)


def test_runs_calibrate_together_train_the_planned_epochs_and_load_back_with_the_same_scores(kaggle_csv, tmp_path,
                                                                                              monkeypatch):
    packed, out = tmp_path / "fer.npz.xz", tmp_path / "runs"
    gpu.pack(str(kaggle_csv), str(packed))
    printed = run_module("gpu_recipes", "runs", "--data", packed, "--out", out, "--budget", 600, "--max-epochs", 2,
                         "--calibration-epochs", 1, "--run", "plain:",
                         "--run", "aug:recipe=augmented,augmentation=flip+shift").stdout
    plan = [line for line in json_lines(printed) if "calibration_pace_s" in line][0]
    assert plan["epochs"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary] == ["plain", "aug"]
    assert all(r["epochs_run"] == 2 and not r["stopped_at_deadline"] for r in summary)
    assert not (out / ".calibration").exists()
    data = fer_data.load(kaggle_csv, verbose=False)
    after = {}
    for result in summary:
        run = training.load_run(out / result["name"])  # saved as fer_utils saves a run
        assert run.meta["data_fingerprint"] == data.fingerprint and len(run.history) == run.meta["epochs_run"] == 2
        assert run.meta["command"].startswith("python -m benchmarks.gpu_recipes worker")
        assert run.meta["backend"] == "tensorflow" and run.meta["dtype_policy"] == "float32"
        here = train_recipe.val_scores(run.model, data)
        assert here["accuracy"] == pytest.approx(result["accuracy"])
        assert here["macro_f1_tta10"] == pytest.approx(result["macro_f1_tta10"])
        assert recalibrated(run.model, fer_data.scale(data.x["train"])) == (result["name"] == "aug")
        after[result["name"]] = train_recipe.val_scores(run.model, data)  # `recalibrated` left it recalibrated
    aug = training.load_run(out / "aug").meta
    assert aug["config"] == dataclasses.asdict(training.AUGMENTED.replace(epochs=2, augmentation="flip,shift"))

    argv = ["--data", kaggle_csv, "--runs", out / "plain", out / "aug", "--out", tmp_path / "bn"]
    monkeypatch.setattr(sys, "argv", ["recalibrate_runs", *map(str, argv)])
    recalibrate_runs.main()  # in this process: one TensorFlow start-up fewer
    rows = [json.loads(line) for line in (tmp_path / "bn").read_text().splitlines()]
    assert [row["run"] for row in rows] == [str(out / "plain"), str(out / "aug")]
    for row, result in zip(rows, summary):
        assert row["epochs"] == 2 and row["accuracy_before"] == pytest.approx(result["accuracy"])
        scores = after[result["name"]]
        assert row["accuracy_after"] == pytest.approx(scores["accuracy"])
        assert row["macro_f1_tta10_after"] == pytest.approx(scores["macro_f1_tta10"])
        assert row["recall_after"] == pytest.approx(scores["recall"])


def recalibrated(model, x: np.ndarray) -> bool:
    """Whether `model`'s BatchNorm statistics already are what recalibrating them on `x` sets (it recalibrates)."""
    norms = [layer for layer in model.layers if "bn" in layer.name]
    saved = [(layer.moving_mean.numpy(), layer.moving_variance.numpy()) for layer in norms]
    training.recalibrate_batchnorm(model, x)
    return all(np.allclose(mean, layer.moving_mean.numpy(), rtol=1e-4, atol=1e-6)
               and np.allclose(variance, layer.moving_variance.numpy(), rtol=1e-4, atol=1e-6)
               for (mean, variance), layer in zip(saved, norms))


def jax_installed() -> bool:
    """Whether JAX imports, asked of another process so that this one does not load it."""
    return subprocess.run([sys.executable, "-c", "import jax"], capture_output=True).returncode == 0


@pytest.mark.skipif(not jax_installed(), reason="JAX is not installed")
def test_a_run_trained_on_jax_loads_back_here_with_the_same_scores(kaggle_csv, tmp_path):
    out = tmp_path / "runs"
    printed = run_module("gpu_recipes", "worker", "--data", kaggle_csv, "--out", out, "--epochs", 2,
                         "--run", "aug:recipe=augmented", env={**os.environ, "KERAS_BACKEND": "jax"}).stdout
    [result] = json_lines(printed)
    run = training.load_run(out / "aug")
    assert run.meta["backend"] == "jax" and run.meta["epochs_run"] == 2
    here = train_recipe.val_scores(run.model, fer_data.load(kaggle_csv, verbose=False))
    assert here["accuracy"] == pytest.approx(result["accuracy"])


def test_throughput_times_each_precision_against_a_matmul_in_its_own_dtype(kaggle_csv):
    printed = run_module("gpu_recipes", "throughput", "--data", kaggle_csv, "--batches", 4, "--steps", 2,
                         "--repeats", 1, "--matmul-n", 64, "--precisions", "float32", "mixed_bfloat16").stdout
    epoch, *lines = json_lines(printed)
    assert len(epoch["epoch_s"]) == 2 and epoch["backend"] == "tensorflow"
    assert epoch["images"] == len(fer_data.load(kaggle_csv, verbose=False).y["train"])  # the whole Training split
    matmul = {line["matmul"]: line["gflop_per_s"] for line in lines if "matmul" in line}
    assert list(matmul) == ["float32", "bfloat16"]
    rows = [line for line in lines if "precision" in line]
    assert [(row["precision"], row["batch"]) for row in rows] == [("float32", 4), ("mixed_bfloat16", 4)]
    flops = round(train_flops_per_image(models.build("report"))[0] / 1e6, 1)
    assert all(row["train_mflop_per_image"] == flops for row in rows)
    for row, dtype in zip(rows, matmul):  # each share is its images/s against the matmul in its own dtype
        share = row["images_per_s"] * row["train_mflop_per_image"] / (matmul[dtype] * 1e3)
        assert row["share_of_matmul_limit"] == pytest.approx(share, rel=0.05, abs=1e-3), (row, matmul)


def test_train_recipe_trains_through_the_cache_and_scores_the_run(kaggle_csv, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "r.json"
    run_module("train_recipe", "--data", kaggle_csv, "--recipe", "report", "--set", "epochs=1",
               "--set", "batch_size=8", "--cache-dir", cache, "--out", out)
    result = json.loads(out.read_text())
    assert result["epochs"] == 1 and result["config"]["batch_size"] == 8 and result["changes"]["epochs"] == "1"
    assert len(result["history"]) == 1
    run = training.load_run(result["run"])
    assert run.path.parent == cache
    assert run.meta["command"].startswith("python -m benchmarks.train_recipe --data")
    scores = train_recipe.val_scores(run.model, fer_data.load(kaggle_csv, verbose=False))
    recall = scores.pop("recall")
    assert result["recall"] == pytest.approx(recall)
    assert {key: result[key] for key in scores} == pytest.approx(scores)  # one, two and ten views


def test_train_recipe_refuses_options_that_left_before_it_trains(kaggle_csv, tmp_path):
    out = tmp_path / "r.json"
    for args, message in ((["--set", "precision=mixed_bfloat16"], "unknown TrainConfig field(s) precision"),
                          (["--set", "augment=true", "--set", "augmentation=flip,erase"], "unknown transform(s) erase"),
                          (["--teacher", "teachers.npz"], "unrecognized arguments: --teacher")):
        done = run_module("train_recipe", "--data", kaggle_csv, *args, "--out", out, ok=False)
        assert done.returncode != 0 and message in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("sig, status", [("TERM", 130), ("KILL", -9)])
def test_resume_check_stops_the_cli_midway_and_the_resumed_run_equals_the_unstopped_one(kaggle_csv, tmp_path,
                                                                                       sig, status):
    out = tmp_path / "check.json"
    run_module("resume_check", "--data", kaggle_csv, "--epochs", 40, "--signal", sig, "--stop-after", 1,
               "--work", tmp_path / "runs", "--out", out)
    result = json.loads(out.read_text())
    stop, resumed_at = result["stop"], result["resume"]["resumed_at"]
    assert stop["status"] == status and not stop["left_a_run_in_out"]
    assert len(resumed_at) == 1 and 1 <= stop["epoch_kept_when_sent"] <= resumed_at[0] < 40
    if sig == "TERM":  # stopped as by Ctrl-C: the CLI says what it kept and how to go on
        assert f"Epoch {resumed_at[0]} is kept in" in "\n".join(stop["log_tail"])
    assert result["resume"]["said"] == [f"Resuming from {tmp_path / 'runs' / '.stopped.resume'} after epoch "
                                        f"{resumed_at[0]}."]
    assert result["history_largest_difference"] == 0.0 and result["same_final_weights"]


@pytest.mark.book  # runs `jb build book/` (one chapter) and reruns it alone
def test_build_times_builds_a_fresh_copy_and_times_each_chapter_in_it_and_alone(tmp_path):
    out, work = tmp_path / "build.json", tmp_path / "copy"
    run_module("build_times", "--chapters", "01_model", "--work", work, "--out", out)
    result = json.loads(out.read_text())
    assert result["data"] == "synthetic stand-in" and "02_history" in result["left_out"]
    assert set(result["chapters"]) == {"intro", "01_model"}  # the root page and the one chapter kept
    assert sum(times["in_first_build"] for times in result["chapters"].values()) <= result["first_build_seconds"]
    assert all(set(times) >= {"in_first_build", "alone"} for times in result["chapters"].values())
    html = work / "_build" / "html"
    assert (html / "01_model.html").exists() and not (html / "02_history.html").exists()
    for page in ("intro", "01_model"):  # the reruns leave the notebooks as they were
        assert (work / "book" / f"{page}.ipynb").read_bytes() == (PROJECT_ROOT / "book" / f"{page}.ipynb").read_bytes()


def test_model_card_calibration_of_a_hand_computed_case():
    # Four images: two at confidence 0.9 (one right, one wrong), two at 0.5 (both right).
    top, truth = [0.9, 0.9, 0.5, 0.5], [0, 1, 2, 3]
    probs = np.array([np.where(np.arange(7) == c, p, (1 - p) / 6) for p, c in zip(top, [0, 0, 2, 3])])
    result = model_card.calibration(probs, np.array(truth))
    assert result["accuracy"] == pytest.approx(0.75) and result["mean_confidence"] == pytest.approx(0.7)
    # Bin (0.867, 0.933]: accuracy 0.5 vs confidence 0.9; bin (0.467, 0.533]: 1.0 vs 0.5; two images each.
    assert result["ece"] == pytest.approx((2 * 0.4 + 2 * 0.5) / 4)
    assert result["nll"] == pytest.approx(-(np.log(0.9) + np.log(0.1 / 6) + 2 * np.log(0.5)) / 4)


def test_model_card_tables_and_the_check_against_meta_json():
    y = np.array([0, 0, 1, 3])
    probs = np.eye(7)[[0, 1, 1, 3]] * 0.8 + 0.2 / 7  # wrong on the second image only
    scored = model_card.scores(probs, y)
    assert scored["accuracy"] == 0.75 and scored["recall"]["angry"] == 0.5 and scored["recall"]["happy"] == 1.0
    results = {"report": {"one view": scored, "ten views": scored}}
    meta = {"epochs_run": 40, "seed": 0, "command": "python -m fer_utils train --recipe report --out runs/report",
            "publictest": {"accuracy": 0.75, "macro_f1": scored["macro_f1"], "accuracy_10_views": 0.7}}
    assert model_card.disagreements(results, {"report": meta}) == [
        "report: accuracy_10_views measured 0.7500, meta.json says 0.7000"]
    tables = {title: cells(table) for title, table in model_card.tables(results, {"report": meta}).items()}
    assert tables["How each run was made"] == [["run", "network", "recipe", "epochs", "seed", "command"], [
        "`report`", "report CNN", "report", "40", "0", "`python -m fer_utils train --recipe report --out runs/report`"]]
    f1 = f"{scored['macro_f1']:.3f}"
    assert tables["PublicTest scores"] == [
        ["run", "images", "accuracy (one view)", "macro-F1 (one view)", "accuracy (ten views)", "macro-F1 (ten views)"],
        ["`report`", "4", "0.750", f1, "0.750", f1]]
    assert tables["Per-class recall on PublicTest"][0] == ["class", "images", "`report` (one view)",
                                                          "`report` (ten views)"]
    assert [row[:3] for row in tables["Per-class recall on PublicTest"][1:]] == [
        ["angry", "2", "0.500"], ["disgust", "1", "1.000"], ["fear", "0", "0.000"], ["happy", "1", "1.000"],
        ["sad", "0", "0.000"], ["surprise", "0", "0.000"], ["neutral", "0", "0.000"]]
    confidence = 0.8 + 0.2 / 7
    assert tables["Calibration on PublicTest"][1][:5] == ["`report`", "one view", "0.750", f"{confidence:.3f}",
                                                          f"{confidence - 0.75:+.3f}"]


def cells(markdown: str) -> list[list[str]]:
    """A Markdown table's cells, row by row, without the rule under the header."""
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines()]
    return [rows[0], *rows[2:]]


def test_simple_readings_counts_each_reading_and_derives_its_epoch_time(tmp_path):
    from benchmarks.simple_readings import TRAINING_IMAGES, three_conv_cnn

    out = tmp_path / "readings.json"
    run_module("simple_readings", "--batches", 1, "--rounds", 1, "--out", out)
    result = json.loads(out.read_text())
    assert result["report"]["params"] == 319_975 and result["pooled"]["params"] == models.build("simple").count_params()
    # conv 3x3x1x64, 3x3x64x128 and 3x3x128x512 with biases, their BatchNorms, softmax 512x7: as many as the pooled
    # reading, whose Dense 512 reads 3x3x128 = 1,152 values (a 3x3x128x512 kernel's worth)
    expected = (9 * 64 + 64) + 4 * 64 + (9 * 64 * 128 + 128) + 4 * 128 + (9 * 128 * 512 + 512) + 4 * 512 + 512 * 7 + 7
    assert result["three_conv"]["params"] == three_conv_cnn().count_params() == expected
    for name, row in result.items():
        assert row["seconds_per_fer2013_epoch"] == pytest.approx(TRAINING_IMAGES / row["images_per_s"], rel=1e-2)
    assert result["three_conv"]["time_vs_report"] == pytest.approx(
        result["report"]["images_per_s"] / result["three_conv"]["images_per_s"], abs=0.01)


def test_carved_split_scores_a_run_on_the_images_it_validated_on_and_on_publictest(tiny_synthetic, tmp_path):
    from benchmarks import carved_split

    data = tiny_synthetic
    kept, carved = fer_data.stratified_split(data.y["train"], fer_data.VAL_FRACTION, 0)  # as train.csv is carved
    x, y = data.x["train"], data.y["train"]
    course = fer_data.FerData({"train": x[kept], "val": x[carved], "test": x[:0]},
                              {"train": y[kept], "val": y[carved], "test": y[:0]}, "kaggle-csv", None)
    run = training.fit("report", course, training.TrainConfig(epochs=1, batch_size=64), seed=0, verbose=0)
    scores = carved_split.footings(run, data)
    assert (scores["carved"]["images"], scores["publictest"]["images"]) == (len(carved), len(data.y["val"]))
    assert scores["carved"]["accuracy"] == pytest.approx(run.history["val_accuracy"].iloc[-1], abs=carved_split.AGREE)
    snapshot = tmp_path / "epochs" / "1"
    snapshot.mkdir(parents=True)
    run.model.save_weights(snapshot / "model.weights.h5")  # as the resume folder keeps it, optimizer and all
    (by_epoch,) = carved_split.along(tmp_path / "epochs", data, 0).items()
    assert by_epoch == (1, {"carved": pytest.approx(scores["carved"]["accuracy"]),
                            "publictest": pytest.approx(scores["publictest"]["accuracy"])})
    run.history.loc[1, "val_accuracy"] += 0.2  # as if it had validated on other images
    with pytest.raises(ValueError, match="re-carved images"):
        carved_split.footings(run, data)
