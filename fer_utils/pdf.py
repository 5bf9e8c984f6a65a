"""The report as one PDF: a single-page build of the book, printed to A4 by headless Chromium.

    python -m fer_utils.pdf                    # writes _build/pdf/report.pdf

`jb build book/ --builder singlehtml` renders every chapter into one page from the execution cache that
`jb build book/` fills (notebooks the cache lacks are executed once and cached for the HTML build too). This
module then opens that page in Debian's `chromium` over the DevTools pipe, waits for MathJax and the images,
keeps only the article (no theme chrome, no buttons), drops the source of cells the HTML folds (`hide-input`,
`hide-cell`), unfolds folded outputs (`hide-output`), adds a title page (`title` and `author` of `_config.yml`,
`pdf: course`) and a contents page, and prints it with page numbers and bookmarks (`Page.printToPDF`). The
contents' page numbers are read back from a first print with `pdftotext`. A character that no installed font has
(fontconfig's `fc-list`) fails the build, since Chromium would print it as an empty box. Needs `chromium`,
`fonts-noto-cjk` (the Chinese questions) and `poppler-utils` (`pdftotext`): `apt-get install chromium fonts-noto-cjk
poppler-utils`.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import functools
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                  "--font-render-hinting=none")
A4_INCHES = (8.27, 11.69)
ASSETS = Path(__file__).resolve().parent / "pdf_assets"  # the JavaScript run in the page and the print CSS
MAX_PASSES = 4  # prints until the contents page's numbers match the pages they name (two, unless a line moves)


def _asset(name: str) -> str:
    """A file of pdf_assets/, as text."""
    return (ASSETS / name).read_text()


class PdfError(RuntimeError):
    """The PDF could not be made as promised (missing tool, failed build, untypeset maths, missing glyph)."""


# --- the browser -----------------------------------------------------------------------------------------------


class Chromium:
    """Headless Chromium driven through the DevTools protocol over --remote-debugging-pipe."""

    def __init__(self, binary: str, profile: Path):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def connect_pipes() -> None:  # the browser reads commands on fd 3 and writes replies on fd 4
            os.dup2(os.dup(to_browser), 3)
            os.dup2(os.dup(from_browser), 4)

        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=connect_pipes, pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next_id = b"", 0
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        except PdfError:
            self.close()
            raise

    def send(self, method: str, timeout: float = 120, session: str | None = None, **params) -> dict:
        """Send one command and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise PdfError(f"Chromium did not answer {method} within {timeout:.0f} s")
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise PdfError(f"Chromium exited while answering {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise PdfError(f"Chromium: {method}: {reply['error']}")
                return reply["result"]

    def page(self, method: str, **params) -> dict:
        """A command to the page's session."""
        return self.send(method, session=self.session, **params)

    def evaluate(self, expression: str, timeout: float = 120):
        """The value of a JavaScript expression in the page, awaiting it when it is a promise."""
        result = self.send("Runtime.evaluate", timeout=timeout, session=self.session, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise PdfError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url: str, timeout: float = 120) -> None:
        """Load a page and wait until it has finished loading."""
        self.send("Page.navigate", session=self.session, url=url)
        deadline = time.monotonic() + timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise PdfError(f"{url} did not finish loading within {timeout:.0f} s")
            time.sleep(0.2)

    def print_pdf(self) -> bytes:
        """The page printed as PDF: the CSS @page rules set A4 and its margins."""
        width, height = A4_INCHES
        result = self.send("Page.printToPDF", timeout=600, session=self.session, printBackground=True,
                           preferCSSPageSize=True, paperWidth=width, paperHeight=height, displayHeaderFooter=False,
                           generateDocumentOutline=True)
        return base64.b64decode(result["data"])

    def close(self) -> None:
        """Stop the browser."""
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._to_browser)
        os.close(self._from_browser)


def serve(folder: Path) -> ThreadingHTTPServer:
    """Serve a folder on a free loopback port (MathJax's fonts do not load from file://)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- what is done to the page ----------------------------------------------------------------------------------

# Waits for MathJax and the images, then keeps only the article, laid out for print. Returns the contents' entries.
PREPARE = _asset("prepare.js")

# Fills the contents' page numbers, in the order PREPARE listed the entries.
NUMBER = _asset("number.js")

# What a reader sees: maths left as TeX, MathJax errors, broken images, and every character drawn with a system
# font (text outside MathJax, plus what MathJax itself hands to system fonts, mjx-utext).
INSPECT = _asset("inspect.js")

CSS = _asset("print.css")


# --- the PDF, read back ----------------------------------------------------------------------------------------


def pdf_pages(pdf: Path) -> list[str]:
    """The text of every page of a PDF (poppler's pdftotext)."""
    tool = shutil.which("pdftotext")
    if tool is None:
        raise PdfError("pdftotext is missing: apt-get install poppler-utils")
    text = subprocess.run([tool, "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1] if text.endswith("\f") else text.split("\f")


def squeeze(text: str) -> str:
    """Text with every run of whitespace made one space."""
    return " ".join(text.split())


def find_pages(pages: list[str], entries: list[dict]) -> list[int]:
    """The 1-based page each contents entry's heading is printed on, searching forward in contents order."""
    lines = [[squeeze(line) for line in page.splitlines() if line.strip()] for page in pages]
    found, start = [], 2  # page 1 is the title page; the contents, which start with "Contents", come next
    for entry in entries:
        want = squeeze(entry["text"])
        for number in range(start, len(pages) + 1):
            page = lines[number - 1]
            if entry["level"] == 1:  # a chapter starts a page: its title is the page's first line(s)
                hit = squeeze(" ".join(page[:4])).startswith(want)
            else:  # a section title is a line of its own, or a few when it wraps
                hit = any(squeeze(" ".join(page[i:i + k])) == want for i in range(len(page)) for k in (1, 2, 3))
            if hit:
                found.append(number)
                start = number
                break
        else:
            raise PdfError(f"the heading {entry['text']!r} was not found in the printed PDF after page {start}")
    return found


def missing_glyphs(chars: list[str]) -> list[str]:
    """Characters no installed font has (fontconfig), which Chromium would print as empty boxes."""
    tool = shutil.which("fc-list")
    if tool is None:
        raise PdfError("fc-list is missing: apt-get install fontconfig")
    missing = []
    for char in sorted(set(chars)):
        if draws_nothing(char):
            continue
        found = subprocess.run([tool, f":charset={ord(char):x}", "family"], capture_output=True, text=True).stdout
        if not found.strip():
            missing.append(char)
    return missing


def draws_nothing(char: str) -> bool:
    """Whether a character draws nothing (spaces, joiners, controls), so no font needs it."""
    return unicodedata.category(char) in ("Zs", "Zl", "Zp", "Cf", "Cc")


# --- the whole step --------------------------------------------------------------------------------------------


def project_root(book: Path) -> Path:
    """The folder holding _config.yml: `book/` itself or its parent, as `jb build` finds it."""
    for folder in (book.resolve(), book.resolve().parent):
        if (folder / "_config.yml").exists():
            return folder
    raise PdfError(f"no _config.yml in {book} or its parent")


def title_meta(root: Path) -> dict:
    """Title, author, course and date for the title page, from _config.yml (`title`, `author`, `pdf: course`)."""
    config = yaml.safe_load((root / "_config.yml").read_text()) or {}
    today = datetime.date.today()
    return {"title": str(config.get("title", "")), "author": str(config.get("author", "")),
            "course": str((config.get("pdf") or {}).get("course", "")), "date": f"{today:%d %B %Y}".lstrip("0")}


def build_singlehtml(book: Path, root: Path, log: Path) -> tuple[Path, int]:
    """Run `jb build BOOK --builder singlehtml`; return the page to print and how many notebooks it executed."""
    jb = shutil.which("jb") or shutil.which("jupyter-book")
    if jb is None:
        raise PdfError("the `jb` command is missing: pip install -r requirements.txt")
    result = subprocess.run([jb, "build", str(book.resolve()), "--builder", "singlehtml"], cwd=root,
                            capture_output=True, text=True)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise PdfError(f"jb build {book} --builder singlehtml failed; see {log}")
    toc = yaml.safe_load((book / "_toc.yml").read_text())
    executed = len(re.findall(r"Executing notebook", result.stdout + result.stderr))
    return root / "_build" / "singlehtml" / f"{toc['root']}.html", executed


def print_report(page: Path, out: Path, meta: dict) -> dict:
    """Print the single-page build to `out`; return what was checked and where each chapter landed."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise PdfError("chromium is missing: apt-get install chromium")
    server = serve(page.parent)
    with tempfile.TemporaryDirectory(prefix="fer-pdf-") as scratch:
        browser = Chromium(binary, Path(scratch) / "profile")
        try:
            browser.send("Page.enable", session=browser.session)
            browser.open(f"http://127.0.0.1:{server.server_port}/{page.name}")
            entries = browser.evaluate(f"({PREPARE})({json.dumps({**meta, 'css': CSS})})", timeout=300)
            seen = browser.evaluate(INSPECT)
            problems = check(seen)
            if problems:
                raise PdfError("; ".join(problems))
            numbers: list[int] = []
            for _ in range(MAX_PASSES):
                out.write_bytes(browser.print_pdf())
                found = find_pages(pdf_pages(out), entries)
                if found == numbers:
                    break
                numbers = found
                browser.evaluate(f"({NUMBER})({json.dumps(numbers)})")
            else:
                raise PdfError(f"the contents' page numbers did not settle in {MAX_PASSES} prints")
        finally:
            browser.close()
            server.shutdown()
    counts = {key: seen[key] for key in ("maths", "figures", "tables", "images")}
    return {"pages": len(pdf_pages(out)), **counts, "characters": "".join(seen["chars"]),
            "contents": [{**e, "page": n} for e, n in zip(entries, numbers)]}


def check(seen: dict) -> list[str]:
    """What would make the PDF wrong: maths left as TeX, MathJax errors, broken images, characters without a font."""
    problems = []
    if seen["untypeset"]:
        problems.append(f"maths left as TeX: {seen['untypeset'][:3]}")
    if seen["mathErrors"]:
        problems.append(f"{seen['mathErrors']} MathJax errors")
    if seen["broken"]:
        problems.append(f"broken images: {seen['broken'][:3]}")
    missing = missing_glyphs(seen["chars"])
    if missing:
        problems.append("no installed font has " + ", ".join(f"{c!r} (U+{ord(c):04X})" for c in missing)
                        + ": it would print as an empty box (apt-get install fonts-noto-cjk, or another font)")
    return problems


def make_pdf(book: Path = Path("book"), out: Path | None = None) -> dict:
    """Build the single-page book and print it to `out` (default `_build/pdf/report.pdf`); return a summary."""
    started = time.monotonic()
    root = project_root(book)
    out = (out or root / "_build" / "pdf" / "report.pdf").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"jb build {book} --builder singlehtml (from the execution cache) ...", file=sys.stderr, flush=True)
    page, executed = build_singlehtml(book, root, out.parent / "singlehtml.log")
    print(f"printing {page.relative_to(root)} with Chromium ...", file=sys.stderr, flush=True)
    summary = {"pdf": str(out), "notebooks_executed": executed, **print_report(page, out, title_meta(root))}
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["bytes"] = out.stat().st_size
    (out.parent / "report.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: python -m fer_utils.pdf [--book book] [--out _build/pdf/report.pdf]."""
    parser = argparse.ArgumentParser(prog="python -m fer_utils.pdf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--book", type=Path, default=Path("book"), help="the book's folder (default: book)")
    parser.add_argument("--out", type=Path, help="the PDF to write (default: _build/pdf/report.pdf)")
    args = parser.parse_args(argv)
    try:
        summary = make_pdf(args.book, args.out)
    except PdfError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{summary['pdf']}: {summary['pages']} pages, {summary['bytes'] / 1e6:.1f} MB, {summary['seconds']:.0f} s "
          f"({summary['notebooks_executed']} notebooks executed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
