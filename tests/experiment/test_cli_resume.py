"""`jgd train --resume` after SIGINT and SIGKILL ends with the metrics of an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from jgd.experiment.train import checkpoint

CONFIG = {
    "seed": 0,
    "model": {"hidden": [16], "dropout": 0.1},
    "training": {"epochs": 10**6, "batch_size": 64, "checkpoint": {"every": 1}, "skip_nonfinite": True},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
}


@pytest.mark.slow
@pytest.mark.parametrize("kill", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_train_resume_after_a_kill(tmp_path, kill):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    jgd = [sys.executable, "-m", "jgd.experiment", "train", str(config)]
    process = subprocess.Popen([*jgd, "--out", str(tmp_path / "run")], stderr=subprocess.PIPE, text=True)
    while checkpoint.latest(tmp_path / "run.checkpoint") is None:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.01)
    process.send_signal(kill)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == (130 if kill == signal.SIGINT else -kill), stderr
    assert not (tmp_path / "run").exists()  # nothing published by the interrupted run
    epochs = checkpoint.read_meta(tmp_path / "run.checkpoint")[0]["epoch"] + 2
    more = ["--set", f"training.epochs={epochs}"]
    resumed = subprocess.run([*jgd, "--out", str(tmp_path / "run"), *more, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    straight = subprocess.run([*jgd, "--out", str(tmp_path / "straight"), *more], capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    got, want = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("run", "straight"))
    assert got["epochs"] == want["epochs"] and got["test"] == want["test"] and len(got["epochs"]) == epochs + 1
