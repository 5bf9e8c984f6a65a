"""Training that survives interruption: the last finished epoch kept on disk, and resumed exactly."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd


class ResumeState(keras.callbacks.Callback):
    """Like Keras' `BackupAndRestore`, keeps the last finished epoch in `backup_dir`, but writes it atomically.

    Besides weights and optimizer state it keeps what `BackupAndRestore` leaves out, so that a resumed run
    continues exactly where the interrupted one stopped: the random-number states of dropout and augmentation
    (`owners`' seed generators), the per-epoch history and the seconds spent. `restore` also advances the
    training data's reshuffling to the epoch it resumes at.
    """

    def __init__(self, backup_dir: Path, owners: list):
        super().__init__()
        self.dir = Path(backup_dir)
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self.seeds = [v for owner in owners if owner is not None for v in owner.variables
                      if "seed_generator_state" in v.path]
        self.history, self.seconds, self.resumed_at = pd.DataFrame(), 0.0, []
        self._began = time.perf_counter()

    def restore(self, model, train_ds) -> int:
        """Load the last finished epoch into `model` and the seeds; return the epoch to start from (0: fresh)."""
        self.recover()
        if not (self.dir / "state.json").exists():
            return 0
        state = json.loads((self.dir / "state.json").read_text())
        model.optimizer.build(model.trainable_variables)
        model.load_weights(self.dir / "model.weights.h5")
        for variable, value in zip(self.seeds, state["seeds"], strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        self.history = pd.read_csv(self.dir / "history.csv", index_col="epoch")
        self.seconds, self.resumed_at = state["seconds"], [*state["resumed_at"], state["epoch"]]
        replay_shuffles(train_ds, state["epoch"])
        print(f"Resuming from {self.dir} after epoch {state['epoch']}.")
        return state["epoch"]

    def recover(self) -> None:
        """Keep the newest complete backup, finishing a swap that a stop cut short, and drop the others."""
        complete = {epoch_of(p): p for p in self.dir.parent.glob(f"{self.dir.name}.tmp*")}
        complete.pop(None, None)
        if complete and max(complete) > (epoch_of(self.dir) or 0):
            shutil.rmtree(self.dir, ignore_errors=True)
            os.replace(complete[max(complete)], self.dir)
        for stale in self.dir.parent.glob(f"{self.dir.name}.tmp*"):
            shutil.rmtree(stale, ignore_errors=True)  # a backup that was being written when the run stopped

    def on_train_begin(self, logs=None) -> None:
        """Start the clock."""
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        """Write weights, optimizer, seeds, history and time, replacing the last backup in one rename."""
        now = time.perf_counter()
        self.seconds, self._began = self.seconds + now - self._began, now
        row = pd.DataFrame([dict(sorted((k, float(v)) for k, v in (logs or {}).items()))],
                           index=pd.Index([epoch + 1], name="epoch"))
        self.history = pd.concat([self.history, row]) if len(self.history) else row
        tmp = Path(tempfile.mkdtemp(prefix=f"{self.dir.name}.tmp", dir=self.dir.parent))
        self.model.save_weights(tmp / "model.weights.h5")
        self.history.to_csv(tmp / "history.csv")
        seeds = [np.asarray(v.numpy()).tolist() for v in self.seeds]
        (tmp / "state.json").write_text(json.dumps({"epoch": epoch + 1, "seconds": self.seconds, "seeds": seeds,
                                                    "resumed_at": self.resumed_at}))
        old = self.dir.parent / f"{self.dir.name}.tmpold"
        if self.dir.exists():
            os.replace(self.dir, old)
        os.replace(tmp, self.dir)
        shutil.rmtree(old, ignore_errors=True)

    def clear(self) -> None:
        """Remove the backup once the finished run is saved."""
        shutil.rmtree(self.dir, ignore_errors=True)


def replay_shuffles(train_ds, epochs: int) -> None:
    """Reshuffle `train_ds` as `epochs` epochs of `fit` would, so that the next epoch gets the order it would have had.

    Keras' fit opens two iterators an epoch, each reshuffling once."""
    for _ in range(2 * epochs):
        iter(train_ds)


def epoch_of(backup: Path) -> int | None:
    """The epoch a backup folder holds, or None when its state file (written last) is missing or cut short."""
    try:
        return json.loads((backup / "state.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None
