"""Every method under a jax.sharding.Mesh of 8 host devices equals the single-device run."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cases import CASES, METHOD, WRAPPER

# Every method in its own forms, the chains and the wrappers, fully sharded; the seeds' methods in their default
# forms data-parallel too (a compile each). offload keeps its slots in host memory, so they are not placed like
# the params: tests/state_at_scale_steps.py runs it on a mesh.
FULLY_SHARDED = [
    c.id
    for c in CASES.values()
    if c.peer is None and (c.kind in (METHOD, WRAPPER) or c.factory == "chain") and c.factory != "offload"
]
DATA_PARALLEL = [name for name in FULLY_SHARDED if CASES[name].seed and name == CASES[name].factory]
JOBS = [f"{name}:data-parallel" for name in DATA_PARALLEL] + [f"{name}:fully-sharded" for name in FULLY_SHARDED]
# Two processes, the seeds' rows and the others, so that the two workers of a parallel run can share them.
GROUPS = {
    "seeds": [job for job in JOBS if CASES[job.split(":")[0]].seed],
    "others": [job for job in JOBS if not CASES[job.split(":")[0]].seed],
}


# The seeds' rows by default; the others (about 40 s, a subprocess of 8 host devices) with the slow cases.
@pytest.mark.parametrize("group", [pytest.param(g, marks=[pytest.mark.slow] if g == "others" else []) for g in GROUPS])
def test_data_parallel_and_fully_sharded_steps_match_one_device(group):
    script, jobs = Path(__file__).resolve().parents[1] / "sharded_steps.py", GROUPS[group]
    result = subprocess.run([sys.executable, str(script), *jobs], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(jobs), result.stdout
    for line in lines:
        name = line.split()[0]
        assert line.endswith("True") or (not CASES[name].slots and line.endswith("no slots")), line
