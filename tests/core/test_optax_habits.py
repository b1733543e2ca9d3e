"""optax users' habits beside optax itself: stateless calls, foreign states, complex slots."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd

GRADS = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[1.0, -2.0]])}


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (jgd.clip_by_global_norm(1.0), optax.clip_by_global_norm(1.0)),
        (jgd.clip_by_value(1.5), optax.clip(1.5)),
        (jgd.scale(-0.5), optax.scale(-0.5)),
    ],
    ids=["clip_by_global_norm", "clip_by_value", "scale"],
)
def test_a_state_of_constants_may_be_none_as_in_optax(ours, theirs):
    got, _ = ours.update(GRADS, None)
    want, _ = theirs.update(GRADS, None)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_none_is_refused_where_the_state_carries_something():
    with pytest.raises(TypeError, match=r"adam.update needs the state adam.init makes .* got NoneType"):
        jgd.adam(0.1).update(GRADS, None)
    scheduled = jgd.scale_by_learning_rate(lambda t: 0.1 / (1 + t))  # its count moves the schedule
    with pytest.raises(TypeError, match="got NoneType"):
        scheduled.update(GRADS, None)


@pytest.mark.parametrize(
    "tx", [jgd.adam(0.1), jgd.sgd(0.1), jgd.monitor(jgd.sgd(0.1)), jgd.partition({}, default=jgd.sgd(0.1))]
)
def test_a_foreign_state_is_a_type_error_naming_both(tx):
    with pytest.raises(TypeError, match=r"update needs the state .* got (dict|the state of)"):
        tx.update(GRADS, {"x": 1}, GRADS)


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_a_complex_state_dtype_for_complex_params_equals_optax_mu_dtype(x64, dtype):
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)) + 1j * rng.normal(size=(3, 2)), jnp.complex128)}
    ours, theirs = jgd.adam(0.05, state_dtype={"mu": dtype}), optax.adam(0.05, mu_dtype=dtype)
    p, q, s, t = params, params, ours.init(params), theirs.init(params)
    assert s.slots["mu"]["w"].dtype == t[0].mu["w"].dtype == jnp.dtype(dtype)
    assert s.slots["nu"]["w"].dtype == jnp.float64  # |g|², real: optax keeps it complex at twice the bytes
    for _ in range(20):
        g = jax.tree.map(lambda x: jnp.conj(x) * 0.3 + 0.1, p)
        u, s = ours.update(g, s, p)
        p = jgd.apply_updates(p, u)
        v, t = theirs.update(jax.tree.map(lambda x: jnp.conj(x) * 0.3 + 0.1, q), t, q)
        q = optax.apply_updates(q, v)
    tolerance = 1e-6 if dtype == "complex64" else 1e-12
    np.testing.assert_allclose(p["w"], q["w"], rtol=tolerance, atol=tolerance)


def test_a_complex_state_dtype_for_real_params_names_the_leaf():
    with pytest.raises(ValueError, match=r"state_dtype complex64 is complex, but params\['w'\] is float32"):
        jgd.adam(0.1, state_dtype=jnp.complex64).init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"params\['w'\] is float32"):
        jgd.lion(0.1, state_dtype=jnp.complex64).init({"w": jnp.ones(2)})
