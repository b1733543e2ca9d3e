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

    Examples:
      Adds the gradient of ``λ Σ|w|``, ``λ sign(w)``, before the method:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.chain(jgd.l1_penalty(0.1), jgd.sgd(1.0))
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.6  1.1]
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

    Examples:
      Adds the gradient of ``λ Σw²``, ``2λw``, before the method:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.chain(jgd.l2_penalty(0.1), jgd.sgd(1.0))
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.7  1.4]

      ``−(g + 0.2 θ)``.
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

    Examples:
      Decoupled decay after the method's step: ``u − λw``. With a constant rate, ``chain(adam(η),
      weight_decay(η λ))`` is AdamW:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.chain(jgd.adam(0.1), jgd.weight_decay(0.1 * 0.5))
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.15  0.2 ]
      >>> adamw = jgd.adamw(0.1, weight_decay=0.5)
      >>> updates, _ = adamw.update(grads, adamw.init(params), params)
      >>> print(updates)
      [-0.15  0.2 ]
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

    Examples:
      Each unit's incoming weights (a column of a ``Dense`` kernel) rescaled to norm at most ``r`` after
      the step; a bias is left alone:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"kernel": jnp.array([[3.0, 0.1], [4.0, 0.1]]), "bias": jnp.array([5.0])}
      >>> grads = {"kernel": jnp.zeros((2, 2)), "bias": jnp.zeros(1)}
      >>> tx = jgd.chain(jgd.sgd(0.1), jgd.max_norm(1.0))
      >>> updates, _ = tx.update(grads, tx.init(params), params)
      >>> print(jgd.apply_updates(params, updates)["kernel"])
      [[0.5999999  0.1       ]
       [0.79999995 0.1       ]]
      >>> print(jgd.apply_updates(params, updates)["bias"])
      [5.]

      The first column had norm 5 and is scaled to 1; the second, of norm 0.14, is left alone.
    """

    def rule(u, p, *, max_value):
        if u.ndim < 2:
            return u, ()
        w = p + u
        norms = jnp.linalg.norm(w, axis=axis, keepdims=True)
        w = w * jnp.minimum(1.0, max_value / jnp.maximum(norms, jnp.finfo(w.dtype).tiny))
        return w - p, ()

    return leafwise("max_norm", rule, {"max_value": max_value}, with_params=True)
