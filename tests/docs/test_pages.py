"""The examples on the site's Markdown pages run.

Each ```` ```pycon ```` block of a page in ``docs/`` is a doctest; a page's blocks run in order in one
namespace, as a reader goes down the page. Pages show code that runs as ``pycon``; plain ``python``
blocks are left to the pages whose code needs what a test does not have (several hosts).
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from tests.docs import checker

# About 35 s of CPU, beyond the default run's budget: CI runs the pages' examples (-m slow).
pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md"))
NOT_RUN = {"multi_host.md", "contributing.md"}  # several hosts; a sketch of a rule for contributors
BLOCK = re.compile(r"^```pycon\n(.*?)^```$", re.S | re.M)


def blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.stem)
def test_page_examples_run(page):
    parser, runner = doctest.DocTestParser(), checker.runner()
    globs: dict = {}
    report: list[str] = []
    for line, source in blocks(page):
        test = parser.get_doctest(source, globs, f"{page.name}:{line}", str(page), line)
        runner.run(test, out=report.append, clear_globs=False)
        globs = test.globs  # the next block sees what this one defined
    if report:
        pytest.fail("".join(report), pytrace=False)


def test_pages_show_code_that_runs():
    unchecked = {p.name for p in PAGES if p.name not in NOT_RUN and re.search(r"^```python$", p.read_text(), re.M)}
    assert not unchecked, f"pages with ```python blocks, which no test runs (write them as ```pycon): {unchecked}"
