"""Every value a chapter glues is quoted by its prose, every quoted key is glued, and each key is a literal name.

Read from the notebooks' source, no build needed: glue calls are `chapter.glue_values(name=value, ...)` and
`chapter.glue_table("name", ...)`; a `**mapping` in a glue call would make keys the reader cannot find in the code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
PAGES = sorted(p.stem for p in BOOK.glob("*.ipynb"))
QUOTED = re.compile(r"\{glue:(?:text|md|figure|any|math)?\}`([^`:]+)|```\{glue:(?:md|figure|any|math)?\}\s+(\S+)")


def cells(page: str):
    """The page's cells."""
    return nbformat.read(BOOK / f"{page}.ipynb", as_version=4).cells


def glued(page: str) -> tuple[set[str], list[str]]:
    """The keys the page's code glues, and the glue calls whose keys are not literal names."""
    keys, generated = set(), []
    for cell in cells(page):
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "glue_values":
                keys |= {k.arg for k in node.keywords if k.arg}
                generated += [ast.unparse(k.value)[:60] for k in node.keywords if k.arg is None]
            elif node.func.attr == "glue_table":
                name = node.args[0]
                if isinstance(name, ast.Constant):
                    keys.add(name.value)
                else:
                    generated.append(ast.unparse(name))
    return keys, generated


def quoted(page: str) -> set[str]:
    """The keys the page's Markdown cells and figure captions (code cells' metadata) quote, as roles or directives."""
    text = "\n".join(cell.source if cell.cell_type == "markdown" else
                     cell.metadata.get("mystnb", {}).get("figure", {}).get("caption", "") for cell in cells(page))
    return {role or directive for role, directive in QUOTED.findall(text)}


@pytest.mark.parametrize("page", PAGES)
def test_every_glued_key_is_a_literal_name(page):
    assert glued(page)[1] == [], f"{page}: glue calls with generated keys"


@pytest.mark.parametrize("page", PAGES)
def test_every_glued_key_is_quoted_and_every_quoted_key_is_glued(page):
    keys, said = glued(page)[0], quoted(page)
    assert sorted(keys - said) == [], f"{page}: glued but never quoted"
    assert sorted(said - keys) == [], f"{page}: quoted but never glued"


def test_the_reader_finds_the_glue_roles_in_this_form():
    text = "a {glue:text}`acc:.3f` b {glue:}`n` c\n```{glue:md} tbl-x\n:format: myst\n```"
    assert {r or d for r, d in QUOTED.findall(text)} == {"acc", "n", "tbl-x"}


def test_in_brief_paragraphs_quote_at_most_eight_numbers():
    for page in PAGES:
        for cell in cells(page):
            if cell.cell_type == "markdown" and "**In brief.**" in cell.source:
                brief = cell.source.split("**In brief.**")[1].split("\n\n")[0]
                assert len(re.findall(r"\{glue:", brief)) <= 8, page


def test_numpy_scalars_are_glued_as_python_numbers_that_a_format_can_read():
    import numpy as np

    from fer_utils import chapter

    table = chapter.glue_values(share=np.float64(0.62), count=np.int64(3), words="above")
    assert [type(v) for v in table["value"]] == [float, int, str]
    assert format(table.at["share", "value"], ".0%") == "62%"
