"""Moment methods beyond Adam: RAdam, AdaBelief and Lion."""

from __future__ import annotations

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.ranges import Range
from jgd.types import Mask, ScalarOrSchedule, StateDtype


def radam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    threshold: ScalarOrSchedule = 5.0,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Rectified Adam: Adam's adaptive step only once its variance is tractable.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``v_t = β2 v_{t-1} + (1 - β2) g_t²``, ``m̂_t = m_t / (1 - β1^t)``,
    ``ρ_∞ = 2 / (1 - β2) - 1``, ``ρ_t = ρ_∞ - 2 t β2^t / (1 - β2^t)``; when ``ρ_t ≥ threshold``,
    ``r_t = √((ρ_t - 4)(ρ_t - 2) ρ_∞ / ((ρ_∞ - 4)(ρ_∞ - 2) ρ_t))`` and
    ``θ_{t+1} = θ_t - η r_t m̂_t / (√(v_t / (1 - β2^t) + ε_root) + ε)``; otherwise ``θ_{t+1} = θ_t - η m̂_t``.
    Liu et al., "On the variance of the adaptive learning rate and beyond", ICLR 2020, Alg. 2.
    The paper's test is ``ρ_t > 4`` and its step has no ε; ``threshold=5`` and ``ε=1e-8`` are the
    authors' released code (optax's too).

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3 (the paper's experiments).
      b1: ``β1``, in [0, 1); 0.9 (paper).
      b2: ``β2``, in [0, 1); 0.999 (paper).
      eps: ``ε`` added to the root, ≥ 0; 1e-8.
      eps_root: ``ε_root`` added under the root, ≥ 0; 0.
      threshold: ``ρ_t`` from which the rectified adaptive step is taken, > 4 (the rectification's root
        needs ``ρ_t > 4``); 5.
      state_dtype: dtype of the moments; default each param's own.

    Examples:
      While the variance's length ``ρ_t`` is at most the threshold (the first steps), RAdam is SGD with
      Adam's bias-corrected momentum, ``−η m̂ = −η g`` at the first step:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.radam(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.05  0.1 ]
      >>> print(sorted(state.slots))
      ['mu', 'nu']
    """

    def rule(g, m, v, *, t, learning_rate, b1, b2, eps, eps_root, threshold):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * abs_sq(g)
        m_hat = m / (1 - b1**t)
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        # Clamped so that the branch not taken (ρ_t < 4) holds no NaN.
        r = jnp.sqrt(jnp.maximum((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho), 0))
        adaptive = r * m_hat / (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps)
        return -learning_rate * jnp.where(rho >= threshold, adaptive, m_hat), (m, v)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root, "threshold": threshold}
    return leafwise(
        "radam",
        rule,
        hp,
        ("mu", "nu"),
        state_dtype=state_dtype,
        real_slots=("nu",),
        nonnegative_slots=("nu",),
        complex_leaves=True,
        narrowed={"threshold": Range(low=4.0, low_open=True)},
    )


def adabelief(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-16,
    eps_root: ScalarOrSchedule = 1e-16,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """AdaBelief: Adam with the variance of the gradient around its average (the "belief") as preconditioner.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``s_t = β2 s_{t-1} + (1 - β2)(g_t - m_t)² + ε_root``,
    ``m̂_t = m_t / (1 - β1^t)``, ``ŝ_t = s_t / (1 - β2^t)``, ``θ_{t+1} = θ_t - η m̂_t / (√ŝ_t + ε)``.
    Zhuang et al., "AdaBelief optimizer: adapting stepsizes by the belief in observed gradients",
    NeurIPS 2020, Alg. 2, which adds one ε in both places (``ε_root`` is kept in ``s_t``, as there);
    the defaults ``ε = ε_root = 1e-16`` are the authors' released code.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3 (paper).
      b1: ``β1``, in [0, 1); 0.9 (paper).
      b2: ``β2``, in [0, 1); 0.999 (paper).
      eps: ``ε`` added to the root, ≥ 0; 1e-16.
      eps_root: ``ε_root`` added to ``s_t`` each step, ≥ 0; 1e-16.
      state_dtype: dtype of the moments; default each param's own.

    Examples:
      The second moment is the variance of ``g`` around its average, ``s ← β2 s + (1 − β2)(g − m)²``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.adabelief(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(state.slots["nu"])
      [0.0002025  0.00080999]
      >>> print(updates)
      [-0.11111112  0.11111112]

      At the first step ``m = 0.1 g``, so ``s = 0.001 (0.9 g)²`` and the bias-corrected step is ``−η g /
      (0.9 |g|)``.
    """

    def rule(g, m, s, *, t, learning_rate, b1, b2, eps, eps_root):
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * abs_sq(g - m) + eps_root
        m_hat, s_hat = m / (1 - b1**t), s / (1 - b2**t)
        return -learning_rate * m_hat / (jnp.sqrt(s_hat) + eps), (m, s)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    slots = ("mu", "nu")
    return leafwise(
        "adabelief",
        rule,
        hp,
        slots,
        state_dtype=state_dtype,
        real_slots=("nu",),
        nonnegative_slots=("nu",),
        complex_leaves=True,
    )


def lion(
    learning_rate: ScalarOrSchedule = 1e-4,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.99,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = True,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Lion: the sign of an interpolation of momentum and gradient, with decoupled weight decay.

    ``c_t = β1 m_{t-1} + (1 - β1) g_t``, ``θ_{t+1} = θ_t - η (sign(c_t) + λ θ_t)``,
    ``m_t = β2 m_{t-1} + (1 - β2) g_t``; ``λ θ_t`` only on the leaves ``mask`` selects.
    Chen et al., "Symbolic discovery of optimization algorithms", NeurIPS 2023, Program 1.
    The decay is multiplied by the learning rate, as in the paper's program.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-4 (the authors' released code).
      b1: ``β1``, the interpolation for the step, in [0, 1); 0.9 (paper).
      b2: ``β2``, the momentum's decay, in [0, 1); 0.99 (paper).
      weight_decay: ``λ``, ≥ 0; 0 (the authors' code; optax's default is 1e-3).
      mask: which leaves are decayed: a bool, a tree of bools (a prefix of the params) or a
        function ``params -> tree of bools``; all by default.
      state_dtype: dtype of the momentum; default each param's own.

    Examples:
      Every coordinate moves by exactly η: the update is the sign of an interpolation of ``m`` and ``g``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.lion(learning_rate=0.01)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.01  0.01]
      >>> print(state.slots["mu"])
      [ 0.005      -0.00999999]

      The state keeps one moment, ``m ← β2 m + (1 − β2) g``, here ``0.01 g``.
    """

    def rule(g, m, p, *, learning_rate, b1, b2, weight_decay, decayed):
        step = jnp.sign(b1 * m + (1 - b1) * g)
        if decayed:
            step = step + weight_decay * p
        return -learning_rate * step, (b2 * m + (1 - b2) * g,)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "weight_decay": weight_decay}
    return leafwise("lion", rule, hp, ("mu",), state_dtype=state_dtype, with_params=True, masks={"decayed": mask})
