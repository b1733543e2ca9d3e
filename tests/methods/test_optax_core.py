"""optax's Yogi, Adan, SM3, Signum, Rprop, NovoGrad, Fromage, optimistic GD, Polyak SGD and noisy SGD:
against optax and against their papers."""

import jax
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
SLOW = {"yogi_betas", "sm3_momentum", "adan", "rprop"}


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
    "optimistic_gradient_descent": (
        lambda: jgd.optimistic_gradient_descent(0.05, 0.7, 0.4),
        lambda: optax.optimistic_gradient_descent(0.05, 0.7, 0.4),
    ),
    "noisy_sgd": (lambda: jgd.noisy_sgd(0.05, 0.1, key=3), lambda: optax.noisy_sgd(0.05, 0.1, key=3)),
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
    "optimistic_gradient_descent": (
        lambda: jgd.optimistic_gradient_descent(0.05, 0.7, 0.4),
        ref.optimistic(0.05, 0.7, 0.4),
    ),
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


@pytest.mark.slow  # each form is held to its own reference in the default run
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
        (jgd.optimistic_gradient_descent, {"beta": -1.0}),
        (jgd.polyak_sgd, {"max_learning_rate": -1.0}),
        (jgd.noisy_sgd, {"gamma": -0.5}),
    ],
)
def test_invalid_values_raise_naming_the_parameter(factory, bad):
    with pytest.raises(ValueError, match=sorted(bad)[-1] if len(bad) == 1 else "min_step_size"):
        factory(**bad)


@pytest.mark.parametrize("factory", [jgd.adan, jgd.rprop])
def test_an_unknown_form_is_refused(factory):
    with pytest.raises(ValueError, match="form"):
        factory(form="torch")


def standard_draws(seed, params):
    """The draws of ``noisy_sgd(key=seed)``: at step t, ``(key, sample) = split(key)``, one key per leaf from
    ``split(sample, leaves)`` in the leaves' order, a standard normal per leaf."""
    names = sorted(params)  # a dict's leaves come in the order of its sorted keys

    @jax.jit
    def draw(key):
        key, sample = jax.random.split(key)
        keys = jax.random.split(sample, len(names))
        return key, {k: jax.random.normal(kk, params[k].shape, jnp.float64) for k, kk in zip(names, keys)}

    key, draws = jax.random.key(seed), {}

    def noise(t):
        nonlocal key
        while len(draws) < t:
            key, xi = draw(key)
            draws[len(draws) + 1] = {k: np.asarray(v) for k, v in xi.items()}
        return draws[t]

    return noise


def test_noisy_sgd_matches_the_paper_step_with_its_draws(x64):
    got = tree_ref.trajectory(jgd.noisy_sgd(0.05, 0.1, key=3), STEPS)
    want = tree_ref.run(ref.noisy(0.05, 0.1, 0.55, standard_draws(3, tree_ref.PARAMS)), STEPS)
    assert tree_ref.max_relative_difference(got, want) <= 1e-10


def test_noisy_sgd_noise_has_the_annealed_variance():
    """With a zero gradient and η_lr = 1 the update is the noise: mean 0, variance η / t^γ, fresh each step."""
    tx = jgd.noisy_sgd(1.0, eta=0.3, gamma=0.55, key=1)
    zeros = {"a": jnp.zeros(20_000), "b": jnp.zeros((100, 200))}
    state, seen = tx.init(zeros), []
    for t in (1, 2, 3, 4):
        updates, state = tx.update(zeros, state)
        for leaf in jax.tree.leaves(updates):
            x = np.asarray(leaf, np.float64).ravel()
            # 20 000 draws: the variance's relative standard error is √(2 / n) = 1 %.
            assert abs(x.mean()) < 0.02 and x.var() == pytest.approx(0.3 / t**0.55, rel=0.05)
        seen.append(np.asarray(updates["a"]))
    assert abs(np.corrcoef(seen[0], seen[1])[0, 1]) < 0.04
    assert abs(np.corrcoef(np.asarray(updates["a"]), np.asarray(updates["b"]).ravel())[0, 1]) < 0.04


def test_noisy_sgd_key_decides_the_draws():
    params = {"w": jnp.zeros(64)}

    def first(tx):
        return np.asarray(tx.update(params, tx.init(params))[0]["w"])

    np.testing.assert_array_equal(first(jgd.noisy_sgd(key=5)), first(jgd.noisy_sgd(key=jax.random.key(5))))
    assert not np.allclose(first(jgd.noisy_sgd(key=5)), first(jgd.noisy_sgd(key=6)))
    with pytest.raises(ValueError, match="key"):
        jgd.noisy_sgd(key="five")


def polyak_trajectory(tx, steps):
    """The iterates of a transform that takes the loss, ``update(..., value=loss)``, on the tree's loss."""

    @jax.jit
    def step(params, state):
        value, grads = jax.value_and_grad(tree_ref.loss)(params)
        updates, state = tx.update(grads, state, params, value=value)
        return jgd.apply_updates(params, updates), state

    params = tree_ref.init()
    state, out = tx.init(params), [params]
    for _ in range(steps):
        params, state = step(params, state)
        out.append(params)
    return [{k: np.asarray(v, np.float64) for k, v in p.items()} for p in out]


def polyak_run(step, steps):
    """The NumPy reference of a method that takes the loss too, its gradient and value by JAX in float64."""
    value_and_grad = jax.jit(jax.value_and_grad(tree_ref.loss))
    params, out = {k: v.copy() for k, v in tree_ref.PARAMS.items()}, []
    out.append(params)
    for t in range(1, steps + 1):
        value, grads = value_and_grad({k: jnp.asarray(v) for k, v in params.items()})
        params = step(params, {k: np.asarray(v) for k, v in grads.items()}, float(value), t, {})
        out.append(params)
    return out


POLYAK = {  # (jgd, optax, NumPy reference with c = scaling, γ_b = scaling · max_learning_rate)
    "sps": (
        lambda: jgd.polyak_sgd(0.5, 0.8, 0.1),
        lambda: optax.polyak_sgd(0.5, 0.8, 0.1),
        ref.polyak(0.5, 0.8, 0.1),
    ),
    "sps_plus": (
        lambda: jgd.polyak_sgd(0.5, 1.0, 0.5, variant="sps+"),
        lambda: optax.polyak_sgd(0.5, 1.0, 0.5, variant="sps+"),
        ref.polyak(0.5, 1.0, 0.5, plus=True),
    ),
}


@pytest.mark.parametrize("name", POLYAK)
def test_polyak_sgd_matches_optax_and_the_paper(name, x64):
    make, make_optax, step = POLYAK[name]
    got = polyak_trajectory(make(), STEPS)
    assert max(np.abs(got[-1][k] - got[0][k]).max() for k in got[0]) > 1e-2, "the iterates must move"
    assert tree_ref.max_relative_difference(got, polyak_trajectory(make_optax(), STEPS)) <= 1e-10
    assert tree_ref.max_relative_difference(got, polyak_run(step, STEPS)) <= 1e-10


def test_polyak_sgd_needs_the_loss_and_keeps_the_last():
    params = {"w": jnp.ones(3)}
    tx = jgd.polyak_sgd()
    state = tx.init(params)
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(params, state)
    updates, state = tx.update(params, state, value=1.5)
    np.testing.assert_allclose(updates["w"], -0.5 * np.ones(3))  # γ = min(1.5 / 3, 1)
    assert float(state.carry["value"]) == 1.5
    with pytest.raises(ValueError, match="variant"):
        jgd.polyak_sgd(variant="sps-")


def test_optimistic_gradient_descent_first_step_is_alpha_times_the_gradient():
    g = {"w": jnp.asarray([1.0, -2.0])}
    tx = jgd.optimistic_gradient_descent(0.1, alpha=0.5, beta=2.0)
    updates, state = tx.update(g, tx.init(g))
    np.testing.assert_allclose(updates["w"], [-0.05, 0.1])
    updates, _ = tx.update({"w": jnp.asarray([3.0, 0.0])}, state)
    np.testing.assert_allclose(updates["w"], [-0.1 * (2.5 * 3 - 2 * 1), -0.1 * (2 * 2.0)])


# A hyperparameter each method reads in a way of its own (a starting value, a loss bound, the noise's scale),
# two values of it, and how to call update.
AS_DATA = {
    "yogi": (lambda h: jgd.yogi(0.1, initial_accumulator=h), (1e-6, 0.5), {}),
    "rprop": (lambda h: jgd.rprop(h), (0.01, 0.1), {}),
    "noisy_sgd": (lambda h: jgd.noisy_sgd(0.1, eta=h), (0.01, 1.0), {}),
    "polyak_sgd": (lambda h: jgd.polyak_sgd(f_min=h), (0.0, 0.5), {"value": 1.0}),
}


@pytest.mark.parametrize("name", AS_DATA)
def test_a_sweep_is_a_vmap_and_a_new_value_no_recompile(name):
    make, values, extra = AS_DATA[name]
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.asarray([0.5, -0.25])}
    grads = jax.tree.map(lambda p: jnp.cos(3 * p + 1), params)
    traces = []

    def two_steps(tx, state):
        for _ in range(2):
            updates, state = tx.update(grads, state, params, **extra)
        return updates

    swept = jax.vmap(lambda h: two_steps(make(h), make(h).init(params)))(jnp.asarray(values))
    tx = make(values[0])

    @jax.jit
    def step(state):
        traces.append(1)
        return two_steps(tx, state)

    # A value set on the state after the transform was made is the one its steps use.
    alone = [step(jgd.set_hyperparams(tx.init(params), **{_name(name): h})) for h in values]
    assert len(traces) == 1, "a new value is data: no new trace"
    for i, one in enumerate(alone):
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7), swept, one)
    assert not np.allclose(alone[0]["w"], alone[1]["w"]), "the value must change the steps"


def _name(method):
    return {"yogi": "initial_accumulator", "rprop": "learning_rate", "noisy_sgd": "eta", "polyak_sgd": "f_min"}[method]
