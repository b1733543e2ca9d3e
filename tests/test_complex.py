"""Complex parameters: the first-order methods against optax and against NumPy references with |g|²."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd

STEPS = 50
RNG = np.random.default_rng(7)
A = RNG.normal(size=(5, 4)) + 1j * RNG.normal(size=(5, 4))
B = RNG.normal(size=5) + 1j * RNG.normal(size=5)
Z0 = RNG.normal(size=4) + 1j * RNG.normal(size=4)
R0 = RNG.normal(size=3)


def gradient(params):
    """Steepest-ascent direction of ``|A z - b|² + |r - 1|²``: ``2 Aᴴ(A z - b)`` and ``2 (r - 1)``."""
    z, r = params["z"], params["r"]
    return {"z": 2 * A.conj().T @ (A @ z - B), "r": 2 * (r - 1)}


def trajectory(tx, steps=STEPS):
    """The complex leaf after each of ``steps`` updates, from ``Z0`` (and a real leaf beside it)."""
    params = {"z": jnp.asarray(Z0, jnp.complex128), "r": jnp.asarray(R0, jnp.float64)}
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(gradient(params), state, params)
        return optax.apply_updates(params, updates), state

    path = []
    for _ in range(steps):
        params, state = step(params, state)
        assert params["z"].dtype == jnp.complex128 and params["r"].dtype == jnp.float64
        path.append(np.concatenate([np.asarray(params["z"]), np.asarray(params["r"])]))
    return np.stack(path)


def _per_leaf(optax_tx):
    """An optax transform without state applied to each leaf on its own (per-tensor clipping)."""

    def update(updates, state, params=None):
        return jax.tree.map(lambda g: optax_tx.update(g, optax_tx.init(g))[0], updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


# jgd transform and optax transform set so that their conventions agree (as in test_methods.py).
OPTAX = {
    "sgd": (lambda: jgd.sgd(0.05), lambda: optax.sgd(0.05)),
    "sgd_momentum": (lambda: jgd.sgd(0.02, momentum=0.9), lambda: optax.sgd(0.02, momentum=0.9)),
    "sgd_nesterov": (lambda: jgd.sgd(0.02, 0.9, nesterov=True), lambda: optax.sgd(0.02, 0.9, nesterov=True)),
    "momentum_velocity": (lambda: jgd.momentum(0.02, 0.9), lambda: optax.sgd(0.02, momentum=0.9)),
    "momentum_ema": (lambda: jgd.momentum(0.1, 0.8, form="ema"), lambda: optax.sgd(0.1 * 0.2, momentum=0.8)),
    "momentum_trace": (lambda: jgd.momentum(0.02, 0.9, form="trace"), lambda: optax.sgd(0.02, momentum=0.9)),
    "nesterov_velocity": (lambda: jgd.nesterov(0.02, 0.9), lambda: optax.sgd(0.02, 0.9, nesterov=True)),
    "nesterov_trace": (lambda: jgd.nesterov(0.02, 0.9, "trace"), lambda: optax.sgd(0.02, 0.9, nesterov=True)),
    "adagrad": (
        lambda: jgd.adagrad(0.1, eps=0.0, eps_root=1e-7, initial_accumulator=0.1),
        lambda: optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7),
    ),
    "rmsprop": (lambda: jgd.rmsprop(0.01), lambda: optax.rmsprop(0.01, eps_in_sqrt=False)),
    "rmsprop_eps_in_root": (lambda: jgd.rmsprop(0.01, eps=0.0, eps_root=1e-8), lambda: optax.rmsprop(0.01)),
    "rmsprop_centered_nesterov": (
        lambda: jgd.rmsprop(0.01, eps=1e-2, centered=True, momentum=0.8, nesterov=True),
        lambda: optax.rmsprop(0.01, eps=1e-2, centered=True, momentum=0.8, nesterov=True, eps_in_sqrt=False),
    ),
    "adam": (lambda: jgd.adam(0.05), lambda: optax.adam(0.05)),
    "adam_eps_root": (lambda: jgd.adam(0.05, eps_root=1e-6), lambda: optax.adam(0.05, eps_root=1e-6)),
    "adam_amsgrad": (lambda: jgd.adam(0.05, amsgrad="nu_hat"), lambda: optax.amsgrad(0.05)),
    "adamw": (lambda: jgd.adamw(0.05, weight_decay=0.1), lambda: optax.adamw(0.05, weight_decay=0.1)),
    "adamax": (lambda: jgd.adamax(0.05, eps_in_max=True), lambda: optax.adamax(0.05)),
    "nadam": (lambda: jgd.nadam(0.05, momentum_decay=None), lambda: optax.nadam(0.05)),
    "adabelief": (lambda: jgd.adabelief(0.05), lambda: optax.adabelief(0.05)),
    "radam": (lambda: jgd.radam(0.05), lambda: optax.radam(0.05)),
    "lamb": (lambda: jgd.lamb(0.05, weight_decay=0.01), lambda: optax.lamb(0.05, weight_decay=0.01)),
    "lars": (lambda: jgd.lars(0.05, weight_decay=0.01, form="optax"), lambda: optax.lars(0.05, weight_decay=0.01)),
    "clip_by_global_norm": (
        lambda: jgd.chain(jgd.clip_by_global_norm(2.0), jgd.sgd(0.05)),
        lambda: optax.chain(optax.clip_by_global_norm(2.0), optax.sgd(0.05)),
    ),
    "clip_by_norm": (
        lambda: jgd.chain(jgd.clip_by_norm(2.0), jgd.sgd(0.05)),
        lambda: optax.chain(_per_leaf(optax.clip_by_global_norm(2.0)), optax.sgd(0.05)),
    ),
}


@pytest.mark.parametrize("name", OPTAX)
def test_matches_optax_on_complex_params(name, x64):
    make, make_optax = OPTAX[name]
    got, want = trajectory(make()), trajectory(make_optax())
    assert np.abs(want[-1] - want[0]).max() > 1e-3  # the trajectory moves
    relative = np.abs(got - want).max() / np.abs(want).max()
    assert relative <= 1e-12, relative


def test_clipping_is_active_on_this_problem(x64):
    """The clipping cases above compare clipped steps, not the unclipped gradient."""
    norm = np.linalg.norm(gradient({"z": Z0, "r": R0})["z"])
    assert norm > 2.0
    assert float(jgd.global_norm(gradient({"z": jnp.asarray(Z0), "r": jnp.asarray(R0)}))) > 2.0


def _numpy_run(rule, steps=STEPS):
    z, r, slots = Z0.copy(), R0.copy(), None
    path = []
    for t in range(1, steps + 1):
        g = gradient({"z": z, "r": r})
        slots = slots or {k: [np.zeros_like(z), np.zeros_like(r)] for k in ("m", "v")}
        z = z + rule(g["z"], slots, 0, t)
        r = r + rule(g["r"], slots, 1, t)
        path.append(np.concatenate([z, r]))
    return np.stack(path)


def test_adam_matches_the_equation_with_abs_square(x64):
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8

    def rule(g, slots, i, t):
        slots["m"][i] = b1 * slots["m"][i] + (1 - b1) * g
        slots["v"][i] = b2 * slots["v"][i] + (1 - b2) * (g.real**2 + g.imag**2)
        m_hat, v_hat = slots["m"][i] / (1 - b1**t), slots["v"][i] / (1 - b2**t)
        return -lr * m_hat / (np.sqrt(v_hat) + eps)

    want = _numpy_run(rule)
    np.testing.assert_allclose(trajectory(jgd.adam(lr, b1, b2, eps)), want, rtol=1e-12, atol=1e-13)


def test_rmsprop_matches_the_equation_with_abs_square(x64):
    lr, rho, eps = 0.01, 0.9, 1e-8

    def rule(g, slots, i, t):
        slots["v"][i] = rho * slots["v"][i] + (1 - rho) * np.abs(g) ** 2
        return -lr * g / (np.sqrt(slots["v"][i]) + eps)

    want = _numpy_run(rule)
    np.testing.assert_allclose(trajectory(jgd.rmsprop(lr, rho, eps)), want, rtol=1e-12, atol=1e-13)


def _leaf_dtypes(tree):
    return jax.tree.map(lambda x: jnp.dtype(x.dtype), tree)


@pytest.mark.parametrize("dtype, real", [(jnp.complex64, jnp.float32), (jnp.complex128, jnp.float64)])
def test_first_moments_complex_second_moments_real(dtype, real, x64):
    params = {"w": jnp.ones((2, 3), dtype) * (1 - 2j)}
    grads = {"w": jnp.ones((2, 3), dtype) * (0.5 + 1j)}
    cases = {
        jgd.adam(amsgrad=True): {"mu": dtype, "nu": real, "nu_max": real},
        jgd.rmsprop(centered=True, momentum=0.9): {"mean_square": real, "mean": dtype, "velocity": dtype},
        jgd.adamax(): {"mu": dtype, "inf_norm": real},
        jgd.adagrad(): {"sum_of_squares": real},
        jgd.adabelief(): {"mu": dtype, "nu": real},
    }
    for tx, want in cases.items():
        state = tx.init(params)
        updates, new_state = tx.update(grads, state, params)
        assert updates["w"].dtype == dtype
        for current in (state, new_state):
            assert _leaf_dtypes(current.slots) == {k: {"w": jnp.dtype(d)} for k, d in want.items()}
        for value in jgd.hyperparams(new_state).values():
            assert not jnp.iscomplexobj(value)
    v = new_state.slots["nu"]["w"]  # adabelief's last: |g - m|² is real and positive
    assert bool(jnp.all(v > 0))


def test_state_dtype_gives_the_precision_of_a_complex_slot(x64):
    params = {"w": jnp.ones(3, jnp.complex128)}
    state = jgd.adam(state_dtype=jnp.float32).init(params)
    assert _leaf_dtypes(state.slots) == {"mu": {"w": jnp.dtype(jnp.complex64)}, "nu": {"w": jnp.dtype(jnp.float32)}}
    state = jgd.adam(state_dtype={"nu": jnp.bfloat16}).init(params)
    assert _leaf_dtypes(state.slots) == {"mu": {"w": jnp.dtype(jnp.complex128)}, "nu": {"w": jnp.dtype(jnp.bfloat16)}}
    updates, state = jgd.adam(state_dtype={"nu": jnp.bfloat16}).update(params, state)
    assert state.slots["nu"]["w"].dtype == jnp.bfloat16 and updates["w"].dtype == jnp.complex128


def test_jit_equals_no_jit_on_complex_params():
    tx = jgd.rmsprop(0.01, centered=True, momentum=0.9)
    params = {"w": jnp.asarray(Z0, jnp.complex64)}
    state = tx.init(params)
    eager = tx.update(params, state, params)
    jitted = jax.jit(tx.update)(params, state, params)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize(
    "name, make",
    [
        ("lion", jgd.lion),
        ("adadelta", jgd.adadelta),
        ("adafactor", jgd.adafactor),
        ("clip_by_value", lambda: jgd.clip_by_value(1.0)),
        ("l1_penalty", lambda: jgd.l1_penalty(0.1)),
    ],
)
def test_methods_without_complex_rules_refuse_complex_leaves(name, make):
    params = {"real": jnp.ones(2), "z": jnp.ones(2, jnp.complex64)}
    with pytest.raises(ValueError, match=rf"params\['z'\] has dtype complex64; {name} does not take complex"):
        make().init(params)
    tx = make()
    real = {"real": jnp.ones(2), "z": jnp.ones(2)}
    state = tx.init(real)
    with pytest.raises(ValueError, match=rf"updates\['z'\] has dtype complex64; {name} does not take complex"):
        tx.update(params, state, real)
