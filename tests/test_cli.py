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
        assert scores == {"split": split, "model": str(out), "data": str(csv), **expected_scores(out, d, split, views)}


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
