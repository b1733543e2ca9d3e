"""Monitoring: the norms kept in the state equal NumPy's, per parameter, per group and in all."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd

rng = np.random.default_rng(3)
PARAMS = {
    "encoder": {"kernel": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "bias": jnp.ones(3, jnp.float32)},
    "head": {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)},
}
GRADS = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), PARAMS)


def make(lr=0.01):
    groups = {"encoder": ("encoder/.*", jgd.adam(lr)), "head": ("head/.*", jgd.sgd(0.1))}
    return jgd.monitor(jgd.partition(groups))


def norm(*arrays):
    return np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64))) for a in arrays))


def test_norms_equal_numpy():
    tx = make()
    updates, state = jax.jit(tx.update)(GRADS, tx.init(PARAMS), PARAMS)
    stats = jgd.statistics(state)
    u, g, p = updates, GRADS, PARAMS
    for path, (gl, ul, pl) in {
        "encoder/kernel": (g["encoder"]["kernel"], u["encoder"]["kernel"], p["encoder"]["kernel"]),
        "encoder/bias": (g["encoder"]["bias"], u["encoder"]["bias"], p["encoder"]["bias"]),
        "head/kernel": (g["head"]["kernel"], u["head"]["kernel"], p["head"]["kernel"]),
    }.items():
        assert stats[f"grad_norm/{path}"] == pytest.approx(norm(gl), rel=1e-6)
        assert stats[f"update_norm/{path}"] == pytest.approx(norm(ul), rel=1e-6)
        assert stats[f"param_norm/{path}"] == pytest.approx(norm(pl), rel=1e-6)
        assert stats[f"update_ratio/{path}"] == pytest.approx(norm(ul) / norm(pl), rel=1e-6)
    assert stats["grad_norm"] == pytest.approx(norm(*jax.tree.leaves(g)), rel=1e-6)
    assert stats["update_ratio"] == pytest.approx(norm(*jax.tree.leaves(u)) / norm(*jax.tree.leaves(p)), rel=1e-6)
    encoder = jax.tree.leaves(g["encoder"])
    assert stats["grad_norm/group:encoder"] == pytest.approx(norm(*encoder), rel=1e-6)
    assert stats["update_norm/group:head"] == pytest.approx(norm(u["head"]["kernel"]), rel=1e-6)
    # The hyperparameters come along, each keyed by the group it belongs to (a label always shows).
    assert stats["encoder/b2"] == pytest.approx(0.999) and isinstance(stats["encoder/b2"], float)
    assert (stats["encoder/learning_rate"], stats["head/learning_rate"]) == pytest.approx((0.01, 0.1))


def test_updates_unchanged_and_nan_without_params():
    tx = make()
    want, _ = make().update(GRADS, tx.init(PARAMS), PARAMS)
    got, state = tx.update(GRADS, tx.init(PARAMS), PARAMS)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)
    sgd = jgd.monitor(jgd.sgd(0.1))
    _, state = sgd.update(GRADS, sgd.init(PARAMS), None)
    stats = jgd.statistics(state)
    assert np.isnan(stats["param_norm"]) and stats["update_norm"] == pytest.approx(0.1 * stats["grad_norm"])
    with pytest.raises(ValueError, match="monitor"):
        jgd.statistics(jgd.sgd().init(PARAMS))


def test_vmap_over_learning_rate_equals_loop():
    def step(lr):
        tx = make(lr)
        return tx.update(GRADS, tx.init(PARAMS), PARAMS)[1]

    rates = jnp.asarray([0.01, 0.1])
    swept = jgd.statistics(jax.jit(jax.vmap(step))(rates))
    for i, lr in enumerate(rates):
        one = jgd.statistics(jax.jit(step)(lr))
        assert set(one) == set(swept)
        for key, value in one.items():
            assert swept[key][i] == pytest.approx(value, rel=1e-6), key


def test_statistics_of_an_optax_transform_hold_its_norms_and_no_hyperparameters():
    tx = jgd.monitor(optax.adam(0.1))
    _, state = tx.update(GRADS, tx.init(PARAMS), PARAMS)
    stats = jgd.statistics(state)
    assert stats["grad_norm"] == pytest.approx(norm(*jax.tree.leaves(GRADS)), rel=1e-6)
    assert "learning_rate" not in stats
