"""Grafting: one method's direction with another method's step size, leaf by leaf."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jgd import trees
from jgd.base import GradientTransformation, check_transform, with_extra_args
from jgd.numerics import leaf_norm
from jgd.state import check_state
from jgd.types import PyTree


class GraftState(NamedTuple):
    """The state of :func:`graft`.

    Attributes:
      direction: the state of the transform that gives the direction.
      norm: the state of the transform that gives the norm.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> state = jgd.graft(jgd.adam(0.1), jgd.sgd(0.1)).init(jnp.zeros(2))
      >>> print(state.direction.count, jgd.hyperparams(state)["norm/learning_rate"])
      0 0.1
    """

    direction: PyTree
    norm: PyTree


def _graft(u_direction: jax.Array, u_norm: jax.Array) -> jax.Array:
    """``‖u_norm‖₂ · u_direction / ‖u_direction‖₂`` in at least float32; zero where the direction is zero."""
    dtype = jnp.promote_types(jnp.result_type(u_direction), jnp.float32)
    direction = jnp.asarray(u_direction, dtype)
    length = leaf_norm(direction)
    # A zero direction gives a zero step, and the guarded denominator keeps jax.grad free of 0/0.
    scale = jnp.where(length > 0, leaf_norm(jnp.asarray(u_norm, dtype)) / jnp.where(length > 0, length, 1), 0)
    return (direction * scale).astype(jnp.result_type(u_direction))


def graft(direction: GradientTransformation, norm: GradientTransformation) -> GradientTransformation:
    """Steps in the direction of ``direction``'s update with the length of ``norm``'s, leaf by leaf.

    Both transforms receive the same gradient and keep their own states; with ``u_D`` and ``u_M``
    their updates, each leaf's update is

        ``u = ‖u_M‖₂ · u_D / ‖u_D‖₂``  (0 where ``u_D = 0``),

    Agarwal, Anil, Hazan, Koren & Zhang, "Disentangling adaptive gradient methods from learning
    rates", 2020 (grafting ``M#D``, per layer): the step size of ``M`` (its learning rate and schedule)
    with the direction of ``D``. ``direction``'s learning rate cancels. Complex leaves are taken where both
    transforms take them.

    Args:
      direction: the transform whose update gives each leaf's direction (``D``), jgd's or optax's.
      norm: the transform whose update gives each leaf's length (``M``), jgd's or optax's.

    Examples:
      Adam's first step, ``-η sign(g)``, with the norm of SGD's, ``0.1 · ‖(3, -4)‖ = 0.5``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, 1.0]), jnp.array([3.0, -4.0])
      >>> tx = jgd.graft(jgd.adam(0.1), jgd.sgd(0.1))
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates, jnp.linalg.norm(updates))
      [-0.3535534   0.35355338] 0.5
    """
    direction = with_extra_args(check_transform("direction", direction))
    norm = with_extra_args(check_transform("norm", norm))

    def init_fn(params):
        return GraftState(direction.init(params), norm.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("graft", state, GraftState)
        u_direction, direction_state = direction.update(updates, state.direction, params, **extra_args)
        u_norm, norm_state = norm.update(updates, state.norm, params, **extra_args)
        trees.check_matching("the updates of direction", u_direction, "the gradients", updates)
        trees.check_matching("the updates of norm", u_norm, "the gradients", updates)
        return jax.tree.map(_graft, u_direction, u_norm), GraftState(direction_state, norm_state)

    return GradientTransformation(init_fn, update_fn)
