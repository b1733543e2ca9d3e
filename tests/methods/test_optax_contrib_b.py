"""optax.contrib's Prodigy, D-Adaptation AdamW, DoG, DoWG, COCOB, Mechanic, GaLore and SAM: against optax and
against their papers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from tests import modern_reference as tree_ref
from tests.methods import contrib_b_reference as ref

STEPS = 50
WD_MASK = {"w": True, "stack": True, "b": False, "v": True, "s": True}
# The stack's matrices as one (6, 12) matrix; the 2-D leaves as they are.
AXES = optax.contrib.GaLoreDimensionNumbers
STACK_AXES = {"w": AXES(), "stack": AXES(1, (0, 2)), "b": None, "v": AXES(), "s": None}
# Variants whose form a default row already covers, the optax forms of methods whose default is the paper's
# (held to their papers in the default run), and DoG and DoWG (held to optax's in tests/core/test_complex.py by
# default): run with -m slow.
SLOW = {
    "dadapt_adamw",
    "galore",
    "dog",
    "dowg",
    "prodigy_arguments",
    "dadapt_adamw_arguments",
    "dog_learning_rate",
    "dowg_arguments",
    "cocob_arguments",
    "mechanize_optax_adam",
    "galore_arguments",
    "galore_axes",
    "sam_adam_period_3",
    "dog_distance",
    "mechanize_adam",
}


def cases(table):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in table]


def normalized_sgd(rho):
    """SAM's adversary: the gradient over its global norm, times ``ρ``."""
    return jgd.chain(optax.contrib.normalize(), jgd.sgd(rho))


# jgd transform and optax transform with the same arguments, on the tree of tests/modern_reference.py.
OPTAX = {
    "prodigy": (lambda: jgd.prodigy(form="optax"), lambda: optax.contrib.prodigy()),
    "prodigy_arguments": (
        lambda: jgd.prodigy(0.5, (0.8, 0.99), 0.9, 1e-6, 1e-4, 2.0, 0.1, True, form="optax"),
        lambda: optax.contrib.prodigy(0.5, (0.8, 0.99), 0.9, 1e-6, 1e-4, 2.0, 0.1, True),
    ),
    "dadapt_adamw": (lambda: jgd.dadapt_adamw(form="optax"), lambda: optax.contrib.dadapt_adamw()),
    "dadapt_adamw_arguments": (
        lambda: jgd.dadapt_adamw(0.5, (0.8, 0.99), 1e-6, 1e-4, 0.1, form="optax"),
        lambda: optax.contrib.dadapt_adamw(0.5, (0.8, 0.99), 1e-6, 1e-4, 0.1),
    ),
    "dog": (lambda: jgd.dog(), lambda: optax.contrib.dog()),
    "dog_learning_rate": (
        lambda: jgd.dog(0.5, ("learning_rate", 0.01), 1e-6, 0.1, WD_MASK),
        lambda: optax.contrib.dog(0.5, ("learning_rate", 0.01), 1e-6, 0.1, WD_MASK),
    ),
    "dog_distance": (lambda: jgd.dog(1.0, ("distance", 0.1)), lambda: optax.contrib.dog(1.0, ("distance", 0.1))),
    "dowg": (lambda: jgd.dowg(), lambda: optax.contrib.dowg()),
    "dowg_arguments": (
        lambda: jgd.dowg(0.5, 1e-3, 1e-5, 0.1, WD_MASK),
        lambda: optax.contrib.dowg(0.5, 1e-3, 1e-5, 0.1, WD_MASK),
    ),
    "cocob": (lambda: jgd.cocob(), lambda: optax.contrib.cocob()),
    "cocob_arguments": (
        lambda: jgd.cocob(0.5, 50.0, 1e-6, 0.1, WD_MASK),
        lambda: optax.contrib.cocob(0.5, 50.0, 1e-6, 0.1, WD_MASK),
    ),
    "mechanize": (lambda: jgd.mechanize(jgd.sgd(1.0)), lambda: optax.contrib.mechanize(optax.sgd(1.0))),
    "mechanize_adam": (
        lambda: jgd.mechanize(jgd.adam(1.0), 0.1, 1e-6, 1e-4, 3),
        lambda: optax.contrib.mechanize(optax.adam(1.0), 0.1, 1e-6, 1e-4, 3),
    ),
    "mechanize_optax_adam": (
        lambda: jgd.mechanize(optax.adam(0.1)),
        lambda: optax.contrib.mechanize(optax.adam(0.1)),
    ),
    "galore": (
        lambda: jgd.galore(0.05, rank=2, update_proj_gap=10, form="optax"),
        lambda: optax.contrib.galore(0.05, rank=2, update_proj_gap=10),
    ),
    "galore_arguments": (
        lambda: jgd.galore(0.05, 3, 7, 0.5, optax.scale_by_adam(0.8, 0.99), 0.1, WD_MASK, form="optax"),
        lambda: optax.contrib.galore(0.05, 3, 7, 0.5, optax.scale_by_adam(0.8, 0.99), 0.1, WD_MASK),
    ),
    "galore_axes": (
        lambda: jgd.galore(0.05, 2, 10, weight_dimension_numbers=STACK_AXES, form="optax"),
        lambda: optax.contrib.galore(0.05, 2, 10, weight_dimension_numbers=STACK_AXES),
    ),
    "sam": (
        lambda: jgd.sam(jgd.sgd(0.05), normalized_sgd(0.05)),
        lambda: optax.contrib.sam(optax.sgd(0.05), optax.chain(optax.contrib.normalize(), optax.sgd(0.05))),
    ),
    "sam_adam_period_3": (
        lambda: jgd.sam(jgd.adam(0.02), jgd.adam(0.01), 3, False),
        lambda: optax.contrib.sam(optax.adam(0.02), optax.adam(0.01), 3, False),
    ),
}


def _dog_heuristic(alpha):
    return lambda x0: alpha * (1 + np.sqrt(sum(np.sum(p * p) for p in x0.values())))


# jgd transform and NumPy reference written from the paper, with the same hyperparameters (ε = 0 where the
# paper has none).
PAPER = {
    "prodigy": (lambda: jgd.prodigy(weight_decay=0.1), ref.prodigy(1.0, 0.9, 0.999, 1e-8, 1e-6, 1.0, 0.1)),
    # γ = 0.1: with γ = 1 the uncorrected form's steps grow until the run turns chaotic and rounding decides it.
    "dadapt_adamw": (
        lambda: jgd.dadapt_adamw(0.1, weight_decay=0.1),
        ref.dadapt_adamw(0.1, 0.9, 0.999, 1e-8, 1e-6, 0.1),
    ),
    "dog": (lambda: jgd.dog(eps=0.0), ref.dog(1.0, _dog_heuristic(1e-6))),
    "dog_distance": (lambda: jgd.dog(0.5, ("distance", 0.1), 0.0), ref.dog(0.5, lambda x0: 0.1)),
    "dowg": (lambda: jgd.dowg(init_estim_sq_dist=1e-4, eps=0.0), ref.dowg(1.0, 1e-4)),
    "cocob": (lambda: jgd.cocob(), ref.cocob(100.0, 1e-8)),
    # ε = 1e-20: the memory-saving form divides the params' distance by Σs + ε where the paper sums the steps.
    "mechanize": (
        lambda: jgd.mechanize(jgd.sgd(1.0), eps=1e-20),
        ref.mechanic(ref.sgd_steps(1.0), 1e-2, 1e-20, 1e-6, 6),
    ),
    "galore": (lambda: jgd.galore(0.05, rank=2, update_proj_gap=STEPS), ref.galore(0.05, 2, 1.0, 0.9, 0.999, 1e-8)),
    "sam": (lambda: jgd.sam(jgd.sgd(0.05), normalized_sgd(0.05)), ref.sam(0.05, 0.05)),
}


@pytest.mark.parametrize("name", cases(OPTAX))
def test_matches_optax_trajectory(name, x64):
    make, make_optax = OPTAX[name]
    got, want = tree_ref.trajectory(make(), STEPS), tree_ref.trajectory(make_optax(), STEPS)
    assert max(np.abs(want[-1][k] - want[0][k]).max() for k in want[0]) > 1e-2, "the iterates must move"
    assert tree_ref.max_relative_difference(got, want) <= 1e-10


@pytest.mark.parametrize("name", cases(PAPER))
def test_matches_paper_equations(name, x64):
    make, step = PAPER[name]
    got, want = tree_ref.trajectory(make(), STEPS), tree_ref.run(step, STEPS)
    assert max(np.abs(want[-1][k] - want[0][k]).max() for k in want[0]) > 1e-2, "the iterates must move"
    assert tree_ref.max_relative_difference(got, want) <= 1e-10


@pytest.mark.slow  # each form is held to its own reference in the default run
@pytest.mark.parametrize("name", ["prodigy", "dadapt_adamw", "galore"])
def test_the_paper_form_differs_from_optax(name, x64):
    """Where optax writes a method otherwise, the default is the paper's and the two differ measurably."""
    make = {
        "prodigy": lambda form: jgd.prodigy(form=form),
        "dadapt_adamw": lambda form: jgd.dadapt_adamw(form=form),
        "galore": lambda form: jgd.galore(0.05, rank=2, form=form),
    }[name]
    paper, peer = tree_ref.trajectory(make("paper"), 5), tree_ref.trajectory(make("optax"), 5)
    assert tree_ref.max_relative_difference(paper, peer) > 1e-4


def test_sam_opaque_mode_matches_optax(x64):
    """Each call a whole round: the adversary's gradients come from ``grad_fn`` at the perturbed params."""
    grad_fn = jax.grad(lambda params, i: tree_ref.loss(params))
    made = [
        jgd.sam(jgd.adam(0.02), normalized_sgd(0.05), 3, opaque_mode=True),
        optax.contrib.sam(
            optax.adam(0.02), optax.chain(optax.contrib.normalize(), optax.sgd(0.05)), 3, opaque_mode=True
        ),
    ]
    paths = []
    for tx in made:
        step = jax.jit(lambda p, s, tx=tx: tx.update(jax.grad(tree_ref.loss)(p), s, p, grad_fn=grad_fn))
        params = tree_ref.init()
        state, path = tx.init(params), [params]
        for _ in range(5):
            updates, state = step(params, state)
            params = optax.apply_updates(params, updates)
            path.append({k: np.asarray(v) for k, v in params.items()})
        paths.append(path)
    assert max(np.abs(paths[1][-1][k] - paths[1][0][k]).max() for k in paths[1][0]) > 1e-2
    assert tree_ref.max_relative_difference(*paths) <= 1e-10


def test_sam_opaque_mode_needs_grad_fn():
    tx = jgd.sam(jgd.sgd(0.1), jgd.sgd(0.1), opaque_mode=True)
    params = jnp.ones(2)
    with pytest.raises(ValueError, match="grad_fn"):
        tx.update(params, tx.init(params), params)


def test_sam_with_a_sync_period_of_one_is_its_optimizer():
    """Every call is an outer step from the current params (optax's returns to the first params instead)."""
    sam, adam = jgd.sam(jgd.adam(0.1), jgd.sgd(0.5), sync_period=1), jgd.adam(0.1)
    params = other = jnp.asarray([1.0, -2.0])
    state, adam_state = sam.init(params), adam.init(params)
    for _ in range(2):
        updates, state = sam.update(2 * params, state, params)
        params = params + updates
        adam_updates, adam_state = adam.update(2 * other, adam_state, other)
        other = other + adam_updates
    np.testing.assert_allclose(params, other, rtol=1e-6)


def test_galore_keeps_the_base_state_at_low_rank():
    params = {"w": jnp.zeros((8, 20)), "tall": jnp.zeros((20, 8)), "b": jnp.zeros(20)}
    for form, shapes in (("paper", [(3, 20), (20, 3)]), ("optax", [(8, 3), (3, 8)])):
        state = jgd.galore(0.1, rank=3, form=form).init(params)
        moments = state.base_optimizer_state[0].slots["mu"]
        assert [moments["w"].shape, moments["tall"].shape] == shapes, form
        assert moments["b"].shape == (20,)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: jgd.prodigy(estim_lr0=0.0), "estim_lr0"),
        (lambda: jgd.prodigy(betas=(1.0, 0.999)), "b1"),
        (lambda: jgd.prodigy(form="torch"), "form"),
        (lambda: jgd.dadapt_adamw(betas=(0.9, -0.1)), "b2"),
        (lambda: jgd.dog(init_step=("distance", 0.0)), "init_distance"),
        (lambda: jgd.dog(init_step=("guess", 1.0)), "init_step"),
        (lambda: jgd.dowg(init_estim_sq_dist=-1.0), "init_estim_sq_dist"),
        (lambda: jgd.cocob(alpha=-1.0), "alpha"),
        (lambda: jgd.mechanize(jgd.sgd(1.0), s_init=0.0), "s_init"),
        (lambda: jgd.mechanize(jgd.sgd(1.0), num_betas=0), "num_betas"),
        (lambda: jgd.sam(jgd.sgd(0.1), jgd.sgd(0.1), sync_period=0), "sync_period"),
        (lambda: jgd.galore(0.1, rank=0), "rank"),
        (lambda: jgd.galore(0.1, update_proj_gap=1.5), "update_proj_gap"),
    ],
)
def test_invalid_values_raise_naming_the_parameter(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_prodigy_slots_take_the_low_bit_forms():
    """A quantized second moment and a stochastically rounded first moment track the float32 run."""
    params = {"w": jnp.linspace(-1.0, 1.0, 64 * 80).reshape(64, 80), "b": jnp.zeros(80)}
    grads = jax.tree.map(lambda p: jnp.sin(3 * p) + 0.1, params)
    low_bit = {"nu": jgd.quantized(8), "mu": jgd.stochastic()}

    def run(tx):
        state, out = tx.init(params), None
        step = jax.jit(tx.update)
        for _ in range(3):
            out, state = step(grads, state, params)
        return out, state

    (want, _), (got, state) = run(jgd.prodigy(0.5)), run(jgd.prodigy(0.5, state_dtype=low_bit))
    assert isinstance(state.slots["nu"]["w"], jgd.QuantizedArray) and state.slots["mu"]["w"].dtype == jnp.bfloat16
    assert isinstance(state.slots["nu"]["b"], jax.Array)  # below quantized's min_size: kept as it is
    for k in params:  # 8-bit codes err most on the entries near zero of a block: compare on average
        error = np.abs(np.asarray(got[k]) - np.asarray(want[k])).mean() / np.abs(np.asarray(want[k])).mean()
        assert error < 0.05, (k, error)
