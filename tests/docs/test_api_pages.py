"""The API reference: every public name has a page and a running example, and every example runs.

Public names: ``jgd.__all__`` (a module named there, ``jgd.masks`` and ``jgd.schedules``, by its own
``__all__``), ``jgd.lowbit.__all__``, and the ``__all__`` of every module of the runner (``jgd.experiment``)
that has one: those are its public modules. A page is an entry in an ``.. autosummary::`` list of
``docs/api/*.rst`` (the build writes one page per entry). The examples are the docstrings' ``Examples:``
sections, run as doctests from an empty namespace (each example imports what it uses), so what a reader
copies runs as it stands.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path

import pytest

import jgd
import jgd.experiment
import jgd.lowbit
from tests.docs import checker

API = Path(__file__).resolve().parents[2] / "docs" / "api"


def runner_public_modules() -> list[str]:
    """The runner's modules that declare ``__all__``."""
    found = []
    for info in pkgutil.walk_packages(jgd.experiment.__path__, "jgd.experiment."):
        if info.name.endswith("__main__"):
            continue
        if hasattr(importlib.import_module(info.name), "__all__"):
            found.append(info.name)
    return sorted(found)


def public_names() -> dict[str, object]:
    """Each public name, fully qualified as its page is named, with its object; one name per object."""
    names: dict[str, object] = {}
    for name in jgd.__all__:
        value = getattr(jgd, name)
        if isinstance(value, types.ModuleType):
            names.update({f"{value.__name__}.{n}": getattr(value, n) for n in value.__all__})
        else:
            names[f"jgd.{name}"] = value
    seen = {id(v) for v in names.values()}
    for name in jgd.lowbit.__all__:
        if id(getattr(jgd.lowbit, name)) not in seen:
            names[f"jgd.lowbit.{name}"] = getattr(jgd.lowbit, name)
    for module_name in runner_public_modules():
        module = importlib.import_module(module_name)
        names.update({f"{module_name}.{n}": getattr(module, n) for n in module.__all__})
    return names


PUBLIC = public_names()


def pages() -> dict[str, str]:
    """Each autosummary entry of ``docs/api/*.rst``, fully qualified, with the file that lists it."""
    found = {}
    for path in sorted(API.glob("*.rst")):
        module, in_list = "", False
        for line in path.read_text().splitlines():
            if m := re.match(r"\.\. currentmodule:: (\S+)", line):
                module = m.group(1)
            elif line.startswith(".. autosummary::"):
                in_list = True
            elif in_list and line.strip() and not line.startswith(" "):
                in_list = False
            elif in_list and (m := re.match(r"   ([A-Za-z_][\w.]*)$", line)):
                found[f"{module}.{m.group(1)}"] = path.name
    return found


def test_the_runner_has_public_modules():
    assert {"jgd.experiment.train.training", "jgd.experiment.sweep.engine", "jgd.experiment.plots"} <= set(
        runner_public_modules()
    )


def test_every_public_name_has_a_page():
    missing = sorted(set(PUBLIC) - set(pages()))
    assert not missing, f"public names without an entry in docs/api/*.rst: {missing}"


def test_every_page_is_a_public_name():
    stale = sorted(set(pages()) - set(PUBLIC))
    assert not stale, f"docs/api/*.rst lists names that are not public: {stale}"


def examples(name: str) -> list[doctest.DocTest]:
    obj = PUBLIC[name]
    module = inspect.getmodule(obj)
    finder = doctest.DocTestFinder(recurse=False)
    return [t for t in finder.find(obj, name, module=module, globs={}) if t.examples]


def section(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc[doc.find("Examples:") :] if "Examples:" in doc else ""


def test_every_public_name_has_an_example():
    missing = sorted(name for name, obj in PUBLIC.items() if ">>>" not in section(obj))
    assert not missing, f"public names whose docstring has no 'Examples:' section with a '>>>' example: {missing}"


# Running every example takes about 110 s of CPU, more than the default run's budget: CI runs them (-m slow).
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_example_runs(name):
    runner = checker.runner()
    report: list[str] = []
    for test in examples(name):
        runner.run(test, out=report.append)
    if report:
        pytest.fail("".join(report), pytrace=False)
