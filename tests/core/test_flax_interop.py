"""jgd transforms drop into Flax training: TrainState and nnx.Optimizer give optax's results."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from flax.training import train_state

import jgd
from tests.cases import CASES, as_params

_rng = np.random.default_rng(1)
X = jnp.asarray(_rng.normal(size=(32, 5)), jnp.float32)
Y = jnp.asarray(_rng.integers(0, 3, size=32))

# The rows the Flax tests train with, each against its optax twin.
PAIRS = [c for c in CASES.values() if c.flax]


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(3)(linen.tanh(linen.Dense(8)(x)))


def _train_linen(tx, steps=25):
    model = LinenMLP()
    state = train_state.TrainState.create(apply_fn=model.apply, params=model.init(jax.random.key(0), X), tx=tx)

    @jax.jit
    def step(state):
        def loss(params):
            return optax.softmax_cross_entropy_with_integer_labels(state.apply_fn(params, X), Y).mean()

        value, grads = jax.value_and_grad(loss)(state.params)
        return state.apply_gradients(grads=grads), value

    losses = []
    for _ in range(steps):
        state, value = step(state)
        losses.append(float(value))
    return state.params, losses


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(5, 8, rngs=rngs)
        self.out = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def _train_nnx(tx, steps=25):
    model = NnxMLP(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(X), Y).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    losses = [float(step(model, optimizer)) for _ in range(steps)]
    return nnx.state(model, nnx.Param), losses


@pytest.mark.parametrize("case", as_params(PAIRS))
@pytest.mark.parametrize("train", [_train_linen, _train_nnx], ids=["TrainState", "nnx.Optimizer"])
def test_training_matches_optax(case, train):
    params, losses = train(case.make())
    want_params, want_losses = train(case.optax())
    assert losses[-1] < 0.8 * losses[0]
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), params, want_params)


def test_hyperparams_of_a_train_state_can_be_set():
    params, _ = _train_linen(jgd.adam(1e-2), steps=1)
    state = train_state.TrainState.create(apply_fn=LinenMLP().apply, params=params, tx=jgd.adam(1e-2))
    state = state.replace(opt_state=jgd.set_hyperparams(state.opt_state, learning_rate=0.5))
    np.testing.assert_allclose(jgd.hyperparams(state.opt_state)["learning_rate"], 0.5)
