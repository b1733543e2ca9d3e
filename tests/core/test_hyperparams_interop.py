"""Hyperparameters set through Flax and optax reach jgd transforms, and set_hyperparams keeps their containers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import linen, nnx
from flax.training import train_state

import jgd

_rng = np.random.default_rng(3)
X = jnp.asarray(_rng.normal(size=(16, 4)), jnp.float32)
Y = jnp.asarray(_rng.normal(size=(16, 2)), jnp.float32)


def _loss(apply, params):
    return jnp.mean((apply(params, X) - Y) ** 2)


def _train_state(tx):
    model = linen.Dense(2)
    return train_state.TrainState.create(apply_fn=model.apply, params=model.init(jax.random.key(0), X), tx=tx)


@jax.jit
def _apply_gradients(state):
    return state.apply_gradients(grads=jax.grad(lambda p: _loss(state.apply_fn, p))(state.params))


def test_train_state_replace_tx_steps_with_the_new_rate_as_optax_does():
    runs = {}
    for lib in (jgd, optax):
        state = _train_state(lib.adam(1e-2))
        for _ in range(3):
            state = _apply_gradients(state)
        state = state.replace(tx=lib.adam(1e-3))
        for _ in range(3):
            state = _apply_gradients(state)
        runs[lib.__name__] = state.params
    # float32 Adam rounds differently in the two libraries (7e-6 measured); the old rate would be 10× off
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), runs["jgd"], runs["optax"])


def test_train_state_replace_tx_writes_the_new_rate_into_the_state():
    state = _apply_gradients(_train_state(jgd.adam(1e-2)).replace(tx=jgd.adam(1e-3)))
    np.testing.assert_allclose(jgd.hyperparams(state.opt_state)["learning_rate"], 1e-3)


@pytest.mark.parametrize(
    "jgd_make, optax_make",
    [
        (jgd.sgd, optax.sgd),
        (  # optax's convention: the learning rate outside the velocity
            lambda learning_rate: jgd.sgd(learning_rate, 0.9),
            lambda learning_rate: optax.sgd(learning_rate, 0.9),
        ),
        (jgd.adam, optax.adam),
    ],
    ids=["sgd", "momentum", "adam"],
)
def test_inject_hyperparams_set_mid_run_reaches_jgd(jgd_make, optax_make):
    params = {"w": jnp.asarray(_rng.normal(size=(3, 2)), jnp.float32)}

    def run(make):
        tx = optax.inject_hyperparams(make)(learning_rate=0.1)
        state = tx.init(params)
        p = params
        step = jax.jit(tx.update)
        for i in range(6):
            if i == 3:
                state.hyperparams["learning_rate"] = jnp.asarray(0.02)  # optax's documented way to change it
            updates, state = step(jax.tree.map(lambda x: jnp.sin(x) + x, p), state, p)
            p = optax.apply_updates(p, updates)
        return p

    np.testing.assert_allclose(run(jgd_make)["w"], run(optax_make)["w"], rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize(
    "jgd_make, optax_make",
    [
        (jgd.sgd, optax.sgd),
        (lambda learning_rate: jgd.sgd(learning_rate, 0.9), lambda learning_rate: optax.sgd(learning_rate, 0.9)),
        (jgd.adam, optax.adam),
    ],
    ids=["sgd", "momentum", "adam"],
)
def test_inject_hyperparams_with_a_schedule_follows_it(jgd_make, optax_make):
    schedule = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)
    params = {"w": jnp.asarray(_rng.normal(size=(3, 2)), jnp.float32)}
    results = []
    for make in (jgd_make, optax_make):
        tx = optax.inject_hyperparams(make)(learning_rate=schedule)
        state, p = tx.init(params), params
        for _ in range(4):
            updates, state = tx.update(jax.tree.map(jnp.cos, p), state, p)
            p = optax.apply_updates(p, updates)
        results.append(p["w"])
    np.testing.assert_allclose(*results, rtol=2e-6, atol=1e-7)


def test_labels_through_optax_chain_masked_and_partition():
    params = {"enc": jnp.ones(3), "dec": jnp.ones(2)}
    grads = {"enc": jnp.ones(3), "dec": jnp.ones(2)}
    tx = optax.partition(
        {"enc": jgd.sgd(0.1), "dec": optax.chain(optax.masked(jgd.named("inner", jgd.sgd(0.2)), lambda p: True))},
        {"enc": "enc", "dec": "dec"},
    )
    state = tx.init(params)
    hp = jgd.hyperparams(state)
    assert set(hp) == {"enc/learning_rate", "dec/inner/learning_rate"}
    state = jgd.set_hyperparams(state, {"dec/inner/learning_rate": 0.5})
    updates, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["enc"], -0.1)
    np.testing.assert_allclose(updates["dec"], -0.5)


class _Linear(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.dense(x)


def _nnx_optimizer():
    model = _Linear(nnx.Rngs(0))
    return model, nnx.Optimizer(model, jgd.chain(jgd.clip_by_global_norm(10.0), jgd.adam(1e-2)), wrt=nnx.Param)


def _nnx_step_counting(traces):
    @nnx.jit
    def step(model, optimizer):
        traces.append(1)
        grads = nnx.grad(lambda m: jnp.mean((m(X) - Y) ** 2))(model)
        optimizer.update(model, grads)

    return step


def test_set_hyperparams_on_nnx_optimizer_keeps_variables_and_does_not_retrace():
    model, optimizer = _nnx_optimizer()
    traces = []
    step = _nnx_step_counting(traces)
    step(model, optimizer)
    optimizer.opt_state = jgd.set_hyperparams(optimizer.opt_state, learning_rate=1e-3)
    lr = optimizer.opt_state[1].hyperparams["learning_rate"]
    assert isinstance(lr, nnx.OptArray), type(lr)
    assert isinstance(jgd.hyperparams(optimizer.opt_state)["learning_rate"], jax.Array)
    step(model, optimizer)
    assert len(traces) == 1, "set_hyperparams made the jitted step trace again"
    state = nnx.state(optimizer, nnx.OptState)
    assert any(
        "learning_rate" in jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(state)[0]
    )
    np.testing.assert_allclose(jgd.hyperparams(optimizer.opt_state)["learning_rate"], 1e-3)


def test_nnx_optimizer_state_saved_with_orbax_restores_into_a_fresh_optimizer(tmp_path):
    model, optimizer = _nnx_optimizer()
    step = _nnx_step_counting([])
    step(model, optimizer)
    optimizer.opt_state = jgd.set_hyperparams(optimizer.opt_state, learning_rate=3e-3)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "opt", nnx.state(optimizer))
    checkpointer.save(tmp_path / "model", nnx.state(model))
    checkpointer.wait_until_finished()

    fresh_model, fresh = _nnx_optimizer()
    nnx.update(fresh, checkpointer.restore(tmp_path / "opt", nnx.state(fresh)))
    nnx.update(fresh_model, checkpointer.restore(tmp_path / "model", nnx.state(fresh_model)))
    np.testing.assert_allclose(jgd.hyperparams(fresh.opt_state)["learning_rate"], 3e-3)
    for _ in range(3):
        step(model, optimizer)
        step(fresh_model, fresh)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(model), nnx.state(fresh_model))


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def test_lbfgs_inside_optax_chain_gets_value_fn_through_the_documented_wrapper():
    tx = optax.chain(optax.GradientTransformationExtraArgs(*jgd.lbfgs()))
    x = jnp.asarray([-1.2, 1.0])
    state = tx.init(x)

    @jax.jit
    def step(x, state):
        value, grad = jax.value_and_grad(_rosenbrock)(x)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=_rosenbrock)
        return optax.apply_updates(x, updates), state

    for _ in range(60):
        x, state = step(x, state)
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-4)
    with pytest.raises(ValueError, match="needs the objective"):  # unwrapped, optax drops value_fn: a clear error
        bare = optax.chain(jgd.lbfgs())
        bare.update(x, bare.init(x), x, value_fn=_rosenbrock)
