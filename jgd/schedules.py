"""Learning-rate (or any hyperparameter) schedules: functions ``step -> value``.

Pass one wherever a hyperparameter is expected; it is evaluated at the
transform's step count (0 at the first update). Values may be arrays or
tracers, so a sweep over a schedule's parameters is a ``jax.vmap`` too.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from jgd.types import Schedule


def _positive_int(name: str, value: int) -> None:
    if int(value) != value or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def constant(value: float) -> Schedule:
    """``η_t = value``."""
    return lambda step: jnp.asarray(value, jnp.result_type(float))


def exponential(init_value: float, decay_rate: float, transition_steps: int, staircase: bool = False) -> Schedule:
    """``η_t = η_0 · r^(t / T)`` (``r^⌊t / T⌋`` with ``staircase``)."""
    _positive_int("transition_steps", transition_steps)

    def schedule(step):
        exponent = step / transition_steps
        return init_value * decay_rate ** (jnp.floor(exponent) if staircase else exponent)

    return schedule


def step(init_value: float, factor: float, every: int) -> Schedule:
    """Step decay ``η_t = η_0 · factor^⌊t / every⌋`` (seed 002: drop the rate every few epochs)."""
    return exponential(init_value, factor, every, staircase=True)


def cosine(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """``η_t = η_0 ((1 - α) (1 + cos(π min(t, T) / T)) / 2 + α)``.

    Loshchilov & Hutter, "SGDR: stochastic gradient descent with warm restarts", ICLR 2017.
    """
    _positive_int("decay_steps", decay_steps)

    def schedule(step):
        progress = jnp.minimum(step, decay_steps) / decay_steps
        return init_value * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * progress)) + alpha)

    return schedule


def linear_warmup(peak_value: float, warmup_steps: int, init_value: float = 0.0) -> Schedule:
    """Rises linearly from ``init_value`` to ``peak_value`` over ``warmup_steps``, then stays there.

    Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour", 2017.
    """
    _positive_int("warmup_steps", warmup_steps)

    def schedule(step):
        progress = jnp.minimum(step, warmup_steps) / warmup_steps
        return init_value + (peak_value - init_value) * progress

    return schedule


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Runs ``schedules[i]`` from ``boundaries[i-1]`` on, each restarted at 0 there.

    ``join([linear_warmup(1e-3, 100), cosine(1e-3, 900)], [100])`` warms up, then decays.
    """
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"join needs one more schedule than boundaries, got {len(schedules)} and {len(boundaries)}")
    if list(boundaries) != sorted(boundaries):
        raise ValueError(f"boundaries must be increasing, got {list(boundaries)}")

    def schedule(step):
        value = schedules[0](step)
        for fn, start in zip(schedules[1:], boundaries):
            value = jnp.where(step >= start, fn(step - start), value)
        return value

    return schedule
