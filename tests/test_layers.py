"""The two layers: the transform library never imports the experiment runner, and loads none of its dependencies."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jgd"
RUNNER = PACKAGE / "experiment"
CORE_MODULES = sorted(p for p in PACKAGE.rglob("*.py") if RUNNER not in p.parents)
RUNNER_ONLY = ("flax", "optax", "orbax", "sklearn", "matplotlib", "yaml", "rich")


def _module_name(path: Path) -> str:
    """``jgd/methods/adam.py`` -> ``jgd.methods.adam``; a package's ``__init__.py`` is the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` statement of ``path`` names, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            # ``from jgd import experiment`` names the runner through the imported name
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", CORE_MODULES, ids=[_module_name(p) for p in CORE_MODULES])
def test_core_modules_import_nothing_of_the_runner(path):
    wrong = sorted(
        name
        for name in _imported_modules(path)
        if name == "jgd.experiment" or name.startswith("jgd.experiment.") or name.split(".")[0] in RUNNER_ONLY
    )
    assert not wrong, f"{path.name} imports {wrong}; the transform library may import only jax, jaxlib and numpy"


def test_the_import_check_sees_a_wrong_arrow(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from jgd.experiment import training\n    import optax\n")
    assert {"jgd.experiment.training", "optax"} <= _imported_modules(module)


def test_importing_every_core_module_loads_no_runner_dependency():
    modules = ", ".join(_module_name(p) for p in CORE_MODULES)
    script = (
        f"import sys, jgd, {modules}\n"
        f"runner_only = {RUNNER_ONLY!r}\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in runner_only or m.startswith('jgd.experiment'))\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing the core loaded {result.stdout.strip()}"


def test_runner_modules_live_in_the_experiment_package():
    runner = {p.stem for p in RUNNER.glob("*.py")}
    assert {"cli", "training", "data", "models", "plots"} <= runner
    assert not (runner & {p.stem for p in CORE_MODULES}) - {"__init__"}, "a module name is in both layers"
