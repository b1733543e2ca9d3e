"""jgd.decompositions: one LAPACK call per matrix on CPU (under vmap too), the batched call's results."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jgd import decompositions

STACK = jax.random.normal(jax.random.key(0), (3, 2, 5, 4))
SYMMETRIC = STACK @ jnp.swapaxes(STACK, -1, -2)
UPPER = jnp.triu(SYMMETRIC[:, 0, :4, :4]) + 3 * jnp.eye(4)  # three matrices: the right side is shared (unbatched)
RIGHT = STACK[0, 0, :2]


def lapack_ranks(fn, *args) -> list[int]:
    """The rank of the first output of each LAPACK custom call in ``fn``'s compiled program."""
    text = jax.jit(fn).lower(*args).compile().as_text()
    dims = re.findall(r"= \(?\w+\[([\d,]*)\][^\n]*custom_call_target=\"lapack_", text)
    return [len(d.split(",")) for d in dims]


@pytest.mark.parametrize(
    "name, fn, arg",
    [
        ("eigh", decompositions.eigh, SYMMETRIC),
        ("qr_q", decompositions.qr_q, STACK),
        ("svd", decompositions.svd, STACK),
        ("solve_upper_right", lambda u: decompositions.solve_upper_right(u, RIGHT), UPPER),
    ],
)
def test_one_call_per_matrix_under_vmap_with_the_batched_calls_results(name, fn, arg):
    want = {
        "eigh": jnp.linalg.eigh,
        "qr_q": lambda a: jnp.linalg.qr(a)[0],
        "svd": lambda a: jnp.linalg.svd(a, full_matrices=False),
        "solve_upper_right": lambda u: jax.lax.linalg.triangular_solve(u, RIGHT, left_side=False, lower=False),
    }[name]
    batched = jax.jit(jax.vmap(fn))
    for got, expected in zip(jax.tree.leaves(batched(arg)), jax.tree.leaves(jax.vmap(want)(arg))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    ranks = lapack_ranks(jax.vmap(fn), arg)
    assert ranks, "the program calls LAPACK"
    # Each call holds one matrix (or its vector): no batch for jaxlib's kernels to split over the thread pool,
    # where jnp.linalg's call takes the whole batch.
    assert max(ranks) == 2, ranks
    assert max(lapack_ranks(jax.vmap(want), arg)) > 2


def test_derivatives_are_the_batched_calls():
    """grad and jacfwd (vmap of jvp) go through the batched call's rules, also under vmap."""

    def loss(decompose):
        return lambda x: decompose(x @ x.T)[0].sum() + decompose(x @ x.T)[1][0, 0] ** 2

    ours, plain = loss(decompositions.eigh), loss(jnp.linalg.eigh)
    x = STACK[0, 0, :4]
    for transform in (jax.grad, jax.jacfwd):
        np.testing.assert_allclose(jax.jit(transform(ours))(x), transform(plain)(x), rtol=1e-6)
    pair = jnp.stack([x, x + 1])
    np.testing.assert_allclose(jax.jit(jax.vmap(jax.grad(ours)))(pair), jax.vmap(jax.grad(plain))(pair), rtol=1e-5)
