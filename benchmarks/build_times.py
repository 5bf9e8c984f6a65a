"""Time a first `jb build book/` in a fresh copy of the working tree, chapter by chapter, then each chapter rerun
alone in a kernel of its own (as a reader reopening one notebook does, with the build's caches warm).

    python -m benchmarks.build_times --data data/fer2013.csv --work /tmp/build --out build.json

Without `--data` the book builds on the synthetic stand-in; `--chapters` keeps only the pages named (and the
introduction) in the copy's table of contents.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks import empty_folder
from fer_utils.data import PROJECT_ROOT

KNOBS = ("FER_DATA", "FER_SEED", "FER_EPOCHS", "FER_RETRAIN")  # what would make the build differ from a reader's


def working_tree_files(root: Path = PROJECT_ROOT) -> list[str]:
    """Tracked files and untracked files git does not ignore: what a fresh clone plus new work holds."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                            capture_output=True, text=True, check=True).stdout
    return [f for f in listed.split("\0") if f and (root / f).is_file()]


def copy_working_tree(dest: Path, root: Path = PROJECT_ROOT) -> Path:
    """Copy the working tree (no caches, no build) into `dest`, as a fresh clone would have it."""
    for name in working_tree_files(root):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, dest / name)
    return dest


def keep_chapters(project: Path, keep) -> list[str]:
    """Leave the chapters for which `keep(name)` is false out of `project`'s table of contents; return those."""
    path = project / "book" / "_toc.yml"
    toc = yaml.safe_load(path.read_text())
    left_out = [entry["file"] for entry in toc["chapters"] if not keep(entry["file"])]
    toc["chapters"] = [entry for entry in toc["chapters"] if entry["file"] not in left_out]
    path.write_text(yaml.safe_dump(toc, sort_keys=False))
    return left_out


def build_env(project: Path, data: str | None) -> dict:
    """A reader's build in `project`: its own fer_utils (and so its own empty caches), none of the book's knobs set
    but FER_DATA when data is given."""
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env["PYTHONPATH"] = os.pathsep.join([str(project), *filter(None, [env.get("PYTHONPATH")])])
    return {**env, "FER_DATA": data} if data else env


def trained_runs(project: Path) -> list[dict]:
    """The runs the build trained (its training cache), with their cost an epoch."""
    keys = ("model", "epochs_run", "seconds", "seconds_per_epoch", "device", "dtype_policy")
    metas = [json.loads(m.read_text()) for m in sorted((project / ".cache" / "runs").glob("*/meta.json"))]
    return [{"recipe_config": m["config"], **{k: m[k] for k in keys}} for m in metas]


def execution_seconds(project: Path) -> dict[str, float]:
    """Seconds each notebook took to execute in the last build, as myst-nb's execution cache recorded them."""
    from jupyter_cache import get_cache

    cache = get_cache(project / "_build" / ".jupyter_cache")
    return {Path(r.uri).stem: round(r.data["execution_seconds"], 1) for r in cache.list_cache_records()}


RUN_ALL = """
import sys, nbclient, nbformat
nb = nbformat.read(sys.argv[1], 4)
nbclient.NotebookClient(nb, timeout=None, resources={"metadata": {"path": sys.argv[2]}}).execute()
"""  # the outputs are dropped: the notebook, and so the build's execution cache, stay as they are


def run_alone(notebook: Path, env: dict) -> float:
    """Execute one notebook in a fresh kernel, in its own folder, as JupyterLab's 'Run All' would; return seconds."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN_ALL, str(notebook), str(notebook.parent)], env=env, check=True,
                   capture_output=True)
    return round(time.perf_counter() - began, 1)


def main() -> None:
    """Build, read the chapters' times, rerun each alone; print and write JSON."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.build_times", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="FER2013 file or folder (default: the synthetic stand-in)")
    parser.add_argument("--chapters", nargs="*", help="keep only these pages of the table of contents (and intro)")
    parser.add_argument("--work", type=Path, required=True, help="empty folder to copy the working tree into")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    args = parser.parse_args()
    project = copy_working_tree(empty_folder(args.work, "its caches would make the build no first build"))
    data = str(Path(args.data).resolve()) if args.data else None
    book = project / "book"
    left_out = keep_chapters(project, lambda page: not args.chapters or page in args.chapters)
    env = build_env(project, data)
    began = time.perf_counter()
    done = subprocess.run(["jb", "build", "book/"], cwd=project, env=env, capture_output=True, text=True)
    build = round(time.perf_counter() - began, 1)
    if done.returncode:
        raise SystemExit(f"jb build book/ failed after {build} s:\n{(done.stdout + done.stderr)[-4000:]}")
    in_build = execution_seconds(project)
    alone = {page: run_alone(book / f"{page}.ipynb", env) for page in in_build}
    result = {"data": data or "synthetic stand-in", "left_out": left_out, "first_build_seconds": build,
              "chapters": {page: {"in_first_build": in_build[page], "alone": alone[page]} for page in in_build},
              "trained": trained_runs(project), "cpu": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
