"""SOAP: Adam in the eigenbasis of Shampoo's statistics (Vyas et al. 2024)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jgd import decompositions
from jgd.base import GradientTransformation
from jgd.preconditioners import blocks
from jgd.preconditioners.transform import preconditioned, statistics_dtype
from jgd.types import ScalarOrSchedule, StateDtype


def rotate(x: jax.Array, axes, bases, *, back: bool = False) -> jax.Array:
    """``x ×_i Q_iᵀ`` over the preconditioned axes (into the eigenbasis), or ``x ×_i Q_i`` with ``back``."""
    for (i, a), q in zip(axes, bases):
        x = blocks.mode_product(x, i, a, q, transpose=not back)
    return x


def _shifted(stats, axes):
    """Each factor with -1 on the diagonal at its padded entries: their eigenvectors stay apart from the axis' own
    (eigenvalue -1 < 0 ≤ any of ``L``'s), sorted last, so padding never mixes into a basis."""
    return [
        s - blocks.padding(a, s.dtype)[:, :, None] * jnp.eye(a.block, dtype=s.dtype) for (_, a), s in zip(axes, stats)
    ]


def eigenbases(stats, axes, nu):
    """The first bases: the eigenvectors of each ``L_i``, eigenvalues descending (the authors' ``eigh`` + flip)."""
    return tuple(jnp.flip(decompositions.eigh(s)[1], axis=-1) for s in _shifted(stats, axes)), nu


def power_qr(stats, axes, nu, bases):
    """One power iteration and QR per factor, ``V``'s axis permuted as the estimated eigenvalues sort.

    ``λ̂ = diag(Qᵀ L Q)``; ``π`` sorts ``λ̂`` descending; ``Q ← qr((L Q)[:, π])``; ``V ← V`` with axis i in
    the order ``π`` (Vyas et al. 2024, Alg. 4).
    """
    new = []
    for (i, a), s, q in zip(axes, _shifted(stats, axes), bases):
        lq = s @ q
        order = jnp.argsort(-jnp.sum(q * lq, axis=-2), axis=-1)  # (count, block)
        v = blocks.to_blocks(nu, i, a)
        nu = blocks.from_blocks(jnp.take_along_axis(v, order[:, :, None], axis=1), i, a, nu.shape)
        new.append(decompositions.qr_q(jnp.take_along_axis(lq, order[:, None, :], axis=2)))
    return tuple(new), nu


def soap(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: ScalarOrSchedule = 0.95,
    b2: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-2,
    *,
    shampoo_beta: ScalarOrSchedule | None = None,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    block_size: int | None = None,
    precondition_1d: bool = False,
    correct_bias: bool = True,
    precision: Any = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """SOAP: Adam run in the eigenbasis of Shampoo's factors, the basis refreshed by a power iteration.

    ``L_i ← β_s L_i + (1 - β_s) unfold_i(G_t) unfold_i(G_t)ᵀ`` for each preconditioned axis i; the first step only
    builds ``L_i`` and ``Q_i = eigvecs(L_i)`` (eigenvalues descending) and does not move. At step ``t ≥ 2``, with
    ``k = t - 1``: ``G' = G_t ×_i Q_iᵀ`` (into the eigenbasis), ``m_t = β1 m_{t-1} + (1 - β1) G_t`` (original basis),
    ``v_t = β2 v_{t-1} + (1 - β2) G'²`` (eigenbasis), ``U = ((m_t ×_i Q_iᵀ) / (√v_t + ε)) ×_i Q_i``,
    ``θ' = θ_{t-1} - η √(1 - β2^k) / (1 - β1^k) U``, ``θ_t = θ' (1 - η λ)`` (decoupled decay after the update); then
    ``L_i`` is updated with ``G_t``, and where ``k`` is a multiple of ``precondition_frequency`` each ``Q_i`` takes one
    power iteration and a QR, ``v``'s axis i permuted as the estimated eigenvalues sort (``soap.power_qr``).
    Leaves without a factor (vectors, unless ``precondition_1d``) take exactly Adam's step with that step size.
    Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson & Kakade, "SOAP: improving and stabilizing
    Shampoo using Adam", ICLR 2025 (arXiv 2024), Alg. 3 and 4, as the authors' code (and pytorch-optimizer's
    ``SOAP``) runs it. heavyball's ``SOAP`` differs (debiased betas, ``max(√v̂, ε)``, decay before the update,
    another QR schedule) and is not reproduced.

    The eigendecomposition and the QRs run under ``lax.cond``, on the first step and every
    ``precondition_frequency`` steps; other steps do no decomposition, only the statistics' update and three
    rotations per axis (on CPU, four 256 × 256 matrices, 12 ms against 71 ms with a QR). They run in
    ``precision`` (float32, or float64 under x64), whatever the params' dtype; pytorch-optimizer runs its QR in
    float32 always.

    Args:
      learning_rate: ``η`` ≥ 0, a float, an array or a schedule; 3e-3 (the authors').
      b1: ``β1`` in [0, 1); 0.95 (the authors').
      b2: ``β2`` in [0, 1); 0.95 (the authors').
      eps: ``ε`` ≥ 0, added to ``√v_t`` (not bias corrected); 1e-8.
      weight_decay: ``λ`` ≥ 0, decoupled, multiplied by ``η``; 1e-2 (the authors').
      shampoo_beta: ``β_s`` in [0, 1), the factors' decay; ``None`` (default) follows ``b2``.
      precondition_frequency: refresh the eigenbases every this many steps (an int ≥ 1, a Python argument); 10.
      max_precond_dim: without blocks, axes longer than this get no factor (identity); 10000 (the authors').
      block_size: split axes longer than this into blocks with a factor each (an int ≥ 1), or ``None``.
      precondition_1d: whether vectors get a factor; False (the authors').
      correct_bias: whether the step size carries ``√(1 - β2^k) / (1 - β1^k)``; True.
      precision: the factors' dtype (float32 or float64); ``None`` is float32, or float64 under x64.
      state_dtype: the dtype of the slots ``mu`` and ``nu`` (both shaped like their param); default each param's.

    Examples:
      The first update builds the factors and does not move; the second is Adam's first step in the eigenbasis,
      here of size ``η`` along the gradient's singular directions:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.zeros((2, 2))}
      >>> tx = jgd.soap(learning_rate=0.1, weight_decay=0.0)
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.array([[2.0, 0.0], [0.0, 0.5]])}
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates["w"].tolist())
      [[0.0, 0.0], [0.0, 0.0]]
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates["w"].diagonal(), abs(float(updates["w"][0, 1])) < 1e-6)
      [-0.1 -0.1] True
    """
    blocks.check_positive_int("precondition_frequency", precondition_frequency)
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
            "bases": tuple(blocks.identities(a, dtype) for a in axes),
        }

    def step(g, p, slots, factors, *, t, learning_rate, b1, b2, eps, weight_decay, shampoo_beta=None):
        mu, nu = slots
        axes = [(i, a) for i, a in enumerate(plan(g.shape)) if a is not None]
        stats, bases = factors["stats"], factors["bases"]
        gs = g.astype(dtype)
        first, k = t == 1, jnp.maximum(t - 1, 1).astype(g.dtype)
        new_mu = b1 * mu + (1 - b1) * g
        new_nu = b2 * nu + (1 - b2) * jnp.square(rotate(gs, axes, bases).astype(g.dtype))
        size = learning_rate * jnp.sqrt(1 - b2**k) / (1 - b1**k) if correct_bias else learning_rate
        direction = rotate(
            rotate(new_mu.astype(dtype), axes, bases) / (jnp.sqrt(new_nu) + eps).astype(dtype), axes, bases, back=True
        )
        update = -size * direction.astype(g.dtype)
        update = update - learning_rate * weight_decay * (p + update)  # the decay multiplies the updated param
        update, mu, nu = (
            jnp.where(first, old, new) for old, new in ((jnp.zeros_like(g), update), (mu, new_mu), (nu, new_nu))
        )
        if axes:
            beta = (b2 if shampoo_beta is None else shampoo_beta).astype(dtype)
            stats = tuple(beta * s + (1 - beta) * blocks.gram(gs, i, a) for (i, a), s in zip(axes, stats))
            branch = jnp.where(first, 1, jnp.where((t - 1) % precondition_frequency == 0, 2, 0))
            keep = lambda: (tuple(bases), nu)  # noqa: E731
            found = lambda: eigenbases(stats, axes, nu)  # noqa: E731
            refreshed = lambda: power_qr(stats, axes, nu, bases)  # noqa: E731
            bases, nu = jax.lax.switch(branch, [keep, found, refreshed])
        return update, (mu, nu), {"stats": stats, "bases": tuple(bases)}

    hyperparams = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "weight_decay": weight_decay}
    if shampoo_beta is not None:
        hyperparams["shampoo_beta"] = shampoo_beta
    return preconditioned("soap", step, hyperparams, ("mu", "nu"), factor_init, state_dtype=state_dtype)
