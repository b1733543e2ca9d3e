"""Per-parameter adaptive step sizes: Adagrad, Adadelta and RMSprop (seeds 000-003)."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.types import ScalarOrSchedule, StateDtype


def adagrad(
    learning_rate: ScalarOrSchedule = 0.01,
    eps: ScalarOrSchedule = 1e-7,
    eps_root: ScalarOrSchedule = 0.0,
    initial_accumulator: ScalarOrSchedule = 0.0,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Adagrad: ``G_t = G_0 + Σ_{τ≤t} g_τ²``, ``θ_{t+1} = θ_t - η g_t / (√(G_t + ε_root) + ε)``.

    Duchi, Hazan & Singer, "Adaptive subgradient methods for online learning
    and stochastic optimization", JMLR 2011: ``G_0 = 0`` and ε (their δ)
    outside the root, the defaults here. Seeds 000 and 003 put ε inside the
    root: ``eps=0, eps_root=ε``. Keras and optax start from
    ``initial_accumulator=0.1``. The state keeps ``Σ g²``; ``G_0`` stays a
    hyperparameter. The step is computed in at least float32 and no slot's dtype
    changes across updates.

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``); 0.01 as torch's
        ``Adagrad`` (the paper leaves η to the user).
      eps, eps_root: ε (the paper's δ) outside and inside the root, as for the learning rate; 1e-7 (Keras,
        optax) and 0.
      initial_accumulator: ``G_0 ≥ 0``, as for the learning rate; 0 as the paper (Keras and optax: 0.1).
      state_dtype: the dtype of ``sum_of_squares`` (``{"sum_of_squares": jnp.bfloat16}``):
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      The state keeps the sum of squared gradients ``G``; the first step divides ``g`` by ``√G = |g|``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.adagrad(learning_rate=0.1)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print(state.slots["sum_of_squares"])
      [0.25 1.  ]
      >>> print(updates)
      [-0.09999998  0.09999999]
    """

    def rule(g, sum_sq, *, learning_rate, eps, eps_root, initial_accumulator):
        sum_sq = sum_sq + abs_sq(g)
        return -learning_rate * g / (jnp.sqrt(initial_accumulator + sum_sq + eps_root) + eps), (sum_sq,)

    hp = {"learning_rate": learning_rate, "eps": eps, "eps_root": eps_root, "initial_accumulator": initial_accumulator}
    slots = ("sum_of_squares",)
    return leafwise(
        "adagrad",
        rule,
        hp,
        slots,
        state_dtype=state_dtype,
        real_slots=slots,
        nonnegative_slots=slots,
        complex_leaves=True,
    )


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-6,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Adadelta: a step whose units match the parameters'.

    ``E[g²]_t = ρ E[g²]_{t-1} + (1 - ρ) g_t²``,
    ``Δθ_t = - RMS[Δθ]_{t-1} / RMS[g]_t · g_t`` with ``RMS[y] = √(E[y²] + ε)``,
    ``E[Δθ²]_t = ρ E[Δθ²]_{t-1} + (1 - ρ) Δθ_t²``, ``θ_{t+1} = θ_t + η Δθ_t``.
    Zeiler, "ADADELTA: an adaptive learning rate method", 2012 (ρ = 0.95,
    ε = 1e-6 and no learning rate, i.e. η = 1). The step is computed in at least
    float32 and no slot's dtype changes across updates.

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``); 1.0 as the paper
        (which has none) and torch's ``Adadelta``.
      rho: ρ, as for the learning rate; 0.95 as the paper.
      eps: ε inside both roots, as for the learning rate; 1e-6 as the paper.
      state_dtype: the dtype of ``mean_square_grad`` and ``mean_square_step``
        (``{"mean_square_grad": jnp.bfloat16}``): one dtype, or a mapping per slot name; default each
        param's own dtype.

    Examples:
      No learning rate to tune: the step is ``RMS[Δθ] / RMS[g] · g``, both running averages kept in the
      state:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.adadelta()
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(sorted(state.slots))
      ['mean_square_grad', 'mean_square_step']
      >>> print(state.slots["mean_square_grad"])
      [0.0125     0.05000001]
      >>> print(updates)
      [-0.00447196  0.00447209]

      After one step ``E[g²] = 0.05 g²`` and the update is ``−√ε / √(E[g²] + ε) · g``, about ``−√(1e-6 /
      0.05) · sign(g)``.
    """

    def rule(g, sq_grad, sq_step, *, learning_rate, rho, eps):
        sq_grad = rho * sq_grad + (1 - rho) * g * g
        step = -jnp.sqrt((sq_step + eps) / (sq_grad + eps)) * g  # one root: XLA keeps two as separate passes
        sq_step = rho * sq_step + (1 - rho) * step * step
        return learning_rate * step, (sq_grad, sq_step)

    hp = {"learning_rate": learning_rate, "rho": rho, "eps": eps}
    slots = ("mean_square_grad", "mean_square_step")
    return leafwise("adadelta", rule, hp, slots, state_dtype=state_dtype, nonnegative_slots=slots)


def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-3,
    decay: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    centered: bool = False,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    momentum_form: Literal["velocity", "trace"] = "velocity",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """RMSprop: ``E[g²]_t = ρ E[g²]_{t-1} + (1 - ρ) g_t²``, ``θ_{t+1} = θ_t - η g_t / (√(E[g²]_t + ε_root) + ε)``.

    Tieleman & Hinton, "Lecture 6.5 - RMSProp", 2012 (ρ = 0.9; seed 000 writes
    0.9 / 0.1 and ε inside the root: ``eps=0, eps_root=ε``).
    ``centered`` divides by the variance instead, ``√(E[g²] - E[g]² + ε_root) + ε``
    (Graves, "Generating sequences with recurrent neural networks", 2013).
    ``momentum=μ`` accumulates the scaled step, ``v_t = μ v_{t-1} + η g_t / d_t``,
    ``θ_{t+1} = θ_t - v_t`` (``- (μ v_t + η g_t / d_t)`` with ``nesterov``), as seed 002 suggests
    and Keras's ``RMSprop(momentum=...)`` writes it. ``momentum_form="trace"`` keeps the rate
    outside, as torch's ``RMSprop(momentum=...)``: ``v_t = μ v_{t-1} + g_t / d_t``,
    ``θ_{t+1} = θ_t - η v_t`` (``- η (μ v_t + g_t / d_t)`` with ``nesterov``).
    Keras puts ε inside the root (``eps=0, eps_root=ε``), torch outside (``eps=ε``).

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``).
      decay: ρ, as for the learning rate; 0.9 as Tieleman & Hinton.
      eps, eps_root: ε outside and inside the root, as for the learning rate.
      centered: divide by the centered second moment (Graves).
      momentum: μ, as for the learning rate; None (default) for no momentum.
      nesterov: Nesterov's form of the momentum.
      momentum_form: ``"velocity"`` (default, rate inside, Keras) or ``"trace"`` (rate outside, torch).
      state_dtype: the dtype of ``mean_square`` (and ``mean`` if centered, ``velocity`` with momentum):
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      The state keeps the running mean of ``g²``; after one step it is ``(1 − ρ) g²``, so the update is
      ``−η g / √(0.1 g²) = −η √10 sign(g)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.rmsprop(learning_rate=0.01, decay=0.9)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(state.slots["mean_square"])
      [0.02500001 0.10000002]
      >>> print(updates)
      [-0.03162277  0.03162277]

      ``centered=True`` also keeps the mean gradient, ``momentum=`` a velocity:

      >>> tx = jgd.rmsprop(0.01, centered=True, momentum=0.9)
      >>> print(sorted(tx.init(params).slots))
      ['mean', 'mean_square', 'velocity']
    """
    if nesterov and momentum is None:
        raise ValueError("nesterov=True needs a momentum value")
    if momentum_form not in ("velocity", "trace"):
        raise ValueError(f"momentum_form must be 'velocity' or 'trace', got {momentum_form!r}")
    rate_outside = momentum_form == "trace"
    slots = ("mean_square",) + (("mean",) if centered else ()) + (("velocity",) if momentum is not None else ())

    def scaled(g, sq, rest, decay, eps, eps_root):
        """``g / d_t`` and the new second moments (``E[g²]``, and ``E[g]`` if centered)."""
        sq = decay * sq + (1 - decay) * abs_sq(g)
        if not centered:
            return g / (jnp.sqrt(sq + eps_root) + eps), [sq]
        mean = decay * rest[0] + (1 - decay) * g
        # E[g²] ≥ |E[g]|² holds for the exact averages, not for rounded or quantized ones: clamp at 0, not NaN.
        return g / (jnp.sqrt(jnp.maximum(sq - abs_sq(mean), 0) + eps_root) + eps), [sq, mean]

    def rule(g, sq, *rest, learning_rate, decay, eps, eps_root):
        step, new = scaled(g, sq, rest, decay, eps, eps_root)
        return -learning_rate * step, tuple(new)

    def momentum_rule(g, sq, *rest, learning_rate, decay, eps, eps_root, momentum):
        step, new = scaled(g, sq, rest, decay, eps, eps_root)
        if not rate_outside:
            step = learning_rate * step
        v = momentum * rest[-1] + step
        direction = momentum * v + step if nesterov else v
        return -(learning_rate * direction if rate_outside else direction), (*new, v)

    hp = {"learning_rate": learning_rate, "decay": decay, "eps": eps, "eps_root": eps_root}
    if momentum is not None:
        hp["momentum"] = momentum
    real = ("mean_square",)
    chosen = rule if momentum is None else momentum_rule
    return leafwise(
        "rmsprop",
        chosen,
        hp,
        slots,
        state_dtype=state_dtype,
        real_slots=real,
        nonnegative_slots=real,
        complex_leaves=True,
    )
