"""Every first-order method against a NumPy reference written from its seed equation, and against optax."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from tests import reference as ref

STEPS = 40
FLOAT32_STEPS = 20

# (jgd transform, NumPy reference step) with the same hyperparameters.
CASES = {
    "sgd": (lambda: jgd.sgd(0.1), ref.sgd(0.1)),
    "momentum_velocity": (lambda: jgd.momentum(0.05, 0.9), ref.momentum_velocity(0.05, 0.9)),
    "momentum_ema": (lambda: jgd.momentum(0.3, 0.8, form="ema"), ref.momentum_ema(0.3, 0.8)),
    "adagrad_duchi": (lambda: jgd.adagrad(0.1, eps=1e-8), ref.adagrad(0.1, eps=1e-8)),
    "adagrad_seed": (lambda: jgd.adagrad(0.1, eps=0.0, eps_root=1e-8), ref.adagrad(0.1, eps_root=1e-8)),
    "adagrad_keras": (
        lambda: jgd.adagrad(0.1, eps=1e-7, initial_accumulator=0.1),
        ref.adagrad(0.1, eps=1e-7, g0=0.1),
    ),
    "adadelta": (lambda: jgd.adadelta(), ref.adadelta(1.0, 0.95, 1e-6)),
    "adadelta_lr": (lambda: jgd.adadelta(0.5, rho=0.9, eps=1e-4), ref.adadelta(0.5, 0.9, 1e-4)),
    "rmsprop": (lambda: jgd.rmsprop(0.01), ref.rmsprop(0.01, 0.9, eps=1e-8)),
    "rmsprop_seed": (lambda: jgd.rmsprop(0.01, eps=0.0, eps_root=1e-8), ref.rmsprop(0.01, 0.9, eps_root=1e-8)),
    "rmsprop_centered": (lambda: jgd.rmsprop(0.01, centered=True), ref.rmsprop(0.01, 0.9, 1e-8, centered=True)),
    "rmsprop_momentum": (lambda: jgd.rmsprop(0.01, momentum=0.8), ref.rmsprop(0.01, 0.9, 1e-8, mom=0.8)),
    "rmsprop_nesterov": (
        # ε large enough that float32 does not amplify the cancellation in E[g²] - E[g]².
        lambda: jgd.rmsprop(0.01, eps=1e-2, momentum=0.8, nesterov=True, centered=True),
        ref.rmsprop(0.01, 0.9, 1e-2, centered=True, mom=0.8, nesterov=True),
    ),
    "adam": (lambda: jgd.adam(0.05), ref.adam(0.05, 0.9, 0.999, eps=1e-8)),
    "adam_seed": (lambda: jgd.adam(0.05, eps=0.0, eps_root=1e-8), ref.adam(0.05, 0.9, 0.999, eps_root=1e-8)),
    "adam_nesterov": (lambda: jgd.adam(0.05, nesterov=True), ref.adam(0.05, 0.9, 0.999, eps=1e-8, nesterov=True)),
    "adamax": (lambda: jgd.adamax(0.05), ref.adamax(0.05, 0.9, 0.999, eps=1e-8)),
    "nadam_seed": (
        lambda: jgd.nadam(0.05, eps=0.0, eps_root=1e-8, form="seed"),
        ref.nadam_seed(0.05, 0.9, 0.999, 1e-8),
    ),
    "nadam_dozat": (lambda: jgd.nadam(0.05), ref.nadam_dozat(0.05, 0.9, 0.999, 1e-8, 0.004)),
    "nadam_dozat_fast_schedule": (
        lambda: jgd.nadam(0.05, b1=0.95, momentum_decay=0.5),
        ref.nadam_dozat(0.05, 0.95, 0.999, 1e-8, 0.5),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_float64_matches_seed_equation(name, x64):
    make, step = CASES[name]
    got = ref.trajectory(make(), STEPS, jnp.float64)
    want = ref.run(step, STEPS)
    assert np.abs(want[-1] - want[0]).max() > 1e-2, "the objective must move the iterates"
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_float32_matches_seed_equation(name):
    make, step = CASES[name]
    # Over 20 steps: past about step 25, Nadam's iterates on this objective double any rounding error
    # each step, so a float32 run and the float64 reference part by amplification, not by arithmetic.
    got = ref.trajectory(make(), FLOAT32_STEPS, jnp.float32)
    assert got.dtype == np.float64  # flattened for comparison; the run itself was float32
    np.testing.assert_allclose(got, ref.run(step, FLOAT32_STEPS), rtol=2e-4, atol=2e-5)


def test_nesterov_iterates_are_the_look_ahead_points(x64):
    got = ref.trajectory(jgd.nesterov(0.05, 0.9), STEPS, jnp.float64)
    np.testing.assert_allclose(got, ref.nesterov_literal(0.05, 0.9, STEPS), rtol=1e-10, atol=1e-12)


def test_look_ahead_runs_the_seed_form_literally(x64):
    """Gradient at look_ahead(θ, state), momentum update on θ: the seeds' NAG, equal to the transform's iterates."""
    import jax

    tx = jgd.momentum(0.05, 0.9)
    params = ref.init_params(jnp.float64)
    state = tx.init(params)
    look = [ref.flatten(params)]
    for _ in range(STEPS):
        grads = jax.grad(ref.loss)(jgd.look_ahead(params, state))
        updates, state = tx.update(grads, state, params)
        params = jgd.apply_updates(params, updates)
        look.append(ref.flatten(jgd.look_ahead(params, state)))
    np.testing.assert_allclose(np.stack(look), ref.nesterov_literal(0.05, 0.9, STEPS), rtol=1e-10, atol=1e-12)
    transform = ref.trajectory(jgd.nesterov(0.05, 0.9), STEPS, jnp.float64)
    np.testing.assert_allclose(np.stack(look), transform, rtol=1e-10, atol=1e-12)


# jgd transform and optax transform set so that their conventions agree.
OPTAX = {
    "sgd": (lambda: jgd.sgd(0.1), lambda: optax.sgd(0.1)),
    "momentum_velocity": (lambda: jgd.momentum(0.05, 0.9), lambda: optax.sgd(0.05, momentum=0.9)),
    "momentum_ema": (lambda: jgd.momentum(0.3, 0.8, form="ema"), lambda: optax.sgd(0.3 * 0.2, momentum=0.8)),
    "nesterov": (lambda: jgd.nesterov(0.05, 0.9), lambda: optax.sgd(0.05, momentum=0.9, nesterov=True)),
    "adagrad": (
        lambda: jgd.adagrad(0.1, eps=0.0, eps_root=1e-7, initial_accumulator=0.1),
        lambda: optax.adagrad(0.1, initial_accumulator_value=0.1, eps=1e-7),
    ),
    "adadelta": (lambda: jgd.adadelta(1.0, rho=0.9, eps=1e-6), lambda: optax.adadelta(1.0, rho=0.9, eps=1e-6)),
    "rmsprop": (lambda: jgd.rmsprop(0.01), lambda: optax.rmsprop(0.01, eps_in_sqrt=False)),
    "rmsprop_seed": (lambda: jgd.rmsprop(0.01, eps=0.0, eps_root=1e-8), lambda: optax.rmsprop(0.01)),
    "rmsprop_centered_nesterov": (
        lambda: jgd.rmsprop(0.01, eps=1e-2, centered=True, momentum=0.8, nesterov=True),
        lambda: optax.rmsprop(0.01, eps=1e-2, centered=True, momentum=0.8, nesterov=True, eps_in_sqrt=False),
    ),
    "adam": (lambda: jgd.adam(0.05), lambda: optax.adam(0.05)),
    "adam_eps_root": (lambda: jgd.adam(0.05, eps_root=1e-6), lambda: optax.adam(0.05, eps_root=1e-6)),
    "adam_nesterov": (lambda: jgd.adam(0.05, nesterov=True), lambda: optax.adam(0.05, nesterov=True)),
    "adamw_nesterov": (
        lambda: jgd.adamw(0.05, weight_decay=0.1, nesterov=True),
        lambda: optax.adamw(0.05, weight_decay=0.1, nesterov=True),
    ),
    "adamax": (lambda: jgd.adamax(0.05, eps=0.0), lambda: optax.adamax(0.05, eps=0.0)),
    "nadam_constant_momentum": (lambda: jgd.nadam(0.05, momentum_decay=None), lambda: optax.nadam(0.05)),
    "adamw": (
        lambda: jgd.chain(jgd.adam(0.05), jgd.weight_decay(0.05 * 0.1)),
        lambda: optax.adamw(0.05, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("name", OPTAX)
def test_matches_optax_trajectory(name, x64):
    make, make_optax = OPTAX[name]
    got = ref.trajectory(make(), STEPS, jnp.float64)
    want = ref.trajectory(make_optax(), STEPS, jnp.float64)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", OPTAX)
def test_matches_optax_trajectory_float32(name):
    make, make_optax = OPTAX[name]
    got = ref.trajectory(make(), STEPS, jnp.float32)
    np.testing.assert_allclose(got, ref.trajectory(make_optax(), STEPS, jnp.float32), rtol=1e-4, atol=1e-5)
