"""Property-based tests over random pytrees, shapes and dtypes, for every method."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import jgd
from tests.cases import CASES, METHOD, as_params

# Every method in its own forms (not the peers'), and a chain. The seeds' run by default; the methods large runs
# use are covered on a fixed tree in tests/methods/test_modern.py, and here only in the slow run.
METHODS = [c for c in CASES.values() if c.peer is None and (c.kind == METHOD or c.factory == "chain")]
NAMES = as_params(METHODS, slow=lambda case: not case.seed)
DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32]
SETTINGS = settings(max_examples=5, deadline=None, derandomize=True)
SEED = seed(20)  # the same trees in every test, so that they share compiled programs

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
    """Normal params and grads in NumPy: drawing them with jax.random would compile per shape and dtype."""
    leaves, treedef = jax.tree.flatten(spec)
    rng = np.random.default_rng(seed)
    params = [jnp.asarray(rng.standard_normal(x.shape).astype(x.dtype)) for x in leaves]
    grads = [jnp.asarray(rng.standard_normal(x.shape).astype(x.dtype)) for x in leaves]
    return treedef.unflatten(params), treedef.unflatten(grads)


def _steps(tx, params, grads, n=3):
    state = tx.init(params)
    for _ in range(n):
        updates, state = tx.update(grads, state, params)
        params = jgd.apply_updates(params, updates)
    return params, updates


@functools.cache
def _compiled_steps(case):
    return jax.jit(lambda lr, p, g: _steps(case.at(lr), p, g))


def _jit_steps(case, learning_rate, params, grads):
    """Three steps in one compiled program, one program a method with the learning rate an argument.

    The tests draw the same trees (``SEED``), so they share its compilations: op by op, each operation would be
    compiled for each new shape and dtype. (The leaf-order test runs op by op: its list trees are its own, and the
    operations' compilations are shared by every method.) The eager path is held to this one by
    test_jit_equals_no_jit.
    """
    return _compiled_steps(case)(jnp.float32(learning_rate), params, grads)


def _as32(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float32), tree)


@pytest.mark.parametrize("case", NAMES)
@SETTINGS
@SEED
@given(tree=trees())
def test_updates_keep_structure_shapes_and_dtypes(case, tree):
    params, grads = _materialize(*tree)
    new, updates = _jit_steps(case, 0.01, params, grads)
    assert jax.tree.structure(updates) == jax.tree.structure(params) == jax.tree.structure(new)
    for u, p, q in zip(jax.tree.leaves(updates), jax.tree.leaves(params), jax.tree.leaves(new)):
        assert u.shape == p.shape == q.shape and u.dtype == p.dtype == q.dtype
        assert np.all(np.isfinite(np.asarray(q, np.float32)))


@pytest.mark.parametrize("case", NAMES)
@SETTINGS
@SEED
@given(tree=trees())
def test_zero_learning_rate_and_zero_gradients_move_nothing(case, tree):
    params, grads = _materialize(*tree)
    still, _ = _jit_steps(case, 0.0, params, grads)
    jax.tree.map(np.testing.assert_array_equal, _as32(still), _as32(params))
    if not case.drifts:  # weight decay, or schedule-free's average by rounding, moves params without a gradient
        zeros = jax.tree.map(jnp.zeros_like, grads)
        still, _ = _jit_steps(case, 0.1, params, zeros)
        jax.tree.map(np.testing.assert_array_equal, _as32(still), _as32(params))


@pytest.mark.parametrize("case", NAMES)
@SETTINGS
@SEED
@given(tree=trees())
def test_jit_equals_no_jit(case, tree):
    params, grads = _materialize(*tree)
    eager, _ = _steps(case.at(0.01), params, grads)
    jitted, _ = _jit_steps(case, 0.01, params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3), _as32(eager), _as32(jitted))


@pytest.mark.parametrize("case", NAMES)
@SETTINGS
@SEED
@given(tree=trees(), lrs=st.lists(st.floats(0.0, 0.1), min_size=2, max_size=3))
def test_vmap_over_learning_rates_equals_a_loop(case, tree, lrs):
    params, grads = _materialize(*tree)
    swept = jax.jit(jax.vmap(lambda lr: _steps(case.at(lr), params, grads)[0]))(jnp.asarray(lrs))
    for i, lr in enumerate(lrs):
        alone, _ = _jit_steps(case, lr, params, grads)
        jax.tree.map(
            lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-2, atol=1e-3), _as32(swept), _as32(alone)
        )


# noisy_sgd draws a key per leaf in leaf order, as optax does, and kron its probes as psgd-jax does: another
# order is other noise, by design.
@pytest.mark.parametrize("case", [p for p in NAMES if p.values[0].factory not in ("noisy_sgd", "kron")])
@SETTINGS
@SEED
@given(tree=trees())
def test_results_do_not_depend_on_leaf_order(case, tree):
    params, grads = _materialize(*tree)
    leaves_p, leaves_g = jax.tree.leaves(params), jax.tree.leaves(grads)
    forward, _ = _steps(case.at(0.01), leaves_p, leaves_g)
    backward, _ = _steps(case.at(0.01), leaves_p[::-1], leaves_g[::-1])
    jax.tree.map(np.testing.assert_array_equal, _as32(forward), _as32(backward[::-1]))


@pytest.mark.slow  # tests/core/test_state_dtype.py checks every method's float64 dtypes in the default run
@pytest.mark.parametrize("case", NAMES)
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees(dtypes=(jnp.float64, jnp.float32)))
def test_float64_trees_keep_dtypes(case, tree, x64):
    params, grads = _materialize(*tree)
    new, updates = _steps(case.at(0.01), params, grads)
    for u, p, q in zip(jax.tree.leaves(updates), jax.tree.leaves(params), jax.tree.leaves(new)):
        assert u.dtype == p.dtype == q.dtype and u.shape == p.shape
