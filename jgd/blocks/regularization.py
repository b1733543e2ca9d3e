"""Regularization: l1 / l2 penalties, decoupled weight decay and the max-norm constraint (seed 003)."""

from __future__ import annotations

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.types import ScalarOrSchedule


def l1_penalty(rate: ScalarOrSchedule) -> GradientTransformation:
    """Adds the gradient of ``λ Σ|w|``: ``u = g + λ sign(w)`` (Keras ``regularizers.l1``).

    Args:
      rate: ``λ ≥ 0``, a float, an array or a schedule.
    """

    def rule(g, p, *, rate):
        return g + rate * jnp.sign(p), ()

    return leafwise("l1_penalty", rule, {"rate": rate}, with_params=True)


def l2_penalty(rate: ScalarOrSchedule) -> GradientTransformation:
    """Adds the gradient of ``λ Σw²``: ``u = g + 2λw`` (Keras ``regularizers.l2``).

    Place it before an adaptive method, whose preconditioner then scales it too. torch's
    ``weight_decay=wd`` (coupled, added to the gradient as ``wd·w``) is ``l2_penalty(wd / 2)``.

    Args:
      rate: ``λ ≥ 0``, a float, an array or a schedule.
    """

    def rule(g, p, *, rate):
        return g + 2 * rate * p, ()

    return leafwise("l2_penalty", rule, {"rate": rate}, with_params=True, complex_leaves=True)


def weight_decay(rate: ScalarOrSchedule) -> GradientTransformation:
    """Decoupled weight decay ``u = g - λw``, placed after the method's step.

    ``chain(adam(η), weight_decay(η·λ))`` is AdamW with a constant learning rate.
    Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019.

    Args:
      rate: ``λ ≥ 0``, a float, an array or a schedule; it does not follow the learning rate.
    """

    def rule(g, p, *, rate):
        return g - rate * p, ()

    return leafwise("weight_decay", rule, {"rate": rate}, with_params=True, complex_leaves=True)


def max_norm(max_value: ScalarOrSchedule, axis: int = 0) -> GradientTransformation:
    """Max-norm constraint, applied to the parameters the step produces.

    For each unit ``j``, with ``w = θ + u`` and ``‖w_j‖₂`` taken along ``axis``
    (the incoming connections: axis 0 of a Flax or Keras ``Dense`` kernel),
    ``w_j ← w_j · r / ‖w_j‖₂`` when ``‖w_j‖₂ > r``; the update becomes ``w - θ``.
    Leaves of fewer than two dimensions (biases, scales) are left alone.
    Srivastava et al., "Dropout: a simple way to prevent neural networks from
    overfitting", JMLR 2014, §5.1.

    Args:
      max_value: ``r > 0``, a float, an array or a schedule (Keras ``max_norm``'s ``max_value``, default 2 there).
      axis: the axis the norm is taken along, an int.
    """

    def rule(u, p, *, max_value):
        if u.ndim < 2:
            return u, ()
        w = p + u
        norms = jnp.linalg.norm(w, axis=axis, keepdims=True)
        w = w * jnp.minimum(1.0, max_value / jnp.maximum(norms, jnp.finfo(w.dtype).tiny))
        return w - p, ()

    return leafwise("max_norm", rule, {"max_value": max_value}, with_params=True)
