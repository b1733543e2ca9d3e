"""The flat layout: params raveled into one vector give the tree path's numbers for every elementwise method."""

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jgd
from tests import reference as ref
from tests.cases import CASES, METHOD, as_params

# The elementwise methods in their own forms; the seeds' by default, the others in the slow run.
ELEMENTWISE = [c for c in CASES.values() if c.kind == METHOD and c.elementwise and c.peer is None]


@pytest.mark.parametrize("case", as_params(ELEMENTWISE, slow=lambda case: not case.seed))
def test_raveled_params_follow_the_tree_path(case):
    tree_run = ref.trajectory(case.at(0.05), 20)
    params = ref.init_params()
    flat, unravel = ravel_pytree(params)
    tx = case.at(0.05)
    state = tx.init(flat)
    step = jax.jit(lambda p, s: tx.update(jax.grad(lambda q: ref.loss(unravel(q)))(p), s, p))
    flat_run = [ref.flatten(params)]
    for _ in range(20):
        updates, state = step(flat, state)
        flat = jgd.apply_updates(flat, updates)
        flat_run.append(ref.flatten(unravel(flat)))
    np.testing.assert_allclose(np.stack(flat_run), tree_run, rtol=1e-6, atol=1e-7)
