"""Checkpoints: killed runs (SIGINT, SIGKILL) resume to the same bits; writes are atomic; old files are read; errors
name the problem."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from jgd.experiment.config.reader import parse_config
from jgd.experiment.config.schema import CheckpointConfig
from jgd.experiment.train import checkpoint
from tests import resumable_run

RUN = [sys.executable, str(Path(__file__).resolve().parents[1] / "resumable_run.py")]
FOREVER = str(10**6)  # epochs: the run goes on until it is killed


def _start(directory: Path, every: int) -> subprocess.Popen:
    """Starts a run and returns once its first checkpoint exists."""
    process = subprocess.Popen(
        [*RUN, str(directory), FOREVER, "--every", str(every)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while checkpoint.latest(directory) is None:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.01)
    return process


def _epoch(directory: Path) -> int:
    return checkpoint.read_meta(directory)[0]["epoch"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """``straight(epochs)``: the checkpoint folder of an uninterrupted run of ``epochs``, made once per length."""
    runs = {}

    def run(epochs):
        if epochs not in runs:
            runs[epochs] = tmp_path_factory.mktemp(f"straight{epochs}")
            resumable_run.run(runs[epochs], epochs)
        return runs[epochs]

    return run


def _resume_matches_straight_run(directory: Path, straight) -> int:
    """Resumes ``directory`` in a fresh process; asserts it ends bit for bit as an uninterrupted run. Returns its epoch.

    The tests resume to 12 epochs (more if killed later), so they share one uninterrupted run.
    """
    epoch = _epoch(directory)
    epochs = max(12, epoch + 3)
    result = subprocess.run([*RUN, str(directory), str(epochs), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    _assert_same_run(directory, straight(epochs), epochs)
    return epoch


def _assert_same_run(directory: Path, reference: Path, epochs: int) -> None:
    """The checkpoints in the two folders are of ``epochs`` and agree bit for bit."""
    (got_meta, got), (want_meta, want) = checkpoint.load(directory), checkpoint.load(reference)
    assert got_meta["epoch"] == want_meta["epoch"] == epochs
    assert got.keys() == want.keys() == {"state", "best"}
    for tree in want:
        assert got[tree].keys() == want[tree].keys()
        for path, value in want[tree].items():
            assert got[tree][path].dtype == value.dtype and got[tree][path].tobytes() == value.tobytes(), (tree, path)
    assert got_meta["history"]["epochs"] == want_meta["history"]["epochs"]  # every metric, to the last bit
    assert got_meta["history"]["best_epoch"] == want_meta["history"]["best_epoch"]


def test_sigint_saves_and_the_resumed_run_is_bit_identical(tmp_path, straight):
    process = _start(tmp_path, every=3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    epoch = _epoch(tmp_path)
    assert f"saved a checkpoint of epoch {epoch} in" in stderr
    assert _resume_matches_straight_run(tmp_path, straight) >= 3


@pytest.mark.slow  # 10 s; the SIGINT test resumes bit-identically in the default run
def test_sigkill_part_way_then_the_resumed_run_is_bit_identical(tmp_path, straight):
    process = _start(tmp_path, every=1)
    time.sleep(0.05)  # a few more epochs, and their checkpoints, so the kill may land in a write
    process.kill()
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert _resume_matches_straight_run(tmp_path, straight) >= 1


@pytest.mark.slow
def test_repeated_sigkills_lose_nothing(tmp_path, straight):
    # Eight runs killed at random moments of training (some while writing a checkpoint), one more while starting.
    rng = np.random.default_rng(0)
    process = _start(tmp_path, every=1)
    for _ in range(8):
        reached = _epoch(tmp_path)
        while _epoch(tmp_path) == reached:  # this run has resumed and saved an epoch of its own
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        process.kill()
        process.communicate(timeout=60)
        process = subprocess.Popen([*RUN, str(tmp_path), FOREVER, "--resume"], stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    process.kill()
    process.communicate(timeout=60)
    _resume_matches_straight_run(tmp_path, straight)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The folder of a finished 2-epoch run's checkpoint."""
    directory = tmp_path_factory.mktemp("saved")
    resumable_run.run(directory, 2)
    return directory


def test_missing_checkpoint_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no checkpoint to resume from: {tmp_path} holds none"):
        resumable_run.run(tmp_path, 3, resume=True)
    with pytest.raises(ValueError, match="resume needs a checkpoint directory"):
        resumable_run.run(None, 3, resume=True)


@pytest.mark.parametrize("damage", ["garbage meta", "no meta", "no arrays"])
def test_corrupt_checkpoint_names_the_folder(saved, tmp_path, damage):
    shutil.copytree(saved, tmp_path, dirs_exist_ok=True)
    step = checkpoint.latest(tmp_path)
    if damage == "garbage meta":
        for f in (step / "meta").iterdir():
            f.write_bytes(b"\x93not a checkpoint")
    else:
        shutil.rmtree(step / ("meta" if damage == "no meta" else "state"))
    with pytest.raises(ValueError, match=f"{step} is not a readable jgd checkpoint"):
        resumable_run.run(tmp_path, 3, resume=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden": (8,)}, r"model.hidden: \[16\] in the checkpoint, \[8\] now; "),
        ({"learning_rate": 0.02}, r"optimizer.learning_rate: 0.01 in the checkpoint, 0.02 now"),
        ({"seed": 3}, r"key: \[0, 1\] in the checkpoint, \[0, 3\] now"),
    ],
    ids=["model", "optimizer", "key"],
)
def test_resuming_another_run_names_what_differs(saved, change, message):
    with pytest.raises(ValueError, match=f"{checkpoint.latest(saved)} was saved by a different run: .*{message}"):
        resumable_run.run(saved, 3, resume=True, **change)


def test_resuming_past_the_requested_epochs_is_refused(saved):
    with pytest.raises(ValueError, match=r"is at epoch 2, past epochs=1"):
        resumable_run.run(saved, 1, resume=True)


def test_an_unfinished_save_leaves_the_previous_checkpoint_and_is_cleared(tmp_path):
    checkpoint.save(tmp_path, {"state": {"w": jnp.arange(3.0)}}, {"epoch": 1})
    unfinished = tmp_path / "2.orbax-checkpoint-tmp-1234"  # what a save killed before its finalize leaves
    (unfinished / "state").mkdir(parents=True)
    assert checkpoint.latest(tmp_path) == tmp_path / "1"
    meta, arrays = checkpoint.load(tmp_path)
    assert meta == {"epoch": 1}
    np.testing.assert_array_equal(arrays["state"]["['w']"], [0.0, 1.0, 2.0])
    checkpoint.save(tmp_path, {"state": {"w": jnp.full(3, 7.0)}}, {"epoch": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2"]  # the older step and the leftover are gone
    assert checkpoint.read_meta(tmp_path) == ({"epoch": 2}, tmp_path / "2")


def test_restore_keeps_dtypes_and_names_a_mismatched_array(tmp_path):
    tree = {"w": jnp.ones((2, 3), jnp.bfloat16), "count": jnp.int32(7), "ok": jnp.bool_(True)}
    checkpoint.save(tmp_path, {"state": tree}, {})
    restored = checkpoint.restore(tmp_path, {"state": tree})["state"]
    assert jax.tree.map(lambda a: a.dtype, restored) == jax.tree.map(lambda a: a.dtype, tree)
    assert jax.tree.map(lambda a, b: bool((a == b).all()), restored, tree) == {"w": True, "count": True, "ok": True}
    with pytest.raises(ValueError, match=r"checkpoint array \['w'\] is bfloat16\[2, 3\], expected bfloat16\[3, 2\]"):
        checkpoint.restore(tmp_path, {"state": {**tree, "w": jnp.ones((3, 2), jnp.bfloat16)}})
    with pytest.raises(ValueError, match=r"checkpoint array \['extra'\] is missing"):
        checkpoint.restore(tmp_path, {"state": {**tree, "extra": jnp.zeros(1)}})
    with pytest.raises(ValueError, match=r"checkpoint array \['ok'\] is not in the state now"):
        checkpoint.restore(tmp_path, {"state": {"w": tree["w"], "count": tree["count"]}})


def _write_old_format(directory: Path, meta: dict, arrays: dict) -> None:
    """A ``jgd-checkpoint/1`` file, as the msgpack format wrote it."""
    data = {"format": "jgd-checkpoint/1", "meta": json.dumps(meta), "arrays": arrays}
    (directory / checkpoint.OLD_FILE).write_bytes(serialization.msgpack_serialize(data))


def test_an_old_format_checkpoint_resumes_bit_identically(saved, tmp_path, straight):
    # An old file lacks the optimizer states' transform_constants, in its arrays and in its run spec.
    meta, arrays = checkpoint.load(saved)
    old = lambda paths: {p: v for p, v in paths.items() if ".transform_constants" not in p}  # noqa: E731
    assert any(".transform_constants" in p for p in arrays["state"])
    meta["run"]["arrays"] = old(meta["run"]["arrays"])
    (tmp_path / "old").mkdir()
    _write_old_format(tmp_path / "old", meta, {name: old(tree) for name, tree in arrays.items()})
    assert checkpoint.latest(tmp_path / "old") == tmp_path / "old" / checkpoint.OLD_FILE
    resumable_run.run(tmp_path / "old", 4, resume=True)  # resumes from the file, then writes the new format
    _assert_same_run(tmp_path / "old", straight(4), 4)
    assert checkpoint.latest(tmp_path / "old").name != checkpoint.OLD_FILE


def test_checkpoint_config():
    assert parse_config({}).training.checkpoint is None
    assert parse_config({"training": {"checkpoint": {}}}).training.checkpoint == CheckpointConfig(every=1, dir=None)
    config = parse_config({"training": {"checkpoint": {"every": 5, "dir": "ck"}}})
    assert config.training.checkpoint == CheckpointConfig(every=5, dir="ck")
    for raw, message in [
        ({"every": 0}, "training.checkpoint.every must be an integer >= 1, got 0"),
        ({"dir": 3}, "training.checkpoint.dir must be a string, got 3"),
        ({"often": 1}, "training.checkpoint.often is not a known field"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_config({"training": {"checkpoint": raw}})
