"""The MLP: shapes, activations, He / Glorot initialization, dropout and batch norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jgd.experiment.train.layers import ACTIVATIONS
from jgd.experiment.train.models import MLP, init_variables

X = jax.random.normal(jax.random.key(1), (16, 5))


def test_shapes_and_layers():
    model = MLP([8, 4], 3)
    variables = init_variables(model, jax.random.key(0), 5)
    shapes = jax.tree.map(jnp.shape, variables["params"])
    assert shapes == {
        "Dense_0": {"kernel": (5, 8), "bias": (8,)},
        "Dense_1": {"kernel": (8, 4), "bias": (4,)},
        "Dense_2": {"kernel": (4, 3), "bias": (3,)},
    }
    assert "batch_stats" not in variables
    assert model.apply(variables, X).shape == (16, 3)


def test_no_hidden_layer_is_a_linear_classifier():
    model = MLP([], 3)
    variables = init_variables(model, jax.random.key(0), 5)
    p = variables["params"]["Dense_0"]
    np.testing.assert_allclose(model.apply(variables, X), X @ p["kernel"] + p["bias"], rtol=1e-5, atol=1e-6)


def test_activations_are_the_seed_formulas():
    z = jnp.array([-2.0, -0.5, 0.0, 1.5])
    np.testing.assert_allclose(ACTIVATIONS["relu"](z), [0, 0, 0, 1.5])
    np.testing.assert_allclose(ACTIVATIONS["leaky_relu"](z), [-0.02, -0.005, 0, 1.5], rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["elu"](z), [np.expm1(-2), np.expm1(-0.5), 0, 1.5], rtol=1e-6)
    np.testing.assert_allclose(ACTIVATIONS["sigmoid"](z), 1 / (1 + np.exp(-np.asarray(z))), rtol=1e-6)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_changes_the_output(activation):
    variables = init_variables(MLP([8], 3, activation), jax.random.key(0), 5)
    outputs = {a: MLP([8], 3, a).apply(variables, X) for a in ACTIVATIONS}
    others = [a for a in ACTIVATIONS if a != activation]
    assert all(not np.allclose(outputs[activation], outputs[a]) for a in others)


@pytest.mark.parametrize(
    ("initializer", "variance"), [("he", lambda i, o: 2 / i), ("glorot", lambda i, o: 2 / (i + o))]
)
def test_initializer_variance(initializer, variance):
    fan_in, fan_out = 400, 300
    variables = init_variables(MLP([fan_out], 2, initializer=initializer), jax.random.key(0), fan_in)
    kernel = variables["params"]["Dense_0"]["kernel"]
    np.testing.assert_allclose(jnp.var(kernel), variance(fan_in, fan_out), rtol=0.03)
    np.testing.assert_allclose(variables["params"]["Dense_0"]["bias"], 0)


def test_dropout_only_in_training():
    model = MLP([64], 3, dropout=0.5)
    variables = init_variables(model, jax.random.key(0), 5)
    plain = MLP([64], 3).apply(variables, X)
    np.testing.assert_allclose(model.apply(variables, X), plain)
    a, b = (model.apply(variables, X, train=True, rngs={"dropout": jax.random.key(k)}) for k in (1, 2))
    assert not np.allclose(a, b)
    assert not np.allclose(a, plain)


def test_batch_norm_before_the_activation_without_bias():
    model = MLP([8], 3, batch_norm=True)
    variables = init_variables(model, jax.random.key(0), 5)
    assert "bias" not in variables["params"]["Dense_0"]
    assert set(variables["params"]["BatchNorm_0"]) == {"scale", "bias"}
    _, updated = model.apply(variables, X * 3 + 1, train=True, mutable=["batch_stats"])
    assert not np.allclose(updated["batch_stats"]["BatchNorm_0"]["mean"], 0)


def test_batch_norm_ignores_masked_examples():
    model = MLP([8], 3, batch_norm=True)
    variables = init_variables(model, jax.random.key(0), 5)
    padded = jnp.concatenate([X, 100 * jnp.ones((4, 5))])
    mask = jnp.arange(20) < 16
    out_real, stats_real = model.apply(variables, X, train=True, mutable=["batch_stats"])
    out_padded, stats_padded = model.apply(variables, padded, train=True, mask=mask, mutable=["batch_stats"])
    np.testing.assert_allclose(out_padded[:16], out_real, rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), stats_padded, stats_real)
