"""benchmarks/preconditioners.py: its pieces, and a --quick run that prints a table per problem (slow)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import model_problems  # noqa: E402
import preconditioners  # noqa: E402

import jgd  # noqa: E402


def test_adamw_comes_first_and_every_method_builds():
    chosen = preconditioners.available(["lion", "muon"])
    assert list(chosen) == ["adamw", "lion", "muon"]
    every = preconditioners.available()
    assert next(iter(every)) == "adamw"
    assert {"shampoo", "soap", "kron"} <= set(every)
    frontier = preconditioners.available(list(preconditioners.FRONTIER))
    for name, make in {**every, **frontier}.items():
        assert isinstance(make(1e-3), jgd.GradientTransformation), name


def test_steps_to_target_is_the_first_measured_step_at_or_under_it():
    curve = np.array([3.0, 2.0, 1.0, 1.5, 0.5])
    assert preconditioners.steps_to(curve, 1.0, eval_every=10) == 20
    assert preconditioners.steps_to(curve, 0.1, eval_every=10) is None


def test_the_least_squares_inputs_have_the_condition_number_asked_and_are_rotated():
    factor = model_problems.input_factor(16, condition=1e3)
    covariance = factor.T @ factor
    np.testing.assert_allclose(np.linalg.cond(covariance), 1e3, rtol=1e-3)
    off_diagonal = covariance - np.diag(np.diag(covariance))
    assert np.abs(off_diagonal).max() > 0.1 * np.abs(covariance).max()  # not axis-aligned: a rotation mixes them


@pytest.mark.slow
def test_the_quick_run_prints_a_table_per_problem_with_adamw_as_its_baseline():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "preconditioners.py"), "--quick"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    for problem in model_problems.PROBLEMS:
        assert f"### {problem}:" in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| adamw |")]
    assert len(rows) == 3
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[4] == "1.00" and cells[5] == "1.00"  # AdamW's own ratios
        assert cells[3].isdigit()  # AdamW reaches its own target within the budget
