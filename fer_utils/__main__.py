"""Command line: train a model and save it, evaluate a saved or shipped model on a split, list the shipped runs.

    python -m fer_utils train --data PATH --model report --recipe augmented --out runs/report
    python -m fer_utils evaluate --model runs/report --data PATH --split val
    python -m fer_utils evaluate --model augmented --data PATH --split test
    python -m fer_utils runs
    python -m fer_utils cache [--clear {runs,predictions,data,all}]

A stopped `train` (Ctrl-C, kill, power cut) resumes from its last finished epoch when run again with the same
command; the run is kept beside --out (a hidden folder ending in .resume) until it is saved. `train --from RUN`
continues a finished run for more epochs (its weights and history; the optimizer's moments start afresh).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

from fer_utils.training import RECIPES


def parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    top = argparse.ArgumentParser(prog="python -m fer_utils", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model on FER data and save it to a folder")
    train.add_argument("--data", help="FER2013 file or folder, in any form data/README.md lists; default: "
                                      "$FER_DATA, then data/, then (data/ empty) the synthetic stand-in")
    train.add_argument("--model", choices=["report", "simple"], default="report", help="which CNN (default report)")
    train.add_argument("--recipe", choices=sorted(RECIPES), default="report",
                       help="training recipe: the report's plain one, or with augmentation, cosine decay and "
                            "label smoothing")
    train.add_argument("--epochs", type=int, help="number of epochs (default: the recipe's)")
    train.add_argument("--batch-size", type=int, help="batch size (default: the recipe's)")
    train.add_argument("--seed", type=int, default=0, help="the one seed for data split, init and shuffling")
    train.add_argument("--from", dest="start_from", metavar="RUN",
                       help="continue a finished run (a folder or a shipped run's name) up to --epochs, with fresh "
                            "optimizer moments")
    train.add_argument("--out", required=True, help="folder to write model.weights.h5, history.csv and meta.json into")
    evaluate = sub.add_parser("evaluate", help="print accuracy and macro-F1 of a saved model on a split as JSON")
    evaluate.add_argument("--model", required=True,
                          help="folder written by `train`, or a shipped run's name (see `runs`); a folder wins")
    evaluate.add_argument("--data", help="data file or folder (default as for train)")
    evaluate.add_argument("--split", choices=["train", "val", "test"], default="val", help="which split (default val)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed for splits the data file does not define")
    evaluate.add_argument("--tta", action="store_true", help="average predictions with the mirrored images")
    evaluate.add_argument("--shift", type=int, default=0,
                          help="also average each view moved this many pixels up, down, left and right")
    sub.add_parser("runs", help="list the trained FER2013 runs shipped with the package, with their scores")
    cache = sub.add_parser("cache", help="list the caches (trained runs, predictions, parsed data) with their sizes")
    cache.add_argument("--clear", nargs="?", const="all", choices=["runs", "predictions", "data", "all"],
                       help="delete one cache's entries, or all of them (the default); they are remade when needed")
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    args = parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fer_utils import data as fer_data
    from fer_utils import evaluation, training

    if args.command == "runs":
        return list_runs()
    if args.command == "cache":
        return caches(args.clear)
    try:
        dataset = fer_data.load(args.data, seed=args.seed, verbose=False)
        print(dataset.describe(), file=sys.stderr)
        if args.command == "train":
            changes = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size)) if v}
            config = training.RECIPES[args.recipe].replace(**changes)
            command = shlex.join(["python", "-m", "fer_utils", *(sys.argv[1:] if argv is None else argv)])
            backup = training.resume_dir(Path(args.out))
            start_from = open_run(args.start_from) if args.start_from else None
            previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it as Ctrl-C does
            try:
                run = training.fit(args.model, dataset, config, seed=args.seed, command=command, backup_dir=backup,
                                   start_from=start_from)
            except KeyboardInterrupt:
                print(f"\nStopped. {stopped_note(backup)}", file=sys.stderr)
                return 130
            finally:
                signal.signal(signal.SIGTERM, previous)
            training.save_run(run, Path(args.out))
            print(json.dumps({"out": str(args.out), **{k: run.meta[k] for k in
                  ("model", "epochs_run", "best_val_accuracy", "seconds", "device")}}))
        else:
            run = open_run(args.model)
            x, y = dataset.x[args.split], dataset.y[args.split]
            if not len(y):
                raise fer_data.DataError(f"{dataset.path or dataset.source}: the {args.split} split is empty.")
            seen = trained_on(run, dataset, args.split)
            if seen:
                print(f"warning: {seen} This score is not a held-out one.", file=sys.stderr)
            scores = evaluation.evaluate(run.model, x, y, tta=args.tta, shift=args.shift).summary()
            print(json.dumps({"split": args.split, "model": str(args.model), "data": dataset.path or dataset.source,
                              "held_out": not seen, **({"trained_on_these_images": seen} if seen else {}),
                              **scores}))
    except (fer_data.DataError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def open_run(name: str):
    """A saved run's folder, or a shipped run's name; a folder wins."""
    from fer_utils import shipped, training

    folder = Path(name)
    return training.load_run(folder) if folder.exists() or name not in shipped.names() else shipped.load(name)


def trained_on(run, dataset, split: str) -> str | None:
    """Why `run` has seen `split`'s images in training, or None when, as far as its metadata tells, it has not."""
    from fer_utils import shipped

    if run.meta.get("data_fingerprint") == dataset.fingerprint and split == "train":
        return f"the {split} split of {dataset.path or dataset.source} is the run's own training set."
    if run.meta.get("data_fingerprint") == dataset.fingerprint:
        return None  # the very splits the run was trained with (the fingerprint covers each split's images)
    if shipped.is_shipped(run) and not dataset.is_synthetic and split in dataset.from_training:
        return (f"the {split} split of {dataset.path} ({len(dataset.y[split]):,} images) is made of FER2013's "
                f"Training rows, on which the shipped run {Path(run.path).name!r} was trained.")
    return None


def stopped_note(backup: Path) -> str:
    """What a stopped `train` kept, and how to go on."""
    from fer_utils.resume import epoch_of

    epoch = epoch_of(backup)
    if epoch is None:
        return "No epoch had finished, so nothing was kept: the same command starts again."
    return f"Epoch {epoch} is kept in {backup}: the same command resumes after it."


def list_runs() -> int:
    """Print one JSON line per shipped run: its name, recipe, epochs, seed and PublicTest scores."""
    from fer_utils import shipped

    for name in shipped.names():
        meta = shipped.meta(name)
        print(json.dumps({"name": name, "model": meta["model"], "epochs": meta["epochs_run"], "seed": meta["seed"],
                          "dtype_policy": meta["dtype_policy"], "command": meta["command"],
                          "publictest": meta["publictest"]}))
    return 0


def caches(clear: str | None = None) -> int:
    """Print one JSON line per cache: its entries and bytes, which `clear` ('all' or a cache's name) deletes."""
    from fer_utils import data, evaluation, training

    folders = {"runs": training.CACHE_DIR, "predictions": evaluation.PREDICTIONS_DIR, "data": data.PARSED_DIR}
    for name, folder in folders.items():
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        cleared = clear in (name, "all")
        for entry in entries if cleared else []:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        print(json.dumps({"cache": name, "path": str(folder), "entries": len(entries), "bytes": size,
                          "mb": round(size / 1e6, 1), **({"cleared": True} if cleared else {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
