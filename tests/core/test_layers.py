"""The two layers: the library never imports the runner or its dependencies; the runner uses only the public API."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import jgd

PACKAGE = Path(__file__).resolve().parents[2] / "jgd"
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
    module.write_text("def f():\n    from jgd.experiment.train import training\n    import optax\n")
    assert {"jgd.experiment.train.training", "optax"} <= _imported_modules(module)


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


RUNNER_MODULES = sorted(RUNNER.rglob("*.py"))
# What the runner may import of the library: its public names and public submodules.
PUBLIC = ("jgd", "jgd.schedules", "jgd.masks", "jgd.types")


def _names(paths: list[Path]) -> set[str]:
    """The modules' and their packages' own names (``models``, ``train``), without ``__init__``."""
    return {p.stem for p in paths if p.stem != "__init__"} | {p.parent.name for p in paths if p.stem == "__init__"}


def test_runner_modules_live_in_the_experiment_package():
    runner = {_module_name(p) for p in RUNNER_MODULES}
    assert {"jgd.experiment.cli", "jgd.experiment.train.training", "jgd.experiment.train.data"} <= runner
    assert {"jgd.experiment.train.models", "jgd.experiment.plots", "jgd.experiment.config.reader"} <= runner
    core = [p for p in CORE_MODULES if p.parent != PACKAGE or p.stem != "__init__"]
    shared = _names(RUNNER_MODULES) & _names(core)
    assert not shared, f"a module or package name is in both layers: {sorted(shared)}"


def _library_uses(path: Path) -> set[str]:
    """What ``path`` takes from the library, the runner left out.

    A module it imports, by its name (``import jgd.trees``, ``from jgd.trees import x``: ``jgd.trees``); a
    name it imports from ``jgd`` or reads of it, as ``jgd:name`` (``from jgd import adam``: ``jgd:adam``;
    ``jgd.trees.instances(...)``: ``jgd:trees``).
    """
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            used.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            used.add(node.module)
            if node.module == "jgd":
                used.update(f"jgd:{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "jgd":
            used.add(f"jgd:{node.attr}")
    return {
        name for name in used if name.split(".")[0].split(":")[0] == "jgd" and not name.startswith("jgd.experiment")
    }


def _private(used: set[str]) -> list[str]:
    """The uses of the library that are neither a public module nor a name of ``jgd.__all__``."""
    public_names = {*jgd.__all__, *(module.removeprefix("jgd.") for module in PUBLIC[1:])}

    def public(use: str) -> bool:
        module, _, name = use.partition(":")
        return name in public_names if name else module in PUBLIC

    return sorted(use for use in used if not public(use))


@pytest.mark.parametrize("path", RUNNER_MODULES, ids=[_module_name(p) for p in RUNNER_MODULES])
def test_runner_uses_only_the_public_library(path):
    wrong = _private(_library_uses(path))
    assert not wrong, f"{path.name} uses {wrong}; the runner may use only jgd.__all__ and the modules {PUBLIC}"


def test_the_public_library_check_sees_internals(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text(
        "import jgd\nimport jgd.schedules\nfrom jgd import adam, trees\nfrom jgd.hyperparams import transform_states\n"
        "from jgd.experiment.train import models\n"
        "def f(state):\n    from jgd.wrappers.monitor import STATISTICS\n"
        "    return jgd.trees.instances(state, jgd.MonitorState), jgd.types.PyTree\n"
    )
    assert _private(_library_uses(module)) == ["jgd.hyperparams", "jgd.wrappers.monitor", "jgd:trees"]
