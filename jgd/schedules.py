"""Learning-rate (or any hyperparameter) schedules: functions ``step -> value``.

Pass one wherever a hyperparameter is expected; it is evaluated at the
transform's step count (0 at the first update). Values may be arrays or
tracers, so a sweep over a schedule's parameters is a ``jax.vmap`` too.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from jgd.types import Schedule

__all__ = [
    "constant",
    "cosine",
    "exponential",
    "join",
    "linear_warmup",
    "polynomial",
    "step",
    "warmup_cosine_decay",
    "wsd",
]

_INT32_MAX = 2**31 - 1


def _float(step):
    """The step count as the default float dtype (float64 under ``jax_enable_x64``), so a schedule
    returns that dtype and step constants of 2³¹ or more need no int32."""
    return jnp.asarray(step, jnp.result_type(float))


def _steps(name: str, value: int, *, positive: bool = True) -> float:
    """A step constant, checked and returned as a Python float (traced as the step's float, never as int32)."""
    if int(value) != value or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a {'positive' if positive else 'nonnegative'} integer, got {value!r}")
    return float(value)


def constant(value: float) -> Schedule:
    """``η_t = value``.

    Examples:
      >>> import jgd
      >>> schedule = jgd.schedules.constant(0.1)
      >>> print(schedule(0), schedule(1000))
      0.1 0.1
    """
    return lambda step: jnp.asarray(value, jnp.result_type(float))


def exponential(
    init_value: float,
    decay_rate: float,
    transition_steps: int,
    staircase: bool = False,
    *,
    transition_begin: int = 0,
    end_value: float | None = None,
) -> Schedule:
    """``η_t = η_0 · r^((t - B) / T)`` for ``t > B``, ``η_0`` before (``r^⌊(t - B) / T⌋`` with ``staircase``),
    bounded by ``end_value`` (a floor when ``r < 1``, a ceiling when ``r > 1``).

    As optax's ``exponential_decay``: ``transition_steps=0`` or ``decay_rate=0`` give the constant ``η_0``;
    Keras's ``ExponentialDecay`` and torch's ``ExponentialLR`` (``T = 1``) are the case ``B = 0``.

    Examples:
      Halving every 10 steps, smoothly or by stairs:

      >>> import jgd
      >>> smooth = jgd.schedules.exponential(1.0, 0.5, 10)
      >>> stairs = jgd.schedules.exponential(1.0, 0.5, 10, staircase=True)
      >>> print([float(smooth(t)) for t in (0, 5, 10, 20)])
      [1.0, 0.7071067690849304, 0.5, 0.25]
      >>> print([float(stairs(t)) for t in (0, 5, 10, 20)])
      [1.0, 1.0, 0.5, 0.25]
    """
    steps = _steps("transition_steps", transition_steps, positive=False)
    begin = _steps("transition_begin", transition_begin, positive=False)
    if steps == 0 or decay_rate == 0:
        return constant(init_value)

    def schedule(step):
        since = _float(step) - begin
        exponent = since / steps
        value = init_value * decay_rate ** (jnp.floor(exponent) if staircase else exponent)
        value = jnp.where(since <= 0, init_value, value)
        if end_value is None:
            return value
        return jnp.maximum(value, end_value) if decay_rate < 1 else jnp.minimum(value, end_value)

    return schedule


def step(init_value: float, factor: float, every: int) -> Schedule:
    """Step decay ``η_t = η_0 · factor^⌊t / every⌋`` (seed 002: drop the rate every few epochs; torch's ``StepLR``).

    Examples:
      The rate divided by 10 every 30 epochs' worth of steps:

      >>> import jgd
      >>> schedule = jgd.schedules.step(0.1, 0.1, every=30)
      >>> print(schedule(29), schedule(30), schedule(60))
      0.1 0.010000001 0.001
    """
    _steps("every", every)
    return exponential(init_value, factor, every, staircase=True)


def cosine(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """``η_t = η_0 ((1 - α) (1 + cos(π min(t, T) / T)) / 2 + α)``.

    Loshchilov & Hutter, "SGDR: stochastic gradient descent with warm restarts", ICLR 2017.
    torch's ``CosineAnnealingLR(T_max=T, eta_min=α η_0)`` for ``t ≤ T``; Keras's ``CosineDecay``.

    Examples:
      From ``η_0`` to ``α η_0`` over ``T`` steps, then constant:

      >>> import jgd
      >>> schedule = jgd.schedules.cosine(1.0, decay_steps=100, alpha=0.1)
      >>> print([round(float(schedule(t)), 3) for t in (0, 50, 100, 200)])
      [1.0, 0.55, 0.1, 0.1]
    """
    steps = _steps("decay_steps", decay_steps)

    def schedule(step):
        progress = jnp.minimum(_float(step), steps) / steps
        return init_value * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * progress)) + alpha)

    return schedule


def polynomial(
    init_value: float, end_value: float, power: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """``η_t = (η_0 - η_end) (1 - s / T)^p + η_end`` with ``s = clip(t - B, 0, T)``.

    optax's ``polynomial_schedule`` (``T = 0`` gives the constant ``η_0``), Keras's ``PolynomialDecay``;
    ``p = 1`` is optax's ``linear_schedule`` and torch's ``LinearLR``.

    Examples:
      ``p = 1`` is a linear decay, from 1 to 0.5 over 10 steps:

      >>> import jgd
      >>> schedule = jgd.schedules.polynomial(1.0, 0.5, 1.0, 10)
      >>> print([float(schedule(t)) for t in (0, 5, 10, 15)])
      [1.0, 0.75, 0.5, 0.5]
    """
    steps = _steps("transition_steps", transition_steps, positive=False)
    begin = _steps("transition_begin", transition_begin, positive=False)
    if steps == 0:
        return constant(init_value)

    def schedule(step):
        done = jnp.clip(_float(step) - begin, 0, steps)
        return (init_value - end_value) * (1 - done / steps) ** power + end_value

    return schedule


def linear_warmup(peak_value: float, warmup_steps: int, init_value: float = 0.0) -> Schedule:
    """Rises linearly from ``init_value`` to ``peak_value`` over ``warmup_steps``, then stays there.

    Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour", 2017.
    ``warmup_steps=0`` gives the constant ``peak_value``, as optax's ``linear_schedule``.

    Examples:
      >>> import jgd
      >>> schedule = jgd.schedules.linear_warmup(1.0, warmup_steps=4)
      >>> print([float(schedule(t)) for t in range(6)])
      [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    steps = _steps("warmup_steps", warmup_steps, positive=False)
    if steps == 0:
        return constant(peak_value)

    def schedule(step):
        progress = jnp.minimum(_float(step), steps) / steps
        return init_value + (peak_value - init_value) * progress

    return schedule


def warmup_cosine_decay(
    init_value: float, peak_value: float, warmup_steps: int, decay_steps: int, end_value: float = 0.0
) -> Schedule:
    """Linear warm-up from ``init_value`` to ``peak_value`` over ``warmup_steps``, then a cosine decay to
    ``end_value`` at step ``decay_steps`` (which counts the warm-up), as optax's ``warmup_cosine_decay_schedule``.

    Keras's ``CosineDecay(init_value, D, alpha, warmup_target=peak_value, warmup_steps=W)`` is
    ``warmup_cosine_decay(init_value, peak_value, W, W + D, alpha * peak_value)``.

    Examples:
      A warm-up over 10 steps, then a cosine decay that ends at step 110:

      >>> import jgd
      >>> schedule = jgd.schedules.warmup_cosine_decay(0.0, 1.0, warmup_steps=10, decay_steps=110)
      >>> print([round(float(schedule(t)), 3) for t in (0, 5, 10, 60, 110)])
      [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    warmup = _steps("warmup_steps", warmup_steps, positive=False)
    if _steps("decay_steps", decay_steps) <= warmup:
        raise ValueError(f"decay_steps must exceed warmup_steps, got {decay_steps} and {warmup_steps}")
    alpha = 0.0 if peak_value == 0 else end_value / peak_value
    decay = cosine(peak_value, decay_steps - warmup_steps, alpha)
    return join([linear_warmup(peak_value, warmup_steps, init_value), decay], [warmup_steps]) if warmup_steps else decay


_DECAY_SHAPES = {
    "linear": lambda x: 1 - x,
    "cosine": lambda x: 0.5 * (1 + jnp.cos(jnp.pi * x)),
    "1-sqrt": lambda x: 1 - jnp.sqrt(x),
}


def wsd(
    peak_value: float,
    warmup_steps: int,
    stable_steps: int,
    decay_steps: int,
    *,
    init_value: float = 0.0,
    end_value: float = 0.0,
    decay_shape: str = "linear",
) -> Schedule:
    """Warm-up, stable, decay: a linear rise to ``peak_value``, a plateau, then a decay to ``end_value``.

    With ``W, S, D`` the three phases' lengths in steps and ``x = min((t - W - S) / D, 1)``,
    ``η_t = η_init + (η_peak - η_init) t / W`` for ``t < W``, ``η_peak`` for ``W ≤ t < W + S``, and
    ``η_end + (η_peak - η_end) f(x)`` after, with ``f(x) = 1 - x`` (``"linear"``),
    ``(1 + cos πx) / 2`` (``"cosine"``) or ``1 - √x`` (``"1-sqrt"``); ``η_end`` from step ``W + S + D`` on.

    Hu et al., "MiniCPM: unveiling the potential of small language models with scalable training
    strategies", 2024 (the WSD schedule); Hägele et al., "Scaling laws and compute-optimal training beyond
    fixed training durations", 2024 (the linear and ``1 - √x`` cool-downs). The linear form is optax's
    ``join_schedules([linear_schedule(η_init, η_peak, W), constant_schedule(η_peak),
    linear_schedule(η_peak, η_end, D)], [W, W + S])``.

    Args:
      peak_value: the plateau's value, a float (or an array, a tracer too: a sweep is a ``jax.vmap``).
      warmup_steps: ``W``, a nonnegative integer; 0 starts at the plateau.
      stable_steps: ``S``, a nonnegative integer.
      decay_steps: ``D``, a positive integer.
      init_value: the value at step 0, a float or an array; default 0.
      end_value: the value after the decay, a float or an array; default 0.
      decay_shape: ``"linear"`` (default), ``"cosine"`` or ``"1-sqrt"``.

    Examples:
      Two steps of warm-up, two at the peak, two of linear decay:

      >>> import jgd
      >>> schedule = jgd.schedules.wsd(1.0, warmup_steps=2, stable_steps=2, decay_steps=2)
      >>> print([round(float(schedule(k)), 3) for k in range(7)])
      [0.0, 0.5, 1.0, 1.0, 1.0, 0.5, 0.0]
    """
    warmup = _steps("warmup_steps", warmup_steps, positive=False)
    stable = _steps("stable_steps", stable_steps, positive=False)
    decay = _steps("decay_steps", decay_steps)
    if decay_shape not in _DECAY_SHAPES:
        raise ValueError(f"decay_shape must be one of {sorted(_DECAY_SHAPES)}, got {decay_shape!r}")
    shape = _DECAY_SHAPES[decay_shape]

    def schedule(step):
        t = _float(step)
        rising = init_value + (peak_value - init_value) * jnp.minimum(t, warmup) / max(warmup, 1.0)
        x = jnp.clip((t - warmup - stable) / decay, 0, 1)
        falling = end_value + (peak_value - end_value) * shape(x)
        return jnp.where(t < warmup, rising, jnp.where(t < warmup + stable, peak_value, falling))

    return schedule


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Runs ``schedules[i]`` from ``boundaries[i-1]`` on, each restarted at 0 there.

    ``join([linear_warmup(1e-3, 100), cosine(1e-3, 900)], [100])`` warms up, then decays.
    Boundaries must be below 2³¹: the int32 step count never reaches a larger one.

    Examples:
      A warm-up, then a cosine decay restarted at 0 at the boundary:

      >>> import jgd
      >>> warmup, decay = jgd.schedules.linear_warmup(1.0, 10), jgd.schedules.cosine(1.0, 100)
      >>> schedule = jgd.schedules.join([warmup, decay], [10])
      >>> print([round(float(schedule(t)), 3) for t in (0, 5, 10, 60, 110)])
      [0.0, 0.5, 1.0, 0.5, 0.0]

      Any schedule is a hyperparameter value; the state reports the value the last update used:

      >>> import jax.numpy as jnp
      >>> tx = jgd.sgd(schedule)
      >>> state = tx.init(jnp.zeros(1))
      >>> for _ in range(6):
      ...     _, state = tx.update(jnp.ones(1), state)
      ...
      >>> print(jgd.hyperparams(state)["learning_rate"])
      0.5
    """
    if len(schedules) != len(boundaries) + 1:
        raise ValueError(f"join needs one more schedule than boundaries, got {len(schedules)} and {len(boundaries)}")
    if list(boundaries) != sorted(boundaries):
        raise ValueError(f"boundaries must be increasing, got {list(boundaries)}")
    for b in boundaries:
        if int(b) != b or not 0 <= b <= _INT32_MAX:
            raise ValueError(f"boundaries must be integers in [0, 2**31 - 1] (the int32 step count), got {b!r}")

    def schedule(step):
        value = schedules[0](step)
        for fn, start in zip(schedules[1:], boundaries):
            value = jnp.where(step >= start, fn(step - start), value)
        return value

    return schedule
