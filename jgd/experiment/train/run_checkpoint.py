"""Checkpoints of one :func:`~jgd.experiment.train.training.fit` run: what identifies the run, when to save, resuming.

A checkpoint (:mod:`jgd.experiment.train.checkpoint`) holds the run state, the best
state when early stopping keeps one, the history so far and the run's spec:
what it must share with a run that resumes it (model, optimizer, data, key and
training options), as JSON, so that a differing field is named on resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from jgd.experiment.config.optimizers import optimizer_hyperparams
from jgd.experiment.config.schema import TrainingConfig
from jgd.experiment.train import checkpoint
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.early_stopping import BestEpoch
from jgd.types import PyTree


def run_spec(
    model: nn.Module, state: Any, data: Dataset, key: jax.Array, options: TrainingConfig, batch_size: int
) -> dict[str, Any]:
    """What a checkpoint must share with the run resuming it, as JSON."""
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name not in ("parent", "name")}
    digest = hashlib.sha256()
    for a in (data.x_train, data.y_train):
        digest.update(np.ascontiguousarray(a).tobytes())
    stopping = None if options.early_stopping is None else asdict(options.early_stopping)
    training = {"batch_size": batch_size, "loss": options.loss, "early_stopping": stopping}
    if options.skip_nonfinite:
        training["max_consecutive_nonfinite"] = options.max_consecutive_nonfinite
    if options.accumulate != 1:  # k changes the steps but not the state's arrays: recorded to catch a changed k
        training["accumulate"] = options.accumulate
    spec = {
        "model": {"type": type(model).__name__, **fields},
        "optimizer": optimizer_hyperparams(state.opt_state),
        "training": training,
        "data": {"examples": len(data.x_train), "sha256": digest.hexdigest()},
        "key": np.asarray(jax.random.key_data(key)).tolist(),
        "arrays": {
            jax.tree_util.keystr(path): f"{leaf.dtype}{list(leaf.shape)}"
            for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
        },
    }
    # Read back from JSON, as the checkpoint's copy is: tuples become lists, arrays their shortest exact text.
    return json.loads(json.dumps(spec, default=lambda v: str(np.asarray(v)) if hasattr(v, "dtype") else repr(v)))


@dataclasses.dataclass(frozen=True)
class RunCheckpoint:
    """The checkpoint of a run in ``directory``, saved every ``every`` epochs, identified by ``spec``."""

    directory: Path
    every: int
    spec: dict[str, Any]
    saver: checkpoint.Saver = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "saver", checkpoint.Saver(self.directory))

    def due(self, epoch: int, last: int, stopping: bool) -> bool:
        """Whether to save after ``epoch``: on the cadence, at the ``last`` epoch, and whenever the run stops."""
        return stopping or epoch % self.every == 0 or epoch == last

    def save(self, epoch: int, state: Any, best: BestEpoch, history: Any) -> None:
        """Starts saving the run as it is after ``epoch``; :func:`interrupts` waits for the last save on leaving."""
        trees = {"state": state, "best": best.state} if best.rule is not None else {"state": state}
        meta = {"epoch": epoch, "run": self.spec, "history": history.to_dict(), "waited": best.waited}
        self.saver.save(trees, meta)

    def resume(self, state: Any, shardings: PyTree | None, epochs: int, rule: Any) -> tuple[Any, BestEpoch, dict]:
        """``(state, best, history fields)`` from the checkpoint, once it is known to be this run's."""
        meta, where = checkpoint.read_meta(self.directory)
        differences = checkpoint.differences(meta["run"], _as_saved(self.spec, meta["run"]))
        if differences:
            raise ValueError(f"{where} was saved by a different run: {'; '.join(differences)}")
        if meta["epoch"] > epochs:
            raise ValueError(f"{where} is at epoch {meta['epoch']}, past epochs={epochs}")
        templates = {"state": state, "best": state} if rule is not None else {"state": state}
        restored = checkpoint.restore(self.directory, templates, shardings)
        history = meta["history"]
        best_epoch = history["best_epoch"]
        best_state = restored.get("best", restored["state"])
        best = BestEpoch(rule, best_epoch, history["epochs"][best_epoch]["val_loss"], best_state, meta["waited"])
        return restored["state"], best, history


def _as_saved(spec: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """``spec`` without the ``transform_constants`` arrays an old checkpoint lacks (restore fills them)."""
    kept = {
        path: kind
        for path, kind in spec["arrays"].items()
        if path in saved.get("arrays", {}) or ".transform_constants" not in path
    }
    return {**spec, "arrays": kept}


@contextmanager
def interrupts(run_checkpoint: RunCheckpoint | None) -> Iterator[Callable[[], bool]]:
    """Polls for SIGINT / SIGTERM between epochs when the run can save itself first; else they act at once.

    On leaving, it waits until the last checkpoint is written.
    """
    if run_checkpoint is None:
        yield lambda: False
        return
    try:
        with checkpoint.deferred_interrupts() as interrupted:
            yield interrupted
    finally:
        run_checkpoint.saver.close()
