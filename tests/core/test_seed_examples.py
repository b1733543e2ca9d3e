"""The worked examples of the source documents."""

import jax.numpy as jnp
import numpy as np

import jgd
from tests import reference as ref


def test_adagrad_accumulator_of_seed_001():
    """Seed 001: grads (-2, -10), (-1.5, -10), (-1.25, -9), (-1, 9) accumulate to 4/100, 6.25/200, 7.8/281, 8.8/362."""
    tx = jgd.adagrad(1.0, eps=0.0)
    params = jnp.zeros(2)
    state = tx.init(params)
    sums = []
    for g in [(-2.0, -10.0), (-1.5, -10.0), (-1.25, -9.0), (-1.0, 9.0)]:
        updates, state = tx.update(jnp.asarray(g), state, params)
        sums.append(np.asarray(state.slots["sum_of_squares"]))
    np.testing.assert_allclose(sums, [[4, 100], [6.25, 200], [7.8125, 281], [8.8125, 362]])
    # The last step: w1 -= a(-1)/3 and w2 -= a(9)/19, with 3 and 19 the rounded roots of 8.8 and 362.
    np.testing.assert_allclose(updates, [1 / np.sqrt(8.8125), -9 / np.sqrt(362)], rtol=1e-6)
    np.testing.assert_allclose(updates, [1 / 3, -9 / 19], rtol=0.02)


def test_clipvalue_and_clipnorm_of_seed_003():
    g = jnp.asarray([0.9, 100.0])
    by_value, _ = jgd.clip_by_value(1.0).update(g, jgd.clip_by_value(1.0).init(g))
    by_norm, _ = jgd.clip_by_norm(1.0).update(g, jgd.clip_by_norm(1.0).init(g))
    np.testing.assert_allclose(by_value, [0.9, 1.0])
    np.testing.assert_allclose(by_norm, [0.00899964, 0.9999595], rtol=1e-6)


def test_ema_of_seed_001_temperatures():
    """Seed 001: v_0 = 0, β = 0.9, T_1 = 7.5 gives v_1 = 0.75; T_2 = 4 gives v_2 = 1.075 (the slide's 1.08)."""
    tx = jgd.ema(0.9)
    state = tx.init(jnp.zeros(()))
    v1, state = tx.update(jnp.asarray(7.5), state)
    v2, state = tx.update(jnp.asarray(4.0), state)
    np.testing.assert_allclose([v1, v2], [0.75, 1.075], rtol=1e-6)
    corrected, _ = jgd.chain(jgd.ema(0.9), jgd.bias_correction(0.9)).update(
        jnp.asarray(7.5), jgd.chain(jgd.ema(0.9), jgd.bias_correction(0.9)).init(jnp.zeros(()))
    )
    np.testing.assert_allclose(corrected, 7.5, rtol=1e-6)  # v_1 / (1 - β) undoes the zero start


def test_momentum_forms_equivalent_under_rescale(x64):
    """Seed 001: the (1-β) form with η_ema = η / (1 - β) gives the iterates of v = βv + ηg."""
    eta, beta = 0.05, 0.9
    velocity = ref.trajectory(jgd.momentum(eta, beta), 40, jnp.float64)
    averaged = ref.trajectory(jgd.momentum(eta / (1 - beta), beta, form="ema"), 40, jnp.float64)
    np.testing.assert_allclose(averaged, velocity, rtol=1e-10, atol=1e-12)
    assert np.abs(velocity[-1] - velocity[0]).max() > 0.1


def test_momentum_terminal_speed_of_seed_002():
    """Seed 002: on a constant gradient g the velocity tends to η g / (1 - β)."""
    tx = jgd.momentum(0.1, 0.9)
    state = tx.init(jnp.zeros(()))
    for _ in range(300):
        step, state = tx.update(jnp.asarray(1.0), state)
    np.testing.assert_allclose(-step, 0.1 / (1 - 0.9), rtol=1e-5)
