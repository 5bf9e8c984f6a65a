"""Measurements behind benchmarks/RESULTS.md, each run as `python -m benchmarks.NAME` from the repository root."""

from __future__ import annotations

import argparse
from pathlib import Path


def empty_folder(path: Path, why: str) -> Path:
    """`path`, created if missing; stop with `why` when it already holds something."""
    if path.exists() and any(path.iterdir()):
        raise SystemExit(f"{path} is not empty: {why}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_parser(name: str, doc: str) -> argparse.ArgumentParser:
    """`python -m benchmarks.NAME`'s parser, asking for the FER2013 file or folder it measures on."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="FER2013 file or folder (see data/README.md)")
    return parser


def training_parser(name: str, doc: str, recipe: str) -> argparse.ArgumentParser:
    """`python -m benchmarks.NAME`'s parser with what every training benchmark asks: data, model, recipe, seed."""
    from fer_utils.training import RECIPES

    parser = data_parser(name, doc)
    parser.add_argument("--model", default="report", choices=["report", "simple"])
    parser.add_argument("--recipe", default=recipe, choices=sorted(RECIPES))
    parser.add_argument("--seed", type=int, default=0, help="the one seed")
    return parser
