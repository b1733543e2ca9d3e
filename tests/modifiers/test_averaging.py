"""jgd.ema_params against optax's incremental_update, Polyak's mean, and what the state keeps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from tests import modern_reference as ref

STEPS = 20


def _averages(tx):
    return ref.trajectory(tx, STEPS, eval_fn=lambda state, params: jgd.averaged_params(state))


def test_matches_optax_incremental_update_of_the_iterates(x64):
    decay, adamw = 0.8, optax.adamw(0.02, weight_decay=0.1)

    @jax.jit
    def step(params, state, average):
        updates, state = adamw.update(jax.grad(ref.loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        return params, state, optax.incremental_update(params, average, 1 - decay)

    params = average = ref.init()
    state, want = adamw.init(params), [average]
    for _ in range(STEPS):
        params, state, average = step(params, state, average)
        want.append(average)
    iterates, got = _averages(jgd.chain(jgd.adamw(0.02, weight_decay=0.1), jgd.ema_params(decay)))
    want = [{k: np.asarray(v) for k, v in p.items()} for p in want]
    assert ref.max_relative_difference(got, iterates) > 1e-3  # the average lags the iterates
    assert ref.max_relative_difference(got, want) <= 1e-10


def test_a_decay_of_k_over_k_plus_one_is_polyaks_mean_of_the_iterates(x64):
    iterates, got = _averages(jgd.chain(jgd.sgd(0.5), jgd.ema_params(lambda k: k / (k + 1.0))))
    for t in range(1, STEPS + 1):
        mean = {k: np.mean([p[k] for p in iterates[1 : t + 1]], axis=0) for k in iterates[0]}
        assert ref.max_relative_difference([got[t]], [mean]) <= 1e-12


def test_the_updates_pass_through_and_the_average_starts_at_the_params():
    params = {"w": jnp.asarray([[1.0, -2.0]], jnp.bfloat16), "b": jnp.asarray([0.5], jnp.bfloat16)}
    grads = jax.tree.map(lambda p: (0.3 * p + 0.1).astype(p.dtype), params)
    tx = jgd.chain(jgd.adam(0.1), jgd.ema_params(0.9, state_dtype=jnp.float32))
    state = tx.init(params)
    jax.tree.map(np.testing.assert_array_equal, jgd.averaged_params(state), params)
    updates, state = tx.update(grads, state, params)
    want, _ = jgd.adam(0.1).update(grads, jgd.adam(0.1).init(params), params)
    jax.tree.map(np.testing.assert_array_equal, updates, want)
    average = jgd.averaged_params(state)
    assert {x.dtype for x in jax.tree.leaves(average)} == {jnp.dtype(jnp.float32)}
    moved = jax.tree.map(lambda p, u: p.astype(jnp.float32) + u.astype(jnp.float32), params, updates)
    jax.tree.map(
        lambda a, p, n: np.testing.assert_allclose(a, 0.9 * p.astype(jnp.float32) + 0.1 * n, rtol=1e-6),
        average,
        params,
        moved,
    )


def test_donating_the_params_leaves_the_average_whole():
    params = {"w": jnp.ones(3)}
    state = jgd.ema_params(0.5).init(params)
    jax.jit(lambda p: jax.tree.map(lambda x: x + 1, p), donate_argnums=0)(params)
    assert params["w"].is_deleted()  # the params' buffer was given away
    np.testing.assert_array_equal(jgd.averaged_params(state)["w"], 1.0)


def test_averaged_params_refuses_another_state_and_ema_decay_is_checked():
    with pytest.raises(ValueError, match="averaged_params needs the state of ema_params"):
        jgd.averaged_params(jgd.adam(0.1).init(jnp.ones(2)))
    with pytest.raises(ValueError, match="ema_decay must be in \\[0, 1\\)"):
        jgd.ema_params(1.0)
    with pytest.raises(ValueError, match="ema_params needs params"):
        tx = jgd.ema_params(0.9)
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
