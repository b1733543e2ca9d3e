"""Every method under a jax.sharding.Mesh of 8 host devices equals the single-device run."""

import subprocess
import sys
from pathlib import Path


def test_data_parallel_and_fully_sharded_steps_match_one_device():
    script = Path(__file__).with_name("sharded_steps.py")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 32, result.stdout  # 10 methods in two layouts, 12 fully sharded
    for line in lines:
        assert line.endswith("True") or (line.startswith("sgd ") and line.endswith("no slots")), line
