"""Shared fixtures: small FER files in every supported format, written by the tests themselves, and the book built
once per session from a copy of the working tree (test_book.py and test_pdf.py use it)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from benchmarks.build_times import copy_working_tree
from fer_utils.data import CLASSES

ROOT = Path(__file__).resolve().parents[1]


def pixels_text(image: np.ndarray) -> str:
    """One image as the space-separated grey levels of a FER2013 CSV row."""
    return " ".join(str(int(v)) for v in image.reshape(-1))


def write_kaggle_csv(path: Path, images: np.ndarray, labels, usages, gz: bool = False) -> Path:
    """Write a Kaggle-format CSV (emotion,pixels,Usage), optionally gzipped."""
    lines = ["emotion,pixels,Usage"] + [f"{y},{pixels_text(i)},{u}" for i, y, u in zip(images, labels, usages)]
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.fixture
def small_images() -> tuple[np.ndarray, np.ndarray]:
    """21 random 48x48 images, three per class, and their labels."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(CLASSES)), 3)
    return rng.integers(0, 256, size=(len(labels), 48, 48), dtype=np.uint8), labels


@pytest.fixture
def kaggle_csv(tmp_path, small_images) -> Path:
    """A Kaggle CSV with 11 Training, 5 PublicTest and 5 PrivateTest rows."""
    images, labels = small_images
    usages = ["Training"] * 11 + ["PublicTest"] * 5 + ["PrivateTest"] * 5
    return write_kaggle_csv(tmp_path / "fer2013.csv", images, labels, usages)


@pytest.fixture(scope="session")
def tiny_synthetic():
    """A small synthetic data set (about 5% of the book's) for quick training tests."""
    from fer_utils.synthetic import make_synthetic

    return make_synthetic(seed=1, scale=0.05)


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> tuple[Path, str]:
    """Copy the working tree, run the literal `jb build book/` there; return its HTML folder and its log.

    $BUILT_BOOK names a copy already built this way (its log in _build/build.log), to rerun the checks alone."""
    if os.environ.get("BUILT_BOOK"):
        built = Path(os.environ["BUILT_BOOK"]) / "_build"
        return built / "html", (built / "build.log").read_text()
    jb = shutil.which("jb")
    assert jb, "the `jb` command is missing: pip install -r requirements.txt"
    copy = copy_working_tree(tmp_path_factory.mktemp("clone"))
    result = subprocess.run([jb, "build", "book/"], cwd=copy, capture_output=True, text=True, timeout=3600)
    log = result.stdout + result.stderr
    (copy / "_build").mkdir(exist_ok=True)
    (copy / "_build" / "build.log").write_text(log)
    assert result.returncode == 0, f"jb build book/ failed:\n{log[-6000:]}"
    return copy / "_build" / "html", log


def executed_notebook(root: Path, page: str):
    """The notebook book/`page` as the build in `root` executed it, read back from its jupyter-cache."""
    import nbformat
    from jupyter_cache import get_cache

    nb = nbformat.read(root / "book" / f"{page}.ipynb", as_version=4)
    return get_cache(root / "_build" / ".jupyter_cache").merge_match_into_notebook(nb)[1]


def glued(nb) -> dict:
    """Every value an executed notebook glued, by key: Python literals parsed, Markdown and other reprs as text."""
    import ast

    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = out["data"]
            text = data.get("application/papermill.record/text/markdown",
                            data.get("application/papermill.record/text/plain", ""))
            try:
                values[name] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                values[name] = text.strip("'\"")
    return values


def shown_run_dir(root: Path, data, model: str = "report", recipe: str = "report") -> Path:
    """The folder of the run a build in `root` showed for (model, recipe): shipped, or cached by that build."""
    from fer_utils import book, shipped, training

    config = book.book_config(data, model, recipe)
    name = shipped.find(data, model, config, book.seed())
    if name:
        return shipped.SHIPPED_DIR / name
    key = training.run_key(model, data, config, book.seed())
    # A build that imports its copy's own fer_utils caches runs in the copy; `built_book` shares the tests' cache.
    found = [d / key for d in (root / ".cache" / "runs", training.CACHE_DIR) if (d / key).is_dir()]
    assert found, f"the build cached no {model} run with the {recipe} recipe as {key}"
    return found[0]


def shown_run(root: Path, data, model: str = "report", recipe: str = "report"):
    """The run a build in `root` showed for (model, recipe), loaded (never trained here)."""
    from fer_utils import training

    return training.load_run(shown_run_dir(root, data, model, recipe))
