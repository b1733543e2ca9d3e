"""The jitted pieces of training a Flax model: the objective, one step, one epoch, and measuring the model.

One epoch is a ``lax.scan`` of the train step (loss → grad → ``tx.update`` →
``apply_updates``) over the shuffled batches of :mod:`jgd.experiment.train.batching`;
with the batch size equal to the training set it is a single full-batch step.
Every step hands ``tx.update`` the objective too (``value``, ``grad`` and
``value_fn``, the loss as a function of the params on that batch), so
line-search methods such as L-BFGS and BFGS run unchanged; other transforms
ignore those arguments. :func:`jgd.experiment.train.training.fit` and the sweep
engine (:mod:`jgd.experiment.sweep.engine`) both train and measure with these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

import jgd
from jgd.experiment.train import batching
from jgd.experiment.train.losses import LOSSES, accuracy, masked_mean
from jgd.types import PyTree

__all__ = [
    "RunState",
    "evaluated_params",
    "make_epoch",
    "make_evaluate",
    "make_measure",
    "make_objective",
    "make_train_step",
]

# Per-epoch metrics, each measured on a whole split in inference mode (dropout off, batch norm's running statistics).
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


class RunState(NamedTuple):
    """Everything a step changes: model parameters, batch-norm statistics (``{}`` without) and optimizer state."""

    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree


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
) -> Callable[[RunState, tuple[jax.Array, jax.Array], jax.Array | None, jax.Array], tuple[RunState, jax.Array]]:
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
        return RunState(jgd.apply_updates(state.params, updates), batch_stats, opt_state), value

    return step


def make_epoch(
    model: nn.Module,
    loss: str,
    tx: jgd.GradientTransformation,
    batch_size: int,
    num_examples: int,
    batch_sharding: NamedSharding | None = None,
) -> Callable[[RunState, jax.Array, jax.Array, jax.Array], tuple[RunState, jax.Array]]:
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


def evaluated_params(state: RunState) -> PyTree:
    """The params to measure: for a schedule-free method its average ``x_t`` (:func:`jgd.schedule_free_eval_params`).

    A schedule-free method's params are the points where it takes gradients; the point it converges
    with is the average kept in its state. Other methods are measured at their params. The choice
    is by the state's structure, so it is made at trace time.
    """
    try:
        return jgd.schedule_free_eval_params(state.opt_state, state.params)
    except ValueError:  # no schedule-free state in the optimizer's
        return state.params


def make_evaluate(model: nn.Module, loss: str) -> Callable[[PyTree, PyTree, jax.Array, jax.Array], tuple[Any, Any]]:
    """Jitted ``evaluate(params, batch_stats, x, y) -> (mean loss, accuracy)`` in inference mode."""
    loss_fn = LOSSES[loss]

    @jax.jit
    def evaluate(params, batch_stats, x, y):
        outputs = model.apply(_variables(params, batch_stats), x, train=False)
        return jnp.mean(loss_fn(outputs, y)), accuracy(outputs, y)

    return evaluate


def make_measure(model: nn.Module, loss: str) -> Callable[..., dict[str, jax.Array]]:
    """``measure(state, x, y, x_val, y_val) -> {name: scalar}``: the ``CURVES`` of ``state``, traceable.

    The model is measured at :func:`evaluated_params`.
    """
    evaluate = make_evaluate(model, loss)

    def measure(state, x, y, x_val, y_val):
        params = evaluated_params(state)
        train_loss, train_accuracy = evaluate(params, state.batch_stats, x, y)
        val_loss, val_accuracy = evaluate(params, state.batch_stats, x_val, y_val)
        return dict(zip(CURVES, (train_loss, train_accuracy, val_loss, val_accuracy)))

    return measure
