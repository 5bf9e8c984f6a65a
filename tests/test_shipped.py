"""Shipped runs: which data counts as FER2013's official release, when the book uses them, and what it says."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_utils import book, models, shipped, training
from fer_utils.data import CLASSES, FerData

HELD_OUT = shipped.OFFICIAL_HELD_OUT


def labels_data(train_counts, val: int = HELD_OUT, test: int = 0, source: str = "kaggle-csv") -> FerData:
    """FerData with the given class counts in Training (images are 1x1 placeholders: only labels matter here)."""
    y = {"train": np.repeat(np.arange(len(CLASSES)), train_counts), "val": np.arange(val) % len(CLASSES),
         "test": np.arange(test) % len(CLASSES)}
    return FerData({s: np.zeros((len(v), 1, 1), np.uint8) for s, v in y.items()}, y, source, None)


@pytest.mark.parametrize(("data", "official"), [
    (labels_data(shipped.OFFICIAL_TRAINING), True),  # Kaggle CSV without PrivateTest (a development copy)
    (labels_data(shipped.OFFICIAL_TRAINING, test=HELD_OUT), True),  # the full release
    (labels_data(shipped.OFFICIAL_TRAINING, source="image-folder"), True),  # the JPEG tree: same splits
    (labels_data(shipped.OFFICIAL_TRAINING, source="course-csv"), False),  # validation carved out of Training
    (labels_data(shipped.OFFICIAL_TRAINING, source="synthetic"), False),
    (labels_data(np.subtract(shipped.OFFICIAL_TRAINING, [1, 0, 0, 0, 0, 0, 0])), False),  # a subset
    (labels_data(shipped.OFFICIAL_TRAINING, val=HELD_OUT - 1), False),
    (labels_data(shipped.OFFICIAL_TRAINING, test=100), False),
], ids=["kaggle", "with-private", "folder", "course", "synthetic", "subset", "short-val", "short-test"])
def test_only_the_official_release_is_recognised(data, official):
    assert shipped.is_official_release(data) is official


@pytest.fixture
def fake_shipped(tmp_path, monkeypatch):
    """A shipped `report` run (untrained weights, a made-up history) in a folder the package reads instead."""
    config = book.book_config(labels_data(shipped.OFFICIAL_TRAINING), "report", "report")
    history = pd.DataFrame({"accuracy": [0.5], "loss": [1.0], "val_accuracy": [0.4], "val_loss": [1.2]},
                           index=pd.Index([1], name="epoch"))
    meta = {"model": "report", "config": dataclasses.asdict(config), "seed": 0, "epochs_run": 1,
            "seconds": 600.0, "device": "CPU (2 cores, x86_64)", "dtype_policy": "float32", "resumed_at": [4],
            "finished": "2026-12-01 17:00 UTC", "commit": "0123456789abcdef" * 2 + "01234567",
            "command": "python -m fer_utils train", "publictest": {"accuracy": 0.5}}
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "runs")
    training.save_run(training.Run(models.build("report"), history, meta), tmp_path / "runs" / "report")
    return meta


def test_the_book_uses_a_shipped_run_only_for_exactly_that_training(fake_shipped, monkeypatch):
    data = labels_data(shipped.OFFICIAL_TRAINING)
    config = book.book_config(data, "report", "report")
    assert shipped.names() == ["report"] and shipped.find(data, "report", config, 0) == "report"
    assert shipped.find(data, "report", config, 1) is None  # another seed
    assert shipped.find(data, "report", config.replace(epochs=3), 0) is None  # FER_EPOCHS elsewhere
    assert shipped.find(data, "simple", config, 0) is None
    assert shipped.find(labels_data(shipped.OFFICIAL_TRAINING, source="course-csv"), "report", config, 0) is None
    monkeypatch.setenv("FER_RETRAIN", "1")
    assert shipped.find(data, "report", config, 0) is None
    monkeypatch.setenv("FER_RETRAIN", "0")
    assert shipped.find(data, "report", config, 0) == "report"


def test_book_run_loads_the_shipped_run_without_training_and_says_so(fake_shipped, monkeypatch):
    monkeypatch.setattr(training, "train", lambda *a, **k: pytest.fail("a shipped run must not be trained again"))
    monkeypatch.delenv("FER_SEED", raising=False)
    monkeypatch.delenv("FER_EPOCHS", raising=False)
    run = book.book_run(labels_data(shipped.OFFICIAL_TRAINING))
    assert shipped.is_shipped(run) and run.meta == json.loads(json.dumps(fake_shipped))
    assert book.provenance(run) == (
        "This page shows the shipped run `report` (the *report* recipe, 1 epoch, seed 0, float32, 10 minutes on "
        "CPU (2 cores, x86_64), resumed after epoch 4; finished 2026-12-01 17:00 UTC at commit `0123456789ab`). "
        "`FER_RETRAIN=1 jb build book/` trains it again instead.")
    with pytest.raises(FileNotFoundError, match="no shipped run named 'augmented'; shipped: report"):
        shipped.load("augmented")


def test_a_run_trained_by_the_build_says_where_it_is_kept(tiny_synthetic, tmp_path):
    run = training.train("report", tiny_synthetic, training.REPORT.replace(epochs=1), seed=3,
                         cache_dir=tmp_path, verbose=0)
    assert not shipped.is_shipped(run)
    line = book.provenance(run)
    assert line.startswith("This page shows a run trained by this build (the *report* recipe, 1 epoch, seed 3, ")
    assert line.endswith(f" on {run.meta['device']}), kept in `.cache/runs/{run.path.name}`.")


def built_run(epochs: int, seconds: float, **meta) -> training.Run:
    """A run trained by the build, as `provenance` reads it: only its metadata matters."""
    config = dataclasses.asdict(training.REPORT.replace(epochs=epochs))
    meta = {"config": config, "epochs_run": epochs, "seed": 0, "dtype_policy": "float32", "seconds": seconds,
            "device": "CPU (2 cores, x86_64)", **meta}
    return training.Run(None, pd.DataFrame(), meta, Path("/tmp/cache/report-1234"))


@pytest.mark.parametrize("epochs, seconds, expected", [
    (1, 60, "the *report* recipe, 1 epoch, seed 0, float32, 1 minute on CPU (2 cores, x86_64)"),
    (40, 7104.9, "the *report* recipe, 40 epochs, seed 0, float32, 118 minutes on CPU (2 cores, x86_64)"),
    (2, 20, "the *report* recipe, 2 epochs, seed 0, float32, 0 minutes on CPU (2 cores, x86_64)"),
], ids=["one", "forty", "under-half-a-minute"])
def test_provenance_counts_epochs_and_minutes_in_words_that_agree(epochs, seconds, expected):
    assert book.provenance(built_run(epochs, seconds)) == (
        f"This page shows a run trained by this build ({expected}), kept in `.cache/runs/report-1234`.")


@pytest.mark.parametrize("resumed_at, words", [
    ([], ""), ([12], ", resumed after epoch 12"), ([12, 66], ", resumed after epochs 12 and 66"),
    ([3, 5, 9], ", resumed after epochs 3, 5 and 9")])
def test_provenance_of_a_shipped_run_lists_where_it_was_resumed(fake_shipped, resumed_at, words):
    run = shipped.load("report")
    run.meta.update(epochs_run=130, seconds=26584.5, resumed_at=resumed_at)
    assert book.provenance(run) == (
        "This page shows the shipped run `report` (the *report* recipe, 130 epochs, seed 0, float32, 443 minutes on "
        f"CPU (2 cores, x86_64){words}; finished 2026-12-01 17:00 UTC at commit `0123456789ab`). "
        "`FER_RETRAIN=1 jb build book/` trains it again instead.")


@pytest.mark.parametrize("after, words", [
    ([106], "continued after epoch 106 from that epoch's weights"),
    ([106, 120], "continued after epochs 106 and 120 from those epochs' weights"),
])
def test_provenance_of_a_continued_run_says_after_which_epochs(fake_shipped, after, words):
    run = shipped.load("report")
    run.meta.update(resumed_at=[], continued=[{"from": "runs/report", "after_epoch": epoch,
                                               "optimizer": "fresh moments"} for epoch in after])
    assert f", {words} with fresh optimizer moments; finished" in book.provenance(run)


def cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "fer_utils", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_runs_lists_every_shipped_run_with_its_publictest_scores():
    listed = [json.loads(line) for line in cli("runs").stdout.splitlines()]
    assert [r["name"] for r in listed] == shipped.names()
    for row in listed:
        meta = shipped.meta(row["name"])
        assert row["publictest"] == meta["publictest"] and row["command"] == meta["command"]
        assert (row["epochs"], row["seed"], row["dtype_policy"]) == (meta["epochs_run"], meta["seed"], "float32")


@pytest.mark.skipif(not shipped.names(), reason="no run ships with this checkout")
def test_a_folder_named_like_a_shipped_run_wins_over_it(tmp_path, kaggle_csv):
    name = shipped.names()[0]
    by_name = cli("evaluate", "--model", name, "--data", str(kaggle_csv), "--split", "test", cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout)["n"] == 5
    (tmp_path / name).mkdir()  # a folder of that name, not a saved run: the CLI must read it and say so
    folder = cli("evaluate", "--model", name, "--data", str(kaggle_csv), cwd=tmp_path)
    assert folder.returncode == 2 and f"{name}: not a saved run" in folder.stderr


def test_shipped_runs_fit_the_size_caps():
    sizes = {name: sum(f.stat().st_size for f in (shipped.SHIPPED_DIR / name).iterdir()) for name in shipped.names()}
    assert all(size <= 3_000_000 for size in sizes.values()), sizes
    assert sum(sizes.values()) <= 8_000_000, sizes


def test_notes_show_nothing_on_real_data_without_runs_and_warn_on_the_stand_in():
    from fer_utils import chapter

    assert chapter.notes(labels_data(shipped.OFFICIAL_TRAINING), {}) is None  # no empty Markdown to print as a repr
    warned = chapter.notes(labels_data(shipped.OFFICIAL_TRAINING, source="synthetic"), {})
    assert warned.data.startswith("> **Warning: the synthetic stand-in.**")
