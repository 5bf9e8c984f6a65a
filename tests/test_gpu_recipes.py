"""The GPU recipe script: its packed data round-trips, and its runs score the same when loaded back here."""

from __future__ import annotations

import importlib.util
import io
import json
import lzma
import subprocess
import sys

import numpy as np
import pytest

from fer_utils import data as fer_data
from fer_utils.data import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "benchmarks" / "gpu_recipes.py"
spec = importlib.util.spec_from_file_location("gpu_recipes", SCRIPT)
gpu = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu)
sys.path.insert(0, str(SCRIPT.parent))
import train_recipe  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def test_packed_arrays_round_trip_with_their_fingerprint(kaggle_csv, tmp_path):
    packed = tmp_path / "fer.npz.xz"
    gpu.pack(str(kaggle_csv), str(packed))
    original, back = fer_data.load(kaggle_csv, verbose=False), gpu.unpack(str(packed))
    assert back.fingerprint == original.fingerprint
    for split in fer_data.SPLITS:
        np.testing.assert_array_equal(back.x[split], original.x[split])
        np.testing.assert_array_equal(back.y[split], original.y[split])
    assert not list(tmp_path.glob("*.part"))


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


def test_run_specs_parse_into_train_config_changes():
    assert gpu.parse_run("plain:") == ("plain", {})
    name, changes = gpu.parse_run("aug:augment=true,augmentation=flip+shift,label_smoothing=0.1,epochs=3")
    assert name == "aug"
    assert changes == {"augment": True, "augmentation": "flip,shift", "label_smoothing": 0.1, "epochs": 3}


def test_a_worker_run_scores_the_same_when_its_weights_are_loaded_back(kaggle_csv, tmp_path):
    packed, out = tmp_path / "fer.npz.xz", tmp_path / "runs"
    gpu.pack(str(kaggle_csv), str(packed))
    worker = [sys.executable, str(SCRIPT), "worker", "--arrays", str(packed), "--out", str(out), "--epochs", "2",
              "--run", "aug:augment=true,augmentation=flip+shift+erase,schedule=cosine,label_smoothing=0.1,"
              "input_norm=per_image,recalibrate_bn=true"]  # as gpu_session.sh's runs, with a shift as well
    printed = subprocess.run(worker, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    result = json.loads((out / "aug" / "result.json").read_text())
    assert json.loads(printed) == result
    assert result["epochs_run"] == 2 and result["config"]["augmentation"] == "flip,shift,erase"
    assert result["config"]["input_norm"] == "per_image"
    assert result["config"]["recalibrate_bn"]
    assert len((out / "aug" / "history.csv").read_text().splitlines()) == 3
    scored = subprocess.run([sys.executable, str(SCRIPT), "score", "--data", str(kaggle_csv), "--out", str(out)],
                            capture_output=True, text=True, check=True).stdout
    row = json.loads([line for line in scored.splitlines() if line.startswith("{")][-1])
    assert row["name"] == "aug" and row["accuracy"] == pytest.approx(result["accuracy"])
    assert row["macro_f1"] == pytest.approx(result["macro_f1"])
    recalibrate = [sys.executable, str(SCRIPT.parent / "recalibrate_runs.py"), "--data", str(kaggle_csv),
                   "--runs", str(out / "aug"), "--out", str(tmp_path / "bn.jsonl")]
    subprocess.run(recalibrate, capture_output=True, text=True, check=True)
    [row] = [json.loads(line) for line in (tmp_path / "bn.jsonl").read_text().splitlines()]
    assert row["epochs"] == 2 and row["accuracy_before"] == pytest.approx(result["accuracy"])
    assert 0 <= row["accuracy_after"] <= 1 and len(row["recall_after"]) == len(fer_data.CLASSES)
    teachers = tmp_path / "teachers.npz"
    subprocess.run([sys.executable, str(SCRIPT.parent / "teacher_targets.py"), "--data", str(kaggle_csv), "--runs",
                    str(out / "aug"), str(out / "aug"), "--out", str(teachers)],
                   capture_output=True, text=True, check=True)
    data = fer_data.load(kaggle_csv, verbose=False)
    with np.load(teachers) as saved:
        assert str(saved["fingerprint"]) == data.fingerprint and len(saved["runs"]) == 2
        assert saved["train"].shape == (len(data.y["train"]), len(fer_data.CLASSES))
        np.testing.assert_allclose(saved["train"].sum(axis=1), 1.0, rtol=1e-5)
        written = saved["train"]
    np.testing.assert_array_equal(train_recipe.load_teacher(str(teachers), data), written)
    other = fer_data.FerData({**data.x}, {**data.y}, data.source, None)
    other.y = {**data.y, "train": (data.y["train"] + 1) % len(fer_data.CLASSES)}
    with pytest.raises(SystemExit, match="teachers.npz: teacher targets for data"):
        train_recipe.load_teacher(str(teachers), other)


def test_runs_calibrate_together_then_train_the_same_planned_epochs(kaggle_csv, tmp_path):
    packed, out = tmp_path / "fer.npz.xz", tmp_path / "runs"
    gpu.pack(str(kaggle_csv), str(packed))
    command = [sys.executable, str(SCRIPT), "runs", "--arrays", str(packed), "--out", str(out), "--budget", "600",
               "--max-epochs", "2", "--calibration-epochs", "1", "--run", "plain:", "--run", "flip:augment=true"]
    printed = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    plan = json.loads([line for line in printed.splitlines() if line.startswith('{"calibration')][0])
    assert plan["epochs"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert [r["name"] for r in summary] == ["plain", "flip"]
    assert all(r["epochs_run"] == 2 and not r["stopped_at_deadline"] for r in summary)
    assert not (out / ".calibration").exists()


def test_the_prepared_gpu_session_asks_for_valid_recipes():
    import re

    from fer_utils import training

    script = (PROJECT_ROOT / "benchmarks" / "gpu_session.sh").read_text()
    specs = re.findall(r"--run (\S+)", script)
    assert len(specs) >= 2
    for spec in specs:
        name, changes = gpu.parse_run(spec)
        config = training.REPORT.replace(**changes)  # an unknown field raises TypeError
        if config.augment:
            training.augmenter(0, config.augmentation)  # an unknown transform raises ValueError
        assert name and "epochs" not in changes  # `runs` plans the epochs; a worker given both would fail


def test_weight_averaging_scores_the_last_the_ema_and_the_epoch_averaged_weights(kaggle_csv, tmp_path):
    from fer_utils import training

    import weight_averaging  # noqa: E402  (benchmarks/ is on sys.path above)

    data = fer_data.load(kaggle_csv, verbose=False)
    run = training.train("report", data, training.TrainConfig(epochs=1, batch_size=64), seed=0,
                         cache_dir=tmp_path / "runs", verbose=0)
    outputs = [tmp_path / "w.json", tmp_path / "again.json"]
    for out in outputs:
        subprocess.run([sys.executable, str(SCRIPT.parent / "weight_averaging.py"), "--data", str(kaggle_csv),
                        "--run", str(run.path), "--epochs", "2", "--out", str(out)],
                       capture_output=True, text=True, check=True)
    result, again = (json.loads(out.read_text()) for out in outputs)
    assert again["scores"] == result["scores"]  # one seed decides the tail, dropout included
    assert result["epochs"] == 2 and set(result["scores"]) == {"last", "ema", "epoch_average"}
    for scores in result["scores"].values():
        assert 0 <= scores["accuracy_tta10"] <= 1 and 0 <= scores["macro_f1"] <= 1
    average = weight_averaging.EpochAverage()
    stub = type("Stub", (), {"weights": None, "get_weights": lambda self: self.weights})()
    average.set_model(stub)
    average.on_train_begin()
    for value in (1.0, 2.0, 6.0):
        stub.weights = [np.full(2, value, np.float32)]
        average.on_epoch_end(0)
    np.testing.assert_allclose(average.mean[0], [3.0, 3.0])
    np.testing.assert_allclose(average.last[0], [6.0, 6.0])
