"""Stop `python -m fer_utils train` with a signal mid-epoch, run the same command again, and compare the resumed
run with one that was never stopped.

    python -m benchmarks.resume_check --data data/fer2013.csv --epochs 2 --signal TERM --stop-after 1 --delay 60 \
        --reference report --work runs/resume-check --out resume.json

The run is stopped `--delay` seconds after its backup of epoch `--stop-after` appears, so in the middle of a
later epoch. `--reference train` trains the same command again without stopping it (and compares the final
weights too); `--reference NAME` compares with the first `--epochs` epochs of a shipped run instead, which must
have the same model, recipe (but for its length) and seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import empty_folder, training_parser
from fer_utils import shipped, training
from fer_utils.resume import epoch_of


def train_command(args: argparse.Namespace, out: Path) -> list[str]:
    """The CLI command that trains the checked run into `out`."""
    return [sys.executable, "-m", "fer_utils", "train", "--data", str(args.data), "--model", args.model,
            "--recipe", args.recipe, "--epochs", str(args.epochs), "--seed", str(args.seed), "--out", str(out)]


def stop_midway(command: list[str], backup: Path, after: int, delay: float, sig: signal.Signals) -> dict:
    """Start `command`, send `sig` `delay` s after `backup` holds epoch `after`; return what happened."""
    began = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        while (epoch_of(backup) or 0) < after:
            if process.poll() is not None:
                raise SystemExit(f"the run ended (status {process.returncode}) before epoch {after} was kept:\n"
                                 + process.stdout.read()[-2000:])
            time.sleep(0.05)
        time.sleep(delay)
        if process.poll() is not None:
            raise SystemExit("the run finished before it could be stopped: use more epochs or a shorter --delay")
        kept = epoch_of(backup)
        process.send_signal(sig)
        log = process.communicate()[0]
    return {"signal": sig.name, "sent_after_seconds": round(time.perf_counter() - began, 1),
            "epoch_kept_when_sent": kept, "status": process.returncode, "log_tail": tail(log)}


def tail(log: str, lines: int = 6) -> list[str]:
    """The last lines of a log, without TensorFlow's start-up noise."""
    return [line for line in log.splitlines() if line.strip() and "NodeDef" not in line][-lines:]


def reference_history(args: argparse.Namespace, work: Path) -> tuple[pd.DataFrame, Path | None]:
    """The history to compare with, and the uninterrupted run's folder when it was trained here."""
    if args.reference == "train":
        whole = work / "whole"
        subprocess.run(train_command(args, whole), check=True, capture_output=True)
        return training.load_run(whole).history, whole
    meta = shipped.meta(args.reference)
    wanted = dataclasses.asdict(training.RECIPES[args.recipe].replace(epochs=meta["config"]["epochs"]))
    if (meta["model"], meta["config"], meta["seed"]) != (args.model, wanted, args.seed):
        raise SystemExit(f"the shipped run {args.reference!r} is not this model, recipe and seed")
    return shipped.load(args.reference).history.loc[:args.epochs], None


def largest_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """The largest absolute difference between two histories of the same epochs and columns."""
    if list(a.index) != list(b.index) or sorted(a.columns) != sorted(b.columns):
        raise SystemExit(f"the histories differ in shape: {list(a.index)} {sorted(a.columns)} against "
                         f"{list(b.index)} {sorted(b.columns)}")
    return float(np.abs(a.to_numpy() - b[a.columns].to_numpy()).max())


def same_weights(a: Path, b: Path) -> bool:
    """Whether two saved runs hold bit-identical weights."""
    left, right = training.load_run(a).model.get_weights(), training.load_run(b).model.get_weights()
    return all(np.array_equal(x, y) for x, y in zip(left, right, strict=True))


def main() -> None:
    """Stop, resume, compare; print and write the result as JSON."""
    parser = training_parser("resume_check", __doc__, "report")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--signal", default="TERM", choices=["INT", "TERM", "KILL"])
    parser.add_argument("--stop-after", type=int, default=1, help="epoch whose backup must exist before the stop")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait after that backup appears")
    parser.add_argument("--reference", default="train", help="'train', or a shipped run's name")
    parser.add_argument("--work", type=Path, required=True, help="empty folder for the runs")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    empty_folder(args.work, "a leftover backup there would be resumed")

    stopped = args.work / "stopped"
    sig = signal.Signals[f"SIG{args.signal}"]
    stop = stop_midway(train_command(args, stopped), training.resume_dir(stopped), args.stop_after, args.delay, sig)
    stop["left_a_run_in_out"] = stopped.exists()
    began = time.perf_counter()
    again = subprocess.run(train_command(args, stopped), capture_output=True, text=True)
    if again.returncode:
        raise SystemExit(f"the resumed run failed:\n{again.stderr[-3000:]}")
    resumed = training.load_run(stopped)
    history, whole = reference_history(args, args.work)
    last = history.index[-1]
    result = {
        "data": str(args.data), "model": args.model, "recipe": args.recipe, "epochs": args.epochs,
        "seed": args.seed, "reference": args.reference, "stop": stop,
        "resume": {"seconds": round(time.perf_counter() - began, 1), "resumed_at": resumed.meta["resumed_at"],
                   "said": [line for line in again.stdout.splitlines() if line.startswith("Resuming")],
                   "log_tail": tail(again.stdout)},
        "history_largest_difference": largest_difference(resumed.history, history),
        "final": {"resumed": resumed.history.loc[last].to_dict(), "reference": history.loc[last].to_dict()},
        "same_final_weights": same_weights(stopped, whole) if whole else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
