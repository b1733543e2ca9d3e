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
    """

    def rule(g, *, max_value):
        return jnp.clip(g, -max_value, max_value), ()

    return leafwise("clip_by_value", rule, {"max_value": max_value})


def clip_by_norm(max_norm: ScalarOrSchedule) -> GradientTransformation:
    """Per tensor, ``u = g · c / max(‖g‖₂, c)``. Seed 003: ``[0.9, 100.0] -> [0.00899964, 0.9999595]``.

    Args:
      max_norm: ``c > 0``, a float, an array or a schedule (Keras ``clipnorm``).
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
    """

    def prepare(updates, t, carry, *, max_norm):
        return {"norm": global_norm(updates)}, carry

    def rule(g, *, max_norm, norm):
        return g * (max_norm / jnp.maximum(norm, max_norm)), ()

    return leafwise(
        "clip_by_global_norm", rule, {"max_norm": max_norm}, prepare=prepare, prepared=("norm",), complex_leaves=True
    )
