"""The Kronecker factors of PSGD-Kron on one array: their layout, the Lie-group fit and the preconditioning.

An array ``G`` of shape ``(n_1, …, n_k)`` has one factor ``Q_i`` per axis, upper triangular (``n_i × n_i``) or
diagonal (a vector of ``n_i``); a 0-d array has one scalar factor. ``Q = Q_1 ⊗ … ⊗ Q_k`` acts on ``G`` axis by
axis: ``G ×_i M`` is the product of ``M`` with ``G``'s axis ``i`` (``(G ×_i M)[…a…] = Σ_b M[a, b] G[…b…]``).
Li, "Preconditioner on matrix Lie group for SGD", ICLR 2019; Li, "Preconditioned stochastic gradient
descent", IEEE TNNLS 2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jgd import decompositions

MEMORY_SAVE_MODES = (None, "one_diag", "all_diag")


def triangular_axes(
    shape: tuple[int, ...], max_size_triangular: int, min_ndim_triangular: int, memory_save_mode: str | None
) -> tuple[bool, ...]:
    """For each axis, whether its factor is upper triangular (``True``) or diagonal (``False``).

    Diagonal: axes of length 1 or longer than ``max_size_triangular``, every axis of an array with fewer than
    ``min_ndim_triangular`` axes, the longest axis (the last of equal ones) under ``"one_diag"``, every axis
    under ``"all_diag"``.
    """
    if memory_save_mode not in MEMORY_SAVE_MODES:
        raise ValueError(f"memory_save_mode must be one of {MEMORY_SAVE_MODES}, got {memory_save_mode!r}")
    longest = max(range(len(shape)), key=lambda i: (shape[i], i)) if shape else -1
    return tuple(
        not (
            size == 1
            or size > max_size_triangular
            or len(shape) < min_ndim_triangular
            or memory_save_mode == "all_diag"
            or (memory_save_mode == "one_diag" and i == longest)
        )
        for i, size in enumerate(shape)
    )


def initial_factors(shape: tuple[int, ...], triangular: Sequence[bool], scale, dtype) -> tuple[jax.Array, ...]:
    """``Q_i = scale^(1/k) I`` for each of the ``k`` axes (a vector of ones for a diagonal factor); ``scale``
    itself for a 0-d array."""
    scale = jnp.asarray(scale, dtype)
    if not shape:
        return (scale * jnp.ones((), dtype),)
    root = scale ** (1 / len(shape))
    return tuple(root * (jnp.eye(n, dtype=dtype) if tri else jnp.ones(n, dtype)) for n, tri in zip(shape, triangular))


def _on_axis(x: jax.Array, q: jax.Array, axis: int, transpose: bool = False) -> jax.Array:
    """``x ×_axis q`` (``q`` a matrix, or a vector standing for its diagonal); ``x ×_axis qᵀ`` with ``transpose``."""
    if q.ndim < 2:
        return x * jnp.expand_dims(q, tuple(range(1, x.ndim - axis))) if x.ndim else x * q
    return jnp.moveaxis(jnp.tensordot(q.T if transpose else q, x, axes=(1, axis)), 0, axis)


def _on_axis_inverse_transpose(x: jax.Array, q: jax.Array, axis: int) -> jax.Array:
    """``x ×_axis Q⁻ᵀ`` by a triangular solve (``Q`` upper triangular, or a vector standing for its diagonal)."""
    if q.ndim < 2:
        return x / jnp.expand_dims(q, tuple(range(1, x.ndim - axis))) if x.ndim else x / q
    last = jnp.moveaxis(x, axis, -1)
    # Rows of ``last`` times Q⁻¹: the solve of X Q = rows, Q upper triangular.
    solved = decompositions.solve_upper_right(q, last.reshape(-1, q.shape[0]))
    return jnp.moveaxis(solved.reshape(last.shape), -1, axis)


def _gram(x: jax.Array, axis: int, triangular: bool) -> jax.Array:
    """``X_(i) X_(i)ᵀ`` for the unfolding of ``x`` along ``axis`` (its diagonal for a diagonal factor)."""
    if x.ndim == 0:
        return x * x
    rows = jnp.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return rows @ rows.T if triangular else jnp.sum(rows * rows, axis=1)


def norm_lower_bound(s: jax.Array) -> jax.Array:
    """A lower bound of the spectral norm of a symmetric ``s``, within a factor of about √2 (Li's):
    ``‖S x̂‖`` for ``x̂`` the unit vector along ``S r``, ``r`` the row of ``S`` of largest norm; computed on
    ``S / max|S|`` against overflow, and 0 for ``S = 0``."""
    largest = jnp.max(jnp.abs(s))
    scaled = s / jnp.where(largest > 0, largest, 1)
    row = scaled[jnp.argmax(jnp.sum(scaled * scaled, axis=1))]
    x = scaled @ row
    x = x / jnp.where(largest > 0, jnp.linalg.norm(x), 1)
    return largest * jnp.linalg.norm(scaled.T @ x)


def fit(factors: Sequence[jax.Array], h: jax.Array, v: jax.Array, preconditioner_lr) -> tuple[jax.Array, ...]:
    """One step of every factor on the Lie group toward ``P = QᵀQ`` with ``P h hᵀ P = v vᵀ`` in expectation.

    ``A = h ×_1 Q_1 ⋯ ×_k Q_k``, ``B = v ×_1 Q_1⁻ᵀ ⋯ ×_k Q_k⁻ᵀ``; for each axis, with ``AA = A_(i) A_(i)ᵀ``
    and ``BB = B_(i) B_(i)ᵀ`` (unfoldings along axis ``i``):
    ``Q_i ← Q_i − μ triu(AA − BB) Q_i / ‖AA + BB‖_lb`` (upper triangular ``Q_i``, ``‖·‖_lb`` the lower bound
    of :func:`norm_lower_bound`), ``Q_i ← Q_i − μ (AA − BB) Q_i / max|AA + BB|`` (diagonal ``Q_i``, all
    products elementwise); every factor is updated from the same ``A`` and ``B``. Li 2019 (ICLR), §4 and
    the Kronecker-product preconditioner of Li 2018 (TNNLS), the relative gradient on the group of
    upper triangular matrices with positive diagonal.
    """
    a, b = h, v
    for i, q in enumerate(factors):
        a = _on_axis(a, q, i)
        b = _on_axis_inverse_transpose(b, q, i)
    new = []
    for i, q in enumerate(factors):
        aa, bb = _gram(a, i, q.ndim == 2), _gram(b, i, q.ndim == 2)
        tiny = jnp.finfo(q.dtype).tiny
        if q.ndim == 2:
            step = jnp.triu(aa - bb) / (norm_lower_bound(aa + bb) + tiny)
            new.append(q - preconditioner_lr * (step @ q))
        else:
            new.append(q - preconditioner_lr * (aa - bb) * q / (jnp.max(jnp.abs(aa + bb)) + tiny))
    return tuple(new)


def balance(factors: Sequence[jax.Array]) -> tuple[jax.Array, ...]:
    """The factors rescaled to a common ``max|Q_i|``, the geometric mean of theirs; ``Q`` is unchanged
    (the scales multiply to 1). A single factor is left as it is."""
    if len(factors) < 2:
        return tuple(factors)
    norms = jnp.stack([jnp.max(jnp.abs(q)) for q in factors])
    mean = jnp.prod(norms) ** (1 / len(factors))
    return tuple(q * (mean / n) for q, n in zip(factors, norms))


def precondition(factors: Sequence[jax.Array], g: jax.Array) -> jax.Array:
    """``P g = (Q_1ᵀQ_1 ⊗ … ⊗ Q_kᵀQ_k) g``: each axis multiplied by ``Q_i`` and then by ``Q_iᵀ``."""
    for i, q in enumerate(factors):
        g = _on_axis(_on_axis(g, q, i), q, i, transpose=True)
    return g
