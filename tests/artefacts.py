"""What a reader must never find on a built page: template artefacts in the prose, log lines in the outputs.

`page_artefacts(html)` lists them for one page of `_build/html`; test_book reads every page of the stand-in build
with it, test_fer2013 every page of the FER2013 build, and test_artefacts feeds it each kind.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup

SPELLED = "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
PROSE_PATTERNS = {
    "object repr": re.compile(r"<[\w.]+ object( at 0x[0-9a-f]+)?>"),
    "empty or open parentheses": re.compile(r"\(\s*\)|\(\s+\w|\w\s+\)"),
    "word repeated": re.compile(r"\b([A-Za-z]{2,})\s+\1\b", re.IGNORECASE),
    "count of a spelled count": re.compile(rf"\b\d+ of the ({SPELLED})\b"),
    "Python value in words": re.compile(r"\((True|False|None) vs (True|False|None)\)|\b(True|False|None)\b"),
    "configuration key": re.compile(r"\b[a-z]+(_[a-z0-9]+)+\b"),
}
LOG_LINE = re.compile(r"^\s*(WARNING|INFO|ERROR|[WIE]\d{4} [\d:.]+)\b|tensorflow|absl::|retracing|oneDNN",
                      re.MULTILINE)


def page_artefacts(html: str) -> list[str]:
    """Each artefact on a built page, as 'kind: the text around it'."""
    soup = BeautifulSoup(html, "html.parser")
    article = soup.select_one("article") or soup.find("main") or soup
    found = []
    for shown in article.select(".cell_output .output.text_html .highlight"):
        shown.decompose()  # source code a cell displays (IPython's Code), not something it logged
    for output in article.select(".cell_output"):
        text = output.get_text("\n")
        found += [f"log line: {m.group(0)!r}" for m in LOG_LINE.finditer(text)]
    for element in article.select(".cell_input, .cell_output, table, nav, script, style, .bibliography, .headerlink"):
        element.decompose()  # code, its outputs and tables: what is left is the prose, captions included
    for element in article.select("pre, code, .math, math, mjx-container"):
        element.replace_with("X")  # inline code and maths stand for a word
    prose = re.sub(r"\s+", " ", article.get_text(""))
    for kind, pattern in PROSE_PATTERNS.items():
        found += [f"{kind}: {prose[max(0, m.start() - 40):m.end() + 40]!r}" for m in pattern.finditer(prose)]
    return found
