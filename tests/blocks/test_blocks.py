"""Building blocks, their compositions, and interplay with optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from tests import reference as ref


def _bias_corrected_momentum(lr, beta):
    def step(x, g, t, s):  # seed 001: v = βv + (1-β)g; v̂ = v / (1 - β^t); θ ← θ - η v̂
        ref.zeros(s, "v", like=x)
        s["v"] = beta * s["v"] + (1 - beta) * g
        return x - lr * s["v"] / (1 - beta**t), s

    return step


def test_ema_and_bias_correction_rebuild_seed_001_momentum(x64):
    tx = jgd.chain(jgd.ema(0.9), jgd.bias_correction(0.9), jgd.scale_by_learning_rate(0.1))
    got = ref.trajectory(tx, 40, jnp.float64)
    np.testing.assert_allclose(got, ref.run(_bias_corrected_momentum(0.1, 0.9), 40), rtol=1e-10, atol=1e-12)


def _adam_from_blocks(lr, b1=0.9, b2=0.999, eps=1e-8):
    first_moment = jgd.chain(jgd.ema(b1), jgd.bias_correction(b1))
    preconditioned = jgd.scale_by_rms(b2, eps, bias_correction=True, numerator=first_moment)
    return jgd.chain(preconditioned, jgd.scale_by_learning_rate(lr))


@pytest.mark.parametrize(
    "blocks, method",
    [
        (lambda: _adam_from_blocks(0.05), lambda: jgd.adam(0.05)),
        (lambda: _adam_from_blocks(0.05), lambda: optax.adam(0.05)),
        (lambda: jgd.chain(jgd.scale_by_rms(0.9), jgd.scale_by_learning_rate(0.01)), lambda: jgd.rmsprop(0.01)),
        (lambda: jgd.chain(jgd.trace(0.9), jgd.scale_by_learning_rate(0.05)), lambda: jgd.momentum(0.05)),
        (lambda: jgd.chain(jgd.trace(0.9, nesterov=True), jgd.scale(-0.05)), lambda: jgd.nesterov(0.05)),
        (lambda: jgd.scale(-0.1), lambda: jgd.sgd(0.1)),
        (
            lambda: jgd.chain(jgd.scale_by_rms(0.9), jgd.trace(0.8), jgd.scale_by_learning_rate(0.01)),
            lambda: jgd.rmsprop(0.01, momentum=0.8),
        ),
    ],
)
def test_methods_expressible_from_blocks(blocks, method, x64):
    got = ref.trajectory(blocks(), 40, jnp.float64)
    np.testing.assert_allclose(got, ref.trajectory(method(), 40, jnp.float64), rtol=1e-10, atol=1e-12)


def _tree():
    return {"a": jnp.asarray([3.0, -4.0]), "b": [jnp.asarray([[1.0, 2.0], [-2.0, 0.5]])]}


def test_clip_by_global_norm_matches_optax():
    g = _tree()
    for limit in (0.5, 2.0, 100.0):
        got, _ = jgd.clip_by_global_norm(limit).update(g, jgd.clip_by_global_norm(limit).init(g))
        want, _ = optax.clip_by_global_norm(limit).update(g, optax.clip_by_global_norm(limit).init(g))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
    np.testing.assert_allclose(jgd.global_norm(g), optax.tree.norm(g), rtol=1e-6)


def test_clip_by_value_and_norm_act_per_element_and_per_tensor():
    g = _tree()
    by_value, _ = jgd.clip_by_value(1.5).update(g, jgd.clip_by_value(1.5).init(g))
    np.testing.assert_allclose(by_value["a"], [1.5, -1.5])
    by_norm, _ = jgd.clip_by_norm(1.0).update(g, jgd.clip_by_norm(1.0).init(g))
    np.testing.assert_allclose(np.linalg.norm(by_norm["a"]), 1.0, rtol=1e-6)  # norm 5 -> 1
    np.testing.assert_allclose(np.linalg.norm(by_norm["b"][0]), 1.0, rtol=1e-6)  # each tensor on its own


def test_penalties_add_the_gradient_of_the_penalty():
    params = _tree()
    grads = jax.tree.map(jnp.ones_like, params)
    lam = 0.1
    for tx, penalty in [
        (jgd.l1_penalty(lam), lambda p: lam * sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(p))),
        (jgd.l2_penalty(lam), lambda p: lam * sum(jnp.sum(x**2) for x in jax.tree.leaves(p))),
    ]:
        got, _ = tx.update(grads, tx.init(params), params)
        want = jax.tree.map(jnp.add, grads, jax.grad(penalty)(params))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
    l2, _ = jgd.l2_penalty(lam).update(grads, jgd.l2_penalty(lam).init(params), params)
    want, _ = optax.add_decayed_weights(2 * lam).update(grads, optax.EmptyState(), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), l2, want)


def test_weight_decay_is_decoupled():
    params = {"w": jnp.asarray([2.0, -1.0])}
    tx = jgd.weight_decay(0.1)
    updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], [-0.2, 0.1])


def test_max_norm_clips_each_unit_like_keras():
    params = {"kernel": jnp.asarray([[3.0, 0.1], [4.0, 0.2]]), "bias": jnp.asarray([10.0, 10.0])}
    updates = jax.tree.map(jnp.zeros_like, params)
    tx = jgd.max_norm(1.0)
    got, _ = tx.update(updates, tx.init(params), params)
    new = jgd.apply_updates(params, got)
    norms = np.linalg.norm(new["kernel"], axis=0)
    np.testing.assert_allclose(norms, [1.0, np.hypot(0.1, 0.2)], rtol=1e-6)  # unit 0 clipped, unit 1 kept
    kernel = np.asarray(params["kernel"])
    keras = kernel * np.clip(np.linalg.norm(kernel, axis=0), 0, 1.0) / np.linalg.norm(kernel, axis=0)
    np.testing.assert_allclose(new["kernel"], keras, rtol=1e-6)
    np.testing.assert_allclose(new["bias"], params["bias"])  # biases are not units' incoming weights
    rows, _ = jgd.max_norm(1.0, axis=1).update(updates, tx.init(params), params)
    np.testing.assert_allclose(np.linalg.norm(jgd.apply_updates(params, rows)["kernel"], axis=1), [1.0, 1.0])


def test_apply_if_finite_skips_counts_and_gives_up():
    params = {"w": jnp.ones(3)}
    tx = jgd.apply_if_finite(jgd.adam(0.1), max_consecutive=2)
    state = tx.init(params)
    good = {"w": jnp.ones(3)}
    bad = {"w": jnp.asarray([1.0, jnp.nan, 1.0])}
    _, state = tx.update(good, state, params)
    inner_after_good = state.inner
    updates, state = tx.update(bad, state, params)
    np.testing.assert_array_equal(updates["w"], 0.0)
    jax.tree.map(np.testing.assert_array_equal, state.inner, inner_after_good)
    assert (int(state.consecutive), int(state.skipped), bool(state.gave_up)) == (1, 1, False)
    _, state = tx.update({"w": jnp.full(3, jnp.inf)}, state, params)
    assert (int(state.consecutive), int(state.skipped), bool(state.gave_up)) == (2, 2, True)
    updates, state = tx.update(good, state, params)
    assert (int(state.consecutive), int(state.skipped), bool(state.gave_up)) == (0, 2, True)
    assert np.all(np.isfinite(updates["w"])) and np.all(updates["w"] != 0)
    assert int(state.inner.count) == 2


def test_jgd_inside_optax_chain_and_optax_inside_jgd_chain(x64):
    both = [
        jgd.chain(optax.clip_by_global_norm(1.0), jgd.adam(0.05)),
        optax.chain(jgd.clip_by_global_norm(1.0), jgd.adam(0.05)),
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05)),
    ]
    runs = [ref.trajectory(tx, 30, jnp.float64) for tx in both]
    np.testing.assert_allclose(runs[0], runs[2], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(runs[1], runs[2], rtol=1e-10, atol=1e-12)


def test_extra_keyword_arguments_reach_transforms_that_take_them():
    seen = {}

    def update(updates, state, params=None, **extra_args):
        seen.update(extra_args)
        return updates, state

    spy = jgd.GradientTransformation(lambda params: (), update)
    tx = jgd.chain(jgd.sgd(0.1), optax.scale(2.0), spy)  # optax.scale takes no extra arguments
    params = jnp.ones(2)
    updates, _ = tx.update(jnp.ones(2), tx.init(params), params, value=jnp.asarray(3.0))
    assert set(seen) == {"value"}
    np.testing.assert_allclose(updates, [-0.2, -0.2])
