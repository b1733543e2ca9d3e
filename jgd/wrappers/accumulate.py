"""Gradient accumulation: one optimizer step per ``every`` micro-batches."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jgd import trees
from jgd.base import GradientTransformation, check_transform, with_extra_args
from jgd.state import check_state
from jgd.types import PyTree


class AccumulateState(NamedTuple):
    """The state of :func:`accumulate`.

    Attributes:
      inner: the wrapped transform's state, advanced once per optimizer step.
      gradient_sum: the sum of the micro-batch gradients since the last step, in the accumulation dtype.
      micro_step: micro-batches added to ``gradient_sum`` so far (0 right after a step).

    Examples:
      The micro-batch count, the sum of the gradients so far, and the inner transform's state:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.accumulate(jgd.adam(0.1), every=4)
      >>> _, state = tx.update(grads, tx.init(params), params)
      >>> print(state.micro_step, state.gradient_sum, state.inner.count)
      1 [ 0.5 -1. ] 0
    """

    inner: PyTree
    gradient_sum: PyTree
    micro_step: jax.Array


def accumulate(tx: GradientTransformation, every: int, dtype: DTypeLike | None = jnp.float32) -> GradientTransformation:
    """Runs ``tx`` on the mean of ``every`` micro-batch gradients.

    Each call adds ``g_i`` to a buffer; the ``every``-th call hands
    ``ḡ = (1/k) Σ_{i=1..k} g_i`` to ``tx`` and returns its updates, the other
    calls return zero updates. The mean of ``k`` micro-batch gradients of a
    mean loss is the gradient of the whole batch, so ``k`` micro-batches of
    size ``b`` step like one batch of size ``k·b``. ``tx``'s count, schedules
    and hyperparameters advance once per optimizer step, not per micro-batch.

    The choice between the two branches is a ``lax.cond``, so the step jits
    once. Extra memory is the one buffer: ``tx``'s state is not copied.
    Extra keyword arguments of the ``every``-th call reach ``tx.update``
    (those of the other calls are not used: average a loss yourself).

    Args:
      tx: the transform to run once per optimizer step.
      every: micro-batches per optimizer step, an int ``>= 1``.
      dtype: a floating dtype for the gradient buffer (default float32, so bfloat16
        gradients are summed without loss); ``None`` uses each gradient's dtype.

    Examples:
      Two micro-batches, one SGD step on their mean gradient; the first call returns zero updates:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.accumulate(jgd.sgd(0.1), every=2)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates, state.micro_step)
      [0. 0.] 1
      >>> updates, state = tx.update(3 * grads, state, params)
      >>> print(updates, state.micro_step, state.inner.count)
      [-0.1  0.2] 0 1

      The step is ``−0.1 · (g + 3g) / 2``; the inner count moved once.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1, got {every!r}")
    if dtype is not None and not _is_floating(dtype):
        raise ValueError(f"dtype must be a floating dtype (a sum of gradients), got {dtype!r}")
    tx = with_extra_args(check_transform("tx", tx))

    def init_fn(params):
        trees.check_floating("params", params)

        def zeros(p):  # zeros_like keeps the param's sharding
            return jnp.zeros_like(p, dtype=dtype or jnp.result_type(p))

        return AccumulateState(tx.init(params), jax.tree.map(zeros, params), jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("accumulate", state, AccumulateState)
        trees.check_matching("updates", updates, "the accumulated gradients", state.gradient_sum)
        total = jax.tree.map(lambda s, g: s + jnp.asarray(g).astype(s.dtype), state.gradient_sum, updates)
        micro_step = state.micro_step + 1

        def step(total, inner):
            mean = jax.tree.map(lambda s, g: (s / every).astype(jnp.result_type(g)), total, updates)
            new_updates, inner = tx.update(mean, inner, params, **extra_args)
            return new_updates, inner, jax.tree.map(jnp.zeros_like, total), jnp.zeros_like(micro_step)

        def wait(total, inner):
            return jax.tree.map(jnp.zeros_like, updates), inner, total, micro_step

        new_updates, inner, total, micro_step = jax.lax.cond(micro_step >= every, step, wait, total, state.inner)
        return new_updates, AccumulateState(inner, total, micro_step)

    return GradientTransformation(init_fn, update_fn)


def _is_floating(dtype: DTypeLike) -> bool:
    try:
        return jnp.issubdtype(jnp.dtype(dtype), jnp.floating)
    except TypeError:  # not a dtype at all
        return False
