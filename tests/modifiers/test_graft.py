"""jgd.graft against the paper's grafting SGD#Adam (NumPy), and its guard for a zero direction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from tests import modern_reference as ref

STEPS = 20


def sgd_graft_adam(lr_sgd, lr_adam, b1, b2, eps):
    """Agarwal et al. 2020, ``M#D`` per layer with M = SGD, D = Adam: ``θ ← θ + ‖u_M‖ u_D / ‖u_D‖``."""

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            g = grads[k]
            u_direction = -lr_adam * ref.adam_direction(state, k, g, t, b1, b2, eps)
            u_norm = -lr_sgd * g
            out[k] = p + np.linalg.norm(u_norm.ravel()) * u_direction / np.linalg.norm(u_direction.ravel())
        return out

    return step


def test_matches_the_papers_grafting(x64):
    want = ref.run(sgd_graft_adam(0.5, 1e-3, 0.9, 0.999, 1e-8), STEPS)
    got = ref.trajectory(jgd.graft(jgd.adam(1e-3), jgd.sgd(0.5)), STEPS)
    assert ref.max_relative_difference(got, want) <= 1e-10


def test_the_directions_learning_rate_cancels():
    params = {"w": jnp.asarray([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.asarray([0.2, -0.1])}
    grads = jax.tree.map(lambda p: 0.4 * p - 0.3, params)
    small, large = (jgd.graft(jgd.adam(lr), jgd.momentum(0.1, 0.9)) for lr in (1e-4, 1.0))
    a, _ = small.update(grads, small.init(params), params)
    b, _ = large.update(grads, large.init(params), params)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)


def test_a_zero_direction_is_a_zero_step_and_jax_grad_stays_finite():
    def step(factor):
        tx = jgd.graft(jgd.scale(factor), jgd.sgd(0.1))
        g = jnp.asarray([1.0, -2.0])
        updates, _ = tx.update(g, tx.init(g))
        return updates

    np.testing.assert_array_equal(step(0.0), 0.0)
    assert np.isfinite(jax.grad(lambda f: jnp.sum(step(f)))(0.0))


def test_both_states_are_kept_and_an_uncalled_factory_is_named():
    tx = jgd.graft(jgd.adam(0.1), jgd.momentum(0.1, 0.9))
    state = tx.init(jnp.ones(2))
    _, state = tx.update(jnp.ones(2), state)
    assert set(state.direction.slots) == {"mu", "nu"} and set(state.norm.slots) == {"velocity"}
    assert int(state.direction.count) == int(state.norm.count) == 1
    assert set(jgd.hyperparams(state)) >= {"direction/learning_rate", "norm/learning_rate"}
    with pytest.raises(TypeError, match="norm must be a gradient transformation; got the function sgd"):
        jgd.graft(jgd.adam(0.1), jgd.sgd)
    with pytest.raises(TypeError, match="direction must be a gradient transformation"):
        jgd.graft(0.1, jgd.sgd(0.1))
