"""fit(..., mesh=...): 8 host devices equal one device; mesh axes from the config, checked."""

import subprocess
import sys
from pathlib import Path

import jax
import pytest

from jgd.config import parse_config
from jgd.sharding import make_mesh


def test_fit_on_a_mesh_of_8_host_devices_matches_one_device():
    script = Path(__file__).with_name("mesh_training.py")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 7 and all(line.endswith(" ok") for line in lines), result.stdout


def test_mesh_needs_known_axes_and_enough_devices():
    n = jax.device_count()
    assert dict(make_mesh({"data": -1}).shape) == {"data": n}
    assert dict(make_mesh({"data": -1, "model": 1}).shape) == {"data": n, "model": 1}
    with pytest.raises(ValueError, match="mesh axis 'batch' is not one of data, model"):
        make_mesh({"batch": 1})
    with pytest.raises(ValueError, match=rf"mesh \{{'data': {n + 1}\}} needs {n + 1} devices; {n} are available"):
        make_mesh({"data": n + 1})


def test_mesh_config():
    assert parse_config({}).training.mesh is None
    assert parse_config({"training": {"mesh": {"data": 4, "model": 2}}}).training.mesh == {"data": 4, "model": 2}
    assert parse_config({"training": {"mesh": {"data": -1}}}).training.mesh == {"data": -1}
    for raw, message in [
        ({"data": 0}, r"training.mesh.data must be an integer >= 1, or -1 for all remaining devices, got 0"),
        ({"data": -1, "model": -1}, "training.mesh: only one axis size may be -1"),
        ({"pipeline": 2}, "training.mesh.pipeline is not a known field; expected one of: data, model"),
        ({}, "training.mesh must give the size of at least one axis"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_config({"training": {"mesh": raw}})
