"""The package is typed: mypy, configured in pyproject.toml, finds no error in jgd/."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # 12 s of mypy over the package: CI runs it with the slow cases
def test_mypy_is_clean_on_the_package(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    assert (ROOT / "jgd" / "py.typed").is_file()
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
