"""jgd.kron against psgd-jax's ``kron`` (same draws), a NumPy transcription of Li's algorithm, and jgd's habits."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from jgd.preconditioners.kron import update_probability
from tests.preconditioners import kron_reference as ref

STEPS = 20


def make_params(dtype, names="wbsc"):
    """Of a matrix ``w``, a vector ``b``, a scalar ``s``, a 3-D array ``c`` and ``l`` with an axis of 12 (diagonal
    when ``max_size_triangular=10``), those ``names`` lists (a program's compilation grows with its leaves)."""
    rng = np.random.default_rng(0)
    shapes = {"w": (5, 4), "b": (4,), "s": (), "c": (3, 2, 2), "l": (12, 3)}
    shapes = {k: shape for k, shape in shapes.items() if k in names}
    return {k: jnp.asarray(rng.normal(size=shape), dtype) for k, shape in shapes.items()}


def grads_at(params, i):
    """A new batch each step: half the params plus fresh noise."""
    rng = np.random.default_rng(100 + i)
    return jax.tree.map(lambda p: p * 0.5 + jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def run(tx, params, steps=STEPS, apply=jgd.apply_updates):
    update = jax.jit(tx.update)
    state, path = tx.init(params), []
    for i in range(steps):
        updates, state = update(grads_at(params, i), state, params)
        params = apply(params, updates)
        path.append(params)
    return path, state


def max_relative(path_a, path_b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(np.asarray(a)), 1e-30)))
        for pa, pb in zip(path_a, path_b)
        for a, b in zip(jax.tree.leaves(pa), jax.tree.leaves(pb))
    )


def psgd_jax():
    """psgd_jax.kron, its import of optax._src.clipping (moved in optax 0.2.8) pointed at the new module."""
    import optax._src
    import optax.transforms._clipping as clipping

    sys.modules.setdefault("optax._src.clipping", clipping)
    optax._src.clipping = clipping
    pytest.importorskip("psgd_jax")
    from psgd_jax.kron import kron, precond_update_prob_schedule

    return kron, precond_update_prob_schedule


# psgd-jax's arguments: defaults, and a run with every option moved (a diagonal axis, decay, updates every 3rd step).
SETTINGS = {
    "defaults": dict(learning_rate=0.01),
    "options": dict(
        learning_rate=0.02,
        b1=0.8,
        weight_decay=0.1,
        preconditioner_update_probability=1 / 3,
        max_size_triangular=10,
        memory_save_mode="one_diag",
        preconditioner_lr=0.2,
        preconditioner_init_scale=2.0,
    ),
    "gradient_fit": dict(learning_rate=0.01, momentum_into_precond_update=False, min_ndim_triangular=3),
}


# The defaults by default; the other settings (about 10 s each: psgd-jax compiles its step) in the slow run.
@pytest.mark.parametrize(
    "setting", [pytest.param(s, marks=[pytest.mark.slow] if s != "defaults" else []) for s in SETTINGS]
)
def test_matches_psgd_jax_in_float64(x64, setting):
    import optax

    psgd_kron, _ = psgd_jax()
    kw = SETTINGS[setting]
    # The defaults on three leaves (the default run); the slow settings on all five.
    params = make_params(jnp.float64, "wbs" if setting == "defaults" else "wbscl")
    want, _ = run(psgd_kron(**kw), params, apply=optax.apply_updates)
    got, state = run(jgd.kron(**kw), params)
    assert state.factors["q"]["w"][0].dtype == jnp.float64
    assert max_relative(want, got) < 1e-12


@pytest.mark.slow
def test_matches_psgd_jax_in_float32_through_a_rebalance():
    import optax

    psgd_kron, _ = psgd_jax()
    params = make_params(jnp.float32)
    # psgd-jax's fixed key rebalances the factors at the step of count 46 (in float32).
    want, _ = run(psgd_kron(learning_rate=0.01), params, 50, apply=optax.apply_updates)
    got, _ = run(jgd.kron(learning_rate=0.01), params, 50)
    assert max_relative(want, got) < 1e-4  # 1.2e-5 measured


def test_default_schedule_is_psgd_jax_one_step_later():
    _, psgd_schedule = psgd_jax()
    counts = jnp.arange(0, 6000, 7)
    np.testing.assert_allclose(update_probability()(counts), psgd_schedule()(counts + 1), rtol=1e-6)


def draws(seed, count, params):
    """The probes and the balance draw of the update with ``count`` updates before (the documented scheme)."""
    _, key = jax.random.split(jax.random.fold_in(jax.random.key(seed), count))
    key, balance_key = jax.random.split(key)
    _, probe_key = jax.random.split(key)
    leaves = jax.tree.leaves(params)
    keys = jax.random.split(probe_key, len(leaves))
    probes = [np.asarray(jax.random.normal(k, p.shape, p.dtype)) for k, p in zip(keys, leaves)]
    return probes, bool(jax.random.uniform(balance_key) < 0.01)


def test_matches_numpy_transcription_in_float64(x64):
    seed = 7  # a key whose balance draw falls in these 20 steps
    kw = dict(learning_rate=0.05, b1=0.9, weight_decay=0.01, preconditioner_lr=0.1, damping=1e-3)
    params = make_params(jnp.float64, "wcl")
    tx = jgd.kron(**kw, preconditioner_update_probability=0.5, max_size_triangular=10, key=seed)
    got, _ = run(tx, params)
    leaves, treedef = jax.tree.flatten(jax.tree.map(np.asarray, params))
    numpy = ref.Kron(leaves, **kw, probability=0.5, max_size_triangular=10)
    worst, balanced = 0.0, 0
    for i in range(STEPS):
        probes, balance = draws(seed, i, params)
        balanced += balance and i % 2 == 1  # the updates of count 1, 3, ... fit the factors
        grads = [np.asarray(g) for g in jax.tree.leaves(grads_at(treedef.unflatten(leaves), i))]
        leaves = [p + u for p, u in zip(leaves, numpy.step(grads, leaves, probes, balance))]
        for a, b in zip(leaves, jax.tree.leaves(got[i])):
            worst = max(worst, float(np.max(np.abs(a - np.asarray(b)) / np.abs(a))))
    assert balanced and worst <= 1e-10


def test_fits_only_every_kth_step_and_never_at_probability_zero():
    params = {"w": jnp.ones((3, 2))}
    tx = jgd.kron(0.1, preconditioner_update_probability=1.0)  # a constant, which set_hyperparams changes
    update = jax.jit(tx.update)
    for probability, fitted in ((1 / 3, [False, False, True, False, False, True]), (0.0, [False] * 6)):
        state = jgd.set_hyperparams(tx.init(params), preconditioner_update_probability=probability)
        for i, want in enumerate(fitted):
            before = state.factors["q"]["w"][0]
            _, state = update(grads_at(params, i), state, params)
            assert bool(jnp.any(state.factors["q"]["w"][0] != before)) == want


@pytest.mark.slow  # op by op: each operation compiles
def test_jit_equals_no_jit():
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "s": jnp.asarray(0.5)}
    tx = jgd.kron(0.01, weight_decay=0.1, preconditioner_update_probability=0.5)
    eager, jitted, update = tx.init(params), tx.init(params), jax.jit(tx.update)
    for i in range(2):
        grads = grads_at(params, i)
        u_eager, eager = tx.update(grads, eager, params)
        u_jit, jitted = update(grads, jitted, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), u_eager, u_jit)


@pytest.mark.slow
def test_vmap_over_the_learning_rate_equals_a_loop():
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}

    def steps(lr):
        return run_plain(jgd.kron(lr, weight_decay=0.1), params)

    lrs = jnp.array([0.0, 0.01, 0.1])
    swept = jax.jit(jax.vmap(steps))(lrs)
    alone_at = jax.jit(steps)
    for i, lr in enumerate(lrs):
        alone = alone_at(lr)
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7), swept, alone)


def run_plain(tx, params, steps=2):
    state = tx.init(params)
    for i in range(steps):
        updates, state = tx.update(jax.tree.map(lambda p, i=i: p * 0.5 + 0.1 * (i + 1), params), state, params)
        params = jgd.apply_updates(params, updates)
    return params


def test_bfloat16_params_keep_float32_factors():
    params = {"w": jnp.ones((3, 2), jnp.bfloat16), "b": jnp.zeros(2, jnp.bfloat16)}
    tx = jgd.kron(0.01)
    state = tx.init(params)
    updates, state = tx.update(jax.tree.map(lambda p: p + 0.5, params), state, params)
    assert updates["w"].dtype == state.inner.slots["mu"]["w"].dtype == jnp.bfloat16
    assert {q.dtype for q in jax.tree.leaves(state.factors)} == {jnp.dtype(jnp.float32)}
    wide = jgd.kron(0.01, state_dtype=jnp.float32, precond_dtype=jnp.float32).init(params)
    assert wide.inner.slots["mu"]["b"].dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(updates["w"], np.float32)))


def test_eval_shape_init_gives_the_state_init_makes():
    params = make_params(jnp.float32, "wbscl")
    tx = jgd.kron(0.01, max_size_triangular=10)
    shapes = jax.eval_shape(tx.init, params)
    state = tx.init(params)
    assert jax.tree.structure(shapes) == jax.tree.structure(state)
    assert jax.tree.map(lambda s: (s.shape, s.dtype), shapes) == jax.tree.map(lambda x: (x.shape, x.dtype), state)
    assert [q.shape for q in state.factors["q"]["l"]] == [(12,), (3, 3)] and state.factors["q"]["s"][0].shape == ()


@pytest.mark.slow
def test_state_sharding_places_the_factors_and_a_checkpoint_restores(tmp_path):
    import orbax.checkpoint as ocp
    from jax.sharding import Mesh, PartitionSpec

    params = {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)}
    tx = jgd.kron(0.01)
    mesh = Mesh(jax.devices()[:1], ("data",))
    sharding = jgd.state_sharding(tx, params, PartitionSpec(), mesh, shard_over="data")
    assert sharding.inner.slots["mu"]["w"].spec == PartitionSpec("data", None)
    assert sharding.factors["q"]["w"][0].spec == PartitionSpec("data", None)  # ZeRO-1 splits the factors too
    state = jax.jit(tx.init, out_shardings=sharding)(params)
    _, state = tx.update(jax.tree.map(lambda p: p + 1.0, params), state, params)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", state)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "state", tx.init(params))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    jax.tree.map(np.testing.assert_array_equal, restored, state)


def test_hyperparameters_are_data_and_can_be_set():
    params = {"w": jnp.ones((3, 2))}
    tx = jgd.kron(0.01, preconditioner_update_probability=0.5)
    state = tx.init(params)
    assert set(jgd.hyperparams(state)) >= {"learning_rate", "b1", "weight_decay", "preconditioner_lr", "damping"}
    traces = []

    @jax.jit
    def update(state):
        traces.append(1)
        return tx.update(jax.tree.map(jnp.ones_like, params), state, params)

    moved, _ = update(state)
    updates, _ = update(jgd.set_hyperparams(state, learning_rate=0.0, preconditioner_update_probability=0.0))
    np.testing.assert_array_equal(updates["w"], 0.0)
    assert len(traces) == 1 and np.all(np.asarray(moved["w"]) != 0)


@pytest.mark.parametrize(
    "argument, value",
    [
        ("preconditioner_lr", -0.1),
        ("max_size_triangular", 0),
        ("min_ndim_triangular", -1),
        ("preconditioner_update_probability", 1.5),
        ("preconditioner_update_probability", -0.1),
        ("damping", -1e-3),
        ("preconditioner_init_scale", 0.0),
        ("memory_save_mode", "some_diag"),
        ("key", "seed"),
        ("precond_dtype", jnp.int32),
        ("state_dtype", jgd.quantized(bits=8)),
    ],
)
def test_bad_arguments_are_value_errors_naming_them(argument, value):
    with pytest.raises(ValueError, match=argument):
        jgd.kron(0.01, **{argument: value})


def test_update_needs_params_and_its_own_state():
    params = {"w": jnp.ones((3, 2))}
    tx = jgd.kron(0.01)
    with pytest.raises(ValueError, match="params"):
        tx.update(params, tx.init(params))
    with pytest.raises(TypeError, match="kron"):
        tx.update(params, jgd.adam(0.1).init(params), params)


def test_a_key_may_be_an_int_a_typed_key_or_a_raw_prngkey():
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2)}
    grads = grads_at(params, 0)
    steps = [
        jgd.kron(0.1, key=key).update(grads, jgd.kron(0.1, key=key).init(params), params)[0]["w"]
        for key in (3, jax.random.key(3), jax.random.PRNGKey(3))
    ]
    np.testing.assert_array_equal(steps[0], steps[1])
    np.testing.assert_array_equal(steps[0], steps[2])
