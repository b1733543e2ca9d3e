"""Adaptive methods of optax.contrib: ACProp (an asynchronous AdaBelief) and MADGRAD (dual averaging)."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.types import Mask, ScalarOrSchedule, StateDtype


def _check_form(form: str) -> None:
    if form not in ("paper", "optax"):
        raise ValueError(f"form must be 'paper' or 'optax', got {form!r}")


def acprop(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-16,
    eps_root: ScalarOrSchedule = 1e-16,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """ACProp: the gradient divided by the spread of the gradients before it (asynchronous, centred).

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``s_t = β2 s_{t-1} + (1 - β2) |g_t - m_t|² + ε_root``;
    the step divides by the second moment of the steps before this one:
    ``θ_{t+1} = θ_t - η (g_t / (√ŝ_{t-1} + ε) + λ θ_t)`` with ``ŝ_{t-1} = s_{t-1} / (1 - β2^{t-1})``, and
    ``ŝ_0 = 1`` (the first step is ``η g_1 / (1 + ε)``). Zhuang et al., "Momentum centering and asynchronous
    update for adaptive gradient methods", NeurIPS 2021, ACProp (the authors' released code's default, whose
    numerator is the gradient). ``λ`` applies to the leaves ``mask`` selects.

    ``form="optax"`` is optax's ``contrib.acprop``, which centres on the average before this step:
    ``s_t = β2 s_{t-1} + (1 - β2) |g_t - m_{t-1}|² + ε_root``.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3 (paper).
      b1: ``β1``, in [0, 1); 0.9 (paper).
      b2: ``β2``, in [0, 1); 0.999 (paper).
      eps: ``ε`` added to the root, ≥ 0; 1e-16 (the authors' code).
      eps_root: ``ε_root`` added to ``s_t`` at each step, ≥ 0; 1e-16.
      weight_decay: ``λ``, ≥ 0; 0.
      mask: which leaves are decayed: None or True every leaf, False none, a tree of bools (a prefix of the
        params) or a function ``params -> tree of bools``.
      form: ``"paper"`` or ``"optax"`` (above).
      state_dtype: dtype of the average and of the second moment; default each param's own.

    Examples:
      The first step is the gradient itself (there is no spread yet); the second divides by the first's:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.acprop(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.05  0.1 ]
      >>> updates, state = tx.update(jnp.array([1.0, -1.0]), state, params)
      >>> print(updates)
      [-0.2222...  0.1111...]
    """
    _check_form(form)

    def rule(g, m, s, p, *, t, learning_rate, b1, b2, eps, eps_root, weight_decay, decayed):
        first = t == 1
        s_hat = jnp.where(first, 1, s / jnp.where(first, 1, 1 - b2 ** (t - 1)))
        u = g / (jnp.sqrt(s_hat) + eps)
        m_new = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * abs_sq(g - (m_new if form == "paper" else m)) + eps_root
        if decayed:
            u = u + weight_decay * p
        return -learning_rate * u, (m_new, s)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    hp["weight_decay"] = weight_decay
    return leafwise(
        "acprop",
        rule,
        hp,
        ("mu", "nu"),
        state_dtype=state_dtype,
        with_params=True,
        masks={"decayed": mask},
        real_slots=("nu",),
        nonnegative_slots=("nu",),
        complex_leaves=True,
    )


def _copy(p, dtype):
    return jnp.array(p, dtype=dtype, copy=True)


def madgrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    momentum: ScalarOrSchedule = 0.9,
    weight_decay: ScalarOrSchedule = 0.0,
    eps: ScalarOrSchedule = 1e-6,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """MADGRAD: dual averaging from the first point, scaled by the cube root of the summed squares, with momentum.

    With ``g_t ← g_t + λ θ_t`` (an L2 penalty) and ``λ_t = η √t``: ``s_t = s_{t-1} + λ_t g_t``,
    ``ν_t = ν_{t-1} + λ_t |g_t|²``, ``z_t = θ_0 - s_t / (∛ν_t + ε)``,
    ``θ_{t+1} = (1 - β) z_t + β θ_t`` (the paper's ``c = 1 - β``). Defazio & Jelassi, "Adaptivity without
    compromise: a momentumized, adaptive, dual averaged gradient method for stochastic optimization", JMLR
    2022 (arXiv 2021), Alg. 1. The state keeps the first point ``θ_0``.

    ``form="optax"`` is optax's ``contrib.madgrad`` (and the authors' code), which weighs by
    ``λ_t = (η + ε) √t``, in float32 as optax computes it (the root of an int32 count is float32).

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-2 (the authors' code).
      momentum: ``β``, in [0, 1); 0.9 (paper).
      weight_decay: ``λ``, the L2 penalty added to the gradient, ≥ 0; 0.
      eps: ``ε`` added to the cube root, ≥ 0; 1e-6 (paper).
      form: ``"paper"`` or ``"optax"`` (above).
      state_dtype: dtype of the sums and of ``θ_0``; default each param's own.

    Examples:
      The first step is ``-(1 - β) s_1 / ∛ν_1 ≈ -(1 - β) η^{2/3} sign(g) |g|^{1/3}``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.madgrad(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.01709974  0.02154434]
    """
    _check_form(form)

    def rule(g, sum_sq, s, x0, p, *, t, learning_rate, momentum, weight_decay, eps):
        g = g + weight_decay * p
        if form == "paper":
            weight = learning_rate * jnp.sqrt(t)
        else:  # optax multiplies by the root of its int32 count, which JAX computes in float32
            weight = ((learning_rate + eps).astype(jnp.float32) * jnp.sqrt(t.astype(jnp.float32))).astype(t.dtype)
        sum_sq = sum_sq + weight * abs_sq(g)
        s = s + weight * g
        z = x0 - s / (jnp.cbrt(sum_sq) + eps)
        return (1 - momentum) * z + momentum * p - p, (sum_sq, s, x0)

    hp = {"learning_rate": learning_rate, "momentum": momentum, "weight_decay": weight_decay, "eps": eps}
    return leafwise(
        "madgrad",
        rule,
        hp,
        ("grad_sum_sq", "s", "x0"),
        state_dtype=state_dtype,
        with_params=True,
        slot_init={"x0": _copy},
        real_slots=("grad_sum_sq",),
        nonnegative_slots=("grad_sum_sq",),
        complex_leaves=True,
    )
