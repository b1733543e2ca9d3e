"""Gradient clipping: by value (Keras ``clipvalue``), per-tensor norm (``clipnorm``) and global norm."""

from __future__ import annotations

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.trees import global_norm
from jgd.types import ScalarOrSchedule


def clip_by_value(max_value: ScalarOrSchedule) -> GradientTransformation:
    """``u = clip(g, -c, c)`` element by element. Seed 003: ``[0.9, 100.0] -> [0.9, 1.0]`` for c = 1.

    Args:
      max_value: ``c > 0``, a float, an array or a schedule (Keras ``clipvalue``).

    Examples:
      Seed 003's example, element by element:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.clip_by_value(1.0)
      >>> updates, _ = tx.update(jnp.array([0.9, 100.0]), tx.init(None))
      >>> print(updates)
      [0.9 1. ]
    """

    def rule(g, *, max_value):
        return jnp.clip(g, -max_value, max_value), ()

    return leafwise("clip_by_value", rule, {"max_value": max_value})


def clip_by_norm(max_norm: ScalarOrSchedule) -> GradientTransformation:
    """Per tensor, ``u = g · c / max(‖g‖₂, c)``. Seed 003: ``[0.9, 100.0] -> [0.00899964, 0.9999595]``.

    Args:
      max_norm: ``c > 0``, a float, an array or a schedule (Keras ``clipnorm``).

    Examples:
      Each leaf rescaled to norm at most ``c``, on its own (seed 003's example):

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.clip_by_norm(1.0)
      >>> updates, _ = tx.update({"a": jnp.array([0.9, 100.0]), "b": jnp.array([0.5])}, tx.init(None))
      >>> print(updates["a"], updates["b"])
      [0.00899963 0.99995947] [0.5]
    """

    def rule(g, *, max_norm):
        return g * (max_norm / jnp.maximum(jnp.linalg.norm(g), max_norm)), ()

    return leafwise("clip_by_norm", rule, {"max_norm": max_norm}, complex_leaves=True)


def clip_by_global_norm(max_norm: ScalarOrSchedule) -> GradientTransformation:
    """``u = g · c / max(‖G‖₂, c)`` with ``‖G‖₂`` the norm of all leaves together.

    Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
    networks", ICML 2013.

    Args:
      max_norm: ``c > 0``, a float, an array or a schedule (Keras ``global_clipnorm``).

    Examples:
      All leaves rescaled together, so that their joint norm is at most ``c``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.clip_by_global_norm(1.0)
      >>> updates, _ = tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))
      >>> print(updates["a"], updates["b"])
      [0.6] [0.8]
    """

    def prepare(updates, t, carry, *, max_norm):
        return {"norm": global_norm(updates)}, carry

    def rule(g, *, max_norm, norm):
        return g * (max_norm / jnp.maximum(norm, max_norm)), ()

    return leafwise(
        "clip_by_global_norm", rule, {"max_norm": max_norm}, prepare=prepare, prepared=("norm",), complex_leaves=True
    )
