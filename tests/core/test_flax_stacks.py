"""The README's wrapper stacks run inside nnx.Optimizer (a tree of NNX Variables at init) as in a Linen TrainState."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.training import train_state

import jgd


class Model(nnx.Module):
    def __init__(self, rngs):
        self.embed = nnx.Linear(3, 4, rngs=rngs)
        self.body = nnx.Linear(4, 4, rngs=rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(jnp.tanh(self.body(jnp.tanh(self.embed(x)))))


X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)


def loss_fn(model):
    return jnp.mean(model(X) ** 2)


def large_run():
    """The README's "Large runs" stack, with a window short enough to fill in the test."""
    groups = {"frozen": ("embed/.*", jgd.freeze()), "head": ("head/.*", 0.1)}
    inner = jgd.partition(groups, default=jgd.adamw(3e-2, mask=jgd.masks.decayed))
    return jgd.monitor(jgd.skip_spikes(jgd.accumulate(inner, every=2), window=2))


def kernel_decay():
    """A decay mask written from the paths ``jgd.masks.paths(nnx.state(model, nnx.Param))`` shows."""
    return jgd.adamw(3e-2, weight_decay=0.5, mask=lambda p: jgd.masks.by_path(p, ".*/kernel"))


STACKS = {
    "large_run": large_run,
    "kernel_decay": kernel_decay,
    "spikes_over_partition": lambda: jgd.skip_spikes(
        jgd.partition({"head": ("head/.*", jgd.sgd(0.1))}, default=jgd.adam(1e-2)), window=2
    ),
}


def nnx_run(make, steps):
    model = Model(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, make(), wrt=nnx.Param)
    for _ in range(steps):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads, loss=loss)
    return nnx.state(model, nnx.Param).to_pure_dict(), optimizer


def linen_run(make, steps):
    graphdef, params = nnx.split(Model(nnx.Rngs(0)), nnx.Param)
    params = params.to_pure_dict()

    def pure_loss(p):
        return loss_fn(nnx.merge(graphdef, nnx.State(p)))

    state = train_state.TrainState.create(apply_fn=None, params=params, tx=make())
    for _ in range(steps):
        loss, grads = jax.value_and_grad(pure_loss)(state.params)
        updates, opt_state = state.tx.update(grads, state.opt_state, state.params, loss=loss)
        state = state.replace(params=jgd.apply_updates(state.params, updates), opt_state=opt_state)
    return state.params, state


def _paths_and_leaves(tree):
    return [(jgd.masks.path_name(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.parametrize("name", sorted(STACKS))
def test_a_stack_steps_the_same_in_nnx_optimizer_and_a_linen_train_state(name):
    nnx_params, _ = nnx_run(STACKS[name], 6)
    linen_params, _ = linen_run(STACKS[name], 6)
    start = dict(_paths_and_leaves(nnx.state(Model(nnx.Rngs(0)), nnx.Param).to_pure_dict()))
    linen = dict(_paths_and_leaves(linen_params))
    moved = {}
    for path, leaf in _paths_and_leaves(nnx_params):
        np.testing.assert_allclose(leaf, linen[path], rtol=1e-6, atol=1e-7, err_msg=path)
        moved[path] = not np.allclose(leaf, start[path])
    if name == "large_run":
        assert not moved["embed/kernel"] and not moved["embed/bias"]  # frozen
        assert moved["body/kernel"] and moved["head/kernel"]


def test_a_kernel_mask_from_nnx_paths_decays_the_kernels_only():
    model = Model(nnx.Rngs(0))
    assert jgd.masks.paths(nnx.state(model, nnx.Param))["body"]["kernel"].get_value() == "body/kernel"
    decayed, _ = nnx_run(kernel_decay, 1)  # one step: the bias's gradient is the same in both runs
    plain, _ = nnx_run(lambda: jgd.adamw(3e-2, weight_decay=0.5, mask=False), 1)
    assert not np.allclose(decayed["body"]["kernel"], plain["body"]["kernel"])
    np.testing.assert_array_equal(decayed["body"]["bias"], plain["body"]["bias"])


def test_statistics_and_hyperparams_read_the_same_keys_in_both():
    _, optimizer = nnx_run(large_run, 4)
    _, state = linen_run(large_run, 4)
    nnx_keys, linen_keys = set(jgd.statistics(optimizer.opt_state)), set(jgd.statistics(state.opt_state))
    assert nnx_keys == linen_keys
    assert {"default/learning_rate", "head/multiplier", "num_std", "grad_norm/body/kernel"} <= nnx_keys
