"""More adaptive methods of optax's: Yogi, Adan and SM3."""

from __future__ import annotations

import functools
import itertools
from typing import Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.types import Mask, ScalarOrSchedule, StateDtype


def yogi(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-3,
    eps_root: ScalarOrSchedule = 0.0,
    initial_accumulator: ScalarOrSchedule = 1e-6,
    *,
    bias_correction: bool = True,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Yogi: Adam whose second moment moves by an additive, sign-controlled step.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``v_t = v_{t-1} - (1 - β2) sign(v_{t-1} - g_t²) g_t²``,
    ``m_0 = v_0 = initial_accumulator``, ``θ_{t+1} = θ_t - η m̂_t / (√(v̂_t + ε_root) + ε)`` with
    ``m̂_t = m_t / (1 - β1^t)``, ``v̂_t = v_t / (1 - β2^t)``.
    Zaheer et al., "Adaptive methods for nonconvex optimization", NeurIPS 2018, Alg. 2, which writes the
    step without the bias correction (``bias_correction=False``: ``m̂_t = m_t``, ``v̂_t = v_t``); the default
    corrects both moments and starts them at 1e-6, as the authors' released code and optax's ``yogi``.
    ``v_t`` moves towards ``g_t²`` by at most ``(1 - β2) g_t²`` a step, so the effective rate grows slowly.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-2 (the paper's experiments).
      b1: ``β1``, in [0, 1); 0.9 (paper).
      b2: ``β2``, in [0, 1); 0.999 (paper).
      eps: ``ε`` added to the root, ≥ 0; 1e-3 (paper).
      eps_root: ``ε_root`` added under the root, ≥ 0; 0.
      initial_accumulator: ``m_0 = v_0``, ≥ 0, read at the first step; 1e-6 (optax's ``scale_by_yogi``).
      bias_correction: whether ``m_t, v_t`` are divided by ``1 - β^t``; True (optax).
      state_dtype: dtype of the moments; default each param's own.

    Examples:
      The first step starts both moments at ``initial_accumulator``, so it is slightly shorter than ``η``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.yogi(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.09960359  0.09984934]
    """

    def rule(g, m, v, *, t, learning_rate, b1, b2, eps, eps_root, initial_accumulator):
        # The slots start at zero; the first step reads the starting value, which thus stays data.
        first = t == 1
        m = jnp.where(first, initial_accumulator, m)
        v = jnp.where(first, initial_accumulator, v)
        g2 = abs_sq(g)
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * jnp.sign(v - g2) * g2
        m_hat, v_hat = (m / (1 - b1**t), v / (1 - b2**t)) if bias_correction else (m, v)
        return -learning_rate * m_hat / (jnp.sqrt(v_hat + eps_root) + eps), (m, v)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    hp["initial_accumulator"] = initial_accumulator
    return leafwise(
        "yogi",
        rule,
        hp,
        ("mu", "nu"),
        state_dtype=state_dtype,
        real_slots=("nu",),
        nonnegative_slots=("nu",),
        complex_leaves=True,
    )


def adan(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.98,
    b2: ScalarOrSchedule = 0.92,
    b3: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Adan: adaptive Nesterov momentum from the gradient and its difference to the previous one.

    ``form="paper"``: ``d_t = g_t - g_{t-1}`` (0 at the first step), ``m_t = β1 m_{t-1} + (1 - β1) g_t``,
    ``v_t = β2 v_{t-1} + (1 - β2) d_t``, ``n_t = β3 n_{t-1} + (1 - β3)(g_t + β2 d_t)²``,
    ``u_t = (m̂_t + β2 v̂_t) / (√(n̂_t + ε_root) + ε)`` with each moment divided by ``1 - β^t``, and the
    proximal weight decay ``θ_{t+1} = (θ_t - η u_t) / (1 + η λ)``.
    Xie et al., "Adan: adaptive Nesterov momentum algorithm for faster optimizing deep models", 2022, Alg. 1,
    whose ``β_i`` are ``1 - b_i`` here (optax's convention): the paper's ``1 - β2`` before ``d_t`` and ``v_t``
    is ``b2``. The paper's algorithm starts the moments from a gradient taken before the first step and does
    not correct them; the correction from zero, as the authors' released code, needs no extra gradient.

    ``form="optax"`` is optax's ``adan``: ``1 - β2`` where the paper has ``β2`` (``n_t`` from
    ``(g_t + (1 - β2) d_t)²``, ``u_t`` from ``m̂_t + (1 - β2) v̂_t``) and the decoupled decay
    ``θ_{t+1} = θ_t - η (u_t + λ θ_t)``. ``λ`` applies to the leaves ``mask`` selects.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3 (the authors' code).
      b1: ``β1``, the gradient's average, in [0, 1); 0.98 (the paper's 0.02).
      b2: ``β2``, the difference's average, in [0, 1); 0.92 (the paper's 0.08).
      b3: ``β3``, the second moment's, in [0, 1); 0.99 (the paper's 0.01).
      eps: ``ε`` added to the root, ≥ 0; 1e-8.
      eps_root: ``ε_root`` added under the root, ≥ 0; 1e-8 (optax).
      weight_decay: ``λ``, ≥ 0; 0.
      mask: which leaves are decayed: None or True every leaf, False none, a tree of bools (a prefix of the
        params) or a function ``params -> tree of bools``.
      form: ``"paper"`` or ``"optax"`` (above).
      state_dtype: dtype of the moments and of the previous gradient; default each param's own.

    Examples:
      At the first step there is no difference yet, and the step is ``η`` along ``sign(g)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.adan(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.1  0.1]
    """
    if form not in ("paper", "optax"):
        raise ValueError(f"form must be 'paper' or 'optax', got {form!r}")

    def rule(g, m, v, n, previous, p, *, t, learning_rate, b1, b2, b3, eps, eps_root, weight_decay, decayed):
        d = jnp.where(t == 1, 0, g - previous)
        nesterov = b2 if form == "paper" else 1 - b2
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d
        n = b3 * n + (1 - b3) * abs_sq(g + nesterov * d)
        u = (m / (1 - b1**t) + nesterov * v / (1 - b2**t)) / (jnp.sqrt(n / (1 - b3**t) + eps_root) + eps)
        step = -learning_rate * u
        if decayed and form == "paper":  # (θ - ηu) / (1 + ηλ) - θ
            step = (step - learning_rate * weight_decay * p) / (1 + learning_rate * weight_decay)
        elif decayed:
            step = step - learning_rate * weight_decay * p
        return step, (m, v, n, g)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "b3": b3, "eps": eps, "eps_root": eps_root}
    hp["weight_decay"] = weight_decay
    return leafwise(
        "adan",
        rule,
        hp,
        ("mu", "delta", "nu", "previous_grad"),
        state_dtype=state_dtype,
        with_params=True,
        masks={"decayed": mask},
        real_slots=("nu",),
        nonnegative_slots=("nu",),
        complex_leaves=True,
    )


def _accumulators(p, dtype):
    """SM3's accumulators of one leaf in one vector: one entry per index of each axis (a scalar: one entry).
    A vector's are its entries', made like the param so that they take its sharding."""
    if p.ndim == 1:
        return jnp.zeros_like(p, dtype=dtype)
    return jnp.zeros((max(sum(p.shape), 1),), dtype)


def _covers(accumulators, shape):
    """The accumulator of each axis, shaped to broadcast over the leaf (a scalar's: its one entry)."""
    if not shape:
        return [accumulators.reshape(())]
    ends = list(itertools.accumulate(shape))
    pieces = jnp.split(accumulators, ends[:-1])
    return [
        piece.reshape([n if j == i else 1 for j in range(len(shape))])
        for i, (piece, n) in enumerate(zip(pieces, shape))
    ]


def _largest_per_cover(nu, shape):
    """``μ_t(r) = max_{j ∈ S_r} ν_t(j)`` for each cover (each index of each axis), in one vector."""
    if not shape:
        return nu.reshape((1,))
    axes = range(len(shape))
    return jnp.concatenate([jnp.max(nu, axis=tuple(j for j in axes if j != i)) for i in axes])


def sm3(
    learning_rate: ScalarOrSchedule = 0.1,
    momentum: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """SM3: Adagrad whose accumulators cover the rows, columns, ... of each leaf, not each entry.

    For a leaf of shape ``(n_1, ..., n_k)`` the covers ``S_r`` are the slices through each index of each axis,
    one accumulator each (``n_1 + ... + n_k`` numbers, not ``n_1 ⋯ n_k``):
    ``ν_t(i) = min_{r ∋ i} μ_{t-1}(r) + g_t(i)²``, ``μ_t(r) = max_{j ∈ S_r} ν_t(j)``,
    ``u_t = g_t / √(ν_t + ε)`` (0 where ``ν_t = 0``), ``m_t = β m_{t-1} + (1 - β) u_t``, ``θ_{t+1} = θ_t - η m_t``.
    Anil et al., "Memory-efficient adaptive optimization", NeurIPS 2019, Alg. SM3-II; ``momentum=0`` is the
    algorithm itself, and the average of ``u_t`` is optax's ``sm3`` form of its momentum. A vector is its own
    cover (Adagrad), and so is a scalar.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 0.1.
      momentum: ``β``, in [0, 1); 0.9 (optax).
      eps: ``ε`` under the root, ≥ 0; 1e-8 (optax's ``scale_by_sm3``).
      state_dtype: dtype of the accumulators and of the momentum; default each param's own.

    Examples:
      A 2 × 3 matrix keeps 2 + 3 accumulators, the largest ``g²`` of each row, then of each column:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.ones((2, 3)), jnp.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])
      >>> tx = jgd.sm3(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> print(state.slots["accumulators"])
      [4. 9. 1. 4. 9.]
    """

    def rule(g, accumulators, m, *, learning_rate, momentum, eps):
        nu = functools.reduce(jnp.minimum, _covers(accumulators, g.shape)) + g * g
        # ν_t = 0 only where g_t = 0 (the covers' minimum is ≥ 0): the step there is 0, not 0/0 when ε = 0.
        u = g / jnp.sqrt(jnp.where(nu > 0, nu, 1) + eps)
        m = momentum * m + (1 - momentum) * u
        return -learning_rate * m, (_largest_per_cover(nu, g.shape), m)

    hp = {"learning_rate": learning_rate, "momentum": momentum, "eps": eps}
    return leafwise(
        "sm3",
        rule,
        hp,
        ("accumulators", "mu"),
        state_dtype=state_dtype,
        slot_init={"accumulators": _accumulators},
        nonnegative_slots=("accumulators",),
    )
