"""Sphinx extension: `jb build` re-executes the notebooks whose data, FER_* settings or fer_utils code changed.

myst-nb's execution cache (`execute_notebooks: cache`) matches a notebook by its code cells alone. Before Sphinx
reads, this extension fingerprints each notebook's other inputs, drops the cache entries executed under another
fingerprint and has Sphinx re-read those pages (and any page last read under another fingerprint). Once a page is
read, the fingerprint is recorded for its cache entry (only an entry that exists: a notebook that failed has none)
and for the page, in Sphinx's environment. A notebook depends on "data", "settings" and "code" unless its metadata
says otherwise, e.g. `"fer": {"depends_on": ["code"]}`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import nbformat
from docutils import nodes
from jupyter_cache import get_cache
from jupyter_cache.cache.db import NbCacheRecord
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import ExtensionError
from sphinx.util import logging

INPUTS = ("data", "settings", "code")
SETTINGS = ("FER_DATA", "FER_SEED", "FER_EPOCHS", "FER_RETRAIN")
RECORDS = "fer_fingerprints"  # folder in the jupyter-cache: one file per cache entry (hashkey), holding its fingerprint
logger = logging.getLogger(__name__)
_pending: dict[str, tuple[str, str]] = {}  # docname -> (cache hashkey, fingerprint) of this build


def package_dir() -> Path:
    """The fer_utils folder a kernel started by this build imports (found without importing TensorFlow)."""
    spec = importlib.util.find_spec("fer_utils")
    if spec is None or spec.origin is None:
        raise ExtensionError("fresh_cache: the fer_utils package cannot be found")
    return Path(spec.origin).parent


def code_digest(package: Path) -> str:
    """SHA-256 of fer_utils' .py files and of its shipped runs (fer_utils/runs/)."""
    files = [*package.rglob("*.py"), *(p for p in (package / "runs").rglob("*") if p.is_file())]
    digest = hashlib.sha256()
    for path in sorted(p for p in files if "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def data_identity(package: Path, cwd: Path) -> Any:
    """The data fer_utils.data loads in `cwd` by content, [[name, size, SHA-256], ...]; None for the stand-in; an error.

    Neither the data's path nor its modification time is part of it: a copied or moved project reads the same bytes.
    """
    spec = importlib.util.spec_from_file_location("_fresh_cache_fer_data", package / "data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    previous = os.getcwd()
    try:
        spec.loader.exec_module(module)
        os.chdir(cwd)  # a kernel runs in its notebook's folder, where a relative FER_DATA is resolved
        path = module.locate()
        if path is None:
            return None
        return module.source_identity(Path(path))
    except Exception as err:  # the notebooks re-execute and raise their own, clearer error
        return f"cannot locate the data: {type(err).__name__}: {err}"
    finally:
        os.chdir(previous)
        sys.modules.pop(spec.name, None)


def cache_record(cache: Any, hashkey: str) -> NbCacheRecord | None:
    """The jupyter-cache entry of the notebook with this hashkey, if any."""
    try:
        return NbCacheRecord.record_from_hashkey(hashkey, cache.db)
    except KeyError:
        return None


def depends_on(notebook: nbformat.NotebookNode, path: Path) -> tuple[str, ...]:
    """The inputs a notebook's metadata `fer.depends_on` names; all of them by default."""
    names = notebook.metadata.get("fer", {}).get("depends_on", INPUTS)
    names = (names,) if isinstance(names, str) else tuple(names)
    unknown = sorted(set(names) - set(INPUTS))
    if unknown:
        raise ExtensionError(f"{path}: metadata fer.depends_on names {unknown}; choose among {list(INPUTS)}")
    return names


def find_outdated(app: Sphinx, env: BuildEnvironment, added: set, changed: set, removed: set) -> list[str]:
    """Drop cache entries executed under another fingerprint; return the notebooks Sphinx must (re-)read."""
    config = getattr(env, "mystnb_config", None)
    if config is None or config.execution_mode != "cache":
        return []
    cache = get_cache(config.execution_cache_path)
    records = Path(config.execution_cache_path) / RECORDS
    package = package_dir()
    common = {"settings": {k: os.environ.get(k) for k in SETTINGS}, "code": code_digest(package)}
    data: dict[Path, Any] = {}
    pages = getattr(env, "fresh_cache_pages", {})
    _pending.clear()
    outdated = []
    for docname in sorted(env.found_docs):
        path = Path(env.doc2path(docname))
        if path.suffix != ".ipynb":
            continue
        notebook = nbformat.read(path, as_version=4)
        names = depends_on(notebook, path)
        if "data" in names and path.parent not in data:
            data[path.parent] = data_identity(package, path.parent)
        inputs = {**common, "data": data.get(path.parent)}
        fingerprint = hashlib.sha256(json.dumps({k: inputs[k] for k in names}).encode()).hexdigest()[:16]
        _, hashkey = cache.create_hashed_notebook(notebook)
        _pending[docname] = (hashkey, fingerprint)
        saved = records / hashkey
        record = cache_record(cache, hashkey)
        if record is not None and (not saved.is_file() or saved.read_text() != fingerprint):
            cache.remove_cache(record.pk)  # executed under other inputs: myst-nb executes it again
            outdated.append(docname)
        elif pages.get(docname, fingerprint) != fingerprint:
            outdated.append(docname)  # the page was read under other inputs (its cache entry is current)
    if outdated:
        logger.info(f"fresh_cache: inputs changed, reading again: {', '.join(outdated)}")
    return outdated


def record_fingerprint(app: Sphinx, doctree: nodes.document) -> None:
    """After a notebook is read, record its fingerprint for the page and for its cache entry, if it has one."""
    env = app.env
    if env.docname not in _pending:
        return
    hashkey, fingerprint = _pending[env.docname]
    if not hasattr(env, "fresh_cache_pages"):
        env.fresh_cache_pages = {}
    env.fresh_cache_pages[env.docname] = fingerprint
    cache = get_cache(env.mystnb_config.execution_cache_path)
    if cache_record(cache, hashkey) is not None:
        records = Path(env.mystnb_config.execution_cache_path) / RECORDS
        records.mkdir(exist_ok=True)
        partial = records / f"{hashkey}.{os.getpid()}"
        partial.write_text(fingerprint)
        os.replace(partial, records / hashkey)


def purge_doc(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    """Forget a removed or re-read page's fingerprint."""
    getattr(env, "fresh_cache_pages", {}).pop(docname, None)


def merge_info(app: Sphinx, env: BuildEnvironment, docnames: set, other: BuildEnvironment) -> None:
    """Take the pages' fingerprints from a parallel reader."""
    env.fresh_cache_pages = {**getattr(env, "fresh_cache_pages", {}), **getattr(other, "fresh_cache_pages", {})}


def setup(app: Sphinx) -> dict:
    """Register the handlers."""
    app.connect("env-get-outdated", find_outdated)
    app.connect("doctree-read", record_fingerprint)
    app.connect("env-purge-doc", purge_doc)
    app.connect("env-merge-info", merge_info)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
