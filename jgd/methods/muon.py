"""Muon: momentum orthogonalised by Newton–Schulz iterations, on matrices; Adam on the other leaves."""

from __future__ import annotations

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.types import Mask, ScalarOrSchedule, StateDtype


def orthogonalize(x, coefficients=(3.4445, -4.775, 2.0315), steps: int = 5, eps: float = 1e-8):
    """The nearest semi-orthogonal ``U Vᵀ`` of ``x = U S Vᵀ``, approximately, over the last two axes (others batch).

    ``X_0 = x / (‖x‖_F + ε)``, ``A = X Xᵀ``, ``X_{k+1} = a X_k + (b A + c A²) X_k``, on the wide
    orientation of the matrix (transposed when it has more rows than columns).
    """
    wide = x.shape[-2] <= x.shape[-1]
    x = x if wide else jnp.swapaxes(x, -1, -2)
    x = x / (jnp.linalg.norm(x, axis=(-2, -1), keepdims=True) + eps)
    a, b, c = coefficients
    for _ in range(steps):
        gram = x @ jnp.swapaxes(x, -1, -2)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else jnp.swapaxes(x, -1, -2)


def muon(
    learning_rate: ScalarOrSchedule = 0.02,
    ns_coeffs: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
    ns_steps: int = 5,
    beta: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    *,
    nesterov: bool = True,
    bias_correction: bool = False,
    stacked_matrices: bool = False,
    adam_b1: ScalarOrSchedule = 0.9,
    adam_b2: ScalarOrSchedule = 0.999,
    adam_eps_root: ScalarOrSchedule = 0.0,
    adam_weight_decay: ScalarOrSchedule = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Muon on 2-D leaves (n × m, the first axis the input), Adam on the others.

    ``m_t = β m_{t-1} + (1 - β) g_t``, ``m̃_t = β m_t + (1 - β) g_t`` (Nesterov; ``m_t`` without),
    ``O_t = NS₅(m̃_t)`` (:func:`orthogonalize`),
    ``θ_{t+1} = θ_t - η (√max(1, m / n) O_t + λ θ_t)``.
    Jordan et al., "Muon: an optimizer for hidden layers in neural networks", 2024 (blog and code).
    ``bias_correction=True`` divides as optax does, ``m̃_t = β m_t / (1 - β^{t+1}) + (1 - β) g_t / (1 - β^t)``
    (``m_t / (1 - β^t)`` without Nesterov): only the weight of ``g_t`` against ``m_t`` changes, since
    ``NS`` first normalises. ``stacked_matrices=True`` takes leaves of three or more axes as stacks of
    matrices over their last two axes (optax: ``MuonDimensionNumbers`` on those axes); by default
    they go to Adam. The other leaves take Adam with decoupled weight decay, ``m̂`` in the same
    Nesterov or plain form: ``θ_{t+1} = θ_t - η_a (m̂_t / (√(v̂_t + ε_root) + ε) + λ_a θ_t)``.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 0.02 (Jordan's code).
      ns_coeffs: ``(a, b, c)`` of the Newton–Schulz quintic; (3.4445, -4.775, 2.0315) (Jordan).
      ns_steps: Newton–Schulz iterations; 5 (Jordan).
      beta: ``β``, in [0, 1); 0.95 (Jordan).
      eps: ``ε`` of the normalisation and of Adam's denominator, ≥ 0; 1e-8 (Jordan: 1e-7).
      weight_decay: ``λ`` on the matrices, ≥ 0; 0.
      weight_decay_mask: which matrices are decayed (a bool, a tree of bools or ``params -> tree of bools``).
      nesterov: whether ``m̃`` (and Adam's ``m̂``) take the Nesterov form; True (Jordan).
      bias_correction: optax's bias-corrected momentum (above); False (Jordan).
      stacked_matrices: whether leaves of ≥ 3 axes are stacks of matrices (above).
      adam_b1: Adam's ``β1``, in [0, 1); 0.9.
      adam_b2: Adam's ``β2``, in [0, 1); 0.999.
      adam_eps_root: Adam's ``ε_root``, ≥ 0; 0.
      adam_weight_decay: ``λ_a``, ≥ 0; 0.
      adam_learning_rate: ``η_a``; ``None`` for ``η``.
      state_dtype: dtype of the moments; default each param's own.
    """
    hp = {"learning_rate": learning_rate, "beta": beta, "eps": eps, "weight_decay": weight_decay}
    hp.update(adam_b1=adam_b1, adam_b2=adam_b2, adam_eps_root=adam_eps_root, adam_weight_decay=adam_weight_decay)
    if adam_learning_rate is not None:
        hp["adam_learning_rate"] = adam_learning_rate

    def is_matrix(p):
        return p.ndim == 2 or (stacked_matrices and p.ndim > 2)

    def momentum(g, m, b, t):
        m = b * m + (1 - b) * g
        if bias_correction:
            m_hat = b * m / (1 - b ** (t + 1)) + (1 - b) * g / (1 - b**t) if nesterov else m / (1 - b**t)
        else:
            m_hat = b * m + (1 - b) * g if nesterov else m
        return m, m_hat

    def rule(g, m, v, p, *, t, learning_rate, beta, eps, weight_decay, decayed, **adam):
        if is_matrix(p):
            m, m_hat = momentum(g, m, beta, t)
            u = orthogonalize(m_hat, ns_coeffs, ns_steps, eps) * jnp.sqrt(jnp.maximum(1, p.shape[-1] / p.shape[-2]))
            return -learning_rate * (u + weight_decay * p if decayed else u), (m, v)
        b1, b2 = adam["adam_b1"], adam["adam_b2"]
        m = b1 * m + (1 - b1) * g
        m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t) if nesterov else m / (1 - b1**t)
        v = b2 * v + (1 - b2) * g * g
        u = m_hat / (jnp.sqrt(v / (1 - b2**t) + adam["adam_eps_root"]) + eps) + adam["adam_weight_decay"] * p
        return -adam.get("adam_learning_rate", learning_rate) * u, (m, v)

    def init_nu(p, dtype):  # Adam's second moment; a placeholder on the matrices
        return jnp.zeros((1,), dtype) if is_matrix(p) else jnp.zeros_like(p, dtype=dtype)

    return leafwise(
        "muon",
        rule,
        hp,
        ("mu", "nu"),
        state_dtype=state_dtype,
        with_params=True,
        slot_init={"nu": init_nu},
        masks={"decayed": weight_decay_mask},
    )
