"""The documentation site builds, as ``python -m sphinx -W -b html docs docs/_build/html`` does.

Warnings are errors (``-W``): a docstring that docutils cannot read, a cross-reference that does not
resolve (``nitpicky`` in ``docs/conf.py``), a page in no table of contents, a missing image. The build
then holds a page for every public name (``tests/docs/test_api_pages.py`` lists them). It takes about
half a minute; the ``docs`` extra, which the ``test`` extra includes, installs what it needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.test_api_pages import PUBLIC

# The build takes about 30 s of CPU, beyond the default run's budget: CI builds it (-m slow).
pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_site_builds_without_a_warning_and_has_a_page_for_every_public_name(tmp_path):
    html = tmp_path / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    command += ["-d", str(tmp_path / "doctrees"), str(DOCS), str(html)]
    env = os.environ | {"JAX_PLATFORMS": "cpu"}
    build = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert build.returncode == 0, f"the site does not build:\n{build.stdout[-4000:]}\n{build.stderr[-8000:]}"
    missing = [name for name in PUBLIC if not (html / "api" / "generated" / f"{name}.html").is_file()]
    assert not missing, f"public names without a built page: {missing}"
    for page in ("index", "getting_started", "hyperparameters", "which_optimizer", "large_runs", "second_order"):
        assert (html / f"{page}.html").is_file(), page
    assert (html / "notebooks" / "trajectories.html").is_file()
