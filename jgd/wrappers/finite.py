"""Skip steps whose updates are not finite, and count them."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jgd.base import GradientTransformation, check_transform, with_extra_args
from jgd.state import check_state
from jgd.types import PyTree


class ApplyIfFiniteState(NamedTuple):
    """The state of :func:`apply_if_finite`.

    Attributes:
      inner: the wrapped transform's state, kept from the last finite step.
      consecutive: non-finite steps in a row.
      skipped: non-finite steps in all.
      gave_up: set once ``consecutive`` reaches ``max_consecutive``; stays set.

    Examples:
      The inner state from the last finite step, and the counts of skipped steps:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.apply_if_finite(jgd.adam(0.1), max_consecutive=2)
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     _, state = tx.update(jnp.array([jnp.inf, 1.0]), state, params)
      ...
      >>> print(state.consecutive, state.skipped, state.gave_up, state.inner.count)
      2 2 True 0
    """

    inner: PyTree
    consecutive: jax.Array
    skipped: jax.Array
    gave_up: jax.Array


def all_finite(tree: PyTree) -> jax.Array:
    """Whether every element of every leaf is finite (True for an empty tree).

    Args:
      tree: a tree of arrays (``jgd.types.PyTree``), e.g. updates or params.

    Examples:
      Whether every element of every leaf is finite:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> print(jgd.all_finite({"a": jnp.ones(3), "b": jnp.array([1.0, jnp.inf])}))
      False
      >>> print(jgd.all_finite({"a": jnp.ones(3)}))
      True
    """
    return jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)], dtype=bool))


def apply_if_finite(inner: GradientTransformation, max_consecutive: int = 10) -> GradientTransformation:
    """Runs ``inner``; where its updates hold a NaN or an infinity, returns zero updates and keeps the old state.

    After ``max_consecutive`` non-finite steps in a row, ``state.gave_up`` is
    set, for the training loop to stop on; steps stay skipped, so the params
    never become non-finite.

    Args:
      inner: the gradient transformation to run (jgd's or optax's).
      max_consecutive: an int ≥ 1, the non-finite steps in a row that set ``gave_up``; 10.

    Examples:
      A step whose updates hold a NaN or an infinity becomes zero and leaves the inner state as it was;
      the state counts it:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.apply_if_finite(jgd.sgd(0.1))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([jnp.nan, 1.0]), state, params)
      >>> print(updates, state.skipped, state.consecutive)
      [0. 0.] 1 1
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates, state.skipped, state.consecutive)
      [-0.05  0.1 ] 1 0
    """
    if max_consecutive < 1:
        raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
    inner = with_extra_args(check_transform("inner", inner))

    def init_fn(params):
        zero = jnp.zeros((), jnp.int32)
        return ApplyIfFiniteState(inner.init(params), zero, zero, jnp.zeros((), bool))

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("apply_if_finite", state, ApplyIfFiniteState)
        new_updates, new_inner = inner.update(updates, state.inner, params, **extra_args)
        ok = all_finite(new_updates)
        consecutive = jnp.where(ok, 0, state.consecutive + 1)
        new_state = ApplyIfFiniteState(
            inner=jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_inner, state.inner),
            consecutive=consecutive,
            skipped=state.skipped + jnp.where(ok, 0, 1),
            gave_up=state.gave_up | (consecutive >= max_consecutive),
        )
        return jax.tree.map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)), new_updates), new_state

    return GradientTransformation(init_fn, update_fn)
