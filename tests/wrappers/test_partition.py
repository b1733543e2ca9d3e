"""Parameter groups by path and by label: each group equals its transform run alone, the by-label form equals
optax.partition, frozen leaves cost nothing, and nnx.Optimizer gives what Linen's TrainState gives."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.training import train_state

import jgd
from jgd.base import Label

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


def test_group_states_are_keyed_by_labels_even_for_one_group():
    for tx in (
        jgd.partition({"all": (".*", jgd.adam(0.01))}),
        jgd.partition({"head": ("head/.*", 0.1)}, default=jgd.adam(0.01)),
        jgd.partition({"adam": jgd.adam(0.01)}, "adam"),
    ):
        state = tx.init(PARAMS)
        assert state.groups and all(type(key) is Label for key in state.groups)
        _, state = jax.jit(tx.update)(GRADS[0], state, PARAMS)
        assert all(type(key) is Label for key in state.groups), "the labels survive jit"
    # A multiplier group's state holds its value under the group's label: "head/multiplier".
    assert set(state.groups) == {"adam"}
    multiplied = jgd.partition({"head": ("head/.*", 0.1)}, default=jgd.adam(0.01)).init(PARAMS)
    assert float(multiplied.groups["head"].hyperparams["multiplier"]) == pytest.approx(0.1)


SMALL = {
    "enc": {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.asarray(rng.normal(size=3), jnp.float32)},
    "head": {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)},
}


def trajectory(tx, params=SMALL, steps=5):
    """The params after each of ``steps`` jitted steps on a fixed quadratic-plus-cosine loss."""

    def loss(p):
        return sum(jnp.sum(jnp.cos(x) + x**2) for x in jax.tree.leaves(p))

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    state, out = tx.init(params), []
    for _ in range(steps):
        params, state = step(params, state)
        out.append(params)
    return out


def max_abs_difference(a, b):
    return max(
        float(jnp.max(jnp.abs(x - y))) for pa, pb in zip(a, b) for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb))
    )


def by_name(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: "adam" if path[-1].key == "w" else "frozen", params)


LABELS = {
    "prefix": {"enc": "frozen", "head": "adam"},
    "full": {"enc": {"w": "adam", "b": "frozen"}, "head": {"w": "adam"}},
    "function": by_name,
}


@pytest.mark.parametrize("labels", LABELS)
def test_by_label_equals_optax_partition(labels, x64):
    params = jax.tree.map(lambda x: x.astype(jnp.float64), SMALL)
    label = LABELS[labels]
    peer = trajectory(optax.partition({"adam": optax.adam(0.05), "frozen": optax.set_to_zero()}, label), params)
    jgd_parts = trajectory(jgd.partition({"adam": jgd.adam(0.05), "frozen": jgd.freeze()}, label), params)
    optax_parts = trajectory(jgd.partition({"adam": optax.adam(0.05), "frozen": optax.set_to_zero()}, label), params)
    assert max_abs_difference(peer, jgd_parts) <= 1e-12
    assert max_abs_difference(peer, optax_parts) == 0.0, "optax's own transforms, grouped by jgd: the same arithmetic"
    assert max_abs_difference(peer[:1], [params]) > 1e-2, "the adam group moves"
    if labels == "prefix":
        np.testing.assert_array_equal(jgd_parts[-1]["enc"]["w"], params["enc"]["w"])


def test_by_label_members_and_unlabelled_groups():
    tx = jgd.partition({"adam": jgd.adam(0.05), "sgd": jgd.sgd(0.1), "frozen": jgd.freeze()}, LABELS["prefix"])
    state = tx.init(SMALL)
    assert state.members == (("adam", ("head/w",)), ("sgd", ()), ("frozen", ("enc/b", "enc/w")))
    assert jax.tree.leaves(state.groups["sgd"].slots) == [] and state.groups["frozen"] == ()


def test_by_label_errors_name_the_path_or_group():
    transforms = {"adam": jgd.adam(0.05), "frozen": jgd.freeze()}
    with pytest.raises(ValueError, match="'haed'"):
        jgd.partition(transforms, {"enc": "frozen", "haed": "adam"}).init(SMALL)
    with pytest.raises(ValueError, match=r"'head/w'.*'sgd'"):
        jgd.partition(transforms, {"enc": "frozen", "head": "sgd"}).init(SMALL)
    with pytest.raises(ValueError, match="no entry for the parameter 'head/w'"):
        jgd.partition(transforms, {"enc": "frozen"}).init(SMALL)
    with pytest.raises(TypeError, match=r"partition group 'adam'.*adam\(\.\.\.\)"):
        jgd.partition({"adam": jgd.adam}, "adam")
    with pytest.raises(TypeError, match="default"):
        jgd.partition(transforms, LABELS["prefix"], default=jgd.sgd())
    with pytest.raises(TypeError, match="param_labels"):
        jgd.partition({"adam": jgd.adam()})
    with pytest.raises(TypeError, match="default="):
        jgd.partition({"adam": (".*", jgd.adam())}, jgd.sgd())


def test_uncalled_factories_are_type_errors_naming_the_argument():
    with pytest.raises(TypeError, match=r"partition group 'a'.*adam\(\.\.\.\)"):
        jgd.partition({"a": (".*", jgd.adam)})
    with pytest.raises(TypeError, match=r"partition group 'frozen'.*freeze\(\.\.\.\)"):
        jgd.partition({"frozen": ("embed", jgd.freeze)}, default=jgd.sgd())
    with pytest.raises(TypeError, match=r"^default .*sgd"):
        jgd.partition({"head": ("head/.*", 0.1)}, default=jgd.sgd)
    with pytest.raises(TypeError, match=r"^tx .*adam"):
        jgd.masked(jgd.adam, True)
    # A schedule is a multiplier, not a factory.
    jgd.partition({"head": ("head/.*", jgd.schedules.constant(0.1))}, default=jgd.sgd()).init(PARAMS)


# Flax: nnx.Optimizer (init with NNX Variables, update with arrays) gives what Linen's TrainState gives.
X = jnp.asarray(rng.normal(size=(8, 3)), jnp.float32)
Y = jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(3, 4, rngs=rngs)
        self.l2 = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.l1(x)))


class LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(2, name="l2")(jnp.tanh(linen.Dense(4, name="l1")(x)))


def initial_params():
    return nnx.to_pure_dict(nnx.state(NnxNet(nnx.Rngs(0)), nnx.Param))


def train_nnx(tx, steps):
    model = NnxNet(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        grads = nnx.grad(lambda m: jnp.mean((m(X) - Y) ** 2))(model)
        optimizer.update(model, grads)

    for _ in range(steps):
        step(model, optimizer)
    return nnx.to_pure_dict(nnx.state(model, nnx.Param)), optimizer


def train_linen(tx, steps):
    params = initial_params()  # the same initial weights
    state = train_state.TrainState.create(apply_fn=LinenNet().apply, params=params, tx=tx)

    @jax.jit
    def step(state):
        grads = jax.grad(lambda p: jnp.mean((state.apply_fn({"params": p}, X) - Y) ** 2))(state.params)
        return state.apply_gradients(grads=grads)

    for _ in range(steps):
        state = step(state)
    return state.params


# Rules and masks written from the paths jgd.masks.paths(nnx.state(model, nnx.Param)) shows: "l1/kernel", ...
FLAX_CASES = {
    "rules": lambda: jgd.partition({"kernels": (".*/kernel", jgd.adam(0.05))}, default=jgd.sgd(0.1)),
    "bracket_rules": lambda: jgd.partition({"l1": (r"\['l1'\]\[.*\]", jgd.adam(0.05))}, default=jgd.sgd(0.1)),
    "multiplier": lambda: jgd.partition({"l2": ("l2/.*", 0.1)}, default=jgd.adam(0.05)),
    "prefix_labels": lambda: jgd.partition(
        {"adam": jgd.adam(0.05), "frozen": jgd.freeze()}, {"l1": "frozen", "l2": "adam"}
    ),
    "label_function": lambda: jgd.partition(
        {"adam": jgd.adam(0.05), "sgd": jgd.sgd(0.1)},
        lambda p: jax.tree.map(lambda x: "adam" if x.ndim == 2 else "sgd", p),
    ),
    "accumulated": lambda: jgd.accumulate(
        jgd.partition({"kernels": (".*/kernel", jgd.adam(0.05))}, default=jgd.sgd(0.1)), every=2
    ),
    "muon": lambda: jgd.muon(0.02),
}


@pytest.mark.parametrize("case", FLAX_CASES)
def test_nnx_optimizer_equals_linen_train_state(case):
    got, optimizer = train_nnx(FLAX_CASES[case](), steps=4)
    want = train_linen(FLAX_CASES[case](), steps=4)
    initial = initial_params()
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    moved = {
        path: not np.array_equal(a, p)
        for path, a, p in zip(jax.tree.leaves(jgd.masks.paths(got)), jax.tree.leaves(got), jax.tree.leaves(initial))
    }
    assert moved["l2/kernel"] and moved["l1/bias"] != (case == "prefix_labels"), "the frozen group alone stays put"
    (part,) = jgd.trees.instances(nnx.as_pure(optimizer.opt_state), jgd.PartitionState)
    assert all(paths for _, paths in part.members)


def kernels(tree):
    return {layer: leaves["kernel"] for layer, leaves in tree.items()}


def biases(tree):
    return {layer: leaves["bias"] for layer, leaves in tree.items()}


def test_kernel_rule_gets_its_transform_inside_nnx_optimizer():
    """The reference runs each group's transform on its own leaves, without partition."""
    got, optimizer = train_nnx(FLAX_CASES["rules"](), steps=3)
    params = initial_params()
    adam, sgd = jgd.adam(0.05), jgd.sgd(0.1)
    adam_state, sgd_state = adam.init(kernels(params)), sgd.init(biases(params))
    for _ in range(3):
        grads = jax.grad(lambda p: jnp.mean((LinenNet().apply({"params": p}, X) - Y) ** 2))(params)
        k_updates, adam_state = adam.update(kernels(grads), adam_state, kernels(params))
        b_updates, sgd_state = sgd.update(biases(grads), sgd_state, biases(params))
        params = {
            k: {"kernel": v["kernel"] + k_updates[k], "bias": v["bias"] + b_updates[k]} for k, v in params.items()
        }
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    (part,) = jgd.trees.instances(nnx.as_pure(optimizer.opt_state), jgd.PartitionState)
    assert part.members == (("kernels", ("l1/kernel", "l2/kernel")), ("default", ("l1/bias", "l2/bias")))


def test_members_are_the_same_at_init_and_update_so_cond_can_choose():
    model = NnxNet(nnx.Rngs(0))
    tx = FLAX_CASES["rules"]()
    state = nnx.as_pure(tx.init(nnx.state(model, nnx.Param)))  # nnx.Optimizer's init sees NNX Variables
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    grads = jax.tree.map(jnp.ones_like, params)
    _, updated = tx.update(grads, state, params)
    assert updated.members == state.members
    chosen = jax.jit(lambda s, go: jax.lax.cond(go, lambda s: tx.update(grads, s, params)[1], lambda s: s, s))
    assert chosen(state, True).members == state.members
