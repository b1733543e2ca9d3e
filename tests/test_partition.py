"""Parameter groups by path: each group equals its transform run alone; frozen leaves cost nothing."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd

rng = np.random.default_rng(1)


def tree():
    return {
        "encoder": {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=3)},
        "head": {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=2)},
        "embed": rng.normal(size=(5, 4)),
    }


PARAMS = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree())
GRADS = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree()) for _ in range(4)]


def run(tx, params, grads=GRADS):
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = jgd.apply_updates(params, updates)
    return params, state


def nbytes(tree):
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def two_groups_and_frozen():
    rules = {
        "encoder": ("encoder/.*", jgd.adam(0.01)),
        "head": (r"\['head'\]\[.*\]", jgd.momentum(0.05)),  # the keystr form
        "frozen": ("embed", jgd.freeze()),
    }
    return jgd.partition(rules)


def test_groups_equal_their_transforms_run_alone():
    got, state = jax.jit(lambda p: run(two_groups_and_frozen(), p))(PARAMS)
    encoder, _ = run(jgd.adam(0.01), PARAMS["encoder"], [g["encoder"] for g in GRADS])
    head, _ = run(jgd.momentum(0.05), PARAMS["head"], [g["head"] for g in GRADS])
    for k in ("kernel", "bias"):
        np.testing.assert_allclose(got["encoder"][k], encoder[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got["head"][k], head[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got["embed"], PARAMS["embed"])
    assert set(state.groups) == {"encoder", "head", "frozen"}
    assert dict(state.members)["head"] == ("head/bias", "head/kernel")


def test_frozen_leaves_allocate_no_state():
    shapes = jax.eval_shape(two_groups_and_frozen().init, PARAMS)
    assert nbytes(shapes.groups["frozen"]) == 0
    alone = jax.eval_shape(jgd.adam(0.01).init, PARAMS["encoder"]), jax.eval_shape(jgd.momentum().init, PARAMS["head"])
    assert nbytes(shapes) == nbytes(alone)
    # The embedding is the largest leaf; adam on every leaf would hold two copies of it.
    assert nbytes(shapes) < nbytes(jax.eval_shape(jgd.adam().init, PARAMS)) - 2 * PARAMS["embed"].nbytes + 1


def test_multiplier_scales_the_default_learning_rate():
    tx = jgd.partition({"head": ("head/.*", 0.1), "frozen": ("embed", jgd.freeze())}, default=jgd.adam(0.01))
    got, state = run(tx, PARAMS)
    head, _ = run(jgd.adam(0.001), PARAMS["head"], [g["head"] for g in GRADS])
    encoder, _ = run(jgd.adam(0.01), PARAMS["encoder"], [g["encoder"] for g in GRADS])
    for k in ("kernel", "bias"):
        np.testing.assert_allclose(got["head"][k], head[k], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(got["encoder"][k], encoder[k], rtol=1e-6, atol=1e-7)
    # The multiplier is data: setting it to zero stops the group without recompiling.
    stopped = jgd.set_hyperparams(state, multiplier=0.0)
    updates, _ = tx.update(GRADS[0], stopped, got)
    assert not np.any(updates["head"]["kernel"]) and np.all(updates["encoder"]["kernel"] != 0)


def test_group_learning_rate_is_read_and_set_by_name():
    tx = jgd.partition({"encoder": ("encoder/.*", jgd.adam(0.01)), "rest": (".*", jgd.adam(0.02))})
    state = tx.init(PARAMS)
    assert float(jgd.hyperparams(state)["encoder/learning_rate"]) == pytest.approx(0.01)
    state = jgd.set_hyperparams(state, **{"encoder/learning_rate": 0.0})
    updates, state = tx.update(GRADS[0], state, PARAMS)
    assert not np.any(updates["encoder"]["kernel"]) and np.all(updates["head"]["kernel"] != 0)
    assert float(jgd.hyperparams(state)["rest/learning_rate"]) == pytest.approx(0.02)


def test_vmap_over_a_group_learning_rate_equals_loop():
    def final(lr):
        tx = jgd.partition({"encoder": ("encoder/.*", jgd.adam(lr))}, default=jgd.sgd(0.1))
        return run(tx, PARAMS)[0]

    rates = jnp.asarray([0.0, 0.01, 0.1])
    swept = jax.jit(jax.vmap(final))(rates)
    for i, lr in enumerate(rates):
        one = jax.jit(final)(lr)
        for a, b in zip(jax.tree.leaves(swept), jax.tree.leaves(one)):
            np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7)


def test_unmatched_leaf_and_empty_rule_are_named():
    with pytest.raises(ValueError, match="'embed'"):
        jgd.partition({"encoder": ("encoder/.*", jgd.sgd()), "head": ("head/.*", jgd.sgd())}).init(PARAMS)
    with pytest.raises(ValueError, match="'decoder'"):
        jgd.partition({"decoder": ("decoder/.*", jgd.sgd())}, default=jgd.sgd()).init(PARAMS)
    with pytest.raises(ValueError, match="needs a default"):
        jgd.partition({"head": ("head/.*", 0.1)})
    with pytest.raises(ValueError, match="name"):
        jgd.partition({"a/b": ("head/.*", jgd.sgd())})
    with pytest.raises(ValueError, match="multiplier"):
        jgd.partition({"head": ("head/.*", -1.0)}, default=jgd.sgd())


def test_masks_and_masked_weight_decay_match_optax():
    params = {"dense": {"kernel": PARAMS["encoder"]["kernel"], "bias": PARAMS["encoder"]["bias"]}, "LayerNorm_0": {}}
    params["LayerNorm_0"] = {"scale": PARAMS["head"]["bias"], "weights": PARAMS["head"]["kernel"]}
    mask = jgd.masks.decayed(params)
    assert mask == {"dense": {"kernel": True, "bias": False}, "LayerNorm_0": {"scale": False, "weights": False}}
    assert jgd.masks.paths(params)["dense"]["kernel"] == "dense/kernel"
    assert jgd.masks.by_path(params, ".*kernel") == {
        "dense": {"kernel": True, "bias": False},
        "LayerNorm_0": {"scale": False, "weights": False},
    }
    grads = jax.tree.map(jnp.ones_like, params)
    tx = jgd.masked(jgd.weight_decay(0.1), jgd.masks.decayed)
    got, _ = tx.update(grads, tx.init(params), params)
    peer = optax.add_decayed_weights(-0.1, mask=mask)  # optax adds +λw to the gradient, jgd's decay is -λw
    want, _ = peer.update(grads, peer.init(params), params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_freeze_alone():
    tx = jgd.freeze()
    assert tx.init(PARAMS) == ()
    updates, state = tx.update(GRADS[0], (), PARAMS)
    assert state == () and all(not np.any(u) for u in jax.tree.leaves(updates))
