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
    """Everything a step changes: model parameters, batch-norm statistics (``{}`` without) and optimizer state.

    Examples:
      What a train step carries from batch to batch:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import jgd
      >>> from jgd.experiment.train.steps import RunState
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> tx = jgd.adam(1e-3)
      >>> state = RunState(variables["params"], variables.get("batch_stats", {}), tx.init(variables["params"]))
      >>> print(state.batch_stats, state.opt_state.count)
      {} 0
    """

    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree


def _variables(params: PyTree, batch_stats: PyTree) -> dict[str, PyTree]:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def make_objective(model: nn.Module, loss: str) -> Callable[..., tuple[jax.Array, PyTree]]:
    """``objective(params, batch_stats, x, y, mask, key) -> (loss, new_batch_stats)`` in training mode.

    The loss is averaged over the examples ``mask`` keeps; ``key`` drives dropout.

    Examples:
      The mean loss over the examples a mask keeps, in training mode (dropout on, batch statistics
      updated). At initialization the cross-entropy of ten classes is near ``log 10 ≈ 2.3``:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import jax.numpy as jnp
      >>> from jgd.experiment.train.steps import make_objective
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> objective = make_objective(model, "cross_entropy")
      >>> x, y, mask = data.x_train[:64], data.y_train[:64], jnp.ones(64, bool)
      >>> loss, batch_stats = objective(variables["params"], {}, x, y, mask, jax.random.key(1))
      >>> print(loss.shape, bool(1.0 < loss < 5.0))
      () True
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

    Examples:
      One update of the optimizer on one batch; repeated on the same batch, it drives that batch's loss
      down:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> from jgd.experiment.train.steps import RunState, make_train_step
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> tx = jgd.adam(1e-2)
      >>> state = RunState(variables["params"], {}, tx.init(variables["params"]))
      >>> step = jax.jit(make_train_step(model, "cross_entropy", tx))
      >>> batch, mask = (data.x_train[:64], data.y_train[:64]), jnp.ones(64, bool)
      >>> state, first = step(state, batch, mask, jax.random.key(1))
      >>> for _ in range(20):
      ...     state, last = step(state, batch, mask, jax.random.key(1))
      ...
      >>> print(bool(last < first / 2), state.opt_state.count)
      True 21
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

    Examples:
      One pass over the training set in shuffled batches, as one scan; jit it:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import jgd
      >>> from jgd.experiment.train.steps import RunState, make_epoch
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> tx = jgd.adam(1e-2)
      >>> state = RunState(variables["params"], {}, tx.init(variables["params"]))
      >>> epoch = jax.jit(make_epoch(model, "cross_entropy", tx, 128, len(data.x_train)))
      >>> state, batch_losses = epoch(state, data.x_train, data.y_train, jax.random.key(1))
      >>> print(batch_losses.shape, state.opt_state.count)
      (11,) 11

      1293 examples make ``⌈1293 / 128⌉ = 11`` batches and steps.
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

    Examples:
      A schedule-free method is measured at its average, any other method at its params:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import jgd
      >>> from jgd.experiment.train.steps import RunState, evaluated_params
      >>> params = init_variables(model, jax.random.key(0), 64)["params"]
      >>> adam = RunState(params, {}, jgd.adam(1e-3).init(params))
      >>> free = RunState(params, {}, jgd.schedule_free_adamw(1e-3).init(params))
      >>> print(evaluated_params(adam) is params, evaluated_params(free) is params)
      True False
    """
    try:
        return jgd.schedule_free_eval_params(state.opt_state, state.params)
    except ValueError:  # no schedule-free state in the optimizer's
        return state.params


def make_evaluate(model: nn.Module, loss: str) -> Callable[[PyTree, PyTree, jax.Array, jax.Array], tuple[Any, Any]]:
    """Jitted ``evaluate(params, batch_stats, x, y) -> (mean loss, accuracy)`` in inference mode.

    Examples:
      Mean loss and accuracy over a whole split, in inference mode; ten classes at initialization score
      about chance:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> from jgd.experiment.train.steps import make_evaluate
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> evaluate = make_evaluate(model, "cross_entropy")
      >>> loss, accuracy = evaluate(variables["params"], {}, data.x_val, data.y_val)
      >>> print(loss.shape, accuracy.shape, bool(0.0 <= accuracy <= 0.5))
      () () True
    """
    loss_fn = LOSSES[loss]

    @jax.jit
    def evaluate(params, batch_stats, x, y):
        outputs = model.apply(_variables(params, batch_stats), x, train=False)
        return jnp.mean(loss_fn(outputs, y)), accuracy(outputs, y)

    return evaluate


def make_measure(model: nn.Module, loss: str) -> Callable[..., dict[str, jax.Array]]:
    """``measure(state, x, y, x_val, y_val) -> {name: scalar}``: the ``CURVES`` of ``state``, traceable.

    The model is measured at :func:`evaluated_params`.

    Examples:
      The per-epoch curves of a run's state, on the training and validation splits:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import jgd
      >>> from jgd.experiment.train.steps import RunState, make_measure
      >>> params = init_variables(model, jax.random.key(0), 64)["params"]
      >>> state = RunState(params, {}, jgd.adam(1e-3).init(params))
      >>> measure = make_measure(model, "cross_entropy")
      >>> print(sorted(measure(state, data.x_train, data.y_train, data.x_val, data.y_val)))
      ['train_accuracy', 'train_loss', 'val_accuracy', 'val_loss']
    """
    evaluate = make_evaluate(model, loss)

    def measure(state, x, y, x_val, y_val):
        params = evaluated_params(state)
        train_loss, train_accuracy = evaluate(params, state.batch_stats, x, y)
        val_loss, val_accuracy = evaluate(params, state.batch_stats, x_val, y_val)
        return dict(zip(CURVES, (train_loss, train_accuracy, val_loss, val_accuracy)))

    return measure
