"""Per-array helpers shared by the rules, for real and complex arrays alike."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|²`` element by element, a real array: ``x²`` for a real ``x``, ``re(x̄ x)`` for a complex one."""
    if jnp.iscomplexobj(x):
        return (jnp.conj(x) * x).real
    return x * x


def real_dtype(dtype) -> jnp.dtype:
    """The real dtype of the same precision: complex64 -> float32, complex128 -> float64; a real dtype is itself."""
    return jnp.finfo(dtype).dtype


def leaf_norm(x: jax.Array) -> jax.Array:
    """``‖x‖₂`` of one array, real for a complex one, whose derivative at ``x = 0`` is 0 rather than 0/0 (NaN)."""
    square = jnp.sum(abs_sq(x))
    return jnp.where(square > 0, jnp.sqrt(jnp.where(square > 0, square, 1)), 0)
