"""fit(..., mesh=...): 8 host devices, in one process or two, equal one device; mesh axes from the config, checked."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import jgd
from jgd.experiment.config.reader import parse_config
from jgd.experiment.train import checkpoint
from jgd.experiment.train.sharding import make_mesh, run_placement
from tests import resumable_run


@pytest.mark.slow  # 25 s; the sweep's mesh test and the two-process test keep meshes in the default run
def test_fit_on_a_mesh_of_8_host_devices_matches_one_device():
    script = Path(__file__).resolve().parents[1] / "mesh_training.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 14 and all(line.endswith(" ok") for line in lines), result.stdout


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
    assert parse_config(
        {"training": {"mesh": {"data": 2}, "shard_optimizer_state": True}}
    ).training.shard_optimizer_state
    with pytest.raises(ValueError, match=r"training\.shard_optimizer_state needs training\.mesh"):
        run_placement(None, {}, jgd.adam(0.1))
    for raw, message in [
        ({"data": 0}, r"training.mesh.data must be an integer >= 1, or -1 for all remaining devices, got 0"),
        ({"data": -1, "model": -1}, "training.mesh: only one axis size may be -1"),
        ({"pipeline": 2}, "training.mesh.pipeline is not a known field; expected one of: data, model"),
        ({}, "training.mesh must give the size of at least one axis"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_config({"training": {"mesh": raw}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(directory, epochs, *flags):
    """Starts the two processes of tests/multi_process_run.py on a fresh port."""
    port = str(_free_port())
    command = [sys.executable, str(Path(__file__).resolve().parents[1] / "multi_process_run.py")]
    return [
        subprocess.Popen(
            [*command, str(i), port, str(directory), str(epochs), *flags], stdout=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]


def test_two_processes_save_and_restore_only_their_own_shards(tmp_path):
    port = str(_free_port())
    command = [sys.executable, str(Path(__file__).resolve().parents[1] / "multi_process_checkpoint.py")]
    processes = [
        subprocess.Popen(
            [*command, str(i), port, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-3000:] for _, err in outputs]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [r["process"] for r in results] == [0, 1]
    for r in results:
        assert r["epoch"] == 2 and r["restored_equal"] and r["placed"]
        # Each process wrote and read back half of the array: its own devices' shards, never the whole.
        assert r["bytes_saved_from_here"] == r["bytes_restored_here"] == r["bytes_total"] // 2


@pytest.mark.slow
def test_two_processes_stop_together_and_resume_like_one_device(tmp_path):
    # SIGINT to the second process alone: both save (process 0 writes) and stop, as a pod's hosts must.
    first, second = _processes(tmp_path / "run", 10**6)
    deadline = time.monotonic() + 300
    while checkpoint.latest(tmp_path / "run") is None:
        assert first.poll() is None and second.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    second.send_signal(signal.SIGINT)
    assert [p.wait(timeout=120) for p in (first, second)] == [130, 130]
    epochs = checkpoint.read_meta(tmp_path / "run")[0]["epoch"] + 2

    resumed = _processes(tmp_path / "run", epochs, "--resume")
    outputs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in resumed]
    assert [p.returncode for p in resumed] == [0, 0]
    assert [o["process"] for o in outputs] == [0, 1] and outputs[0]["last"] == outputs[1]["last"]

    # The same run on one device, straight through, agrees to rounding.
    resumable_run.run(tmp_path / "one", epochs)
    (_, got), (meta, want) = checkpoint.load(tmp_path / "run"), checkpoint.load(tmp_path / "one")
    for tree in want:
        for path, value in want[tree].items():
            np.testing.assert_allclose(got[tree][path], value, rtol=1e-6, atol=1e-6, err_msg=f"{tree} {path}")
    last = meta["history"]["epochs"][-1]
    assert outputs[0]["last"]["epoch"] == last["epoch"] == epochs
    assert outputs[0]["last"]["train_loss"] == pytest.approx(last["train_loss"], rel=1e-6)
