"""Training a Flax model with any jgd or optax gradient transformation.

One jitted function runs a whole epoch: mini-batches are a ``lax.scan`` of the
train step (loss → grad → ``tx.update`` → ``apply_updates``) over the shuffled
batches of :mod:`jgd.batching`; with the batch size equal to the training set
the epoch is a single full-batch step. Every step hands ``tx.update`` the
objective too (``value``, ``grad`` and ``value_fn``, the loss as a function of
the params on that batch), so line-search methods such as L-BFGS and BFGS run
unchanged; other transforms ignore those arguments. Regularization (l1 / l2,
max-norm, clipping) and schedules live in the transform itself.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from rich.progress import Progress, TaskID

import jgd
from jgd import batching
from jgd.data import Dataset
from jgd.losses import LOSSES, accuracy, masked_mean

PyTree = Any


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
    model: nn.Module, loss: str, tx: jgd.GradientTransformation
) -> Callable[[TrainState, tuple[jax.Array, jax.Array], jax.Array | None, jax.Array], tuple[TrainState, jax.Array]]:
    """``step(state, (x, y), mask, key) -> (state, loss)``: one update of ``tx`` on one batch."""
    objective = make_objective(model, loss)
    tx = jgd.with_extra_args(tx)

    def step(state, batch, mask, key):
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
    model: nn.Module, loss: str, tx: jgd.GradientTransformation, batch_size: int, num_examples: int
) -> Callable[[TrainState, jax.Array, jax.Array, jax.Array], tuple[TrainState, jax.Array]]:
    """``epoch(state, x, y, key) -> (state, batch_losses)``, one pass over ``x`` (not yet jitted).

    A batch size of ``num_examples`` takes one full-batch step on the data as
    is; a smaller one shuffles with ``key`` and scans the train step over the batches.
    """
    step = make_train_step(model, loss, tx)

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
    """
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    batch_size = batching.resolve_batch_size(batch_size, len(data.x_train))
    params = variables["params"]
    state = TrainState(params, variables.get("batch_stats", {}), tx.init(params))

    started = time.perf_counter()
    epoch_fn = jax.jit(make_epoch(model, loss, tx, batch_size, len(data.x_train)))
    epoch_fn = epoch_fn.lower(state, x, y, key).compile()
    history = History(compile_seconds=time.perf_counter() - started)
    evaluate = make_evaluate(model, loss)
    x_val, y_val = jnp.asarray(data.x_val), jnp.asarray(data.y_val)

    def measure(epoch: int, state: TrainState) -> dict[str, float]:
        train_loss, train_acc = evaluate(state.params, state.batch_stats, x, y)
        val_loss, val_acc = evaluate(state.params, state.batch_stats, x_val, y_val)
        return {
            "epoch": epoch,
            "train_loss": float(train_loss),
            "train_accuracy": float(train_acc),
            "val_loss": float(val_loss),
            "val_accuracy": float(val_acc),
            **_learning_rate(state.opt_state),
        }

    started = time.perf_counter()
    history.epochs.append(measure(0, state))
    best, best_loss, waited = state, history.epochs[0]["val_loss"], 0
    task: TaskID | None = None
    if progress is not None:
        task = progress.add_task(description, total=epochs, status=_status(history.epochs[0]))
    for epoch in range(1, epochs + 1):
        state, _ = epoch_fn(state, x, y, jax.random.fold_in(key, epoch))
        row = measure(epoch, state)
        history.epochs.append(row)
        if task is not None:
            progress.update(task, advance=1, status=_status(row))
        if row["val_loss"] < best_loss - (early_stopping.min_delta if early_stopping else 0.0):
            best, best_loss, waited, history.best_epoch = state, row["val_loss"], 0, epoch
        else:
            waited += 1
        if early_stopping is not None and waited >= early_stopping.patience:
            history.stopped_early = True
            break
    history.train_seconds = time.perf_counter() - started
    if early_stopping is not None:
        state = best
    test_loss, test_acc = evaluate(state.params, state.batch_stats, jnp.asarray(data.x_test), jnp.asarray(data.y_test))
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
