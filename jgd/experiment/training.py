"""Training a Flax model with any jgd or optax gradient transformation.

One jitted function runs a whole epoch: mini-batches are a ``lax.scan`` of the
train step (loss → grad → ``tx.update`` → ``apply_updates``) over the shuffled
batches of :mod:`jgd.batching`; with the batch size equal to the training set
the epoch is a single full-batch step. Every step hands ``tx.update`` the
objective too (``value``, ``grad`` and ``value_fn``, the loss as a function of
the params on that batch), so line-search methods such as L-BFGS and BFGS run
unchanged; other transforms ignore those arguments. Regularization (l1 / l2,
max-norm, clipping) and schedules live in the transform itself.

:func:`fit` can also skip non-finite steps (:func:`jgd.apply_if_finite`), run
data parallel on a device mesh (:mod:`jgd.sharding`), and save and resume
checkpoints (:mod:`jgd.checkpoint`): epoch ``e`` always sees the batches of
``fold_in(key, e)``, so a resumed run repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from rich.progress import Progress, TaskID

import jgd
from jgd.experiment import batching, checkpoint, sharding
from jgd.experiment.data import Dataset
from jgd.experiment.losses import LOSSES, accuracy, masked_mean
from jgd.types import PyTree


class TrainState(NamedTuple):
    """Everything a step changes: model parameters, batch-norm statistics (``{}`` without) and optimizer state."""

    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once the validation loss has not improved by more than ``min_delta`` for ``patience`` epochs."""

    patience: int
    min_delta: float = 0.0


@dataclass
class History:
    """What a run of :func:`fit` measured.

    ``epochs`` has one row per epoch, starting with epoch 0 (the initial
    parameters): train / validation loss and accuracy on the whole split, and
    the learning rate where the optimizer state holds one. ``best_epoch`` has
    the lowest validation loss; ``test`` is measured with the returned
    parameters (those of ``best_epoch`` after early stopping). Wall-clock
    seconds: ``compile_seconds`` to compile the epoch function,
    ``train_seconds`` for the epochs and their evaluation.
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    test: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    stopped_early: bool = False
    compile_seconds: float = 0.0
    train_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _variables(params: PyTree, batch_stats: PyTree) -> dict[str, PyTree]:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def make_objective(model: nn.Module, loss: str) -> Callable[..., tuple[jax.Array, PyTree]]:
    """``objective(params, batch_stats, x, y, mask, key) -> (loss, new_batch_stats)`` in training mode.

    The loss is averaged over the examples ``mask`` keeps; ``key`` drives dropout.
    """
    loss_fn = LOSSES[loss]

    def objective(params, batch_stats, x, y, mask, key):
        outputs, updated = model.apply(
            _variables(params, batch_stats),
            x,
            train=True,
            mask=mask,
            rngs={"dropout": key},
            mutable=["batch_stats"] if batch_stats else [],
        )
        return masked_mean(loss_fn(outputs, y), mask), updated.get("batch_stats", batch_stats)

    return objective


def make_train_step(
    model: nn.Module, loss: str, tx: jgd.GradientTransformation, batch_sharding: NamedSharding | None = None
) -> Callable[[TrainState, tuple[jax.Array, jax.Array], jax.Array | None, jax.Array], tuple[TrainState, jax.Array]]:
    """``step(state, (x, y), mask, key) -> (state, loss)``: one update of ``tx`` on one batch.

    With ``batch_sharding`` the batch is split as it says (over a mesh's data
    axis), and the compiler partitions the step to match.
    """
    objective = make_objective(model, loss)
    tx = jgd.with_extra_args(tx)

    def step(state, batch, mask, key):
        if batch_sharding is not None:
            batch, mask = jax.lax.with_sharding_constraint((batch, mask), batch_sharding)
        x, y = batch

        def value_fn(params):
            return objective(params, state.batch_stats, x, y, mask, key)[0]

        (value, batch_stats), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, state.batch_stats, x, y, mask, key
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params, value=value, grad=grads, value_fn=value_fn)
        return TrainState(jgd.apply_updates(state.params, updates), batch_stats, opt_state), value

    return step


def make_epoch(
    model: nn.Module,
    loss: str,
    tx: jgd.GradientTransformation,
    batch_size: int,
    num_examples: int,
    batch_sharding: NamedSharding | None = None,
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, jax.Array]]:
    """``epoch(state, x, y, key) -> (state, batch_losses)``, one pass over ``x`` (not yet jitted).

    A batch size of ``num_examples`` takes one full-batch step on the data as
    is; a smaller one shuffles with ``key`` and scans the train step over the
    batches. ``batch_sharding`` is the train step's.
    """
    step = make_train_step(model, loss, tx, batch_sharding)

    def full_batch_epoch(state, x, y, key):
        state, value = step(state, (x, y), None, key)
        return state, value[None]

    def minibatch_epoch(state, x, y, key):
        return batching.scan_epoch(step, state, (x, y), key, batch_size)

    return full_batch_epoch if batch_size == num_examples else minibatch_epoch


def make_evaluate(model: nn.Module, loss: str) -> Callable[[PyTree, PyTree, jax.Array, jax.Array], tuple[Any, Any]]:
    """Jitted ``evaluate(params, batch_stats, x, y) -> (mean loss, accuracy)`` in inference mode."""
    loss_fn = LOSSES[loss]

    @jax.jit
    def evaluate(params, batch_stats, x, y):
        outputs = model.apply(_variables(params, batch_stats), x, train=False)
        return jnp.mean(loss_fn(outputs, y)), accuracy(outputs, y)

    return evaluate


def _learning_rate(opt_state: PyTree) -> dict[str, float]:
    value = jgd.hyperparams(opt_state).get("learning_rate")
    return {} if value is None or isinstance(value, tuple) else {"learning_rate": float(value)}


def _status(row: dict[str, float]) -> str:
    return f"loss {row['train_loss']:.4g}  val loss {row['val_loss']:.4g}  val acc {row['val_accuracy']:.2%}"


def _run_spec(
    model: nn.Module, state: TrainState, data: Dataset, key: jax.Array, training: dict[str, Any]
) -> dict[str, Any]:
    """What a checkpoint must share with the run resuming it, as JSON: differing fields are named on resume."""
    fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model) if f.name not in ("parent", "name")}
    digest = hashlib.sha256()
    for a in (data.x_train, data.y_train):
        digest.update(np.ascontiguousarray(a).tobytes())
    spec = {
        "model": {"type": type(model).__name__, **fields},
        "optimizer": jgd.hyperparams(state.opt_state),
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


def _resume(
    directory: str | Path, spec: dict[str, Any], state: TrainState, shardings: PyTree, epochs: int, keep_best: bool
) -> tuple[TrainState, TrainState, History, int]:
    """``(state, best, history, waited)`` from the checkpoint in ``directory``, once it is known to be this run's."""
    meta, arrays = checkpoint.load(directory)
    where = checkpoint.file(directory)
    differences = checkpoint.differences(meta["run"], spec)
    if differences:
        raise ValueError(f"{where} was saved by a different run: {'; '.join(differences)}")
    if meta["epoch"] > epochs:
        raise ValueError(f"{where} is at epoch {meta['epoch']}, past epochs={epochs}")
    restored = checkpoint.restore(arrays["state"], state, shardings)
    best = checkpoint.restore(arrays["best"], state, shardings) if keep_best else restored
    return restored, best, History(**meta["history"]), meta["waited"]


def fit(
    model: nn.Module,
    variables: dict[str, PyTree],
    tx: jgd.GradientTransformation,
    data: Dataset,
    key: jax.Array,
    *,
    epochs: int,
    batch_size: int | None = None,
    loss: str = "cross_entropy",
    early_stopping: EarlyStopping | None = None,
    skip_nonfinite: bool = False,
    max_consecutive_nonfinite: int = 10,
    mesh: Mesh | Mapping[str, int] | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    progress: Progress | None = None,
    description: str = "training",
) -> tuple[TrainState, History]:
    """Trains ``model`` from ``variables`` with ``tx`` for up to ``epochs`` epochs.

    ``key`` fixes the batch order of every epoch (epoch ``e`` uses
    ``fold_in(key, e)``) and the dropout masks, so runs sharing it see the same
    batches. ``batch_size=None`` is full-batch. With ``early_stopping`` the
    returned state holds the parameters of the epoch with the lowest
    validation loss (epoch 0, the initial parameters, included). ``progress``
    shows a bar with the live losses under ``description``.

    ``skip_nonfinite`` wraps ``tx`` in :func:`jgd.apply_if_finite`: a step
    whose update holds a NaN or an infinity changes nothing, each epoch's row
    counts those steps so far as ``skipped_steps``, and
    ``max_consecutive_nonfinite`` of them in a row end training with a
    ``FloatingPointError``.

    ``mesh`` (a ``Mesh`` or axis sizes such as ``{"data": 8}``, see
    :mod:`jgd.sharding`) splits every batch over the ``data`` axis and
    replicates the state, or splits it over a ``model`` axis.

    With ``checkpoint_dir`` a checkpoint (:mod:`jgd.checkpoint`) holding the
    state, the best state for early stopping, the history so far and what
    identifies the run is saved every ``checkpoint_every`` epochs, at the end,
    and on SIGINT or SIGTERM, after which ``KeyboardInterrupt`` is raised.
    ``resume`` continues from it, after checking that it was saved by this
    run (model, optimizer, data, key and training options); ``variables`` then
    serve only as that check's template.
    """
    if checkpoint_dir is None and resume:
        raise ValueError("resume needs a checkpoint_dir")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if skip_nonfinite:
        tx = jgd.apply_if_finite(tx, max_consecutive_nonfinite)
    if isinstance(mesh, Mapping):
        mesh = sharding.make_mesh(mesh)
    num_examples = len(data.x_train)
    batch_size = batching.resolve_batch_size(batch_size, num_examples)
    params = variables["params"]
    state = TrainState(params, variables.get("batch_stats", {}), tx.init(params))
    spec = None
    if checkpoint_dir is not None:
        stopping = None if early_stopping is None else asdict(early_stopping)
        options = {"batch_size": batch_size, "loss": loss, "early_stopping": stopping}
        if skip_nonfinite:
            options["max_consecutive_nonfinite"] = max_consecutive_nonfinite
        spec = _run_spec(model, state, data, key, options)

    if mesh is None:
        state_shardings = batch_sharding = None
        put, jit_options = jnp.asarray, {}
    else:
        state_shardings = sharding.state_shardings(state, mesh)
        batch_sharding, everywhere = sharding.batch_sharding(mesh), sharding.replicated(mesh)
        state = sharding.place(state, state_shardings)

        def put(a):
            return sharding.place(a, everywhere)

        everything = (state_shardings, everywhere, everywhere, everywhere)
        jit_options = {"in_shardings": everything, "out_shardings": (state_shardings, everywhere)}
    x, y = put(data.x_train), put(data.y_train)
    x_val, y_val = put(data.x_val), put(data.y_val)

    history, best, waited = History(), state, 0
    if resume:
        state, best, history, waited = _resume(
            checkpoint_dir, spec, state, state_shardings, epochs, early_stopping is not None
        )

    started = time.perf_counter()
    one_epoch = make_epoch(model, loss, tx, batch_size, num_examples, batch_sharding)

    def epoch_fn(state, x, y, epoch):
        return one_epoch(state, x, y, jax.random.fold_in(key, epoch))

    epoch_fn = jax.jit(epoch_fn, **jit_options).lower(state, x, y, np.int32(1)).compile()
    history.compile_seconds = time.perf_counter() - started
    evaluate = make_evaluate(model, loss)

    def measure(epoch: int, state: TrainState) -> dict[str, float]:
        train_loss, train_acc = evaluate(state.params, state.batch_stats, x, y)
        val_loss, val_acc = evaluate(state.params, state.batch_stats, x_val, y_val)
        row = {
            "epoch": epoch,
            "train_loss": float(train_loss),
            "train_accuracy": float(train_acc),
            "val_loss": float(val_loss),
            "val_accuracy": float(val_acc),
            **_learning_rate(state.opt_state),
        }
        if skip_nonfinite:
            row["skipped_steps"] = int(state.opt_state.skipped)
        return row

    def save(epoch: int) -> None:
        trees = {"state": state, "best": best} if early_stopping is not None else {"state": state}
        meta = {"epoch": epoch, "run": spec, "history": history.to_dict(), "waited": waited}
        checkpoint.save(checkpoint_dir, trees, meta)

    started, trained_before = time.perf_counter(), history.train_seconds
    if not history.epochs:
        history.epochs.append(measure(0, state))
    start = history.epochs[-1]["epoch"]
    best_loss = history.epochs[history.best_epoch]["val_loss"]
    task: TaskID | None = None
    if progress is not None:
        task = progress.add_task(description, total=epochs, completed=start, status=_status(history.epochs[-1]))
    last = start if history.stopped_early else epochs
    with checkpoint.deferred_interrupts() if checkpoint_dir is not None else nullcontext(lambda: False) as interrupted:
        for epoch in range(start + 1, last + 1):
            state, _ = epoch_fn(state, x, y, np.int32(epoch))
            row = measure(epoch, state)
            history.epochs.append(row)
            if skip_nonfinite and bool(state.opt_state.gave_up):
                raise FloatingPointError(
                    f"training gave up in epoch {epoch}: {max_consecutive_nonfinite} steps in a row had non-finite "
                    f"updates ({row['skipped_steps']} skipped in all); lower the learning rate or clip the gradients"
                )
            if task is not None:
                progress.update(task, advance=1, status=_status(row))
            if row["val_loss"] < best_loss - (early_stopping.min_delta if early_stopping else 0.0):
                best, best_loss, waited, history.best_epoch = state, row["val_loss"], 0, epoch
            else:
                waited += 1
            history.stopped_early = early_stopping is not None and waited >= early_stopping.patience
            history.train_seconds = trained_before + time.perf_counter() - started
            stop = interrupted()
            if checkpoint_dir is not None and (
                stop or history.stopped_early or epoch % checkpoint_every == 0 or epoch == last
            ):
                save(epoch)
            if stop:
                raise KeyboardInterrupt(f"interrupted; saved a checkpoint of epoch {epoch} in {checkpoint_dir}")
            if history.stopped_early:
                break
    if early_stopping is not None:
        state = best
    test_loss, test_acc = evaluate(state.params, state.batch_stats, put(data.x_test), put(data.y_test))
    history.test = {"loss": float(test_loss), "accuracy": float(test_acc)}
    return state, history


def write_json(path: str | Path, value: Any) -> None:
    """Writes ``value`` as indented JSON."""
    Path(path).write_text(json.dumps(value, indent=2) + "\n")


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Writes ``rows`` as CSV, with the union of their keys (in first-seen order) as the header."""
    header = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)
