"""Schedules against optax's, and their use as hyperparameters."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from jgd import schedules

STEPS = jnp.arange(0, 60)

PAIRS = [
    (schedules.constant(0.3), optax.constant_schedule(0.3)),
    (schedules.exponential(1.0, 0.5, 10), optax.exponential_decay(1.0, 10, 0.5)),
    (schedules.exponential(1.0, 0.5, 10, staircase=True), optax.exponential_decay(1.0, 10, 0.5, staircase=True)),
    (schedules.step(0.1, 0.1, 20), optax.exponential_decay(0.1, 20, 0.1, staircase=True)),
    (schedules.cosine(0.1, 40, alpha=0.1), optax.cosine_decay_schedule(0.1, 40, alpha=0.1)),
    (schedules.linear_warmup(0.1, 15, 0.01), optax.linear_schedule(0.01, 0.1, 15)),
    (
        schedules.join([schedules.linear_warmup(0.1, 10), schedules.cosine(0.1, 30)], [10]),
        optax.join_schedules([optax.linear_schedule(0.0, 0.1, 10), optax.cosine_decay_schedule(0.1, 30)], [10]),
    ),
    (
        schedules.exponential(1.0, 0.8, 7, transition_begin=5, end_value=0.2),
        optax.exponential_decay(1.0, 7, 0.8, transition_begin=5, end_value=0.2),
    ),
    (
        schedules.exponential(0.1, 1.1, 4, True, transition_begin=3, end_value=0.3),
        optax.exponential_decay(0.1, 4, 1.1, transition_begin=3, staircase=True, end_value=0.3),
    ),
    (schedules.exponential(0.3, 0.0, 5), optax.exponential_decay(0.3, 5, 0.0)),
    (schedules.exponential(0.3, 0.5, 0), optax.exponential_decay(0.3, 0, 0.5)),
    (schedules.polynomial(0.1, 0.01, 2.0, 30, 10), optax.polynomial_schedule(0.1, 0.01, 2.0, 30, 10)),
    (schedules.polynomial(0.1, 0.01, 3.0, 0), optax.polynomial_schedule(0.1, 0.01, 3.0, 0)),
    (schedules.warmup_cosine_decay(0.0, 0.1, 10, 50, 0.01), optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 50, 0.01)),
    (schedules.warmup_cosine_decay(0.02, 0.1, 0, 80), optax.warmup_cosine_decay_schedule(0.02, 0.1, 0, 80)),
]

# NumPy transcriptions of the same schedules, in float64.
NUMPY = {
    "exponential": (schedules.exponential(1.0, 0.8, 7, transition_begin=5), lambda t: 0.8 ** (max(t - 5, 0) / 7)),
    "step": (schedules.step(0.1, 0.5, 10), lambda t: 0.1 * 0.5 ** (t // 10)),
    "cosine": (
        schedules.cosine(0.1, 40, 0.1),
        lambda t: 0.1 * (0.9 * 0.5 * (1 + np.cos(np.pi * min(t, 40) / 40)) + 0.1),
    ),
    "linear_warmup": (schedules.linear_warmup(0.1, 15, 0.01), lambda t: 0.01 + 0.09 * min(t, 15) / 15),
    "polynomial": (schedules.polynomial(0.1, 0.01, 2.0, 30), lambda t: 0.09 * (1 - min(t, 30) / 30) ** 2 + 0.01),
}


@pytest.mark.parametrize("pair", PAIRS)
def test_schedule_matches_optax(pair):
    ours, theirs = pair
    np.testing.assert_allclose(jax.vmap(ours)(STEPS), jax.vmap(theirs)(STEPS), rtol=1e-6, atol=1e-9)


def test_zero_warmup_starts_at_the_peak():
    np.testing.assert_allclose(jax.vmap(schedules.linear_warmup(0.1, 0, 0.02))(STEPS), 0.1)


def test_step_decay_drops_by_the_factor():
    np.testing.assert_allclose([schedules.step(1.0, 0.5, 3)(t) for t in (0, 2, 3, 7)], [1.0, 1.0, 0.5, 0.25])


@pytest.mark.parametrize("name", NUMPY)
def test_float64_schedules_match_numpy(name, x64):
    ours, numpy_form = NUMPY[name]
    got = jax.vmap(ours)(STEPS)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, [numpy_form(int(t)) for t in STEPS], rtol=1e-15, atol=0)


def test_step_constants_beyond_int32():
    half = jnp.asarray(2**30, jnp.int32)
    assert float(schedules.cosine(1.0, 2**31)(half)) == pytest.approx(0.5)
    assert float(schedules.exponential(1.0, 0.5, 2**31)(half)) == pytest.approx(0.5**0.5)
    assert float(schedules.polynomial(1.0, 0.0, 1.0, 2**32)(jnp.asarray(2**31 - 1, jnp.int32))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="boundaries"):
        schedules.join([schedules.constant(1.0), schedules.constant(0.5)], [2**31])


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="transition_steps"):
        schedules.exponential(1.0, 0.5, -1)
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.cosine(1.0, 0)
    with pytest.raises(ValueError, match="decay_steps must exceed"):
        schedules.warmup_cosine_decay(0.0, 1.0, 10, 10)
    with pytest.raises(ValueError, match="warmup_steps"):
        schedules.linear_warmup(1.0, -3)
    with pytest.raises(ValueError, match="one more schedule than boundaries"):
        schedules.join([schedules.constant(1.0)], [3])


def test_schedule_parameters_can_be_vmapped():
    def first_updates(peak):
        tx = jgd.sgd(schedules.linear_warmup(peak, 4))
        state = tx.init(jnp.zeros(()))
        out = []
        for _ in range(3):
            u, state = tx.update(jnp.asarray(1.0), state)
            out.append(u)
        return jnp.stack(out)

    got = jax.vmap(first_updates)(jnp.asarray([1.0, 2.0]))
    np.testing.assert_allclose(got, [[0, -0.25, -0.5], [0, -0.5, -1.0]])


def test_import_jgd_stays_light():
    code = "import sys, jgd; print(sorted(m for m in ('flax', 'yaml', 'matplotlib', 'optax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
