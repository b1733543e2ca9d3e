"""``eigh``, ``qr``, ``svd`` and a triangular solve of stacks of matrices, one matrix per LAPACK call on CPU.

On CPU, jaxlib's LAPACK kernels split a batch of matrices into tasks on XLA's intra-op thread pool and
block that pool's thread until the tasks finish. When every thread of the pool runs such a batched call at
once (two leaves' factors decomposed side by side on a two-core machine, or a ``vmap``-ed learning-rate
sweep), no thread is left to run the tasks and the program waits forever: seen in sweeps of
:func:`jgd.shampoo` and :func:`jgd.soap`, both ``tf_XLAEigen`` threads in ``ssyevd``'s batch map. A call on
one matrix runs inline, so on CPU each matrix is decomposed by its own call, in a ``lax.map``, also when the
stack is batched by ``vmap`` (:func:`jax.custom_batching.custom_vmap` keeps ``vmap`` from batching the
call again). Elsewhere (GPU, TPU) the batched call is kept, and so are derivatives (``jvp``, ``grad``)
through these functions, which take the batched call's rule. The results are the same LAPACK routine's,
matrix by matrix. :func:`jgd.galore`'s SVD and :func:`jgd.kron`'s triangular solve (``trsm``, seen waiting the
same way in a sweep of Kron) go through here too.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax


def _matrix_by_matrix(decompose: Callable, *stacks: jax.Array) -> tuple[jax.Array, ...]:
    """``decompose`` on each matrix of the ``stacks`` (``(..., m, n)``, the same leading axes) in turn, stacked back."""
    lead = stacks[0].shape[:-2]
    flat = tuple(s.reshape((-1, *s.shape[-2:])) for s in stacks)
    outputs = lax.map(lambda matrices: decompose(*matrices), flat)
    return tuple(o.reshape(lead + o.shape[1:]) for o in outputs)


def _one_call_per_matrix(decompose: Callable) -> Callable:
    """``decompose`` of stacks as one call per matrix, under ``vmap`` too (the batch is one more stack axis)."""

    @jax.custom_batching.custom_vmap
    def sequential(*stacks):
        return _matrix_by_matrix(decompose, *stacks)

    @sequential.def_vmap
    def _batched(axis_size, in_batched, *stacks):
        # A batched argument has the batch on its leading axis; an unbatched one is the same for every member.
        stacks = tuple(s if b else jnp.broadcast_to(s, (axis_size, *s.shape)) for s, b in zip(stacks, in_batched))
        # The map itself, not ``sequential`` again: under ``jacfwd`` the rule is differentiated, and a call back
        # into the custom-vmapped function there would recurse without end.
        outputs = _matrix_by_matrix(decompose, *stacks)
        return outputs, tuple(True for _ in outputs)

    def batched(*stacks):
        return tuple(decompose(*stacks))

    # Derivatives are the batched call's: custom_vmap has no rule of its own for jvp or transposition.
    @jax.custom_jvp
    def on_cpu(*stacks):
        return sequential(*stacks)

    @on_cpu.defjvp
    def _jvp(primals, tangents):
        return jax.jvp(batched, primals, tangents)

    def per_platform(*stacks):
        return lax.platform_dependent(*stacks, cpu=on_cpu, default=batched)

    return per_platform


_eigh = _one_call_per_matrix(lambda m: tuple(jnp.linalg.eigh(m)))
_qr = _one_call_per_matrix(lambda m: tuple(jnp.linalg.qr(m)))
_svd = _one_call_per_matrix(lambda m: tuple(jnp.linalg.svd(m, full_matrices=False)))
_upper_solve_right = _one_call_per_matrix(
    lambda upper, b: (lax.linalg.triangular_solve(upper, b, left_side=False, lower=False),)
)


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


def solve_upper_right(upper: jax.Array, b: jax.Array) -> jax.Array:
    """``X`` with ``X U = B``, ``U`` upper triangular, for each ``(U, B)`` of stacks (..., n, n), (..., k, n)."""
    return _upper_solve_right(upper, b)[0]
