"""Spike skipping: exactly the injected spikes are skipped, and the inner state is as if they never happened."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd

STEPS, WINDOW = 36, 8
LOSS_SPIKE, NORM_SPIKE, EARLY_SPIKE = 15, 27, 3  # the early one comes before the window has filled

rng = np.random.default_rng(2)
PARAMS = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
BASE = {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
SCALES = 1 + 0.1 * rng.normal(size=STEPS)
LOSSES = 1 + 0.1 * rng.normal(size=STEPS)
SCALES[NORM_SPIKE] = 50.0
SCALES[EARLY_SPIKE] = 50.0
LOSSES[LOSS_SPIKE] = 20.0
GRADS = [jax.tree.map(lambda x, s=s: jnp.asarray(s * x, jnp.float32), BASE) for s in SCALES]


@jax.jit
def step(params, state, grads, loss):
    updates, state = TX.update(grads, state, params, loss=loss)
    return jgd.apply_updates(params, updates), state


TX = jgd.skip_spikes(jgd.adam(0.01), window=WINDOW, num_std=6.0)


def run_skipping():
    params, state, skipped = PARAMS, TX.init(PARAMS), []
    for t in range(STEPS):
        before = state.skipped
        params, state = step(params, state, GRADS[t], jnp.float32(LOSSES[t]))
        if state.skipped > before:
            skipped.append(t)
    return params, state, skipped


def test_injected_spikes_and_nothing_else_are_skipped():
    params, state, skipped = run_skipping()
    assert skipped == [LOSS_SPIKE, NORM_SPIKE]
    assert int(state.seen) == STEPS and int(state.skipped) == 2
    assert int(state.recorded[0]) == STEPS - 2 and int(state.recorded[1]) == STEPS - 2

    adam = jgd.adam(0.01)
    by_hand = jax.jit(lambda p, s, g: (lambda u, s: (jgd.apply_updates(p, u), s))(*adam.update(g, s, p)))
    want, want_state = PARAMS, adam.init(PARAMS)
    for t in range(STEPS):
        if t not in (LOSS_SPIKE, NORM_SPIKE):
            want, want_state = by_hand(want, want_state, GRADS[t])
    for a, b in zip(jax.tree.leaves((params, state.inner)), jax.tree.leaves((want, want_state))):
        np.testing.assert_array_equal(a, b)


def test_gradient_norm_alone_when_no_loss_is_given():
    tx = jgd.skip_spikes(jgd.sgd(0.1), window=WINDOW)
    update = jax.jit(tx.update)
    state = tx.init(PARAMS)
    skipped = []
    for t in range(STEPS):
        updates, state = update(GRADS[t], state, PARAMS)
        if not np.any(updates["w"]):
            skipped.append(t)
    assert skipped == [NORM_SPIKE]
    assert int(state.recorded[1]) == 0


def test_num_std_is_data():
    tx = jgd.skip_spikes(jgd.sgd(0.1), window=WINDOW)
    state = tx.init(PARAMS)
    assert float(jgd.hyperparams(state)["num_std"]) == 6.0
    state = jgd.set_hyperparams(state, num_std=1e6)
    assert float(jgd.hyperparams(state)["num_std"]) == 1e6

    stacked = jax.tree.map(lambda *g: jnp.stack(g), *GRADS)

    def skipped(num_std):
        tx = jgd.skip_spikes(jgd.sgd(0.1), window=WINDOW, num_std=num_std)

        def one(state, step):
            grads, loss = step
            return tx.update(grads, state, PARAMS, loss=loss)[1], None

        state, _ = jax.lax.scan(one, tx.init(PARAMS), (stacked, jnp.asarray(LOSSES, jnp.float32)))
        return state.skipped

    stds = jnp.asarray([0.0, 6.0, 1e6])
    swept = jax.jit(jax.vmap(skipped))(stds)
    assert swept[1] == 2 and swept[2] == 0 and swept[0] > 2
    np.testing.assert_array_equal(swept, [jax.jit(skipped)(x) for x in stds])
    with pytest.raises(ValueError, match="num_std"):
        jgd.skip_spikes(jgd.sgd(), num_std=-1.0)
    with pytest.raises(ValueError, match="window"):
        jgd.skip_spikes(jgd.sgd(), window=1)


def test_composes_with_apply_if_finite():
    tx = jgd.skip_spikes(jgd.apply_if_finite(jgd.adam(0.01)), window=WINDOW)
    update = jax.jit(tx.update)
    state = tx.init(PARAMS)
    nan_step = 20
    for t in range(STEPS):
        grads = jax.tree.map(lambda g: g * jnp.nan, GRADS[t]) if t == nan_step else GRADS[t]
        updates, state = update(grads, state, PARAMS, loss=LOSSES[t])
        assert all(np.all(np.isfinite(u)) for u in jax.tree.leaves(updates))
    assert int(state.skipped) == 2 and int(state.inner.skipped) == 1
    assert int(state.recorded[0]) == STEPS - 3  # neither the spikes nor the NaN step entered the window
