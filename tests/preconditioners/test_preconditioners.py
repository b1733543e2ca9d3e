"""What makes jgd.shampoo and jgd.soap usable at scale: compiled == eager, vmap over the learning rate, bf16 params
with float32 factors, fixed-shape states, the lax.cond refresh, blocks, placement and argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

import jgd
from jgd.preconditioners import blocks

PARAMS = {"w": jnp.ones((5, 4)), "b": jnp.zeros(4), "c": jnp.ones((3, 2, 2))}
MAKERS = {
    "shampoo": lambda lr, **kw: jgd.shampoo(lr, graft="adam", b2=0.9, block_size=3, **kw),
    "soap": lambda lr, **kw: jgd.soap(lr, precondition_frequency=2, block_size=3, **kw),
}


def grads_at(step, params=PARAMS):
    """A new gradient each step, computed in float32 whatever the params' dtype."""
    return jax.tree.map(
        lambda p: jnp.sin(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape) * (step + 1.3)).astype(p.dtype),
        params,
    )


def steps(tx, params, n=3, update=None):
    update = update or tx.update
    state = tx.init(params)
    for i in range(n):
        updates, state = update(grads_at(i, params), state, params)
        params = jgd.apply_updates(params, updates)
    return params, state


def scanned_steps(tx, params, n=3):
    """``n`` steps in a ``lax.scan``: one step's program, however many steps."""

    def body(carry, i):
        params, state = carry
        updates, state = tx.update(grads_at(i, params), state, params)
        return (jgd.apply_updates(params, updates), state), None

    return jax.lax.scan(body, (params, tx.init(params)), jnp.arange(n, dtype=jnp.float32))[0][0]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MAKERS))
def test_jit_equals_no_jit_and_vmap_over_the_learning_rate_equals_a_loop(name):
    tx = MAKERS[name](0.05)
    eager, _ = steps(tx, PARAMS, n=2)
    compiled, _ = steps(tx, PARAMS, n=2, update=jax.jit(tx.update))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), compiled, eager)
    run = lambda lr: scanned_steps(MAKERS[name](lr), PARAMS)  # noqa: E731
    rates = jnp.array([0.01, 0.05])
    swept, one = jax.jit(jax.vmap(run))(rates), jax.jit(run)
    for i, lr in enumerate(rates):
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6), swept, one(lr))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MAKERS))
def test_bfloat16_params_keep_float32_factors(name):
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), PARAMS)
    tx = MAKERS[name](0.05)
    after, state = steps(tx, params, n=3, update=jax.jit(tx.update))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(after))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(state.inner.slots))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.factors))
    reference, _ = steps(tx, PARAMS, n=3, update=jax.jit(tx.update))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.float32(a), b, rtol=0.05, atol=0.02), after, reference)
    wide = MAKERS[name](0.05, state_dtype=jnp.float32).init(params)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(wide.inner.slots))


@pytest.mark.parametrize("name", list(MAKERS))
def test_eval_shape_init_and_the_state_shapes_are_fixed(name):
    tx = MAKERS[name](0.05)
    shapes = jax.eval_shape(tx.init, PARAMS)
    state = tx.init(PARAMS)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), shapes) == jax.tree.map(lambda x: (x.shape, x.dtype), state)
    # 5 → 2 blocks of 3 (padded), 4 → 2 blocks of 3, 3 and 2 → one full factor; the vector has none.
    first = "stats"
    assert [x.shape for x in state.factors[first]["w"]] == [(2, 3, 3), (2, 3, 3)]
    assert [x.shape for x in state.factors[first]["c"]] == [(1, 3, 3), (1, 2, 2), (1, 2, 2)]
    assert [x.shape for x in state.factors[first]["b"]] == ([(2, 3, 3)] if name == "shampoo" else [])
    after = jax.eval_shape(lambda s: tx.update(grads_at(0), s, PARAMS)[1], shapes)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), after) == jax.tree.map(lambda x: (x.shape, x.dtype), shapes)


def outside_cond(jaxpr) -> set[str]:
    """The primitives a jaxpr runs outside any ``cond`` (looking into nested calls, not into the branches)."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        if eqn.primitive.name != "cond":
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", param)
                if hasattr(inner, "eqns"):
                    names |= outside_cond(inner)
    return names


@pytest.mark.parametrize("tx", [jgd.soap(0.05, precondition_frequency=5), jgd.shampoo(0.05, precondition_every=5)])
def test_the_expensive_part_runs_under_cond(tx):
    names = outside_cond(jax.make_jaxpr(tx.update)(grads_at(0), tx.init(PARAMS), PARAMS).jaxpr)
    assert "cond" in names
    assert not names & {"eigh", "qr", "geqrf", "householder_product", "svd"}, names


def test_roots_are_kept_between_refreshes():
    tx = jgd.shampoo(0.05, precondition_every=3)
    state, update = tx.init(PARAMS), jax.jit(tx.update)
    roots = []
    for i in range(4):
        _, state = update(grads_at(i), state, PARAMS)
        roots.append(np.asarray(state.factors["roots"]["w"][0]))
    np.testing.assert_array_equal(roots[0], roots[1])
    np.testing.assert_array_equal(roots[0], roots[2])
    assert not np.allclose(roots[2], roots[3])  # refreshed at step 4 = 1 + 3


def test_factors_are_placed_by_state_sharding():
    mesh = Mesh(jax.devices()[:1], ("data",))
    tx = MAKERS["soap"](0.05)
    sharding = jgd.state_sharding(tx, PARAMS, PartitionSpec(), mesh, shard_over="data")
    assert sharding.inner.slots["mu"]["w"].spec == PartitionSpec("data", None)
    # ZeRO-1: each factor split over the data axis on its first dimension the axis divides; replicated without it.
    assert all(s.spec == PartitionSpec("data", None, None) for s in jax.tree.leaves(sharding.factors))
    plain = jgd.state_sharding(tx, PARAMS, PartitionSpec(), mesh)
    assert all(s.spec == PartitionSpec() for s in jax.tree.leaves(plain.factors))
    state = jax.jit(tx.init, out_shardings=sharding)(PARAMS)
    assert state.factors["bases"]["w"][0].sharding == sharding.factors["bases"]["w"][0]


@pytest.mark.slow
def test_hyperparameters_are_data():
    tx = jgd.soap(0.05)
    state = tx.init(PARAMS)
    assert {"learning_rate", "b1", "b2", "eps", "weight_decay"} <= set(jgd.hyperparams(state))
    state = jgd.set_hyperparams(state, learning_rate=0.0, weight_decay=0.0)
    update = jax.jit(tx.update)
    for i in range(3):
        updates, state = update(grads_at(i), state, PARAMS)
    assert all(float(jnp.abs(u).max()) == 0 for u in jax.tree.leaves(updates))
    assert {"matrix_eps", "b2", "momentum"} <= set(jgd.hyperparams(jgd.shampoo().init(PARAMS)))


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: jgd.shampoo(block_size=0), "block_size"),
        (lambda: jgd.soap(block_size=-2), "block_size"),
        (lambda: jgd.shampoo(precondition_every=0), "precondition_every"),
        (lambda: jgd.soap(precondition_frequency=0), "precondition_frequency"),
        (lambda: jgd.shampoo(matrix_eps=-1e-6), "matrix_eps"),
        (lambda: jgd.shampoo(eps=-1.0), "eps"),
        (lambda: jgd.soap(eps=-1e-8), "eps"),
        (lambda: jgd.shampoo(b2=1.5), "b2"),
        (lambda: jgd.soap(shampoo_beta=1.0), "shampoo_beta"),
        (lambda: jgd.shampoo(start_preconditioning_step=0), "start_preconditioning_step"),
        (lambda: jgd.shampoo(exponent_override=0), "exponent_override"),
        (lambda: jgd.shampoo(graft="adagrad"), "graft"),
        (lambda: jgd.soap(precision=jnp.bfloat16), "precision"),
        (lambda: jgd.soap(state_dtype=jgd.quantized(8)), "state_dtype"),
    ],
)
def test_invalid_arguments_are_named(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_block_plans():
    plan = blocks.plan_axes((10, 3, 20000), block_size=4, max_precond_dim=100, precondition_1d=False)
    assert [(a.count, a.block, a.padded) for a in plan] == [(3, 4, 12), (1, 3, 3), (5000, 4, 20000)]
    plan = blocks.plan_axes((10, 300), block_size=None, max_precond_dim=100, precondition_1d=False)
    assert plan[0] == blocks.Axis(10, 10) and plan[1] is None
    assert blocks.plan_axes((7,), block_size=None, max_precond_dim=100, precondition_1d=False) == (None,)
    x = jnp.arange(30.0).reshape(3, 10)
    assert jnp.array_equal(blocks.from_blocks(blocks.to_blocks(x, 1, plan[0]), 1, plan[0], x.shape), x)


@pytest.mark.parametrize("name", [pytest.param("shampoo", marks=pytest.mark.slow), "soap"])
def test_a_state_saves_and_restores_with_orbax(tmp_path, name):
    ocp = pytest.importorskip("orbax.checkpoint")
    tx = MAKERS[name](0.05)
    _, state = steps(tx, PARAMS, n=2, update=jax.jit(tx.update))
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", state)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "state", jax.eval_shape(lambda: state))
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
