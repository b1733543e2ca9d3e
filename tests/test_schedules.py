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
]


@pytest.mark.parametrize("pair", PAIRS)
def test_schedule_matches_optax(pair):
    ours, theirs = pair
    np.testing.assert_allclose(jax.vmap(ours)(STEPS), jax.vmap(theirs)(STEPS), rtol=1e-6, atol=1e-9)


def test_step_decay_drops_by_the_factor():
    np.testing.assert_allclose([schedules.step(1.0, 0.5, 3)(t) for t in (0, 2, 3, 7)], [1.0, 1.0, 0.5, 0.25])


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="transition_steps"):
        schedules.exponential(1.0, 0.5, 0)
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
