"""The Newton–Schulz iteration Muon orthogonalises with, and its coefficient tables.

Each step applies the odd quintic ``p(X) = a X + b (X Xᵀ) X + c (X Xᵀ)² X``, which maps every singular
value ``σ`` of ``X`` to ``p(σ)`` and keeps the singular vectors. A table gives one ``(a, b, c)`` per step;
a single triple is the table of one row, repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

# Jordan's quintic: steepest slope at 0 such that five steps leave every σ in about [0.7, 1.2].
STANDARD = ((3.4445, -4.775, 2.0315),)

# Ahn et al., "Dion: distributed orthonormalized updates", 2025: optax's "dion" preset.
DION = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)

# Amsel, Persson, Musco, Gower, "The Polar Express: optimal matrix sign methods and their application to
# the Muon algorithm", 2025, Algorithm 1: step k's quintic is the best L∞ approximation of 1 on the
# interval the first k - 1 steps leave the singular values in, starting from [10⁻³, 1] (with the paper's
# cushion, max(ℓ, 0.024 u)). The last row is the fixed point (15 x - 10 x³ + 3 x⁵) / 8, repeated.
_POLAR_EXPRESS_RAW = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)
# The paper's safety factor: p(x / 1.01) for every step but the last, so σ slightly above 1 after
# rounding in low precision still maps below the polynomial's maximum; and X₀ = M / (1.01 ‖M‖_F).
POLAR_EXPRESS_SAFETY = 1.01
POLAR_EXPRESS = (
    *(
        (a / POLAR_EXPRESS_SAFETY, b / POLAR_EXPRESS_SAFETY**3, c / POLAR_EXPRESS_SAFETY**5)
        for a, b, c in _POLAR_EXPRESS_RAW[:-1]
    ),
    _POLAR_EXPRESS_RAW[-1],
)

NAMED = {"standard": STANDARD, "dion": DION, "polar_express": POLAR_EXPRESS}


class Iteration(NamedTuple):
    """A resolved iteration: one ``(a, b, c)`` per step, and the factor on ``‖X‖_F`` of the normalisation."""

    coefficients: tuple[tuple[float, float, float], ...]
    norm_scale: float = 1.0


def iteration(ns_coeffs, ns_steps: int | None) -> Iteration:
    """The per-step coefficients ``ns_coeffs`` and ``ns_steps`` name, checked (``ValueError`` naming the argument).

    ``ns_coeffs`` is a name (``"standard"``, ``"dion"``, ``"polar_express"``), one ``(a, b, c)`` or a
    sequence of them (shape ``(k, 3)``). A triple runs ``ns_steps`` steps (5 if None). A table runs one step
    per row (``ns_steps`` None or ``k``) or its first ``ns_steps`` rows; more steps than rows is an error,
    except for ``"polar_express"``, whose last row is a fixed point that the paper repeats.
    """
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in NAMED:
            raise ValueError(f"ns_coeffs {ns_coeffs!r} is no known table; the names are {sorted(NAMED)}")
        rows, named = NAMED[ns_coeffs], ns_coeffs
    else:
        table = np.asarray(ns_coeffs, dtype=float)
        if table.ndim not in (1, 2) or table.shape[-1] != 3 or table.size == 0:
            raise ValueError(f"ns_coeffs must have shape (3,) or (steps, 3), got shape {table.shape}")
        if not np.isfinite(table).all():
            raise ValueError(f"ns_coeffs must be finite, got {ns_coeffs!r}")
        rows, named = tuple((float(a), float(b), float(c)) for a, b, c in table.reshape(-1, 3)), None
    if ns_steps is not None and (isinstance(ns_steps, bool) or not isinstance(ns_steps, int | np.integer)):
        raise ValueError(f"ns_steps must be a Python int (a count, not data), got {ns_steps!r}")
    if ns_steps is not None and ns_steps < 1:
        raise ValueError(f"ns_steps must be ≥ 1, got {ns_steps}")
    repeat = len(rows) == 1 or named == "polar_express"
    steps = ns_steps if ns_steps is not None else (5 if repeat else len(rows))
    if steps > len(rows) and not repeat:
        raise ValueError(
            f"ns_steps={steps} but ns_coeffs has {len(rows)} rows, one per step: pass ns_steps=None or ≤ {len(rows)}"
        )
    chosen = tuple(rows[min(i, len(rows) - 1)] for i in range(steps))
    return Iteration(chosen, POLAR_EXPRESS_SAFETY if named == "polar_express" else 1.0)


def orthogonalize(x, coefficients: Sequence = STANDARD[0], steps: int = 5, eps: float = 1e-8, norm_scale=1.0):
    """The nearest semi-orthogonal ``U Vᵀ`` of ``x = U S Vᵀ``, approximately, over the last two axes (others batch).

    ``X_0 = x / (s ‖x‖_F + ε)``, ``A = X Xᵀ``, ``X_{k+1} = a_k X_k + (b_k A + c_k A²) X_k``, on the wide
    orientation of the matrix (transposed when it has more rows than columns, which gives the same result
    at a smaller Gram matrix).

    Args:
      x: an array of at least two axes.
      coefficients: one ``(a, b, c)`` for every step, or a sequence of them, one per step.
      steps: the number of steps for a single triple; a sequence runs one step per row.
      eps: ``ε``, guarding the normalisation of a zero matrix.
      norm_scale: ``s``; 1 but for Polar Express (1.01).
    """
    table = np.asarray(coefficients, dtype=float)
    rows = [tuple(table)] * steps if table.ndim == 1 else [tuple(row) for row in table]
    wide = x.shape[-2] <= x.shape[-1]
    x = x if wide else jnp.swapaxes(x, -1, -2)
    x = x / (norm_scale * jnp.linalg.norm(x, axis=(-2, -1), keepdims=True) + eps)
    for a, b, c in rows:
        gram = x @ jnp.swapaxes(x, -1, -2)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else jnp.swapaxes(x, -1, -2)
