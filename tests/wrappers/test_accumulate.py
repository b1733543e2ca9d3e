"""Gradient accumulation: k micro-batches step like one batch of k times the size."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd

rng = np.random.default_rng(0)
X = rng.normal(size=(24, 5))
Y = rng.normal(size=(24, 2))
PARAMS = {"w": rng.normal(size=(5, 2)) * 0.3, "b": np.zeros(2)}


def loss(params, x, y):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def as_arrays(tree):
    return jax.tree.map(jnp.asarray, tree)  # float64 under the x64 fixture, float32 otherwise


def run_full(tx, params, steps):
    params, state = as_arrays(params), tx.init(as_arrays(params))
    for _ in range(steps):
        updates, state = tx.update(jax.grad(loss)(params, jnp.asarray(X), jnp.asarray(Y)), state, params)
        params = jgd.apply_updates(params, updates)
    return params, state


def run_micro(tx, params, steps, every, jit=True):
    """``steps`` optimizer steps of ``every`` micro-batches each, as one function (jitted unless ``jit=False``)."""

    def run(params):
        state = tx.init(params)
        for _ in range(steps):
            for x, y in zip(jnp.split(jnp.asarray(X), every), jnp.split(jnp.asarray(Y), every)):
                updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
                params = jgd.apply_updates(params, updates)
        return params, state

    return (jax.jit(run) if jit else run)(as_arrays(params))


CASES = {
    "sgd": lambda: jgd.sgd(0.1),
    "adam": lambda: jgd.adam(0.05),
    "momentum": lambda: jgd.momentum(0.05, 0.9),
    "adam_scheduled": lambda: jgd.adam(lambda t: 0.05 * 0.7**t),
}


@pytest.mark.parametrize("name", list(CASES))
def test_micro_batches_equal_one_batch(name, x64):
    want, want_state = run_full(CASES[name](), PARAMS, steps=4)
    got, state = run_micro(jgd.accumulate(CASES[name](), every=4, dtype=jnp.float64), PARAMS, 4, 4)
    for k in PARAMS:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)
    assert int(state.micro_step) == 0
    # The inner count and the schedule advanced once per optimizer step.
    np.testing.assert_array_equal(state.inner.count, want_state.count)
    got_hp = {name: float(value) for name, value in jgd.hyperparams(state).items()}
    want_hp = {name: float(value) for name, value in jgd.hyperparams(want_state).items()}
    assert got_hp == pytest.approx(want_hp, rel=1e-12)


def test_zero_updates_between_steps_and_jit_matches_eager():
    tx = jgd.accumulate(jgd.adam(0.05), every=3)
    params = as_arrays(PARAMS)
    state = tx.init(params)
    grads = jax.grad(loss)(params, X, Y)
    for micro in range(1, 3):
        updates, state = tx.update(grads, state, params)
        assert all(not np.any(u) for u in jax.tree.leaves(updates))
        assert int(state.micro_step) == micro and int(state.inner.count) == 0
    updates, state = tx.update(grads, state, params)
    assert all(np.all(u != 0) for u in jax.tree.leaves(updates))
    eager, _ = run_micro(jgd.accumulate(jgd.adam(0.05), every=3), PARAMS, 1, 3, jit=False)
    jitted, _ = run_micro(jgd.accumulate(jgd.adam(0.05), every=3), PARAMS, 1, 3)
    for k in PARAMS:
        np.testing.assert_allclose(jitted[k], eager[k], rtol=1e-6, atol=1e-7)


def test_matches_optax_multi_steps():
    got, _ = run_micro(jgd.accumulate(jgd.adam(0.05), every=4), PARAMS, 3, 4)
    want, _ = run_micro(optax.MultiSteps(optax.adam(0.05), every_k_schedule=4), PARAMS, 3, 4)
    for k in PARAMS:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_vmap_over_inner_learning_rate_equals_loop():
    rates = jnp.asarray([0.01, 0.05, 0.2])

    def final(lr):
        return run_micro(jgd.accumulate(jgd.adam(lr), every=2), PARAMS, 2, 2, jit=False)[0]

    swept = jax.jit(jax.vmap(final))(rates)
    for i, lr in enumerate(rates):
        one = jax.jit(final)(lr)
        for k in PARAMS:
            np.testing.assert_allclose(swept[k][i], one[k], rtol=1e-5, atol=1e-7)


def test_buffer_dtype_and_update_dtype():
    params = {"w": jnp.ones((3, 2), jnp.bfloat16)}
    tx = jgd.accumulate(jgd.sgd(0.1), every=2)
    state = tx.init(params)
    assert state.gradient_sum["w"].dtype == jnp.float32
    grads = {"w": jnp.full((3, 2), 1e-3, jnp.bfloat16)}
    updates, state = tx.update(grads, state, params)
    updates, state = tx.update(grads, state, params)
    assert updates["w"].dtype == jnp.bfloat16
    assert jgd.accumulate(jgd.sgd(0.1), every=2, dtype=None).init(params).gradient_sum["w"].dtype == jnp.bfloat16


def test_extra_args_reach_the_inner_update():
    seen = []

    def inner_update(updates, state, params=None, **extra):
        seen.append(extra)
        return updates, state

    tx = jgd.accumulate(jgd.GradientTransformation(lambda p: (), inner_update), every=2)
    params = as_arrays(PARAMS)
    tx.update(params, tx.init(params), params, value=1.0)
    assert seen and all(extra == {"value": 1.0} for extra in seen)


@pytest.mark.parametrize("every", [0, 2.0, True])
def test_bad_every_is_named(every):
    with pytest.raises(ValueError, match="every"):
        jgd.accumulate(jgd.sgd(), every=every)
