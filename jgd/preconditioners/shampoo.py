"""Shampoo: one preconditioner per tensor axis (Gupta et al. 2018), and distributed Shampoo (Anil et al. 2020)."""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp

from jgd import decompositions
from jgd.base import GradientTransformation
from jgd.preconditioners import blocks
from jgd.preconditioners.transform import preconditioned, statistics_dtype
from jgd.ranges import CLOSED_UNIT
from jgd.types import ScalarOrSchedule, StateDtype

_GRAFTS = ("adam", "sgd", None)


def inverse_roots(stats: tuple[jax.Array, ...], matrix_eps: jax.Array, exponent: int) -> tuple[jax.Array, ...]:
    """``(L + εI)^(-1/exponent)`` of each ``(blocks, b, b)`` factor, by ``eigh`` in the factors' dtype.

    The eigenvalues of ``L`` are clipped at 0 before ``ε`` is added: ``L`` is positive semidefinite, and rounding
    must not make a root of a negative number.
    """
    roots = []
    for factor in stats:
        w, v = decompositions.eigh(factor)
        scale = (jnp.maximum(w, 0) + matrix_eps.astype(w.dtype)) ** (-1.0 / exponent)
        roots.append(jnp.einsum("cij,cj,ckj->cik", v, scale, v))
    return tuple(roots)


def _graft_direction(g, nu, graft, keep, new, eps):
    """The graft's step direction ``D`` and its new second moment (AdaGrad's sum for β2 = 1, RMSprop's EMA below)."""
    if graft != "adam":
        return g, ()
    nu = keep * nu + new * g * g
    return g / (jnp.sqrt(nu) + eps), (nu,)


def _norm(x):
    return jnp.sqrt(jnp.sum(x * x))


def shampoo(
    learning_rate: ScalarOrSchedule = 1e-3,
    b2: ScalarOrSchedule = 1.0,
    matrix_eps: ScalarOrSchedule = 1e-6,
    momentum: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    eps: ScalarOrSchedule = 1e-8,
    *,
    graft: Literal["adam", "sgd"] | None = None,
    start_preconditioning_step: int = 1,
    precondition_every: int = 1,
    exponent_override: int | None = None,
    block_size: int | None = None,
    max_precond_dim: int = 10000,
    precondition_1d: bool = True,
    precision: Any = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Shampoo: the gradient multiplied on each axis by an inverse root of that axis' statistics.

    For a leaf of order k with gradient ``G_t`` (plus ``λ θ_{t-1}``, coupled L2 decay):
    ``L_i ← β2 L_i + w unfold_i(G_t) unfold_i(G_t)ᵀ`` for each preconditioned axis i (``w = 1`` for ``β2 = 1``, the
    paper's sum; ``w = 1 - β2`` below, an EMA), ``P_i = (L_i + ε_M I)^(-1/(2k))`` (eigendecomposition; recomputed
    every ``precondition_every`` steps from ``start_preconditioning_step``),
    ``U_t = G_t ×_1 P_1 ×_2 P_2 … ×_k P_k`` (``P_L G P_R`` for a matrix).
    Grafting takes the direction of ``U_t`` and the per-leaf norm of the graft's step ``D_t``:
    ``U_t ← U_t ‖D_t‖ / ‖U_t‖``, with ``D_t = G_t`` (``"sgd"``) or ``D_t = G_t / (√v_t + ε)``,
    ``v_t = β2 v_{t-1} + w G_t²`` (``"adam"``: Adam's second moment without bias correction, AdaGrad's sum for
    β2 = 1). Before ``start_preconditioning_step``, and on leaves without a factor, ``U_t = D_t``.
    Then ``m_t = μ m_{t-1} + U_t``, ``θ_t = θ_{t-1} - η m_t``.
    Gupta, Koren & Singer, "Shampoo: preconditioned stochastic tensor optimization", ICML 2018, Alg. 2;
    Anil, Gupta, Koren, Regan & Singer, "Scalable second order optimization for deep learning", arXiv 2020
    (the EMA, grafting, the delayed start, blocks and infrequent roots).

    The defaults are the paper's algorithm (no graft, a sum, a root every step, full-matrix AdaGrad for vectors)
    and pytorch-optimizer's ``Shampoo`` (``momentum=0``, coupled decay, ``preconditioning_compute_steps=1``),
    which this equals to rounding. What makes it usable at scale: ``precondition_every`` (roots under
    ``lax.cond``: other steps do no decomposition, only the statistics' update and one product per axis;
    on CPU, four 256 × 256 matrices, 5 ms against 27 ms with a root), ``block_size`` (block-diagonal factors of
    ``block_size × block_size``) or ``max_precond_dim`` (identity on longer axes), ``graft`` with a
    ``start_preconditioning_step``, and statistics in float32 whatever the params' dtype.

    Args:
      learning_rate: ``η`` ≥ 0, a float, an array or a schedule; 1e-3 (pytorch-optimizer).
      b2: ``β2`` in [0, 1], the statistics' decay; 1 is the paper's sum (default).
      matrix_eps: ``ε_M`` ≥ 0 added to each factor before its root; 1e-6 (pytorch-optimizer's ``matrix_eps``).
      momentum: ``μ`` in [0, 1), heavy-ball momentum on the preconditioned step; 0.
      weight_decay: ``λ`` ≥ 0, coupled (added to the gradient before the statistics, as the paper's
        regulariser and pytorch-optimizer do); 0.
      eps: ``ε`` ≥ 0 of the ``"adam"`` graft's denominator; 1e-8.
      graft: ``"adam"``, ``"sgd"`` or ``None`` (no grafting; default, as the paper). A Python argument.
      start_preconditioning_step: the first step (1-based) that uses the preconditioner; the graft's step
        before. An int ≥ 1; 1.
      precondition_every: roots every this many steps (an int ≥ 1, a Python argument); 1.
      exponent_override: ``p`` in ``P_i = (L_i + ε_M I)^(-1/p)``, an int ≥ 1; ``None`` is ``2k`` (the paper).
      block_size: split axes longer than this into blocks with a factor each (an int ≥ 1), or ``None``.
      max_precond_dim: without blocks, axes longer than this get no factor (identity); 10000.
      precondition_1d: whether vectors get a factor (full-matrix AdaGrad, the paper); else their step is the
        graft's. True.
      precision: the factors' dtype (float32 or float64); ``None`` is float32, or float64 under x64.
      state_dtype: the dtype of the slots ``mu`` (and ``nu`` for ``graft="adam"``); default each param's own.

    Examples:
      A 2 × 2 matrix keeps two 2 × 2 factors (held as one block each); the first step with the default sum is
      ``η (G Gᵀ + ε_M I)^(-1/4) G (GᵀG + ε_M I)^(-1/4)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
      >>> tx = jgd.shampoo(learning_rate=0.1)
      >>> state = tx.init(params)
      >>> print([x.shape for x in state.factors["stats"]["w"]])
      [(1, 2, 2), (1, 2, 2)]
      >>> grads = {"w": jnp.array([[2.0, 0.0], [0.0, 0.5]]), "b": jnp.array([1.0, -1.0])}
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates["w"].round(4))
      [[-0.1 -0. ]
       [-0. -0.1]]
    """
    if graft not in _GRAFTS:
        raise ValueError(f"graft must be 'adam', 'sgd' or None, got {graft!r}")
    blocks.check_positive_int("start_preconditioning_step", start_preconditioning_step)
    blocks.check_positive_int("precondition_every", precondition_every)
    blocks.check_positive_int("exponent_override", exponent_override, allow_none=True)
    blocks.check_positive_int("block_size", block_size, allow_none=True)
    blocks.check_positive_int("max_precond_dim", max_precond_dim)
    dtype = statistics_dtype(precision)

    def plan(shape):
        return blocks.plan_axes(
            shape, block_size=block_size, max_precond_dim=max_precond_dim, precondition_1d=precondition_1d
        )

    def factor_init(p):
        axes = [a for a in plan(jnp.shape(p)) if a is not None]
        return {
            "stats": tuple(jnp.zeros(a.shape, dtype) for a in axes),
            "roots": tuple(blocks.identities(a, dtype) for a in axes),
        }

    def step(g, p, slots, factors, *, t, learning_rate, b2, matrix_eps, momentum, weight_decay, eps):
        mu, *nu = slots
        g = g + weight_decay * p
        new = jnp.where(b2 == 1, 1, 1 - b2)
        direction, nu = _graft_direction(g, nu[0] if nu else None, graft, b2, new, eps)
        axes = [(i, a) for i, a in enumerate(plan(g.shape)) if a is not None]
        stats, roots = factors["stats"], factors["roots"]
        if axes:
            gs = g.astype(dtype)
            stats = tuple(
                b2.astype(dtype) * s + new.astype(dtype) * blocks.gram(gs, i, a) for (i, a), s in zip(axes, stats)
            )
            exponent = exponent_override or 2 * g.ndim
            refresh = blocks.due(t, precondition_every, start_preconditioning_step - precondition_every)
            roots = blocks.refresh(refresh, inverse_roots, roots, stats, matrix_eps, exponent)
            for (i, a), root in zip(axes, roots):
                gs = blocks.mode_product(gs, i, a, root)
            preconditioned_step = gs.astype(g.dtype)
            if graft is not None:
                size = _norm(preconditioned_step)
                preconditioned_step = preconditioned_step * jnp.where(
                    size > 0, _norm(direction) / jnp.where(size > 0, size, 1), 0
                )
            direction = jnp.where(t >= start_preconditioning_step, preconditioned_step, direction)
        mu = momentum * mu + direction
        return -learning_rate * mu, (mu, *nu), {"stats": stats, "roots": roots}

    hyperparams = {"learning_rate": learning_rate, "b2": b2, "matrix_eps": matrix_eps, "momentum": momentum}
    hyperparams.update(weight_decay=weight_decay, eps=eps)
    slots = ("mu", "nu") if graft == "adam" else ("mu",)
    return preconditioned(
        "shampoo", step, hyperparams, slots, factor_init, state_dtype=state_dtype, narrowed={"b2": CLOSED_UNIT}
    )
