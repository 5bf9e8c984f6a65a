"""`jb build` re-executes exactly the notebooks whose data, FER_* settings or fer_utils code changed
(book/_ext/fresh_cache.py), on a tiny book of three notebooks built in a copy with its own fer_utils and data/.

The builds run one after the other in one fixture (minutes: each kernel imports TensorFlow), so they are marked
`book`; each test checks one rebuild.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from conftest import write_kaggle_csv

ROOT = Path(__file__).resolve().parents[1]
KNOBS = ("FER_DATA", "FER_SEED", "FER_EPOCHS", "FER_RETRAIN")
NOTEBOOKS = {  # name: (code, notebook metadata)
    "data": ("from fer_utils.book import book_data\nprint(book_data(verbose=False).describe())", {}),
    "seed": ("from fer_utils.book import seed\nprint('seed', seed())", {}),
    "maths": ("print('2 + 2 =', 2 + 2)", {"fer": {"depends_on": ["code"]}}),
}

pytestmark = pytest.mark.book


def make_tiny_book(project: Path) -> Path:
    """A book naming the extension as the real _config.yml does, with its own fer_utils (so its own data/)."""
    real = yaml.safe_load((ROOT / "_config.yml").read_text())
    config = {"title": "tiny", "only_build_toc_files": True, "execute": real["execute"],
              "sphinx": {"local_extensions": real["sphinx"]["local_extensions"]}}
    (project / "_config.yml").write_text(yaml.safe_dump(config))
    for name, folder in real["sphinx"]["local_extensions"].items():
        (project / folder).mkdir(parents=True)
        shutil.copy2(ROOT / folder / f"{name}.py", project / folder / f"{name}.py")
    shutil.copytree(ROOT / "fer_utils", project / "fer_utils", ignore=shutil.ignore_patterns("__pycache__"))
    toc = {"format": "jb-book", "root": "data", "chapters": [{"file": "seed"}, {"file": "maths"}]}
    (project / "book" / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    for name, (code, metadata) in NOTEBOOKS.items():
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}, **metadata})
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), nbformat.v4.new_code_cell(code)]
        nbformat.write(nb, project / "book" / f"{name}.ipynb")
    return project


def build(project: Path, **knobs: str) -> dict:
    """Run the literal `jb build book/` in `project` with only `knobs` set; its log, time and executed notebooks."""
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.update(knobs, PYTHONPATH=os.pathsep.join([str(project), *filter(None, [env.get("PYTHONPATH")])]))
    start = time.perf_counter()
    result = subprocess.run([shutil.which("jb"), "build", "book/"], cwd=project, env=env, capture_output=True,
                            text=True, timeout=1800)
    log = result.stdout + result.stderr
    executed = sorted(set(re.findall(r"(\w+)\.ipynb: Executing notebook", log)))
    pages = {p.stem: p.read_text() for p in (project / "_build" / "html").glob("*.html") if p.stem in NOTEBOOKS}
    seconds = time.perf_counter() - start
    print(f"jb build book/ with {knobs or 'no knobs'}: {seconds:.1f} s, executed {executed or 'nothing'}")
    return {"rc": result.returncode, "log": log, "executed": executed, "pages": pages, "seconds": seconds}


@pytest.fixture(scope="module")
def rebuilds(tmp_path_factory) -> dict[str, dict]:
    """The tiny book built on the stand-in, then rebuilt after each change, in order."""
    project = make_tiny_book(tmp_path_factory.mktemp("tiny"))
    images = np.random.default_rng(0).integers(0, 256, size=(21, 48, 48), dtype=np.uint8)
    usages = ["Training"] * 11 + ["PublicTest"] * 5 + ["PrivateTest"] * 5
    csv = str(write_kaggle_csv(project / "small.csv", images, np.repeat(np.arange(7), 3), usages))
    runs = {"stand-in": build(project), "nothing": build(project), "data": build(project, FER_DATA=csv),
            "seed": build(project, FER_DATA=csv, FER_SEED="1")}
    with open(project / "fer_utils" / "book.py", "a") as code:
        code.write("# changed\n")
    runs["code"] = build(project, FER_DATA=csv, FER_SEED="1")
    (project / "data").mkdir()
    shutil.copy(csv, project / "data" / "fer2013.csv")
    runs["data folder"] = build(project)
    copy = tmp_path_factory.mktemp("copied") / "project"
    shutil.copytree(project, copy, copy_function=shutil.copy)  # as `cp -r`: new paths, new modification times
    runs["copied"] = build(copy)
    (project / "data" / "notes.txt").write_text("not FER2013\n")
    runs["stray file"] = build(project)
    return runs


def test_first_build_executes_every_notebook_on_the_stand_in(rebuilds):
    run = rebuilds["stand-in"]
    assert run["rc"] == 0, run["log"][-4000:]
    assert run["executed"] == ["data", "maths", "seed"]
    assert "FER data: synthetic" in run["pages"]["data"]


def test_nothing_changed_executes_nothing(rebuilds):
    run = rebuilds["nothing"]
    assert run["rc"] == 0, run["log"][-4000:]
    assert run["executed"] == []


def test_adding_data_executes_the_notebooks_that_read_it_and_no_page_shows_the_stand_in(rebuilds):
    run = rebuilds["data"]
    assert run["rc"] == 0, run["log"][-4000:]
    assert run["executed"] == ["data", "seed"]  # both depend on data by default; maths only on code
    assert "FER data: kaggle-csv" in run["pages"]["data"]
    assert not [name for name, html in run["pages"].items() if "synthetic" in html]


def test_another_seed_executes_the_notebooks_that_depend_on_settings(rebuilds):
    run = rebuilds["seed"]
    assert run["rc"] == 0, run["log"][-4000:]
    assert run["executed"] == ["data", "seed"]
    assert "seed 1" in run["pages"]["seed"]


def test_changed_code_executes_every_notebook(rebuilds):
    run = rebuilds["code"]
    assert run["rc"] == 0, run["log"][-4000:]
    assert run["executed"] == ["data", "maths", "seed"]


def test_a_copied_project_executes_nothing_when_its_data_and_code_are_the_same(rebuilds):
    assert rebuilds["data folder"]["executed"] == ["data", "seed"]  # FER_DATA and FER_SEED unset: settings changed
    run = rebuilds["copied"]
    assert run["rc"] == 0, run["log"][-4000:]
    assert run["executed"] == []  # the data is identified by its bytes, not by its path or modification time
    assert "FER data: kaggle-csv" in run["pages"]["data"]


def test_unrecognised_data_lets_the_notebook_fail_with_its_own_error(rebuilds):
    run = rebuilds["stray file"]
    assert run["rc"] != 0
    assert run["executed"][:1] == ["data"]  # the extension did not stop the build: the notebook ran and failed
    assert "notes.txt: not a form of FER2013" in run["log"]
