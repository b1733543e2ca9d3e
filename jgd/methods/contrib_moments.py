"""Moment methods of optax.contrib: ADOPT, AdEMAMix and simplified AdEMAMix."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.types import Mask, ScalarOrSchedule, StateDtype


def _quarter_power(count: jax.Array) -> jax.Array:
    """ADOPT's clipping bound ``c(k) = k^{1/4}`` (paper)."""
    return count**0.25


def adopt(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.9999,
    eps: ScalarOrSchedule = 1e-6,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _quarter_power,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """ADOPT: Adam that normalises the gradient by the second moment of the steps before, then averages it.

    The first step only starts the second moment, ``v_1 = g_1²``, and does not move. From the second step on,
    with ``k = t - 1`` the steps before this one: ``u_t = clip(g_t / max(√v_{t-1}, ε), -c(k), c(k))``,
    ``m_t = β1 m_{t-1} + (1 - β1) u_t`` (``m_1 = 0``), ``θ_{t+1} = θ_t - η m_t``,
    ``v_t = β2 v_{t-1} + (1 - β2) g_t²``. ``nesterov=True`` steps along ``β1 m_t + (1 - β1) u_t``.
    Taniguchi et al., "ADOPT: modified Adam can converge with any β2 with the optimal rate", NeurIPS 2024,
    Alg. 2 with the clipping ``c(k) = k^{1/4}`` of its stabilised form; the defaults are the paper's and
    optax's ``contrib.adopt``'s.

    ``clip_value_fn`` is a Python function of the step count ``k`` (an array), not a hyperparameter: it is
    part of the program, and another function is another transform.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3 (the paper's experiments).
      b1: ``β1``, in [0, 1); 0.9 (paper).
      b2: ``β2``, in [0, 1); 0.9999 (paper).
      eps: ``ε``, the smallest root divided by, ≥ 0; 1e-6 (paper).
      nesterov: whether to step along the Nesterov look-ahead of the average; False.
      use_clipping: whether ``u_t`` is clipped; True (paper).
      clip_value_fn: ``c``, the clipping bound as a function of ``k``; ``k^{1/4}`` (paper).
      state_dtype: dtype of the moments; default each param's own.

    Examples:
      The first step moves nothing; the second steps by ``η (1 - β1)`` along ``sign(g)`` (``g`` unchanged):

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.adopt(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> print(updates)
      [-0.  0.]
      >>> updates, state = tx.update(grads, state)
      >>> print(updates)
      [-0.01  0.01]
    """

    def rule(g, m, v, *, t, learning_rate, b1, b2, eps):
        first = t == 1
        u = g / jnp.maximum(jnp.sqrt(v), eps)
        if use_clipping:
            bound = clip_value_fn(t - 1)
            u = jnp.clip(u, -bound, bound)
        # At the first step ``v`` is still 0: ``u`` is not used, and the moment stays at 0.
        m = jnp.where(first, m, b1 * m + (1 - b1) * u)
        direction = b1 * m + (1 - b1) * u if nesterov else m
        v = jnp.where(first, g * g, b2 * v + (1 - b2) * g * g)
        return -learning_rate * jnp.where(first, 0, direction), (m, v)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps}
    return leafwise("adopt", rule, hp, ("mu", "nu"), state_dtype=state_dtype, nonnegative_slots=("nu",))


def _warmed_up(t, alpha, b3, b1, warmup):
    """AdEMAMix's ``α(t)`` and ``β3(t)`` over ``T = warmup`` steps; the constants themselves where ``T = 0``.

    ``α(t) = min(t α / T, α)``, ``β3(t) = min(exp(ln β1 ln β3 / ((1 - t/T) ln β3 + (t/T) ln β1)), β3)``: the
    slow average's half-life grows linearly in ``t`` from ``β1``'s to ``β3``'s.
    """
    on = warmup > 0
    frac = t / jnp.where(on, warmup, 1)
    log_b1, log_b3 = jnp.log(b1), jnp.log(b3)
    denominator = (1 - frac) * log_b3 + frac * log_b1
    b3_t = jnp.minimum(jnp.exp(log_b1 * log_b3 / jnp.where(on, denominator, 1)), b3)
    return jnp.where(on, jnp.minimum(frac * alpha, alpha), alpha), jnp.where(on, b3_t, b3)


def ademamix(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    alpha_b3_warmup: ScalarOrSchedule = 0.0,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """AdEMAMix: Adam whose step adds a slow average of the gradient to the fast one.

    ``m1_t = β1 m1_{t-1} + (1 - β1) g_t``, ``m2_t = β3(t) m2_{t-1} + (1 - β3(t)) g_t`` (not corrected),
    ``ν_t = β2 ν_{t-1} + (1 - β2) |g_t|²``,
    ``θ_{t+1} = θ_t - η ((m1_t / (1 - β1^t) + α(t) m2_t) / (√(ν_t / (1 - β2^t) + ε_root) + ε) + λ θ_t)``.
    Pagliardini, Ablin & Grangier, "The AdEMAMix optimizer: better, faster, older", 2024, Alg. 1, with its
    warm-up over ``T = alpha_b3_warmup`` steps: ``α(t) = min(t α / T, α)``,
    ``β3(t) = min(exp(ln β1 ln β3 / ((1 - t/T) ln β3 + (t/T) ln β1)), β3)``; ``T = 0`` (the default, and
    optax's ``contrib.ademamix``) takes ``α`` and ``β3`` from the start. The paper sets ``T`` to the run's
    length. ``λ`` applies to the leaves ``mask`` selects.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3.
      b1: ``β1``, the fast average's, in [0, 1) (in (0, β3] with a warm-up); 0.9 (paper).
      b2: ``β2``, the second moment's, in [0, 1); 0.999 (paper).
      b3: ``β3``, the slow average's, in [0, 1); 0.9999 (paper).
      alpha: ``α``, the slow average's weight, ≥ 0; 5 (optax; the paper takes 4 to 10).
      eps: ``ε`` added to the root, ≥ 0; 1e-8.
      eps_root: ``ε_root`` added under the root, ≥ 0; 0.
      weight_decay: ``λ``, ≥ 0; 0.
      mask: which leaves are decayed: None or True every leaf, False none, a tree of bools (a prefix of the
        params) or a function ``params -> tree of bools``.
      alpha_b3_warmup: ``T``, the warm-up's length in steps, ≥ 0 (data, as the others); 0, none.
      state_dtype: dtype of the averages and of the second moment; default each param's own.

    Examples:
      At the first step the fast average gives ``sign(g)`` and the slow one adds ``α (1 - β3) sign(g)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.ademamix(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.10005001  0.10005001]
    """

    def rule(
        g, m1, m2, nu, p, *, t, learning_rate, b1, b2, b3, alpha, eps, eps_root, weight_decay, alpha_b3_warmup, decayed
    ):
        alpha_t, b3_t = _warmed_up(t, alpha, b3, b1, alpha_b3_warmup)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b3_t * m2 + (1 - b3_t) * g
        nu = b2 * nu + (1 - b2) * abs_sq(g)
        u = (m1 / (1 - b1**t) + alpha_t * m2) / (jnp.sqrt(nu / (1 - b2**t) + eps_root) + eps)
        if decayed:
            u = u + weight_decay * p
        return -learning_rate * u, (m1, m2, nu)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "b3": b3, "alpha": alpha, "eps": eps}
    hp.update(eps_root=eps_root, weight_decay=weight_decay, alpha_b3_warmup=alpha_b3_warmup)
    return leafwise(
        "ademamix",
        rule,
        hp,
        ("m1", "m2", "nu"),
        state_dtype=state_dtype,
        with_params=True,
        masks={"decayed": mask},
        real_slots=("nu",),
        nonnegative_slots=("nu",),
        complex_leaves=True,
    )


def simplified_ademamix(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.99,
    b2: ScalarOrSchedule = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Simplified AdEMAMix: one momentum that sums the gradients, plus a weight on the current one.

    ``m_t = β1 m_{t-1} + g_t`` (a sum, not an average), ``ν_t = β2 ν_{t-1} + (1 - β2) |g_t|²``,
    ``θ_{t+1} = θ_t - η ((m_t + α g_t) / (√(ν_t / (1 - β2^t) + ε_root) + ε) + λ θ_t)``.
    Morwani, Vyas, Zhang & Kakade, "Connections between schedule-free optimizers, AdEMAMix, and accelerated SGD
    variants", 2025, simplified AdEMAMix; ``α = 0`` is Adam with the rate ``η / (1 - β1)`` and no correction of
    the first moment. The defaults are optax's ``contrib.simplified_ademamix``'s. ``λ`` applies to the leaves
    ``mask`` selects.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3 (the momentum sums ``1 / (1 - β1)`` gradients:
        a rate ``(1 - β1)`` times Adam's).
      b1: ``β1``, in [0, 1); 0.99.
      b2: ``β2``, in [0, 1); 0.95.
      alpha: ``α``, the current gradient's weight, ≥ 0; 0.
      eps: ``ε`` added to the root, ≥ 0; 1e-8.
      eps_root: ``ε_root`` added under the root, ≥ 0; 0.
      weight_decay: ``λ``, ≥ 0; 0.
      mask: which leaves are decayed: None or True every leaf, False none, a tree of bools (a prefix of the
        params) or a function ``params -> tree of bools``.
      state_dtype: dtype of the momentum and of the second moment; default each param's own.

    Examples:
      At the first step ``m_1 = g_1`` and ``ν̂_1 = g_1²``: the step is ``η (1 + α) sign(g)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.simplified_ademamix(learning_rate=0.1, alpha=1.0)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.2  0.2]
    """

    def rule(g, m, nu, p, *, t, learning_rate, b1, b2, alpha, eps, eps_root, weight_decay, decayed):
        m = b1 * m + g
        nu = b2 * nu + (1 - b2) * abs_sq(g)
        u = (m + alpha * g) / (jnp.sqrt(nu / (1 - b2**t) + eps_root) + eps)
        if decayed:
            u = u + weight_decay * p
        return -learning_rate * u, (m, nu)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "alpha": alpha, "eps": eps, "eps_root": eps_root}
    hp["weight_decay"] = weight_decay
    return leafwise(
        "simplified_ademamix",
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
