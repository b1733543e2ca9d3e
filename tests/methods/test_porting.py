"""The porting table's optax and Keras 3 rows: each jgd call against the peer itself, 50 float64 steps."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported (in the fixture below)

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from jgd import schedules
from tests.porting_problem import B0, STEPS, W0, gradient, relative_difference, trajectories


def _decay_kernel_only(params):
    return {"w": True, "b": False}


# name -> (jgd transform, optax transform), both made inside the float64 scope. optax's schedules compute in
# float32 whatever the mode (its int32 count over an int), so a scheduled row gives optax jgd's schedule and
# tests/core/test_schedules.py compares the schedules themselves.
OPTAX_ROWS = {
    "sgd_momentum_scheduled": (
        lambda: jgd.sgd(schedules.exponential(0.05, 0.5, 10), 0.9),
        lambda: optax.sgd(schedules.exponential(0.05, 0.5, 10), 0.9),
    ),
    "sgd_nesterov_scheduled": (
        lambda: jgd.sgd(schedules.cosine(0.05, 40), 0.9, nesterov=True),
        lambda: optax.sgd(schedules.cosine(0.05, 40), 0.9, nesterov=True),
    ),
    "adam": (lambda: jgd.adam(0.05), lambda: optax.adam(0.05)),
    "amsgrad": (lambda: jgd.adam(0.05, amsgrad="nu_hat"), lambda: optax.amsgrad(0.05)),
    "adamw_masked_scheduled": (
        lambda: jgd.adamw(schedules.warmup_cosine_decay(0.0, 0.05, 10, 50), weight_decay=0.5, mask=_decay_kernel_only),
        lambda: optax.adamw(
            schedules.warmup_cosine_decay(0.0, 0.05, 10, 50), weight_decay=0.5, mask=_decay_kernel_only
        ),
    ),
    "nadam": (lambda: jgd.nadam(0.05, form="b1", momentum_decay=None), lambda: optax.nadam(0.05)),
    "adamax": (lambda: jgd.adamax(0.05, eps_in_max=True), lambda: optax.adamax(0.05)),
    "adagrad": (
        lambda: jgd.adagrad(0.1, eps=0.0, eps_root=1e-7, initial_accumulator=0.1),
        lambda: optax.adagrad(0.1),
    ),
    "adadelta": (lambda: jgd.adadelta(1.0, rho=0.9, eps=1e-6), lambda: optax.adadelta(1.0)),
    "rmsprop": (lambda: jgd.rmsprop(0.01, eps=0.0, eps_root=1e-8), lambda: optax.rmsprop(0.01)),
    "rmsprop_centered_momentum": (
        lambda: jgd.rmsprop(0.01, eps=0.0, eps_root=1e-8, centered=True, momentum=0.9),
        lambda: optax.rmsprop(0.01, centered=True, momentum=0.9),
    ),
    "clip_by_global_norm": (
        lambda: jgd.chain(jgd.clip_by_global_norm(0.5), jgd.sgd(0.1)),
        lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1)),
    ),
}


@pytest.fixture(scope="module")
def optax_runs():
    ours = trajectories({name: make for name, (make, _) in OPTAX_ROWS.items()})
    theirs = trajectories({name: make for name, (_, make) in OPTAX_ROWS.items()})
    return ours, theirs


@pytest.mark.parametrize("name", OPTAX_ROWS)
def test_matches_optax(name, optax_runs):
    ours, theirs = optax_runs
    assert np.abs(theirs[name][-1] - theirs[name][0]).max() > 1e-2, "the objective must move the iterates"
    assert relative_difference(ours[name], theirs[name]) <= 1e-12


def test_adam_state_dtype_of_mu_is_optax_mu_dtype():
    """optax's ``mu_dtype`` stores the first moment alone in that dtype: ``state_dtype={"mu": d}``."""
    run = trajectories(
        {
            "ours": lambda: jgd.adam(0.05, state_dtype={"mu": jnp.float32}),
            "theirs": lambda: optax.adam(0.05, mu_dtype=jnp.float32),
        }
    )
    # optax multiplies the stored float32 moment by β1 in float32 before adding the float64 gradient term;
    # jgd computes the whole step in the gradient's float64 (measured: 7.5e-8).
    assert relative_difference(run["ours"], run["theirs"]) <= 2e-7


# name -> (jgd transform, Keras optimizer from the keras module), in float64.
KERAS_ROWS = {
    "SGD": (lambda: jgd.sgd(0.1), lambda k: k.optimizers.SGD(0.1)),
    "SGD_momentum": (lambda: jgd.momentum(0.05, 0.9), lambda k: k.optimizers.SGD(0.05, momentum=0.9)),
    "SGD_nesterov": (lambda: jgd.nesterov(0.05, 0.9), lambda k: k.optimizers.SGD(0.05, 0.9, nesterov=True)),
    "Adam": (lambda: jgd.adam(0.05, eps=1e-7, eps_hat=True), lambda k: k.optimizers.Adam(0.05)),
    "Adam_amsgrad": (
        lambda: jgd.adam(0.05, eps=1e-7, eps_hat=True, amsgrad=True),
        lambda k: k.optimizers.Adam(0.05, amsgrad=True),
    ),
    "AdamW": (
        lambda: jgd.adamw(0.05, eps=1e-7, eps_hat=True, weight_decay=0.5),
        lambda k: k.optimizers.AdamW(0.05, weight_decay=0.5),
    ),
    "Adamax": (lambda: jgd.adamax(0.05, eps=1e-7), lambda k: k.optimizers.Adamax(0.05)),
    "Nadam": (
        lambda: jgd.nadam(0.05, eps=1e-7, form="b1", momentum_decay=1.0),
        lambda k: k.optimizers.Nadam(0.05),
    ),
    "Adagrad": (
        lambda: jgd.adagrad(0.1, eps=0.0, eps_root=1e-7, initial_accumulator=0.1),
        lambda k: k.optimizers.Adagrad(0.1),
    ),
    "Adadelta": (lambda: jgd.adadelta(1.0, rho=0.95, eps=1e-7), lambda k: k.optimizers.Adadelta(1.0)),
    "RMSprop": (lambda: jgd.rmsprop(0.01, eps=0.0, eps_root=1e-7), lambda k: k.optimizers.RMSprop(0.01)),
    "RMSprop_centered_momentum": (
        lambda: jgd.rmsprop(0.01, eps=0.0, eps_root=1e-7, centered=True, momentum=0.9),
        lambda k: k.optimizers.RMSprop(0.01, momentum=0.9, centered=True),
    ),
    "SGD_clipnorm": (
        lambda: jgd.chain(jgd.clip_by_norm(0.5), jgd.sgd(0.1)),
        lambda k: k.optimizers.SGD(0.1, clipnorm=0.5),
    ),
    "SGD_clipvalue": (
        lambda: jgd.chain(jgd.clip_by_value(0.1), jgd.sgd(0.1)),
        lambda k: k.optimizers.SGD(0.1, clipvalue=0.1),
    ),
    "SGD_global_clipnorm": (
        lambda: jgd.chain(jgd.clip_by_global_norm(0.5), jgd.sgd(0.1)),
        lambda k: k.optimizers.SGD(0.1, global_clipnorm=0.5),
    ),
    "ExponentialDecay": (
        lambda: jgd.momentum(schedules.exponential(0.05, 0.5, 10, staircase=True), 0.9),
        lambda k: k.optimizers.SGD(k.optimizers.schedules.ExponentialDecay(0.05, 10, 0.5, staircase=True), 0.9),
    ),
    "CosineDecay_warmup": (
        lambda: jgd.adam(schedules.warmup_cosine_decay(0.0, 0.05, 10, 50, 0.005), eps=1e-7, eps_hat=True),
        lambda k: k.optimizers.Adam(
            k.optimizers.schedules.CosineDecay(np.float64(0.0), 40, alpha=0.1, warmup_target=0.05, warmup_steps=10)
        ),
    ),
    "PiecewiseConstantDecay": (
        lambda: jgd.sgd(schedules.join([schedules.constant(v) for v in (0.1, 0.05, 0.01)], [11, 31])),
        lambda k: k.optimizers.SGD(k.optimizers.schedules.PiecewiseConstantDecay([10, 30], [0.1, 0.05, 0.01])),
    ),
    "PolynomialDecay": (
        lambda: jgd.sgd(schedules.polynomial(0.1, 0.01, 2.0, 40)),
        lambda k: k.optimizers.SGD(k.optimizers.schedules.PolynomialDecay(0.1, 40, 0.01, power=2.0)),
    ),
}


# Keras evaluates CosineDecay's cosine part in float32 (its rate differs from NumPy's by 3e-9 in float64 mode);
# the warm-up part is exact.
KERAS_TOLERANCE = {"CosineDecay_warmup": 1e-7}


def _keras_trajectories(keras) -> dict[str, np.ndarray]:
    """Every Keras row's optimizer, stepped with ``stateless_apply`` in one jitted program."""
    runs = {}
    for name, (_, make) in KERAS_ROWS.items():
        variables = [keras.Variable(W0, dtype="float64"), keras.Variable(B0, dtype="float64")]
        optimizer = make(keras)
        optimizer.build(variables)
        runs[name] = (optimizer, [v.value for v in variables], [v.value for v in optimizer.variables])

    def run(optimizer, params, state):
        def body(carry, _):
            params, state = carry
            params, state = optimizer.stateless_apply(state, gradient(*params, jnp), params)
            return (params, state), jnp.concatenate([params[0].ravel(), params[1]])

        return jax.lax.scan(body, (params, state), None, length=STEPS)[1]

    return {name: np.asarray(v) for name, v in jax.jit(lambda: {n: run(*r) for n, r in runs.items()})().items()}


@pytest.fixture(scope="module")
def keras_runs():
    import keras

    with jax.enable_x64(True):
        floatx = keras.config.floatx()
        keras.config.set_floatx("float64")
        try:
            theirs = _keras_trajectories(keras)
        finally:
            keras.config.set_floatx(floatx)
    return trajectories({name: make for name, (make, _) in KERAS_ROWS.items()}), theirs


@pytest.mark.parametrize("name", KERAS_ROWS)
def test_matches_keras(name, keras_runs):
    ours, theirs = keras_runs
    assert theirs[name].dtype == np.float64
    assert np.abs(theirs[name][-1] - theirs[name][0]).max() > 1e-2, "the objective must move the iterates"
    assert relative_difference(ours[name], theirs[name]) <= KERAS_TOLERANCE.get(name, 1e-12)
