"""The artefact reader finds each kind of artefact and passes a clean page."""

from __future__ import annotations

import pytest
from artefacts import page_artefacts


def page(prose: str, output: str = "") -> str:
    """A page as jb builds it: a code cell (input, output) and a paragraph."""
    return (f"<main><div class='cell docutils'><div class='cell_input'><pre>f(x)  # a_b() True</pre></div>"
            f"<div class='cell_output'><pre>{output}</pre></div></div><p>{prose}</p></main>")


def test_a_clean_page_has_no_artefact():
    clean = page("The report CNN scores 0.651 (the original's level) on 3,589 images; table 2 lists the rest.",
                 "epoch 1: loss 1.2")
    assert page_artefacts(clean) == []


@pytest.mark.parametrize("prose, kind", [
    ("&lt;IPython.core.display.Markdown object&gt;", "object repr"),
    ("the map ( below and below its share of the area)", "empty or open parentheses"),
    ("the maps hardly hardly follow the light", "word repeated"),
    ("7 of the seven classes", "count of a spelled count"),
    ("recalibrate bn (False vs True)", "Python value in words"),
    ("what the recalibrate_bn setting adds", "configuration key"),
])
def test_each_kind_of_prose_artefact_is_found(prose, kind):
    found = page_artefacts(page(prose))
    assert [f.split(":")[0] for f in found] == [kind], found


@pytest.mark.parametrize("output", [
    "WARNING:tensorflow:6 out of the last 6 calls to &lt;function make_predict_function&gt; triggered retracing",
    "I0000 00:00:1796607057.431942 2559 port.cc:153] oneDNN custom operations are on.",
])
def test_log_lines_in_an_output_are_found(output):
    assert any(f.startswith("log line") for f in page_artefacts(page("Fine prose.", output)))


def test_source_code_a_cell_displays_is_not_a_log_line():
    shown = "<div class='output text_html'><div class='highlight'><pre>import tensorflow as tf</pre></div></div>"
    logged = "<div class='output stream'><pre>WARNING:tensorflow:retracing</pre></div>"
    assert page_artefacts(page("Fine prose.", shown)) == []
    assert any(f.startswith("log line") for f in page_artefacts(page("Fine prose.", shown + logged)))
