"""optax's Yogi, Adan, SM3, Signum, Rprop, NovoGrad and Fromage: against optax and against their papers."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from tests import modern_reference as tree_ref
from tests import reference as flat_ref
from tests.methods import optax_core_reference as ref

STEPS = 50
WD_MASK = {"w": True, "stack": True, "b": False, "v": True, "s": True}
# Variants whose form a default row already covers: run with -m slow.
SLOW = {"yogi_betas", "sm3_momentum"}


def cases(table):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in table]


# jgd transform and optax transform with the same arguments, on the tree of tests/modern_reference.py.
OPTAX = {
    "yogi": (lambda: jgd.yogi(0.05), lambda: optax.yogi(0.05)),
    "yogi_betas": (lambda: jgd.yogi(0.02, 0.8, 0.99, 1e-4), lambda: optax.yogi(0.02, 0.8, 0.99, 1e-4)),
    "adan": (lambda: jgd.adan(0.05, form="optax"), lambda: optax.adan(0.05)),
    "adan_decay_mask": (
        lambda: jgd.adan(0.05, 0.9, 0.8, 0.95, 1e-6, 0.0, 0.1, WD_MASK, form="optax"),
        lambda: optax.adan(0.05, 0.9, 0.8, 0.95, 1e-6, 0.0, 0.1, WD_MASK),
    ),
    "novograd": (
        lambda: jgd.novograd(0.05, 0.9, 0.25, 1e-6, weight_decay=0.1),
        lambda: optax.novograd(0.05, weight_decay=0.1),
    ),
    "signum": (lambda: jgd.signum(0.01), lambda: optax.signum(0.01)),
    "rprop": (lambda: jgd.rprop(0.01, form="optax"), lambda: optax.rprop(0.01)),
    "rprop_bounds": (
        lambda: jgd.rprop(0.02, 0.3, 1.5, 1e-3, 0.05, form="optax"),
        lambda: optax.rprop(0.02, 0.3, 1.5, 1e-3, 0.05),
    ),
    "fromage": (lambda: jgd.fromage(0.05), lambda: optax.fromage(0.05)),
}

# jgd transform and NumPy reference written from the paper, with the same hyperparameters.
PAPER = {
    "yogi": (lambda: jgd.yogi(0.05), ref.yogi(0.05, 0.9, 0.999, 1e-3, 1e-6, True)),
    "yogi_uncorrected": (
        lambda: jgd.yogi(0.05, initial_accumulator=0.0, bias_correction=False),
        ref.yogi(0.05, 0.9, 0.999, 1e-3, 0.0, False),
    ),
    "adan": (lambda: jgd.adan(0.05, eps_root=0.0, weight_decay=0.1), ref.adan(0.05, 0.98, 0.92, 0.99, 1e-8, 0.1)),
    "sm3": (lambda: jgd.sm3(0.05, momentum=0.0), ref.sm3(0.05, 0.0, 1e-8)),
    "sm3_momentum": (lambda: jgd.sm3(0.05), ref.sm3(0.05, 0.9, 1e-8)),
    "signum": (lambda: jgd.signum(0.01, 0.8), ref.signum(0.01, 0.8)),
    "rprop": (lambda: jgd.rprop(0.01), ref.rprop(0.01, 0.5, 1.2, 1e-6, 50.0)),
    "novograd": (lambda: jgd.novograd(0.05, weight_decay=0.1), ref.novograd(0.05, 0.95, 0.98, 1e-8, 0.1)),
    "fromage": (lambda: jgd.fromage(0.05), ref.fromage(0.05)),
}


@pytest.mark.parametrize("name", cases(OPTAX))
def test_matches_optax_trajectory(name, x64):
    make, make_optax = OPTAX[name]
    got, want = tree_ref.trajectory(make(), STEPS), tree_ref.trajectory(make_optax(), STEPS)
    assert max(np.abs(want[-1][k] - want[0][k]).max() for k in want[0]) > 1e-2, "the iterates must move"
    assert tree_ref.max_relative_difference(got, want) <= 1e-10


def test_sm3_matches_optax_trajectory(x64):
    """On a matrix and a vector: optax's ``sm3`` takes no scalar leaf (it indexes the accumulators of axis 0)."""
    got = flat_ref.trajectory(jgd.sm3(0.05), STEPS, jnp.float64)
    want = flat_ref.trajectory(optax.sm3(0.05), STEPS, jnp.float64)
    assert np.abs(want[-1] - want[0]).max() > 1e-2
    assert np.abs(got - want).max() / np.abs(want).max() <= 1e-10


@pytest.mark.parametrize("name", cases(PAPER))
def test_matches_paper_equations(name, x64):
    make, step = PAPER[name]
    got, want = tree_ref.trajectory(make(), STEPS), tree_ref.run(step, STEPS)
    assert max(np.abs(want[-1][k] - want[0][k]).max() for k in want[0]) > 1e-2, "the iterates must move"
    assert tree_ref.max_relative_difference(got, want) <= 1e-10


@pytest.mark.parametrize("name", ["adan", "rprop"])
def test_the_paper_form_differs_from_optax(name, x64):
    """Where optax writes a method otherwise, the default is the paper's and the two differ measurably."""
    make = {"adan": lambda form: jgd.adan(0.05, form=form), "rprop": lambda form: jgd.rprop(0.01, form=form)}[name]
    paper, peer = tree_ref.trajectory(make("paper"), 5), tree_ref.trajectory(make("optax"), 5)
    assert tree_ref.max_relative_difference(paper, peer) > 1e-4


def test_optax_rprop_moves_one_step_late(x64):
    g = {"x": jnp.asarray([1.0, -1.0])}
    tx = jgd.rprop(0.1, form="optax")
    state = tx.init(g)
    first, state = tx.update(g, state)
    second, _ = tx.update(g, state)
    assert np.all(np.asarray(first["x"]) == 0)
    np.testing.assert_allclose(second["x"], [-0.1, 0.1])  # the first step's move, Δ_0 sign(g_1)
    paper, _ = jgd.rprop(0.1).update(g, jgd.rprop(0.1).init(g))
    np.testing.assert_allclose(paper["x"], [-0.1, 0.1])


def test_sm3_state_of_a_matrix_is_its_rows_plus_columns():
    params = {"kernel": jnp.zeros((300, 200)), "bias": jnp.zeros(200), "scale": jnp.zeros(())}
    state = jgd.sm3().init(params)
    assert {k: v.shape for k, v in state.slots["accumulators"].items()} == {
        "kernel": (500,),
        "bias": (200,),
        "scale": (1,),
    }


@pytest.mark.parametrize(
    ("factory", "bad"),
    [
        (jgd.yogi, {"initial_accumulator": -1.0}),
        (jgd.adan, {"b3": 1.0}),
        (jgd.sm3, {"momentum": 1.0}),
        (jgd.signum, {"beta": -0.1}),
        (jgd.rprop, {"eta_minus": 1.0}),
        (jgd.rprop, {"eta_plus": 1.0}),
        (jgd.rprop, {"learning_rate": 0.0}),
        (jgd.rprop, {"min_step_size": 1.0, "max_step_size": 0.5}),
        (jgd.novograd, {"b2": 1.0}),
        (jgd.fromage, {"min_norm": -1.0}),
    ],
)
def test_invalid_values_raise_naming_the_parameter(factory, bad):
    with pytest.raises(ValueError, match=sorted(bad)[-1] if len(bad) == 1 else "min_step_size"):
        factory(**bad)


@pytest.mark.parametrize("factory", [jgd.adan, jgd.rprop])
def test_an_unknown_form_is_refused(factory):
    with pytest.raises(ValueError, match="form"):
        factory(form="torch")
