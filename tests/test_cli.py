"""The command line: train, save, evaluate, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from conftest import write_kaggle_csv

from fer_utils.synthetic import make_synthetic


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
        assert scores["split"] == split and scores["n"] == len(d.y[split])
        assert 0 <= scores["accuracy"] <= 1 and 0 <= scores["macro_f1"] <= 1


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
    assert top.returncode == 0 and "train" in top.stdout and "evaluate" in top.stdout
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
