"""jgd.shampoo and jgd.soap against NumPy transcriptions of their papers (tests/preconditioners/reference.py):
float64, 20 steps, a new gradient each step, on a square matrix, a vector and a 3-D leaf."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from tests.preconditioners import reference as ref

STEPS = 20
SHAPES = {"w": (5, 5), "b": (4,), "c": (3, 4, 2)}


def problem(seed=0):
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
    grads = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(STEPS)]
    return params, grads


def run(tx, params, grads):
    params = jax.tree.map(jnp.asarray, params)
    state, history = tx.init(params), []
    step = jax.jit(tx.update)
    for g in grads:
        updates, state = step(jax.tree.map(jnp.asarray, g), state, params)
        params = jgd.apply_updates(params, updates)
        history.append(jax.tree.map(np.asarray, params))
    return history


def max_relative_difference(got, want):
    return max(
        float(np.max(np.abs(g[k] - w[k]) / np.maximum(np.abs(w[k]), 1e-3))) for g, w in zip(got, want) for k in w
    )


SHAMPOO = {  # jgd arguments, reference arguments
    "paper": (dict(learning_rate=0.05), dict(lr=0.05)),
    "ema_adam_graft_every_3": (
        dict(
            learning_rate=0.05,
            b2=0.9,
            momentum=0.5,
            weight_decay=0.1,
            graft="adam",
            precondition_every=3,
            start_preconditioning_step=4,
            precondition_1d=False,
        ),
        dict(lr=0.05, b2=0.9, momentum=0.5, weight_decay=0.1, graft="adam", every=3, start=4, precondition_1d=False),
    ),
    "blocks_sgd_graft": (
        dict(learning_rate=0.05, graft="sgd", block_size=2, matrix_eps=1e-3),
        dict(lr=0.05, graft="sgd", block_size=2, matrix_eps=1e-3),
    ),
    "identity_axes": (dict(learning_rate=0.05, max_precond_dim=3), dict(lr=0.05, max_dim=3)),
}


# The first form of each runs by default; the others (a compile each) with the slow cases.
def forms(table):
    return [pytest.param(n, marks=[pytest.mark.slow] if i else []) for i, n in enumerate(table)]


@pytest.mark.parametrize("name", forms(SHAMPOO))
def test_shampoo_equals_the_paper(x64, name):
    ours, theirs = SHAMPOO[name]
    params, grads = problem()
    got = run(jgd.shampoo(**ours), params, grads)
    want = ref.shampoo_run(params, grads, **theirs)
    assert max_relative_difference(got, want) <= 1e-10


SOAP = {
    "authors": (dict(learning_rate=0.02), dict(lr=0.02)),
    "frequency_3_shampoo_beta": (
        dict(learning_rate=0.02, b1=0.9, b2=0.99, shampoo_beta=0.8, precondition_frequency=3, weight_decay=0.1),
        dict(lr=0.02, b1=0.9, b2=0.99, shampoo_beta=0.8, frequency=3, weight_decay=0.1),
    ),
    "blocks_of_3": (
        dict(learning_rate=0.02, block_size=3, precondition_frequency=4),
        dict(lr=0.02, block_size=3, frequency=4),
    ),
    "identity_axes": (dict(learning_rate=0.02, max_precond_dim=3), dict(lr=0.02, max_dim=3)),
}


@pytest.mark.parametrize("name", forms(SOAP))
def test_soap_equals_the_authors_algorithm(x64, name):
    ours, theirs = SOAP[name]
    params, grads = problem(1)
    got = run(jgd.soap(**ours), params, grads)
    want = ref.soap_run(params, grads, **theirs)
    assert max_relative_difference(got, want) <= 1e-10
