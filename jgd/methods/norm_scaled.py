"""Methods that scale each leaf by a norm of the whole leaf: NovoGrad and Fromage."""

from __future__ import annotations

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.types import ScalarOrSchedule, StateDtype


def _leaf_scalar(p, dtype):
    """One number per leaf (a layer's second moment)."""
    return jnp.zeros((), dtype)


def novograd(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.98,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """NovoGrad: a second moment per leaf (layer), of the gradient's norm, and momentum on the normalised step.

    ``v_1 = ‖g_1‖²``, ``v_t = β2 v_{t-1} + (1 - β2) ‖g_t‖²``, the norm over the whole leaf;
    ``m_t = β1 m_{t-1} + g_t / (√(v_t + ε_root) + ε) + λ θ_t`` (``m_0 = 0``), ``θ_{t+1} = θ_t - η m_t``.
    Ginsburg et al., "Stochastic gradient methods with layer-wise adaptive moments for training of deep
    networks", 2019, Alg. 1 (its momentum is not an average: no ``1 - β1``, no bias correction). The defaults
    are the paper's experiments; optax's ``novograd`` defaults to ``b1=0.9, b2=0.25, eps=1e-6``.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-2.
      b1: ``β1``, in [0, 1); 0.95 (paper).
      b2: ``β2``, in [0, 1); 0.98 (paper).
      eps: ``ε`` added to the root, ≥ 0; 1e-8.
      eps_root: ``ε_root`` added under the root, ≥ 0; 0.
      weight_decay: ``λ``, ≥ 0; 0 (the paper sets it per task, e.g. 0.001).
      state_dtype: dtype of the momentum and of the per-leaf second moment; default each param's own.

    Examples:
      The second moment is one number per leaf, ``‖g‖² = 1.25``, and the first step is ``-η g / ‖g‖``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.novograd(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(state.slots["nu"], updates)
      1.25 [-0.04472136  0.08944272]
    """

    def rule(g, m, v, p, *, t, learning_rate, b1, b2, eps, eps_root, weight_decay):
        norm_sq = jnp.sum(abs_sq(g))
        v = jnp.where(t == 1, norm_sq, b2 * v + (1 - b2) * norm_sq)
        m = b1 * m + g / (jnp.sqrt(v + eps_root) + eps) + weight_decay * p
        return -learning_rate * m, (m, v)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    hp["weight_decay"] = weight_decay
    return leafwise(
        "novograd",
        rule,
        hp,
        ("mu", "nu"),
        state_dtype=state_dtype,
        with_params=True,
        slot_init={"nu": _leaf_scalar},
        real_slots=("nu",),
        nonnegative_slots=("nu",),
        complex_leaves=True,
    )


def _safe_norm(x, min_norm):
    """``max(‖x‖, min_norm)``."""
    return jnp.maximum(jnp.linalg.norm(x), min_norm)


def fromage(learning_rate: ScalarOrSchedule = 1e-2, min_norm: ScalarOrSchedule = 1e-6) -> GradientTransformation:
    """Fromage: a step relative to the leaf's norm, then a shrink that keeps the norm from growing.

    ``θ_{t+1} = (θ_t - η (‖θ_t‖ / ‖g_t‖) g_t) / √(1 + η²)``, each norm over the whole leaf and at least
    ``min_norm``; where ``min_norm = 0`` and a norm is 0, the ratio is 1.
    Bernstein et al., "On the distance between two neural networks and the stability of learning",
    NeurIPS 2020; ``min_norm`` is optax's ``fromage``'s guard.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-2 (paper).
      min_norm: the smallest norm taken, ≥ 0; 1e-6.

    Examples:
      Here ``‖θ‖ = 2‖g‖``: the step is ``2η g`` and the result is shrunk by ``√(1 + η²)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.fromage(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.10446662  0.20893323]
    """

    def rule(g, p, *, learning_rate, min_norm):
        p_norm, g_norm = _safe_norm(p, min_norm), _safe_norm(g, min_norm)
        zero = (p_norm == 0) | (g_norm == 0)
        ratio = jnp.where(zero, 1, p_norm / jnp.where(zero, 1, g_norm))
        shrink = 1 / jnp.sqrt(1 + learning_rate**2)
        return shrink * (p - learning_rate * ratio * g) - p, ()

    return leafwise(
        "fromage", rule, {"learning_rate": learning_rate, "min_norm": min_norm}, with_params=True, complex_leaves=True
    )
