"""The report as one PDF: `python -m fer_utils.pdf` prints the book that `jb build book/` built, and it reads back.

The PDF test (marked `book`) prints the `built_book` copy of tests/conftest.py, so it reuses that build's executed
notebooks, and reads the PDF with poppler's pdftotext, pdfinfo, pdfimages and pdftoppm. It needs Debian's
`chromium`, `fonts-noto-cjk` and `poppler-utils` (.ci/run installs them); elsewhere it is skipped without them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from PIL import Image, ImageChops

from fer_utils import pdf as fer_pdf

ROOT = Path(__file__).resolve().parents[1]
# Pages of the whole report on the synthetic stand-in: 41 with chapters 1-7, 51 with chapter 8 (December 2026); a
# page more on FER2013 (its training table has 40 rows, not 12). Under 25, chapters went missing; over 90, something
# (a table, a figure) no longer fits its page and spills over many.
PAGES = (25, 90)
CHROME = ("Skip to main content", "Back to top", "Show code cell", "Hide code cell", "Ctrl+K", "Print to PDF")


def needs(command: str, package: str) -> str:
    """A command the PDF needs; missing is a failure in CI and a skip elsewhere."""
    found = shutil.which(command)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{command} is missing; .ci/run installs Debian's {package}")
        pytest.skip(f"{command} is missing (apt-get install {package})")
    return found


def needs_cjk_font() -> None:
    """A font with the Chinese questions' glyphs; missing is a failure in CI and a skip elsewhere."""
    needs("fc-list", "fontconfig")
    if not subprocess.run(["fc-list", ":lang=zh-tw", "family"], capture_output=True, text=True).stdout.strip():
        if os.environ.get("CI"):
            pytest.fail("no font covers Traditional Chinese; .ci/run installs Debian's fonts-noto-cjk")
        pytest.skip("no font covers Traditional Chinese (apt-get install fonts-noto-cjk)")


SMART = str.maketrans("‘’“”–—", "''\"\"--")  # the typography Sphinx gives a title (model's -> model’s)


def squeeze(text: str) -> str:
    """Text with every run of whitespace made one space, and typographic quotes and dashes made plain."""
    return " ".join(text.translate(SMART).split())


def toc_pages(book: Path) -> list[str]:
    """The book's pages in table-of-contents order: the root, then every chapter."""
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    pages = [toc["root"], *(entry["file"] for entry in toc.get("chapters", []))]
    return pages + [entry["file"] for part in toc.get("parts", []) for entry in part["chapters"]]


def chapter_titles(book: Path) -> list[str]:
    """The title (first `# ` line) of every page of the book, in table-of-contents order."""
    titles = []
    for page in toc_pages(book):
        first = nbformat.read(book / f"{page}.ipynb", as_version=4).cells[0].source
        titles.append(squeeze(re.search(r"^# (.+)$", first, re.M).group(1)))
    return titles


def glued(copy: Path, page: str) -> dict[str, object]:
    """The values a page glued, as myst-nb saved them for the build (_build/jupyter_execute/PAGE.glue.json)."""
    saved = json.loads((copy / "_build" / "jupyter_execute" / f"{page}.glue.json").read_text())
    values = {}
    for key, output in saved.items():
        try:
            values[key] = ast.literal_eval(output["data"]["text/plain"])
        except (KeyError, ValueError, SyntaxError):
            pass
    return values


def executed(copy: Path, page: str) -> nbformat.NotebookNode:
    """A page's notebook with the outputs of its execution, from the build's execution cache."""
    from jupyter_cache import get_cache

    cache = get_cache(copy / "_build" / ".jupyter_cache")
    return cache.get_cache_bundle(cache.match_cache_file(str(copy / "book" / f"{page}.ipynb")).pk).nb


def layout_text(pdf: Path, first: int, last: int) -> str:
    """The text of some pages laid out as printed (pdftotext -layout): a contents line keeps its page number."""
    return subprocess.run(["pdftotext", "-layout", "-f", str(first), "-l", str(last), str(pdf), "-"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="session")
def report(built_book) -> dict:
    """`python -m fer_utils.pdf` run in the built copy: the PDF, its summary, its pages' text, the copy."""
    if not shutil.which("chromium-browser"):
        needs("chromium", "chromium")
    needs("pdftotext", "poppler-utils")
    needs_cjk_font()
    copy = built_book[0].parent.parent
    result = subprocess.run([sys.executable, "-m", "fer_utils.pdf"], cwd=copy, capture_output=True, text=True,
                            timeout=1800)
    assert result.returncode == 0, f"python -m fer_utils.pdf failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    pdf = copy / "_build" / "pdf" / "report.pdf"
    summary = json.loads((pdf.parent / "report.json").read_text())
    return {"pdf": pdf, "summary": summary, "pages": fer_pdf.pdf_pages(pdf), "copy": copy, "out": result.stdout}


def chapter_pages(report: dict, title: str) -> range:
    """The pages of the chapter with this title: from its first page to the page before the next chapter's."""
    starts = [e["page"] for e in report["summary"]["contents"] if e["level"] == 1]
    titles = [squeeze(e["text"]) for e in report["summary"]["contents"] if e["level"] == 1]
    index = titles.index(title)
    end = starts[index + 1] if index + 1 < len(starts) else len(report["pages"]) + 1
    return range(starts[index], end)


@pytest.mark.book
def test_pdf_is_a4_with_a_bounded_page_count_and_reuses_the_executed_notebooks(report):
    info = subprocess.run(["pdfinfo", str(report["pdf"])], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Page size:.*\(A4\)", info), info
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert pages == len(report["pages"]) == report["summary"]["pages"]
    assert PAGES[0] <= pages <= PAGES[1], f"{pages} pages, outside {PAGES}"
    assert report["summary"]["notebooks_executed"] == 0, "the PDF step executed notebooks the HTML build had cached"
    assert "Executing notebook" not in (report["pdf"].parent / "singlehtml.log").read_text()


@pytest.mark.book
def test_title_page_contents_with_page_numbers_and_every_chapter(report):
    config = yaml.safe_load((report["copy"] / "_config.yml").read_text())
    title_page = squeeze(report["pages"][0])
    for value in (config["title"], config["author"], config["pdf"]["course"]):
        assert squeeze(value) in title_page, f"the title page lacks {value!r}: {title_page[:300]}"
    entries = {squeeze(e["text"]): e["page"] for e in report["summary"]["contents"] if e["level"] == 1}
    contents = squeeze(layout_text(report["pdf"], 2, min(entries.values()) - 1))  # page 2 up to the first chapter
    assert contents.startswith("Contents")
    for title in chapter_titles(report["copy"] / "book"):
        assert title in entries, f"chapter {title!r} is missing from the contents"
        assert f"{title} {entries[title]}" in contents, f"the contents page does not give {title!r} a page number"
        assert squeeze(report["pages"][entries[title] - 1]).startswith(title), f"{title!r} is not on its page"
    assert footers(report["pdf"]) == [[]] + [[str(n)] for n in range(2, len(report["pages"]) + 1)]


def footers(pdf: Path) -> list[list[str]]:
    """The words in each page's bottom margin (the lowest 15 mm of A4), read with pdftotext -bbox."""
    boxes = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    word = re.compile(r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="[\d.]+">([^<]*)</word>')
    return [[text for y, text in word.findall(page) if float(y) > 842 - 15 * 72 / 25.4]
            for page in boxes.split("<page ")[1:]]


@pytest.mark.book
def test_chapter_3_has_its_question_in_chinese_and_its_glued_numbers(report):
    book = report["copy"] / "book"
    title = chapter_titles(book)[3]
    first = nbformat.read(book / "03_confusion.ipynb", as_version=4).cells[0].source
    question = next(line[2:] for line in first.splitlines() if re.search(r"^> .*[\u4e00-\u9fff]", line))
    pages = chapter_pages(report, title)
    text = " ".join(report["pages"][n - 1] for n in pages)
    assert "".join(question.split()) in "".join(text.split()), "chapter 3's Chinese question is not in the PDF"
    values = glued(report["copy"], "03_confusion")
    prose = "\n".join(c.source for c in nbformat.read(book / "03_confusion.ipynb", as_version=4).cells)
    shown = {f"{key}:{spec}": format(values[key], spec)  # each number the prose shows, formatted as it asks
             for key, spec in re.findall(r"\{glue:text\}`(\w+):([^`]+)`", prose) if isinstance(values.get(key), float)}
    assert len(shown) >= 5, f"chapter 3 glues too few numbers to check: {shown}"
    missing = {glue: number for glue, number in shown.items() if number not in text}
    assert not missing, f"chapter 3's glued numbers are not on its pages {list(pages)}: {missing}"
    assert "\\frac" not in text and "$$" not in text and "glue key not found" not in text


def glyph_images(report: dict, word: str, page: int) -> list[Image.Image]:
    """The printed glyph of each ideograph of a word that stands alone on a page (pdftotext -bbox), at 288 dpi."""
    boxes = subprocess.run(["pdftotext", "-bbox", "-f", str(page), "-l", str(page), str(report["pdf"]), "-"],
                           capture_output=True, text=True, check=True).stdout
    number = r'"([\d.]+)"'
    found = re.search(rf"<word xMin={number} yMin={number} xMax={number} yMax={number}>{re.escape(word)}</word>", boxes)
    # Chromium draws the ideographs in the CJK font and the Latin letters around them in another, so pdftotext
    # makes the ideographs a word of their own; drawn as boxes, in the Latin font, they would merge with the letters.
    assert found, f"{word!r} is not a word of its own on page {page}: not printed in a CJK font (as boxes?)"
    x0, y0, x1, y1 = (float(v) * 4 for v in found.groups())  # points at 72 dpi, rendered at 288
    subprocess.run(["pdftoppm", "-r", "288", "-gray", "-f", str(page), "-l", str(page), "-singlefile",
                    str(report["pdf"]), str(report["pdf"].parent / "glyphs")], check=True)
    image = Image.open(report["pdf"].parent / "glyphs.pgm").point(lambda v: 255 if v > 128 else 0)
    step = (x1 - x0) / len(word)
    return [image.crop((round(x0 + i * step), round(y0), round(x0 + (i + 1) * step), round(y1)))
            for i, char in enumerate(word) if "\u4e00" <= char <= "\u9fff"]


@pytest.mark.book
def test_chinese_prints_as_distinct_glyphs_not_boxes_or_blanks(report):
    book = report["copy"] / "book"
    first = nbformat.read(book / "03_confusion.ipynb", as_version=4).cells[0].source
    question = next(line[2:] for line in first.splitlines() if re.search(r"^> .*[\u4e00-\u9fff]", line))
    word = max(re.findall(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+", question), key=len)
    page = next(n for n in chapter_pages(report, chapter_titles(book)[3]) if word in report["pages"][n - 1])
    glyphs = dict(zip([c for c in word if "\u4e00" <= c <= "\u9fff"], glyph_images(report, word, page)))
    assert len(glyphs) >= 4
    ink = {c: sum(1 for v in g.getdata() if v == 0) for c, g in glyphs.items()}
    assert all(ink.values()), f"blank glyphs: {[c for c, n in ink.items() if not n]}"
    chars = list(glyphs)
    for i, a in enumerate(chars):  # missing glyphs print as one and the same box; real ones differ a lot
        for b in chars[i + 1:]:
            size = (min(glyphs[a].width, glyphs[b].width), min(glyphs[a].height, glyphs[b].height))
            differ = ImageChops.difference(glyphs[a].crop((0, 0, *size)), glyphs[b].crop((0, 0, *size)))
            changed = sum(1 for v in differ.getdata() if v)
            assert changed > 0.2 * min(ink[a], ink[b]), f"{a!r} and {b!r} print alike: a box, not glyphs"


@pytest.mark.book
def test_every_figure_is_an_embedded_image_and_the_maths_is_typeset(report):
    listed = subprocess.run(["pdfimages", "-list", str(report["pdf"])], capture_output=True, text=True,
                            check=True).stdout.splitlines()[2:]
    images = [line.split() for line in listed if line.split()[2] == "image"]
    figures = report["summary"]["figures"]
    assert figures >= 8 and len(images) >= figures, f"{len(images)} embedded images for {figures} figures"
    book = report["copy"] / "book"
    for page, title in zip(toc_pages(book), chapter_titles(book)):
        markdown = "\n".join(c.source for c in nbformat.read(book / f"{page}.ipynb", as_version=4).cells)
        declared = len(re.findall(r"```\{(?:glue:)?figure\}", markdown))
        printed = sum(int(row[0]) in chapter_pages(report, title) for row in images)
        assert printed >= declared, f"{title!r} declares {declared} figures, its pages embed {printed} images"
    assert report["summary"]["maths"] > 50  # each was typeset by MathJax: the PDF step fails on any left as TeX
    assert report["summary"]["tables"] >= 8


@pytest.mark.book
def test_hidden_plumbing_stays_hidden_and_folded_outputs_are_shown(report):
    text = squeeze(" ".join(report["pages"]))
    for chrome in CHROME:
        assert chrome not in text, f"the PDF shows the theme's {chrome!r}"
    for page in toc_pages(report["copy"] / "book"):
        for cell in executed(report["copy"], page).cells:
            tags = set(cell.metadata.get("tags", []))
            if cell.cell_type == "code" and tags & {"remove-cell", "remove-input", "hide-input", "hide-cell"}:
                output = squeeze(" ".join(str(v) for o in cell.get("outputs", []) for v in o.get("data", {}).values()))
                lines = [squeeze(line) for line in cell.source.splitlines() if len(line.strip()) >= 25]
                shown = [line for line in lines if line in text and line not in output]  # not text it displays
                assert not shown, f"{page}: the PDF shows hidden source {shown[:2]}"
            if "hide-output" in tags:
                html = " ".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))
                numbers = re.findall(r">\s*(-?\d+\.\d+)\s*<", html)[:8]
                assert numbers and all(n in text for n in numbers), f"{page}: a folded output is not shown"


@pytest.mark.book
def test_every_character_has_a_font(report):
    chars = report["summary"]["characters"]
    assert re.search(r"[\u4e00-\u9fff]", chars) and "→" in chars  # the check saw the Chinese and the arrows
    assert not fer_pdf.missing_glyphs(list(chars))


def test_a_character_no_font_has_fails_the_glyph_check():
    needs("fc-list", "fontconfig")
    unknown = "\U0010fffd"  # a private-use code point that no font draws
    assert fer_pdf.missing_glyphs(["a", "→", unknown]) == [unknown]
    problems = fer_pdf.check({"untypeset": [], "mathErrors": 0, "broken": [], "chars": ["x", "\u0302", unknown]})
    assert len(problems) == 1 and "U+10FFFD" in problems[0]
