"""The command line: train, save, evaluate, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_kaggle_csv

from fer_utils.data import CLASSES, scale
from fer_utils.synthetic import make_synthetic
from fer_utils.training import load_run


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "fer_utils", *args], capture_output=True, text=True, env=env)


def test_train_then_evaluate_round_trip(tmp_path):
    d = make_synthetic(seed=2, scale=0.03)
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    images = np.concatenate([d.x[s] for s in usage])
    labels = np.concatenate([d.y[s] for s in usage])
    usages = sum(([usage[s]] * len(d.y[s]) for s in usage), [])
    csv = write_kaggle_csv(tmp_path / "fer.csv.gz", images, labels, usages, gz=True)
    out = tmp_path / "run"
    trained = cli("train", "--data", str(csv), "--model", "report", "--epochs", "1", "--out", str(out))
    assert trained.returncode == 0, trained.stderr
    assert (out / "model.weights.h5").exists() and json.loads((out / "meta.json").read_text())["epochs_run"] == 1
    for split in ("val", "test"):
        views = ["--tta", "--shift", "1"] if split == "test" else []  # 10 views: flips and 1-pixel moves
        result = cli("evaluate", "--model", str(out), "--data", str(csv), "--split", split, *views)
        assert result.returncode == 0, result.stderr
        scores = json.loads(result.stdout)
        assert scores == {"split": split, "model": str(out), "data": str(csv), "held_out": True,
                          **expected_scores(out, d, split, views)}


def expected_scores(run: Path, data, split: str, views: list[str]) -> dict:
    """The scores `evaluate` should print, from the saved model's own predictions scored by scikit-learn."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    model, y, images = load_run(run).model, data.y[split], [scale(data.x[split])]
    if views:  # the image and its mirror, each also moved one pixel up, down, left and right (edges repeated)
        images.append(images[0][:, :, ::-1])
        padded = [np.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge") for v in images]
        moves = ((-1, 0), (1, 0), (0, -1), (0, 1))
        images += [p[:, 1 - dy:49 - dy, 1 - dx:49 - dx] for p in padded for dy, dx in moves]
    pred = np.mean([model.predict(v, batch_size=512, verbose=0) for v in images], axis=0).argmax(axis=1)
    recall = recall_score(y, pred, labels=range(7), average=None, zero_division=0)
    return {"n": len(y), "accuracy": pytest.approx(accuracy_score(y, pred)),
            "macro_f1": pytest.approx(f1_score(y, pred, labels=np.unique(y), average="macro", zero_division=0)),
            "recall": {c: pytest.approx(r) for c, r in zip(CLASSES, recall)}}


def test_errors_exit_non_zero_with_the_message(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    result = cli("train", "--data", str(bad), "--epochs", "1", "--out", str(tmp_path / "r"))
    assert result.returncode == 2
    assert f"{bad}, row 1 (line 2): 3 pixel values, expected 2304" in result.stderr
    assert not (tmp_path / "r").exists()
    missing = cli("evaluate", "--model", str(tmp_path / "nothing"), "--data", str(bad))
    assert missing.returncode == 2 and "error:" in missing.stderr


def test_help_explains_each_command():
    top = cli("--help")
    assert top.returncode == 0 and all(c in top.stdout for c in ("train", "evaluate", "runs", "cache"))
    for command, option in (("train", "--epochs"), ("evaluate", "--split")):
        result = cli(command, "--help")
        assert result.returncode == 0 and "--data" in result.stdout and option in result.stdout


def test_a_stopped_train_says_what_it_kept(tmp_path):
    from fer_utils.__main__ import stopped_note

    backup = tmp_path / ".run.resume"
    assert stopped_note(backup).startswith("No epoch had finished")
    backup.mkdir()
    (backup / "state.json").write_text('{"epoch": 7}')
    assert stopped_note(backup) == f"Epoch 7 is kept in {backup}: the same command resumes after it."


def test_cache_lists_and_clears_each_cache(tmp_path, monkeypatch, capsys):
    from fer_utils import __main__ as cli_main
    from fer_utils import data, evaluation, training

    runs, predictions = tmp_path / "runs", tmp_path / "predictions"
    (runs / "report-abc").mkdir(parents=True)
    (runs / "report-abc" / "model.weights.h5").write_bytes(b"w" * 1000)
    (runs / ".report-def.resume").mkdir()
    (runs / ".report-def.resume" / "state.json").write_bytes(b"s" * 20)
    predictions.mkdir()
    for i in range(3):
        (predictions / f"{i}.npy").write_bytes(b"p" * 100)
    monkeypatch.setattr(training, "CACHE_DIR", runs)
    monkeypatch.setattr(evaluation, "PREDICTIONS_DIR", predictions)
    monkeypatch.setattr(data, "PARSED_DIR", tmp_path / "data")  # never made

    def listed(*args: str) -> dict:
        assert cli_main.main(["cache", *args]) == 0
        return {line["cache"]: line for line in map(json.loads, capsys.readouterr().out.splitlines())}

    assert listed() == {
        "runs": {"cache": "runs", "path": str(runs), "entries": 2, "bytes": 1020, "mb": 0.0},
        "predictions": {"cache": "predictions", "path": str(predictions), "entries": 3, "bytes": 300, "mb": 0.0},
        "data": {"cache": "data", "path": str(tmp_path / "data"), "entries": 0, "bytes": 0, "mb": 0.0}}
    assert listed("--clear", "predictions")["predictions"]["cleared"] is True
    assert list(predictions.iterdir()) == [] and len(list(runs.iterdir())) == 2
    assert [line["entries"] for line in listed().values()] == [2, 0, 0]
    assert listed("--clear")["runs"] == {"cache": "runs", "path": str(runs), "entries": 2, "bytes": 1020, "mb": 0.0,
                                         "cleared": True}
    assert runs.is_dir() and list(runs.iterdir()) == []


def _challenge_train_csv(folder: Path, rows: int = 70) -> Path:
    """The challenge's train.csv (emotion,pixels: Training rows only), with no test.csv beside it."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(rows, 48, 48), dtype=np.uint8)
    lines = ["emotion,pixels"] + [f"{i % 7},{' '.join(map(str, im.ravel()))}" for i, im in enumerate(images)]
    path = folder / "train.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_evaluate_says_when_a_shipped_run_was_trained_on_the_split(tmp_path):
    train = _challenge_train_csv(tmp_path)  # validation is carved out of train.csv, that is FER2013's Training
    seen = cli("evaluate", "--model", "report", "--data", str(train), "--split", "val")
    assert seen.returncode == 0, seen.stderr
    result = json.loads(seen.stdout)
    assert result["held_out"] is False and "FER2013's Training rows" in result["trained_on_these_images"]
    assert "warning: the val split of" in seen.stderr and "not a held-out one" in seen.stderr


def test_evaluate_on_a_run_s_own_held_out_split_says_nothing(tmp_path):
    d = make_synthetic(seed=2, scale=0.02)
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    csv = write_kaggle_csv(tmp_path / "fer.csv", np.concatenate([d.x[s] for s in usage]),
                           np.concatenate([d.y[s] for s in usage]), sum(([usage[s]] * len(d.y[s]) for s in usage), []))
    out = tmp_path / "run"
    assert cli("train", "--data", str(csv), "--epochs", "1", "--out", str(out)).returncode == 0
    held = cli("evaluate", "--model", str(out), "--data", str(csv), "--split", "test")
    assert json.loads(held.stdout)["held_out"] is True and "warning" not in held.stderr
    own = cli("evaluate", "--model", str(out), "--data", str(csv), "--split", "train")
    assert json.loads(own.stdout)["held_out"] is False and "the run's own training set" in own.stderr


def test_training_without_validation_images_stops_before_the_first_epoch(tmp_path, small_images):
    images, labels = small_images
    only_training = write_kaggle_csv(tmp_path / "onlytrain.csv", images, labels, ["Training"] * len(labels))
    result = cli("train", "--data", str(only_training), "--epochs", "1", "--out", str(tmp_path / "r"))
    assert result.returncode == 2, result.stderr
    assert f"error: {only_training}: no validation images (train 21, val 0, test 0)" in result.stderr
    assert "Epoch 1" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()
    folder = tmp_path / "images"  # three images a class: the 10% carve-out rounds to none
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / "train" / CLASSES[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / "train" / CLASSES[label] / f"{i}.png")
    result = cli("train", "--data", str(folder), "--epochs", "1", "--out", str(tmp_path / "r"))
    assert result.returncode == 2, result.stderr
    assert f"error: {folder}: no validation images (train 21, val 0, test 0)" in result.stderr
    assert "at least 6 training images in some class" in result.stderr and "Traceback" not in result.stderr
