"""jgd.schedules.wsd against optax's joined schedules (float32) and a NumPy transcription (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from jgd import schedules

STEPS = jnp.arange(0, 40)
W, S, D = 6, 10, 15


def numpy_wsd(t, peak, init, end, shape):
    """Hu et al. 2024 / Hägele et al. 2024, written out phase by phase."""
    if t < W:
        return init + (peak - init) * t / W
    if t < W + S:
        return peak
    x = min((t - W - S) / D, 1.0)
    f = {"linear": 1 - x, "cosine": 0.5 * (1 + np.cos(np.pi * x)), "1-sqrt": 1 - np.sqrt(x)}[shape]
    return end + (peak - end) * f


OPTAX_DECAY = {
    "linear": lambda: optax.linear_schedule(0.1, 0.01, D),
    "cosine": lambda: optax.cosine_decay_schedule(0.1, D, alpha=0.1),
}


@pytest.mark.parametrize("shape", sorted(OPTAX_DECAY))
def test_matches_optax_joined_schedules(shape):
    ours = schedules.wsd(0.1, W, S, D, init_value=0.02, end_value=0.01, decay_shape=shape)
    theirs = optax.join_schedules(
        [optax.linear_schedule(0.02, 0.1, W), optax.constant_schedule(0.1), OPTAX_DECAY[shape]()], [W, W + S]
    )
    got, want = jax.jit(jax.vmap(ours))(STEPS), jax.jit(jax.vmap(theirs))(STEPS)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_float64_matches_numpy(x64, shape):
    got = jax.jit(jax.vmap(schedules.wsd(0.1, W, S, D, init_value=0.02, end_value=0.01, decay_shape=shape)))(STEPS)
    assert got.dtype == jnp.float64
    want = [numpy_wsd(int(t), 0.1, 0.02, 0.01, shape) for t in STEPS]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_values_can_be_traced_and_swept():
    peaks = jnp.asarray([0.1, 0.2, 0.4])
    swept = jax.jit(jax.vmap(lambda p: jax.vmap(schedules.wsd(p, 3, 2, 4, end_value=p / 10))(STEPS)))(peaks)
    for i, peak in enumerate([0.1, 0.2, 0.4]):
        alone = jax.vmap(schedules.wsd(peak, 3, 2, 4, end_value=peak / 10))(STEPS)
        np.testing.assert_allclose(swept[i], alone, rtol=1e-6)


def test_zero_warmup_starts_at_the_peak_and_it_drives_a_learning_rate():
    np.testing.assert_allclose(schedules.wsd(0.3, 0, 2, 4)(0), 0.3)
    state = jgd.sgd(schedules.wsd(0.3, 2, 1, 2)).init(jnp.ones(1))
    assert float(jgd.hyperparams(state)["learning_rate"]) == 0.0  # what the first step will use


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(warmup_steps=-1), "warmup_steps must be a nonnegative integer"),
        (dict(stable_steps=1.5), "stable_steps must be a nonnegative integer"),
        (dict(decay_steps=0), "decay_steps must be a positive integer"),
        (dict(decay_shape="exp"), "decay_shape must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    arguments = dict(peak_value=0.1, warmup_steps=2, stable_steps=3, decay_steps=4) | kwargs
    shape = arguments.pop("decay_shape", "linear")
    with pytest.raises(ValueError, match=message):
        schedules.wsd(**arguments, decay_shape=shape)
