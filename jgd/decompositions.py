"""``eigh``, ``qr`` and ``svd`` of a stack of matrices, one matrix per LAPACK call on CPU.

On CPU, jaxlib's LAPACK kernels split a batch of matrices into tasks on XLA's intra-op thread pool and
block that pool's thread until the tasks finish. When every thread of the pool runs such a batched call at
once (two leaves' factors decomposed side by side on a two-core machine, or a ``vmap``-ed learning-rate
sweep), no thread is left to run the tasks and the program waits forever: seen in sweeps of
:func:`jgd.shampoo` and :func:`jgd.soap`, both ``tf_XLAEigen`` threads in ``ssyevd``'s batch map. A call on
one matrix runs inline, so on CPU each matrix is decomposed by its own call, in a ``lax.map``, also when the
stack is batched by ``vmap`` (:func:`jax.custom_batching.custom_vmap` keeps ``vmap`` from batching the
call again). Elsewhere (GPU, TPU) the batched call is kept. The results are the same LAPACK routine's,
matrix by matrix. :func:`jgd.galore`'s SVD goes through here too.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax


def _matrix_by_matrix(decompose: Callable, stack: jax.Array) -> tuple[jax.Array, ...]:
    """``decompose`` on each matrix of ``stack`` (``(..., m, n)``) in turn, the outputs stacked back."""
    lead = stack.shape[:-2]
    outputs = lax.map(decompose, stack.reshape((-1, *stack.shape[-2:])))
    return tuple(o.reshape(lead + o.shape[1:]) for o in outputs)


def _one_call_per_matrix(decompose: Callable) -> Callable:
    """``decompose`` of a stack as one call per matrix, under ``vmap`` too (the batch is one more stack axis)."""

    @jax.custom_batching.custom_vmap
    def sequential(stack):
        return _matrix_by_matrix(decompose, stack)

    @sequential.def_vmap
    def _batched(axis_size, in_batched, stack):
        del axis_size, in_batched  # the one argument is batched on its leading axis: a longer stack
        outputs = sequential(stack)
        return outputs, tuple(True for _ in outputs)

    def per_platform(stack):
        return lax.platform_dependent(stack, cpu=sequential, default=lambda s: tuple(decompose(s)))

    return per_platform


_eigh = _one_call_per_matrix(lambda m: tuple(jnp.linalg.eigh(m)))
_qr = _one_call_per_matrix(lambda m: tuple(jnp.linalg.qr(m)))
_svd = _one_call_per_matrix(lambda m: tuple(jnp.linalg.svd(m, full_matrices=False)))


def eigh(stack: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eigenvalues (ascending) and eigenvectors of each symmetric matrix of ``stack`` (``(..., n, n)``)."""
    w, v = _eigh(stack)
    return w, v


def qr_q(stack: jax.Array) -> jax.Array:
    """The ``Q`` of the reduced QR decomposition of each matrix of ``stack``."""
    return _qr(stack)[0]


def svd(stack: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``U``, ``S``, ``Vᴴ`` of the reduced singular value decomposition of each matrix of ``stack``."""
    u, s, vh = _svd(stack)
    return u, s, vh
