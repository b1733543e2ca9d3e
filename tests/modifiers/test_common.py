"""What every jgd transform promises, for each modifier: jit, vmap sweeps of its own setting, set_hyperparams
without recompiling, dtypes and trees, eval_shape, nnx.Optimizer and a Linen TrainState, and its errors.

The shared table (tests/cases.py) runs them through the row tests and on a mesh; here each one's own setting.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from flax.training import train_state

import jgd

# name -> (the modifier around a method with its setting as the argument, the setting's key, three values)
MODIFIERS = {
    "cautious": (lambda v: jgd.cautious(jgd.adam(0.05), cautious_eps=v), "cautious_eps", (0.0, 0.5, 2.0)),
    "mars": (lambda v: jgd.mars(jgd.adamw(0.05, b1=0.5), mars_gamma=v, mars_b1=0.5), "mars_gamma", (0.0, 0.5, 4.0)),
    "ema_params": (lambda v: jgd.chain(jgd.adam(0.05), jgd.ema_params(v)), "ema_decay", (0.0, 0.5, 0.9)),
    "graft": (lambda v: jgd.graft(jgd.adam(0.05), jgd.sgd(v)), "norm/learning_rate", (0.0, 0.05, 0.2)),
    "mechanize": (lambda v: jgd.mechanize(jgd.adam(1.0), s_init=v), "s_init", (1e-4, 1e-2, 0.1)),
}
NAMES = sorted(MODIFIERS)
PARAMS = {
    "w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2),
    "b": jnp.asarray([0.3, -0.4], jnp.float32),
    "s": jnp.asarray(0.7, jnp.float32),
}


def loss(params):
    """A loss whose gradient changes sign along the run, so that the masks and corrections act."""
    return sum(jnp.sum(jnp.sin(3 * x) + x * x) for x in jax.tree.leaves(params))


def run(tx, params, steps=3):
    """The params and the state after ``steps`` updates on :func:`loss`."""
    state = tx.init(params)
    for _ in range(steps):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = jgd.apply_updates(params, updates)
    return params, state


@functools.cache
def jitted(name):
    """The run as one program of the setting's value, shared by the tests of one modifier."""
    return jax.jit(lambda value: run(MODIFIERS[name][0](value), PARAMS))


def assert_close(a, b, rtol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-7), a, b)


@pytest.mark.parametrize("name", NAMES)
def test_jit_equals_no_jit(name):
    make, _, values = MODIFIERS[name]
    assert_close(run(make(values[1]), PARAMS), jitted(name)(jnp.float32(values[1])))


@pytest.mark.parametrize("name", NAMES)
def test_vmap_over_its_setting_equals_a_loop(name):
    _, _, values = MODIFIERS[name]
    swept = jax.jit(jax.vmap(lambda v: run(MODIFIERS[name][0](v), PARAMS)))(jnp.asarray(values))
    alone = [jitted(name)(jnp.float32(v)) for v in values]  # the params and the state (ema_params' average)
    for i, result in enumerate(alone):
        assert_close(jax.tree.map(lambda x, i=i: x[i], swept), result)
    first, last = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(r)]) for r in (alone[0], alone[2]))
    assert not np.allclose(first, last)  # the setting changes the run


@pytest.mark.parametrize("name", NAMES)
def test_set_hyperparams_on_its_setting_applies_without_recompiling(name):
    make, key, values = MODIFIERS[name]
    traces, tx = [], make(values[0])

    @jax.jit
    def step(params, state):
        traces.append(1)
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return jgd.apply_updates(params, updates), state

    params, state = step(PARAMS, tx.init(PARAMS))
    got, state = step(params, jgd.set_hyperparams(state, **{key: values[2]}))
    assert len(traces) == 1
    assert float(jgd.hyperparams(state)[key]) == pytest.approx(values[2])
    rebuilt = make(values[2])  # the transform built with the new value, from the same state, steps alike
    updates, _ = rebuilt.update(jax.grad(loss)(params), step(PARAMS, tx.init(PARAMS))[1], params)
    assert_close(got, jgd.apply_updates(params, updates))


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_and_complex_params_keep_their_dtypes_and_tree(name):
    params = {
        "layers": [jnp.ones((2, 3), jnp.bfloat16), (jnp.full(3, -0.5, jnp.float32),)],
        "s": jnp.bfloat16(1.5),
        "z": jnp.asarray([1 + 2j, -0.5j], jnp.complex64),
    }
    grads = jax.tree.map(lambda p: (0.5 * p - 0.2).astype(p.dtype), params)
    tx = MODIFIERS[name][0](MODIFIERS[name][2][1])
    state = tx.init(params)
    updates, after = jax.jit(tx.update)(grads, state, params)
    assert [x.dtype for x in jax.tree.leaves(after)] == [x.dtype for x in jax.tree.leaves(state)]
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert u.dtype == p.dtype and u.shape == p.shape and np.all(np.isfinite(np.asarray(u)))
    assert np.any(np.asarray(updates["z"]) != 0)


@pytest.mark.parametrize("name", NAMES)
def test_eval_shape_of_init_is_the_state(name):
    tx = MODIFIERS[name][0](MODIFIERS[name][2][1])
    shapes = jax.eval_shape(tx.init, PARAMS)
    state = tx.init(PARAMS)
    assert jax.tree.structure(shapes) == jax.tree.structure(state)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(shapes)] == [(x.shape, x.dtype) for x in jax.tree.leaves(state)]


class Model(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(3, 4, rngs=rngs)
        self.out = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)


def model_loss(model):
    return jnp.mean((model(X) - 1.0) ** 2)


@pytest.mark.parametrize("name", NAMES)
def test_nnx_optimizer_and_a_linen_train_state_step_alike(name):
    make, key, values = MODIFIERS[name]
    model = Model(nnx.Rngs(0))
    graphdef, start = nnx.split(model, nnx.Param)
    start = nnx.to_pure_dict(start)  # the values now: the State's Variables are the model's, updated in place
    optimizer = nnx.Optimizer(model, make(values[1]), wrt=nnx.Param)

    @nnx.jit
    def nnx_step(model, optimizer):
        optimizer.update(model, nnx.grad(model_loss)(model))

    state = train_state.TrainState.create(apply_fn=None, params=start, tx=make(values[1]))

    @jax.jit
    def linen_step(state):
        grads = jax.grad(lambda p: model_loss(nnx.merge(graphdef, p)))(state.params)
        return state.apply_gradients(grads=grads)

    for _ in range(3):
        nnx_step(model, optimizer)
        state = linen_step(state)
    assert_close(nnx.to_pure_dict(nnx.state(model, nnx.Param)), state.params, rtol=1e-6)
    assert not np.allclose(state.params["out"]["kernel"], start["out"]["kernel"])
    assert float(jgd.hyperparams(optimizer.opt_state)[key]) == float(jgd.hyperparams(state.opt_state)[key])
    if name == "ema_params":
        average = nnx.to_pure_dict(jgd.averaged_params(optimizer.opt_state))  # a State of OptVariables there
        assert_close(average, jgd.averaged_params(state.opt_state), rtol=1e-6)


def test_an_uncalled_factory_and_a_foreign_state_are_named():
    for modifier in (jgd.cautious, jgd.mars):
        with pytest.raises(TypeError, match="tx must be a gradient transformation; got the function adam"):
            modifier(jgd.adam)
    for name, kind in (("cautious", "CautiousState"), ("mars", "MarsState"), ("graft", "GraftState")):
        tx = MODIFIERS[name][0](0.1)
        with pytest.raises(TypeError, match=f"{name}.update needs the state {name}.init makes \\(a {kind}\\)"):
            tx.update(PARAMS, jgd.adam(0.1).init(PARAMS), PARAMS)
