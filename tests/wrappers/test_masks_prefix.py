"""Masks as optax writes them: a bool, a tree of bools that is a prefix of the params, or a function of the params.

``jgd.masked`` and ``jgd.freeze(mask)`` equal ``optax.masked`` and ``optax.freeze`` on the same calls, and a
prefix matches by path, so a dict mask applies to the ``nnx.State`` that ``nnx.Optimizer`` hands over.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jgd

rng = np.random.default_rng(4)
PARAMS = {
    "enc": {"w": rng.normal(size=(4, 3)), "b": rng.normal(size=3)},
    "head": {"w": rng.normal(size=(3, 2))},
}


def loss(params):
    return sum(jnp.sum(jnp.cos(x) + x**2) for x in jax.tree.leaves(params))


def final(tx, params, steps=5):
    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params


def max_abs_difference(a, b):
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def matrices(params):
    return jax.tree.map(lambda p: p.ndim == 2, params)


MASKS = {
    "true": True,
    "false": False,
    "full": {"enc": {"w": True, "b": False}, "head": {"w": False}},
    "prefix": {"enc": False, "head": True},
    "function": matrices,
    "prefix_function": lambda params: {"enc": True, "head": False},
}


@pytest.mark.parametrize("mask", MASKS)
def test_masked_equals_optax_masked(mask, x64):
    params = jax.tree.map(jnp.float64, PARAMS)
    peer = final(optax.masked(optax.adam(0.05), MASKS[mask]), params)
    assert max_abs_difference(final(jgd.masked(jgd.adam(0.05), MASKS[mask]), params), peer) <= 1e-12
    assert max_abs_difference(final(jgd.masked(optax.adam(0.05), MASKS[mask]), params), peer) == 0.0
    assert max_abs_difference(peer, params) > 1e-2


def test_none_mask_is_every_leaf(x64):
    params = jax.tree.map(jnp.float64, PARAMS)
    got = final(jgd.masked(jgd.adam(0.05), None), params)
    assert max_abs_difference(got, final(optax.adam(0.05), params)) <= 1e-12


@pytest.mark.parametrize("mask", ["full", "prefix", "function"])
def test_freeze_equals_optax_freeze(mask, x64):
    params = jax.tree.map(jnp.float64, PARAMS)
    got = final(jgd.chain(jgd.freeze(MASKS[mask]), jgd.adam(0.05)), params)
    want = final(optax.chain(optax.freeze(MASKS[mask]), optax.adam(0.05)), params)
    assert max_abs_difference(got, want) <= 1e-12
    frozen = {"full": ("enc", "w"), "prefix": ("head", "w"), "function": ("enc", "w")}[mask]
    np.testing.assert_array_equal(got[frozen[0]][frozen[1]], params[frozen[0]][frozen[1]])
    assert not np.array_equal(got["enc"]["b"], params["enc"]["b"])
    assert jgd.freeze(MASKS[mask]).init(params) == (), "frozen leaves hold no state"


def test_freeze_without_a_mask_freezes_every_leaf():
    updates, state = jgd.freeze().update(PARAMS, (), PARAMS)
    assert state == () and not any(np.any(u) for u in jax.tree.leaves(updates))
    updates, _ = jgd.freeze(False).update(PARAMS, (), PARAMS)
    assert max_abs_difference(updates, PARAMS) == 0.0


def test_a_prefix_that_does_not_match_names_the_path():
    sgd = jgd.sgd(0.1)
    with pytest.raises(ValueError, match="'haed'"):
        jgd.masked(sgd, {"enc": False, "haed": True}).init(PARAMS)
    with pytest.raises(ValueError, match="'head/w/x'"):
        jgd.masked(sgd, {"enc": False, "head": {"w": {"x": True}}}).init(PARAMS)
    with pytest.raises(ValueError, match="no entry for the parameter 'head/w'"):
        jgd.freeze({"enc": True}).init(PARAMS)
    with pytest.raises(ValueError, match="'decoder'"):
        jgd.masked(sgd, lambda params: {"decoder": True}).update(PARAMS, sgd.init(PARAMS), PARAMS)
    with pytest.raises(TypeError, match=r"bools.*int at enc/b"):
        jgd.masked(sgd, {"enc": {"w": True, "b": 1}, "head": True})


def test_a_mask_over_the_whole_params_applies_inside_a_partition_group():
    """The group sees the other group's leaves as None: the mask's entries for them are not an error."""
    mask = {"enc": {"w": True, "b": False}, "head": False}
    tx = jgd.partition({"enc": ("enc/.*", jgd.masked(jgd.sgd(1.0), mask))}, default=jgd.sgd(0.1))
    updates, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    np.testing.assert_allclose(updates["enc"]["w"], -PARAMS["enc"]["w"])
    np.testing.assert_allclose(updates["enc"]["b"], PARAMS["enc"]["b"])
    np.testing.assert_allclose(updates["head"]["w"], -0.1 * PARAMS["head"]["w"], rtol=1e-6)


class Net(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(3, 4, rngs=rngs)
        self.l2 = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.l1(x)))


# The l1 updates: frozen, zero; outside the mask, the gradient passes through unchanged.
NNX_CASES = {
    "freeze": (jgd.chain(jgd.freeze({"l1": True, "l2": False}), jgd.sgd(0.1)), 0.0),
    "masked": (jgd.masked(jgd.sgd(0.1), {"l1": False, "l2": True}), 1.0),
}


@pytest.mark.parametrize("case", NNX_CASES)
def test_a_dict_prefix_applies_to_the_nnx_state(case):
    tx, l1_scale = NNX_CASES[case]
    model = Net(nnx.Rngs(0))
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.ones((5, 3))
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    optimizer.update(model, grads)
    after, g = nnx.to_pure_dict(nnx.state(model, nnx.Param)), nnx.to_pure_dict(grads)
    for name in ("kernel", "bias"):
        np.testing.assert_allclose(after["l2"][name], before["l2"][name] - 0.1 * g["l2"][name], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(
            after["l1"][name], before["l1"][name] + l1_scale * g["l1"][name], rtol=1e-5, atol=1e-7
        )
    assert np.any(g["l1"]["kernel"])
