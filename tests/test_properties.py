"""Property-based tests over random pytrees, shapes and dtypes, for every method."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jgd

METHODS = {
    "sgd": jgd.sgd,
    "momentum": jgd.momentum,
    "momentum_ema": lambda learning_rate: jgd.momentum(learning_rate, form="ema"),
    "nesterov": jgd.nesterov,
    "adagrad": jgd.adagrad,
    "adadelta": jgd.adadelta,
    "rmsprop": lambda learning_rate: jgd.rmsprop(learning_rate, centered=True, momentum=0.9),
    "adam": jgd.adam,
    "adamax": jgd.adamax,
    "nadam": jgd.nadam,
    "nadam_seed": lambda learning_rate: jgd.nadam(learning_rate, form="seed"),
    "clipped_adam": lambda learning_rate: jgd.chain(jgd.clip_by_global_norm(1.0), jgd.adam(learning_rate)),
    "radam": jgd.radam,
    "adabelief": jgd.adabelief,
    "lion": jgd.lion,
    "lamb": jgd.lamb,
    "lars": jgd.lars,
    "adafactor": lambda learning_rate: jgd.adafactor(learning_rate, min_dim_size_to_factor=2, momentum=0.9),
    "muon": lambda learning_rate: jgd.muon(learning_rate, stacked_matrices=True),
}
# The methods large runs use: covered on a fixed tree in tests/test_modern.py, here only in the slow run.
LARGE_RUN_METHODS = {"radam", "adabelief", "lion", "lamb", "lars", "adafactor", "muon"}
NAMES = [pytest.param(n, marks=pytest.mark.slow) if n in LARGE_RUN_METHODS else n for n in METHODS]
DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32]
SETTINGS = settings(max_examples=5, deadline=None, derandomize=True)

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


@st.composite
def trees(draw, dtypes=tuple(DTYPES)):
    """A random nesting of dicts, lists and tuples over float arrays of random shapes and dtypes."""
    leaves = st.builds(jax.ShapeDtypeStruct, shapes, st.sampled_from(dtypes))
    spec = draw(
        st.recursive(
            leaves,
            lambda kids: st.one_of(
                st.dictionaries(st.sampled_from("abcde"), kids, min_size=1, max_size=3),
                st.lists(kids, min_size=1, max_size=3),
                st.lists(kids, min_size=1, max_size=2).map(tuple),
            ),
            max_leaves=5,
        )
    )
    return spec, draw(st.integers(0, 2**16))


def _materialize(spec, seed):
    leaves, treedef = jax.tree.flatten(spec)
    keys = jax.random.split(jax.random.key(seed), 2 * len(leaves))
    params = [jax.random.normal(k, x.shape).astype(x.dtype) for k, x in zip(keys, leaves)]
    grads = [jax.random.normal(k, x.shape).astype(x.dtype) for k, x in zip(keys[len(leaves) :], leaves)]
    return treedef.unflatten(params), treedef.unflatten(grads)


def _steps(tx, params, grads, n=3):
    state = tx.init(params)
    for _ in range(n):
        updates, state = tx.update(grads, state, params)
        params = jgd.apply_updates(params, updates)
    return params, updates


def _as32(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float32), tree)


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=trees())
def test_updates_keep_structure_shapes_and_dtypes(name, case):
    params, grads = _materialize(*case)
    new, updates = _steps(METHODS[name](0.01), params, grads)
    assert jax.tree.structure(updates) == jax.tree.structure(params) == jax.tree.structure(new)
    for u, p, q in zip(jax.tree.leaves(updates), jax.tree.leaves(params), jax.tree.leaves(new)):
        assert u.shape == p.shape == q.shape and u.dtype == p.dtype == q.dtype
        assert np.all(np.isfinite(np.asarray(q, np.float32)))


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=trees())
def test_zero_learning_rate_and_zero_gradients_move_nothing(name, case):
    params, grads = _materialize(*case)
    still, _ = _steps(METHODS[name](0.0), params, grads)
    jax.tree.map(np.testing.assert_array_equal, _as32(still), _as32(params))
    zeros = jax.tree.map(jnp.zeros_like, grads)
    still, _ = _steps(METHODS[name](0.1), params, zeros)
    jax.tree.map(np.testing.assert_array_equal, _as32(still), _as32(params))


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=trees())
def test_jit_equals_no_jit(name, case):
    params, grads = _materialize(*case)
    tx = METHODS[name](0.01)
    eager, _ = _steps(tx, params, grads)
    jitted, _ = jax.jit(lambda p, g: _steps(tx, p, g))(params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3), _as32(eager), _as32(jitted))


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=trees(), lrs=st.lists(st.floats(0.0, 0.1), min_size=2, max_size=3))
def test_vmap_over_learning_rates_equals_a_loop(name, case, lrs):
    params, grads = _materialize(*case)
    run = jax.jit(lambda lr: _steps(METHODS[name](lr), params, grads)[0])
    swept = jax.jit(jax.vmap(lambda lr: _steps(METHODS[name](lr), params, grads)[0]))(jnp.asarray(lrs))
    for i, lr in enumerate(lrs):
        alone = run(jnp.asarray(lr, jnp.float32))
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-2, atol=1e-3), _as32(swept), _as32(alone)
        )


@pytest.mark.parametrize("name", NAMES)
@SETTINGS
@given(case=trees())
def test_results_do_not_depend_on_leaf_order(name, case):
    params, grads = _materialize(*case)
    leaves_p, leaves_g = jax.tree.leaves(params), jax.tree.leaves(grads)
    forward, _ = _steps(METHODS[name](0.01), leaves_p, leaves_g)
    backward, _ = _steps(METHODS[name](0.01), leaves_p[::-1], leaves_g[::-1])
    jax.tree.map(np.testing.assert_array_equal, _as32(forward), _as32(backward[::-1]))


@pytest.mark.slow  # tests/test_state_dtype.py checks every method's float64 dtypes in the default run
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=trees(dtypes=(jnp.float64, jnp.float32)))
def test_float64_trees_keep_dtypes(name, case, x64):
    params, grads = _materialize(*case)
    new, updates = _steps(METHODS[name](0.01), params, grads)
    for u, p, q in zip(jax.tree.leaves(updates), jax.tree.leaves(params), jax.tree.leaves(new)):
        assert u.dtype == p.dtype == q.dtype and u.shape == p.shape
