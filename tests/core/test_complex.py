"""Complex parameters: the first-order methods against optax and against NumPy references with |g|²."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from tests.cases import BLOCK, CASES, METHOD, as_params, transform_states

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


# The rows that take complex leaves and have an optax twin with the same values; a block steps with sgd(0.05).
PAIRED = [c for c in CASES.values() if c.complex and c.optax is not None]


def pair(case):
    if case.kind == BLOCK:
        return jgd.chain(case.make(), jgd.sgd(0.05)), optax.chain(case.optax(), optax.sgd(0.05))
    return case.make(), case.optax()


@pytest.mark.parametrize("case", as_params(PAIRED))
def test_matches_optax_on_complex_params(case, x64):
    tx, optax_tx = pair(case)
    got, want = trajectory(tx), trajectory(optax_tx)
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


@pytest.mark.parametrize("case", as_params(c for c in CASES.values() if c.complex and c.slots and c.kind == METHOD))
def test_first_moments_complex_second_moments_real(case, x64):
    for dtype, real in [(jnp.complex64, jnp.float32), (jnp.complex128, jnp.float64)]:
        params = {"w": jnp.ones((2, 3), dtype) * (1 - 2j)}
        grads = {"w": jnp.ones((2, 3), dtype) * (0.5 + 1j)}
        want = {k: real if k in case.real_slots else dtype for k in case.slots}
        tx = case.make()
        state = tx.init(params)
        updates, new_state = tx.update(grads, state, params)
        assert updates["w"].dtype == dtype
        for current in (state, new_state):
            assert _leaf_dtypes(_slots(current)) == {k: {"w": jnp.dtype(d)} for k, d in want.items()}
        for value in jgd.hyperparams(new_state).values():
            assert not jnp.iscomplexobj(value)
        for k in case.real_slots:  # |g|², or adabelief's |g - m|², is real and positive
            assert bool(jnp.all(_slots(new_state)[k]["w"] > 0)), k


def _slots(state):
    return next(s.slots for s in transform_states(state) if s.slots)


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


@pytest.mark.parametrize("case", as_params(c for c in CASES.values() if not c.complex and c.kind in (METHOD, BLOCK)))
def test_methods_without_complex_rules_refuse_complex_leaves(case):
    name, make = case.factory, case.make
    params = {"real": jnp.ones(2), "z": jnp.ones(2, jnp.complex64)}
    with pytest.raises(ValueError, match=rf"params\['z'\] has dtype complex64; {name} does not take complex"):
        make().init(params)
    tx = make()
    real = {"real": jnp.ones(2), "z": jnp.ones(2)}
    state = tx.init(real)
    with pytest.raises(ValueError, match=rf"updates\['z'\] has dtype complex64; {name} does not take complex"):
        tx.update(params, state, real)
