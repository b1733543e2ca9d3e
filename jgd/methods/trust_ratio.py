"""Layer-wise trust ratios for large batches: LAMB and LARS.

Each leaf (a layer's weight or bias) gets its own step size, proportional to
``‖θ‖ / ‖step‖``. Biases and normalisation parameters are usually left out of
both the weight decay and the ratio, through the masks
(e.g. ``mask=lambda params: jax.tree.map(lambda p: p.ndim > 1, params)``).
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.types import Mask, ScalarOrSchedule, StateDtype


def _ratio(numerator, denominator):
    """``numerator / denominator``, or 1 where either is zero (a zero param or a zero step is never frozen)."""
    zero = (numerator == 0) | (denominator == 0)
    return jnp.where(zero, 1, numerator / jnp.where(zero, 1, denominator))


def lamb(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-6,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = True,
    *,
    trust_ratio_mask: Mask = True,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """LAMB: Adam's step plus decoupled weight decay, rescaled per leaf by the trust ratio.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``v_t = β2 v_{t-1} + (1 - β2) g_t²``,
    ``r_t = m̂_t / (√(v̂_t + ε_root) + ε) + λ θ_t`` (Adam's bias-corrected ``m̂, v̂``),
    ``θ_{t+1} = θ_t - η (‖θ_t‖ / ‖r_t‖) r_t``, the norms taken over the whole leaf, with the
    ratio 1 where either norm is zero.
    You et al., "Large batch optimization for deep learning: training BERT in 76 minutes",
    ICLR 2020, Alg. 2 (with ``φ`` the identity).

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3.
      b1: ``β1``, in [0, 1); 0.9 (paper).
      b2: ``β2``, in [0, 1); 0.999 (paper).
      eps: ``ε`` added to the root, ≥ 0; 1e-6 (the paper's BERT code).
      eps_root: ``ε_root`` added under the root, ≥ 0; 0.
      weight_decay: ``λ``, ≥ 0; 0 (the paper sets it per task, 0.01 for BERT).
      mask: which leaves are decayed (a bool, a tree of bools or ``params -> tree of bools``); all.
      trust_ratio_mask: which leaves are rescaled by the ratio; the others take ``-η r_t``. All.
      state_dtype: dtype of the moments; default each param's own.

    Examples:
      Each leaf's Adam step is rescaled by the trust ratio ``‖θ‖ / ‖u‖``, so every leaf moves by η times
      its own norm:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.lamb(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.15811379  0.15811396]
      >>> print(jnp.linalg.norm(updates) / jnp.linalg.norm(params))
      0.099999994
    """

    def rule(g, m, v, p, *, t, learning_rate, b1, b2, eps, eps_root, weight_decay, decayed, adapted):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * abs_sq(g)
        r = m / (1 - b1**t) / (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps)
        if decayed:
            r = r + weight_decay * p
        if adapted:
            r = r * _ratio(jnp.linalg.norm(p), jnp.linalg.norm(r))
        return -learning_rate * r, (m, v)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    hp["weight_decay"] = weight_decay
    masks = {"decayed": mask, "adapted": trust_ratio_mask}
    return leafwise(
        "lamb",
        rule,
        hp,
        ("mu", "nu"),
        state_dtype=state_dtype,
        with_params=True,
        masks=masks,
        real_slots=("nu",),
        nonnegative_slots=("nu",),
        complex_leaves=True,
    )


def lars(
    learning_rate: ScalarOrSchedule = 0.1,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    trust_coefficient: ScalarOrSchedule = 0.001,
    eps: ScalarOrSchedule = 0.0,
    trust_ratio_mask: Mask = True,
    momentum: ScalarOrSchedule = 0.9,
    nesterov: bool = False,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """LARS: momentum SGD with a per-leaf local learning rate.

    ``form="paper"``: ``λ = κ ‖θ_t‖ / (‖g_t‖ + β ‖θ_t‖ + ε)``,
    ``v_t = μ v_{t-1} + η λ (g_t + β θ_t)``, ``θ_{t+1} = θ_t - v_t``
    (``θ_{t+1} = θ_t - (μ v_t + η λ (g_t + β θ_t))`` with ``nesterov``), ``λ = 1`` where a norm is zero.
    You et al., "Large batch training of convolutional networks", 2017, Alg. 1
    (``κ`` the trust coefficient, ``β`` the weight decay).

    ``form="optax"`` takes the norm of the decayed gradient instead of the sum of norms:
    ``λ = κ ‖θ_t‖ / (‖g_t + β θ_t‖ + ε)`` (optax's ``lars``, and Flax's); the two agree when ``β = 0``.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 0.1.
      weight_decay: ``β``, ≥ 0; 0 (the paper sets it per network, e.g. 5e-4).
      weight_decay_mask: which leaves are decayed (a bool, a tree of bools or ``params -> tree of bools``).
      trust_coefficient: ``κ``, > 0; 0.001 (paper).
      eps: ``ε`` in the ratio's denominator, ≥ 0; 0 (paper).
      trust_ratio_mask: which leaves take the local rate ``λ``; the others take ``λ = 1``.
      momentum: ``μ``, in [0, 1); 0.9 (paper).
      nesterov: whether to take Nesterov's step.
      form: ``"paper"`` or ``"optax"``, the ratio's denominator (above).
      state_dtype: dtype of the velocity; default each param's own.

    Examples:
      The gradient is rescaled per leaf by ``c ‖θ‖ / ‖g‖`` (``c`` the trust coefficient) before the
      momentum:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.lars(learning_rate=1.0, trust_coefficient=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.1  0.2]
      >>> print(jnp.linalg.norm(updates) / jnp.linalg.norm(params))
      0.1
      >>> print(sorted(state.slots))
      ['velocity']

      ``‖θ‖ = ‖g‖ · 2`` here, so the step is ``−0.1 · 2 g``: one tenth of the parameters' norm.
    """
    if form not in ("paper", "optax"):
        raise ValueError(f"form must be 'paper' or 'optax', got {form!r}")

    def rule(g, v, p, *, learning_rate, weight_decay, trust_coefficient, eps, momentum, decayed, adapted):
        decay = weight_decay if decayed else 0.0
        step = g + decay * p
        if adapted:
            p_norm = jnp.linalg.norm(p)
            step_norm = jnp.linalg.norm(g) + decay * p_norm if form == "paper" else jnp.linalg.norm(step)
            step = step * _ratio(trust_coefficient * p_norm, step_norm + eps)
        v = momentum * v + learning_rate * step
        return -(momentum * v + learning_rate * step if nesterov else v), (v,)

    hp = {"learning_rate": learning_rate, "weight_decay": weight_decay, "trust_coefficient": trust_coefficient}
    hp.update(eps=eps, momentum=momentum)
    masks = {"decayed": weight_decay_mask, "adapted": trust_ratio_mask}
    return leafwise(
        "lars", rule, hp, ("velocity",), state_dtype=state_dtype, with_params=True, masks=masks, complex_leaves=True
    )
