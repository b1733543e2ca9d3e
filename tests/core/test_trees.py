"""Trees, dtypes and errors: updates keep each leaf's structure and dtype; mismatches name the path."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd

METHODS = [
    jgd.sgd(0.1),
    jgd.momentum(0.1),
    jgd.nesterov(0.1),
    jgd.adagrad(0.1),
    jgd.adadelta(),
    jgd.rmsprop(0.1, centered=True, momentum=0.9),
    jgd.adam(0.1),
    jgd.adamax(0.1),
    jgd.nadam(0.1),
    jgd.nadam(0.1, form="seed"),
    jgd.chain(jgd.clip_by_global_norm(1.0), jgd.clip_by_norm(1.0), jgd.clip_by_value(1.0), jgd.adam(0.1)),
    jgd.chain(jgd.l1_penalty(0.1), jgd.l2_penalty(0.1), jgd.adam(0.1), jgd.weight_decay(0.01), jgd.max_norm(2.0)),
    jgd.apply_if_finite(jgd.adam(0.1)),
]


class Layer(NamedTuple):
    kernel: jax.Array
    bias: jax.Array | None


def _mixed_tree(dtype=jnp.float32):
    return {
        "layers": [Layer(jnp.ones((3, 2), dtype), jnp.zeros(2, dtype)), Layer(jnp.ones((2, 1), dtype), None)],
        "scale": (jnp.asarray(0.5, dtype),),
    }


@pytest.mark.parametrize("tx", METHODS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_updates_keep_tree_structure_shapes_and_dtypes(tx, dtype):
    params = _mixed_tree(dtype)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
    state = tx.init(params)
    for _ in range(2):
        updates, state = jax.jit(tx.update)(grads, state, params)
        params = jgd.apply_updates(params, updates)
    assert jax.tree.structure(updates) == jax.tree.structure(grads)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert u.dtype == dtype and u.shape == p.shape and p.dtype == dtype
        assert np.all(np.isfinite(np.asarray(u, np.float32)))


def test_bfloat16_params_follow_the_float32_run():
    params32 = {"w": jnp.linspace(-1.0, 1.0, 8)}
    params16 = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params32)
    tx = jgd.adam(0.05)
    s32, s16 = tx.init(params32), tx.init(params16)
    for _ in range(10):
        u32, s32 = tx.update(jax.tree.map(lambda p: 2 * p - 0.3, params32), s32, params32)
        u16, s16 = tx.update(jax.tree.map(lambda p: 2 * p - 0.3, params16), s16, params16)
        params32, params16 = jgd.apply_updates(params32, u32), jgd.apply_updates(params16, u16)
    assert s16.slots["mu"]["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(params16["w"], np.float32), params32["w"], atol=0.05)


def test_state_dtype_sets_the_moments_dtype():
    params = {"w": jnp.ones(4)}
    tx = jgd.adam(0.1, state_dtype=jnp.bfloat16)
    state = tx.init(params)
    assert state.slots["mu"]["w"].dtype == jnp.bfloat16 and state.slots["nu"]["w"].dtype == jnp.bfloat16
    updates, state = tx.update({"w": jnp.ones(4)}, state, params)
    assert updates["w"].dtype == jnp.float32 and state.slots["nu"]["w"].dtype == jnp.bfloat16
    full = jgd.adam(0.1).update({"w": jnp.ones(4)}, jgd.adam(0.1).init(params), params)[0]
    np.testing.assert_allclose(updates["w"], full["w"], rtol=1e-2)


def test_grads_of_another_structure_name_the_path():
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}}
    tx = jgd.adam(0.1)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"updates has no leaf at \['dense'\]\['bias'\]"):
        tx.update({"dense": {"kernel": jnp.ones((2, 2))}}, state, params)
    with pytest.raises(ValueError, match=r"updates has a leaf at \['dense'\]\['extra'\]"):
        tx.update({"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2), "extra": jnp.ones(1)}}, state)
    wd = jgd.weight_decay(0.1)
    with pytest.raises(ValueError, match=r"updates\['dense'\]\['bias'\] has shape \(3,\)"):
        wd.update({"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(3)}}, wd.init(params), params)
    with pytest.raises(ValueError, match="weight_decay needs params"):
        wd.update(params, wd.init(params))


def test_integer_and_complex_params_are_rejected_with_their_path():
    with pytest.raises(ValueError, match=r"params\['n'\] has dtype int32"):
        jgd.adam(0.1).init({"w": jnp.ones(2), "n": jnp.ones(2, jnp.int32)})
    with pytest.raises(ValueError, match=r"params\[1\] has dtype complex64; adadelta does not take complex"):
        jgd.adadelta().init([jnp.ones(2), jnp.ones(2, jnp.complex64)])


@pytest.mark.parametrize("tx", METHODS)
def test_empty_tree_and_scalar_params(tx):
    updates, _ = tx.update({}, tx.init({}), {})
    assert updates == {}
    scalar = jnp.asarray(1.5)
    updates, _ = tx.update(jnp.asarray(0.5), tx.init(scalar), scalar)
    assert updates.shape == () and updates.dtype == jnp.float32


def test_apply_updates_and_chain_name_bad_input():
    with pytest.raises(ValueError, match=r"updates has no leaf at \['a'\]"):
        jgd.apply_updates({"a": jnp.ones(2)}, {"b": jnp.ones(2)})
    with pytest.raises(TypeError, match="chain argument 1 must be a gradient transformation"):
        jgd.chain(jgd.sgd(0.1), 0.1)
