"""The book: notebooks committed clean, one chapter runs alone, `jb build book/` builds it, a browser renders it.

The build and browser tests (marked `book`) build a copy of the working tree with the literal `jb build book/`,
sharing the training cache in .cache/runs, and take minutes; CI runs them.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from fer_utils.pdf import Chromium, serve

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"

def toc_pages() -> list[str]:
    """The book's pages in table-of-contents order: the root, then every chapter."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    chapters = [entry["file"] for entry in toc.get("chapters", [])]
    for part in toc.get("parts", []):
        chapters += [entry["file"] for entry in part["chapters"]]
    return [toc["root"], *chapters]


def page_source(page: str) -> Path:
    """The notebook or markdown file behind a toc entry."""
    for suffix in (".ipynb", ".md"):
        if (BOOK / f"{page}{suffix}").exists():
            return BOOK / f"{page}{suffix}"
    raise FileNotFoundError(f"book/{page}: listed in book/_toc.yml but neither .ipynb nor .md exists")


def figure_names(page: str) -> list[str]:
    """The `:name:` of every figure a page declares: in a code cell's myst-nb metadata, or a figure directive."""
    text, cells = page_source(page).read_text(), []
    if page_source(page).suffix == ".ipynb":
        cells = nbformat.reads(text, as_version=4).cells
        text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    in_metadata = [c.metadata.get("mystnb", {}).get("figure", {}).get("name") for c in cells if c.cell_type == "code"]
    return [n for n in in_metadata if n] + re.findall(
        r"```\{(?:glue:)?figure\}[^\n]*\n(?::[a-z]+:[^\n]*\n)*?:name:\s*(\S+)", text)


def visible_code(page: str) -> list[str]:
    """The non-blank code lines a page shows (folded or not): every code cell not removed from it."""
    cells = nbformat.read(page_source(page), as_version=4).cells
    shown = [c for c in cells if c.cell_type == "code"
             and not {"remove-cell", "remove-input"} & set(c.metadata.get("tags", []))]
    return [line for c in shown for line in c.source.splitlines() if line.strip()]


# --- the notebooks as committed -----------------------------------------------------------------------------


def test_every_notebook_is_in_the_toc_and_every_toc_page_exists():
    pages = toc_pages()
    assert [page_source(p) for p in pages]
    assert sorted(p.stem for p in BOOK.glob("*.ipynb")) == sorted(p for p in pages if page_source(p).suffix == ".ipynb")


@pytest.mark.parametrize("path", sorted(BOOK.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs or execution counts; clear them before committing"


QUESTION_PAGES = [p for p in toc_pages() if re.match(r"0\d_", p)]
# Questions quoted in English only: the original report's own heading of question 6, and the book's own questions.
ENGLISH_ONLY = {"06_math", "07_beyond", "08_quality"}
BRIEF_PAGES = [p for p in QUESTION_PAGES if re.match(r"0[1-7]_", p)]


@pytest.mark.parametrize("page", QUESTION_PAGES)
def test_chapter_opens_with_its_question_in_the_original_wording_and_in_english(page):
    first = nbformat.read(page_source(page), as_version=4).cells[0].source
    assert first.startswith("# "), f"{page}: the first cell must start with the chapter title"
    assert re.search(r"^> \S", first, re.M), f"{page}: the quoted question is missing"
    if page not in ENGLISH_ONLY:
        assert re.search(r"^> .*[\u4e00-\u9fff]", first, re.M), f"{page}: the original (Chinese) question is missing"
        assert re.search(r"^> \*[A-Za-z]", first, re.M), f"{page}: the English rendering is missing"


def brief_answer(page: str) -> str:
    """The first paragraph after the chapter's quoted question."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n", nbformat.read(page_source(page), as_version=4).cells[0].source)]
    quote = max(i for i, b in enumerate(blocks) if b.startswith(">"))
    return next((b for b in blocks[quote + 1:] if b), "")


@pytest.mark.parametrize("page", BRIEF_PAGES)
def test_question_is_followed_by_a_brief_answer_with_a_glued_number(page):
    brief = brief_answer(page)
    assert brief.startswith("**In brief.**"), f"{page}: the question must be followed by its brief answer"
    assert re.search(r"\{glue:text\}`[\w-]+:[^`]+`", brief), f"{page}: the brief answer glues no formatted number"
    plain = re.sub(r"\{glue:\w+\}`[^`]*`|\{numref\}`[^`]*`|\$[^$]*\$", "X", brief.removeprefix("**In brief.**"))
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", plain.strip()) if s]
    assert 3 <= len(sentences) <= 6, f"{page}: the brief answer has {len(sentences)} sentences, not 3 to 6"


@pytest.mark.parametrize("page", toc_pages())
def test_every_figure_is_numbered_and_referenced(page):
    text = page_source(page).read_text()
    unreferenced = [n for n in figure_names(page) if f"{{numref}}`{n}`" not in text]
    assert not unreferenced, f"{page}: figures never cross-referenced with {{numref}}: {unreferenced}"



@pytest.mark.parametrize("page", QUESTION_PAGES)
def test_chapter_shows_the_code_of_its_numbers(page):
    """Visible code, as long as the computation needs: `ruff check .` lints the notebooks at the line length."""
    lines = visible_code(page)
    assert lines, f"{page}: no code cell is shown: a reader cannot see how its numbers were computed"


def test_notebook_code_holds_no_prose():
    """Sentences live in Markdown cells: code cells hold few long strings and branch little at the top level."""
    import ast

    long_strings = ifs = 0
    for page in toc_pages():
        for cell in nbformat.read(page_source(page), as_version=4).cells:
            if cell.cell_type != "code":
                continue
            tree = ast.parse("\n".join(line for line in cell.source.splitlines() if not line.startswith(("%", "!"))))
            long_strings += sum(isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) >= 60
                                for n in ast.walk(tree))
            ifs += sum(isinstance(n, ast.If) for n in tree.body)
    assert long_strings <= 2 and ifs <= 1, f"{long_strings} long string literals and {ifs} top-level ifs in code cells"

def glued(nb) -> dict[str, dict]:
    """Glued outputs of an executed notebook: key -> mime bundle."""
    found = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:  # glue(display=False) prefixes each mime type with application/papermill.record/
                found[name] = {k.rsplit("papermill.record/", 1)[-1]: v for k, v in output["data"].items()}
    return found


@pytest.mark.book
def test_model_chapter_runs_alone_in_a_fresh_kernel():
    from nbclient import NotebookClient

    from fer_utils.models import build

    nb = nbformat.read(BOOK / "01_model.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}}).execute()
    values = glued(nb)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    number = {k: int(values[k]["text/plain"]) for k in ("total", "trainable", "non_trainable")}
    model = build("report")
    assert number["total"] == model.count_params()
    assert number["non_trainable"] == sum(int(w.numpy().size) for w in model.non_trainable_weights)
    assert number["trainable"] + number["non_trainable"] == number["total"]
    figure = [c for c in nb.cells if c.metadata.get("mystnb", {}).get("figure", {}).get("name") == "fig-architecture"]
    assert len(figure) == 1 and any("image/png" in o.get("data", {}) for o in figure[0].outputs)


# --- the whole book, built from a copy of the working tree ---------------------------------------------------


# `built_book` (tests/conftest.py) copies the working tree and runs the literal `jb build book/` there once per
# session; the PDF test (test_pdf.py) prints that same build.


@pytest.mark.book
def test_build_lands_in_build_html_with_a_page_per_chapter(built_book):
    html, log = built_book
    assert (html / "index.html").exists()
    missing = [p for p in toc_pages() if not (html / f"{p}.html").exists()]
    assert not missing, f"pages missing from {html}: {missing}"


@pytest.mark.book
def test_build_log_has_no_sphinx_warning(built_book):
    _, log = built_book  # missing glue keys, unresolved {numref}s, broken directives all warn
    bad = [line for line in log.splitlines() if "WARNING: " in line and "absl::" not in line]
    assert not bad, "\n".join(bad)


@pytest.mark.book
@pytest.mark.parametrize("page", toc_pages())
def test_page_has_its_figures_and_no_execution_error(built_book, page):
    html, _ = built_book
    text = (html / f"{page}.html").read_text()
    for marker in ("Traceback (most recent call last)", 'class="output traceback', "output error",
                   "Failed to format", "glue key not found"):
        assert marker not in text, f"{page}.html contains {marker!r}"
    for name in figure_names(page):
        figure = re.search(rf'<figure[^>]*id="{re.escape(name)}".*?</figure>', text, re.S)
        assert figure, f"{page}.html lacks figure {name}"
        sources = re.findall(r'<img[^>]*src="([^"]+)"', figure.group(0))
        assert sources, f"{page}.html: figure {name} has no image"
        assert all((html / s).is_file() for s in sources), f"{page}.html: figure {name} points to missing {sources}"
        assert re.search(r"<figcaption>.*?Fig\. \d", figure.group(0), re.S), f"{page}.html: {name} is unnumbered"



@pytest.mark.book
@pytest.mark.parametrize("page", toc_pages())
def test_page_has_no_template_artefact_or_log_line(built_book, page):
    from artefacts import page_artefacts

    found = page_artefacts((built_book[0] / f"{page}.html").read_text())
    assert not found, f"{page}.html:\n" + "\n".join(found)


@pytest.mark.book
@pytest.mark.parametrize("page", toc_pages())
def test_run_all_shows_every_figure_and_no_stderr_or_raw_myst(built_book, page):
    """What JupyterLab's Run All shows: the build ran each notebook in a kernel from book/, and its cache kept that."""
    from conftest import executed_notebook

    outputs = [o for c in executed_notebook(built_book[0].parent.parent, page).cells for o in c.get("outputs", [])]
    stderr = [o.text[:300] for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    raw = [o.data["text/markdown"][:300] for o in outputs
           if re.search(r"^:::|\{glue", o.get("data", {}).get("text/markdown", ""), re.M)]
    images = sum(any(k.startswith("image/") for k in o.get("data", {})) for o in outputs)
    assert not stderr, f"{page}: stderr outputs: {stderr}"
    assert not raw, f"{page}: outputs that JupyterLab shows as raw MyST: {raw}"
    assert images >= len(figure_names(page)), f"{page}: {images} images shown for {len(figure_names(page))} figures"


@pytest.mark.book
@pytest.mark.parametrize("page", [p for p in toc_pages() if "chapter.notes(" in page_source(p).read_text()])
def test_every_page_built_on_the_stand_in_says_so_at_its_top(built_book, page):
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (built_book[0] / f"{page}.html").read_text()))
    assert "Warning: the synthetic stand-in. This page ran on procedurally drawn faces" in text, page

# --- the rendered book in headless Chromium ------------------------------------------------------------------


# Waits for MathJax's first typeset and for every image, then reports what a reader would see.
INSPECT = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await Promise.all(Array.from(document.images).map(i => i.complete ? null :
                    new Promise(done => { i.addEventListener('load', done); i.addEventListener('error', done); })));
  const maths = Array.from(document.querySelectorAll('.math'));
  return {
    maths: maths.length,
    untypeset: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    mathErrors: document.querySelectorAll('mjx-merror').length,
    images: document.images.length,
    broken: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src),
    height: document.documentElement.scrollHeight,
  };
})()"""


def chromium_binary() -> str:
    """Debian's chromium; missing is a failure in CI and a skip elsewhere."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return binary


@pytest.mark.book
def test_every_page_in_chromium_has_typeset_maths_and_no_broken_image(built_book, tmp_path):
    html, _ = built_book
    shots = Path(os.environ.get("BOOK_SCREENSHOTS", html.parent / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    server = serve(html)
    browser = Chromium(chromium_binary(), tmp_path / "profile")
    reports = {}
    try:
        browser.page("Page.enable")
        for page in toc_pages():
            browser.page("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                         mobile=False)
            browser.page("Page.navigate", url=f"http://127.0.0.1:{server.server_port}/{page}.html")
            deadline = time.monotonic() + 60
            while browser.evaluate("document.readyState") != "complete":
                assert time.monotonic() < deadline, f"{page}.html did not finish loading"
                time.sleep(0.2)
            reports[page] = report = browser.evaluate(INSPECT)
            browser.page("Emulation.setDeviceMetricsOverride", width=1280, height=min(report["height"], 16000),
                         deviceScaleFactor=1, mobile=False)
            shot = browser.page("Page.captureScreenshot", format="png")["data"]
            (shots / f"{page}.png").write_bytes(base64.b64decode(shot))
    finally:
        browser.close()
        server.shutdown()
    for page, report in reports.items():
        assert report["images"] or not figure_names(page), f"{page}: no images rendered"
        assert not report["broken"], f"{page}: broken images {report['broken']}"
        assert not report["untypeset"], f"{page}: maths left as TeX: {report['untypeset'][:3]}"
        assert not report["mathErrors"], f"{page}: {report['mathErrors']} MathJax errors"
    assert sum(r["maths"] for r in reports.values()) > 0, "the book holds no maths at all: nothing was checked"
