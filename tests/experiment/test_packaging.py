"""The package as a user installs it: one version, the default configs inside it, and a wheel that works alone."""

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

import jgd
from jgd.experiment import cli

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_has_one_source():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "jgd.__version__" }' in pyproject
    assert jgd.__version__ in (ROOT / "CHANGELOG.md").read_text()


def test_pyproject_is_valid():
    pytest.importorskip("validate_pyproject", reason="validate-pyproject is in the test extra")
    _run(sys.executable, "-m", "validate_pyproject", str(ROOT / "pyproject.toml"))


def test_the_bundled_configs_are_the_repository_configs():
    bundled = {p.name: p.read_bytes() for p in cli.bundled_configs().glob("*.yaml")}
    repository = {p.name: p.read_bytes() for p in (ROOT / "configs").glob("*.yaml")}
    assert bundled == repository, "jgd/experiment/configs/ and configs/ differ: copy configs/*.yaml over"


def test_a_bundled_name_finds_its_config_and_a_path_stays_a_path():
    assert cli.config_path("compare", "digits") == cli.bundled_configs() / "compare_digits.yaml"
    assert cli.config_path("compare", "digits_modern").name == "compare_digits_modern.yaml"
    assert cli.config_path("sweep", "digits").name == "sweep_digits.yaml"
    assert cli.build_parser().parse_args(["compare"]).config == "digits"
    assert cli.config_path("train", "configs/x.yaml") == Path("configs/x.yaml")
    with pytest.raises(
        FileNotFoundError,
        match=r"bundled config; jgd compare ships \['digits', 'digits_frontier', 'digits_lowbit', 'digits_modern', "
        r"'digits_preconditioned'\]",
    ):
        cli.config_path("compare", "nosuch")


def _run(*args, **kwargs) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_and_runs_without_the_repository(tmp_path):
    """Builds the sdist and wheel, installs the wheel (not editable) into a fresh venv from PyPI, and runs it
    outside the repository: ``import jgd`` with jax, jaxlib and numpy alone, then ``jgd compare --help``."""
    pytest.importorskip("build", reason="build is in the test extra")
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT))
    (wheel,) = dist.glob("jgd-*.whl")
    assert len(list(dist.glob("jgd-*.tar.gz"))) == 1
    names = zipfile.ZipFile(wheel).namelist()
    assert "jgd/py.typed" in names
    assert {f"jgd/experiment/configs/{p.name}" for p in (ROOT / "configs").glob("*.yaml")} <= set(names)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    away = tmp_path / "elsewhere"
    away.mkdir()
    _run(str(python), "-m", "pip", "install", "-q", str(wheel), env=env)
    installed = _run(str(python), "-m", "pip", "freeze", env=env).lower()
    assert not any(name in installed for name in ("flax", "optax", "pyyaml", "matplotlib"))
    check = (
        "import sys, jgd; assert 'site-packages' in jgd.__file__, jgd.__file__; "
        "assert not {'flax', 'optax', 'yaml', 'matplotlib'} & set(sys.modules); print(jgd.__version__)"
    )
    assert _run(str(python), "-c", check, cwd=away, env=env).strip() == jgd.__version__
    # The command line reads its config with PyYAML before it loads anything heavier.
    _run(str(python), "-m", "pip", "install", "-q", "PyYAML", env=env)
    usage = _run(str(env_dir / "bin" / "jgd"), "compare", "--help", cwd=away, env=env)
    assert "bundled config" in " ".join(usage.split())
