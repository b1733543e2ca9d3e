"""Faults: non-finite gradients injected at random steps, and a 100,000-step soak over extreme gradient scales
(about a second a method, so it runs by default)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from tests import reference as ref

METHODS = {
    "sgd": lambda: jgd.sgd(0.05),
    "momentum": lambda: jgd.momentum(0.05),
    "nesterov": lambda: jgd.nesterov(0.05),
    "adagrad": lambda: jgd.adagrad(0.05),
    "adadelta": lambda: jgd.adadelta(),
    "rmsprop": lambda: jgd.rmsprop(0.01, centered=True, momentum=0.5),
    "adam": lambda: jgd.adam(0.01),
    "adamax": lambda: jgd.adamax(0.01),
    "nadam": lambda: jgd.nadam(0.01),
}


def _run(tx, poison, skip_by_hand):
    """Trains on ref.loss in float64; ``poison[t]`` turns step t's gradient into NaN / Inf (1 / 2)."""
    params = ref.init_params(jnp.float64)

    def body(carry, kind):
        params, state = carry
        grads = jax.grad(ref.loss)(params)
        bad = jnp.where(kind == 1, jnp.nan, jnp.inf)
        grads = jax.tree.map(lambda g: jnp.where(kind > 0, g.at[0].set(bad), g), grads)
        updates, new_state = tx.update(grads, state, params)
        new_params = jgd.apply_updates(params, updates)
        if skip_by_hand:
            keep = kind > 0
            new_params = jax.tree.map(lambda a, b: jnp.where(keep, b, a), new_params, params)
            new_state = jax.tree.map(lambda a, b: jnp.where(keep, b, a), new_state, state)
        return (new_params, new_state), None

    (params, state), _ = jax.lax.scan(body, (params, tx.init(params)), poison)
    return params, state


@pytest.mark.parametrize("name", METHODS)
def test_non_finite_steps_are_skipped_exactly(name, x64):
    poison = np.random.default_rng(3).choice([0, 0, 0, 0, 1, 2], size=60)
    guarded, state = _run(jgd.apply_if_finite(METHODS[name](), max_consecutive=5), poison, skip_by_hand=False)
    by_hand, _ = _run(METHODS[name](), poison, skip_by_hand=True)
    # The two programs compile differently, so they agree to rounding, not bit for bit.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), guarded, by_hand)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(guarded))
    assert int(state.skipped) == int(np.sum(poison > 0)) > 0


@pytest.mark.parametrize("name", METHODS)
def test_soak_100k_steps_over_twelve_orders_of_gradient_scale(name):
    tx = jgd.apply_if_finite(jgd.chain(jgd.clip_by_global_norm(10.0), METHODS[name]()), max_consecutive=100)
    params = ref.init_params()
    steps = 100_000

    def body(carry, key):
        params, state = carry
        scale = 10.0 ** jax.random.uniform(key, minval=-6.0, maxval=6.0)
        grads = jax.tree.map(lambda g: g * scale, jax.grad(ref.loss)(params))
        updates, state = tx.update(grads, state, params)
        return (jgd.apply_updates(params, updates), state), None

    run = jax.jit(lambda p, s, keys: jax.lax.scan(body, (p, s), keys)[0])
    params, state = run(params, tx.init(params), jax.random.split(jax.random.key(0), steps))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
    assert int(state.skipped) == 0 and int(state.inner[0].count) == steps
