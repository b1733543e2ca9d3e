"""Schedule-free SGD and AdamW: averaging in place of a decaying schedule (Defazio et al. 2024).

The params a transform updates are the gradient points ``y_t``; the state keeps the
base iterates ``z_t``; the average ``x_t``, the point to evaluate, is
``(y_t - (1 - β1) z_t) / β1`` (:func:`schedule_free_eval_params`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.lowbit import dequantize
from jgd.ranges import OPEN_UNIT
from jgd.state import made_by
from jgd.types import PyTree, ScalarOrSchedule, StateDtype


def _prepare(warmup_steps: int | None):
    def prepare(updates, t, carry, *, learning_rate, weight_lr_power):
        """The warmed-up rate ``γ_t`` and the averaging weight ``c_{t+1} = w_t / Σ_{i≤t} w_i``, ``w_t = max γ^p``."""
        if warmup_steps is None:
            lr_t = learning_rate
        else:  # t in the rate's dtype: an int32 step divides in float32 only
            lr_t = learning_rate * jnp.minimum(1, t.astype(learning_rate.dtype) / warmup_steps)
        max_lr = jnp.maximum(carry["max_lr"], lr_t)
        weight = max_lr**weight_lr_power
        weight_sum = carry["weight_sum"] + weight
        ck = jnp.where(weight_sum > 0, weight / jnp.where(weight_sum > 0, weight_sum, 1), 0)
        return {"lr_t": lr_t, "ck": ck}, {"max_lr": max_lr, "weight_sum": weight_sum}

    return prepare


def _interpolate(y, z, step, *, b1, ck):
    """``z_{t+1} = z_t - step``, ``x_{t+1} = (1 - c) x_t + c z_{t+1}``, and the change of ``y = β1 x + (1 - β1) z``."""
    z_next = z - step
    x = (y - (1 - b1) * z) / b1
    # (1 - β1)(z_{t+1} - z_t), not -(1 - β1) step: the step is then needed by z alone, and XLA need not write it out
    # for this update to read back (a pass over memory that optax's form does not make).
    return b1 * ck * (z_next - x) + (1 - b1) * (z_next - z), z_next


# y_t = β1 x_t + (1 - β1) z_t is read back as x_t = (y_t - (1 - β1) z_t) / β1: β1 = 0 would divide by zero.
_B1_RANGE = {"b1": OPEN_UNIT}


def _copy(p, dtype):
    return jnp.array(p, dtype=dtype, copy=True)


def _check_warmup(warmup_steps):
    if warmup_steps is not None and not (isinstance(warmup_steps, int) and warmup_steps > 0):
        raise ValueError(f"warmup_steps must be a positive int or None, got {warmup_steps!r}")


def _schedule_free(name, rule, hp, slots, state_dtype, warmup_steps) -> GradientTransformation:
    """A schedule-free method from its base step ``rule``: the averaging weights, ``z`` and the range of ``β1``."""
    return leafwise(
        name,
        rule,
        hp,
        slots,
        state_dtype=state_dtype,
        with_params=True,
        carry={"max_lr": 0.0, "weight_sum": 0.0},
        prepare=_prepare(warmup_steps),
        prepared=("lr_t", "ck"),
        narrowed=_B1_RANGE,
        slot_init={"z": _copy},
        nonnegative_slots=[s for s in slots if s == "nu"],
    )


def schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    warmup_steps: int | None = None,
    b1: ScalarOrSchedule = 0.9,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_lr_power: ScalarOrSchedule = 2.0,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Schedule-free SGD.

    ``y_t = (1 - β1) z_t + β1 x_t`` (the params), ``γ_t = γ min(1, t / T_warmup)``,
    ``z_{t+1} = z_t - γ_t (∇f(y_t) + λ y_t)``, ``c_{t+1} = γ_max,t^p / Σ_{i≤t} γ_max,i^p``,
    ``x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}``, with ``γ_max,t`` the largest ``γ_i`` so far.
    Defazio et al., "The road less scheduled", NeurIPS 2024, Alg. 1; the weights ``γ_max^p`` are the
    authors' released code (the paper's Alg. 1 writes ``c_{t+1} = γ_t² / Σ γ_i²``: the same once warm-up ends).

    Args:
      learning_rate: ``γ``, a float, an array or a schedule; 1.0 (the authors' code).
      warmup_steps: ``T_warmup``, a linear warm-up of ``γ_t`` over that many steps, or ``None``.
      b1: ``β1``, the interpolation, in (0, 1); 0.9 (paper).
      weight_decay: ``λ``, applied at ``y_t``, ≥ 0; 0.
      weight_lr_power: ``p``, ≥ 0; 2 (paper).
      state_dtype: dtype of ``z``; default each param's own.

    Examples:
      Schedule-free SGD keeps only the base iterate ``z`` (its first step is ``z = θ − ηg``); the average
      ``x`` is not stored, :func:`jgd.schedule_free_eval_params` recovers it from ``y`` and ``z``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.schedule_free_sgd(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(state.slots["z"])
      [ 0.95 -1.9 ]
      >>> print(jgd.apply_updates(params, updates))
      [ 0.95 -1.9 ]
    """
    _check_warmup(warmup_steps)

    def rule(g, z, y, *, b1, weight_decay, lr_t, ck):
        u, z = _interpolate(y, z, lr_t * (g + weight_decay * y), b1=b1, ck=ck)
        return u, (z,)

    hp = {"learning_rate": learning_rate, "b1": b1, "weight_decay": weight_decay, "weight_lr_power": weight_lr_power}
    return _schedule_free("schedule_free_sgd", rule, hp, ("z",), state_dtype, warmup_steps)


def schedule_free_adamw(
    learning_rate: ScalarOrSchedule = 0.0025,
    warmup_steps: int | None = None,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_lr_power: ScalarOrSchedule = 2.0,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Schedule-free AdamW.

    As :func:`schedule_free_sgd`, with the base step preconditioned by Adam's second moment:
    ``v_t = β2 v_{t-1} + (1 - β2) g_t²``, ``z_{t+1} = z_t - γ_t (g_t / (√(v_t / (1 - β2^t)) + ε) + λ y_t)``.
    Defazio et al., "The road less scheduled", NeurIPS 2024, Alg. 1, which folds the bias correction
    into ``γ_t`` (``γ_t √(1 - β2^t) g_t / (√v_t + ε)``, ε then unscaled) and into the weights ``c``;
    here, as in the authors' released code (and optax), the correction divides ``v_t`` and the weights use ``γ_max``.

    Args:
      learning_rate: ``γ``, a float, an array or a schedule; 0.0025 (the authors' code).
      warmup_steps: ``T_warmup``, a linear warm-up of ``γ_t`` over that many steps, or ``None``.
      b1: ``β1``, the interpolation, in (0, 1); 0.9 (paper).
      b2: ``β2``, in [0, 1); 0.999 (paper).
      eps: ``ε``, ≥ 0; 1e-8 (paper).
      weight_decay: ``λ``, applied at ``y_t``, ≥ 0; 0.
      weight_lr_power: ``p``, ≥ 0; 2 (paper).
      state_dtype: dtype of ``z`` and ``v``; default each param's own.

    Examples:
      The params a train step sees are ``y_t``, between the base iterate ``z`` (in the state) and the
      average ``x_t``; evaluate at ``x_t`` with :func:`jgd.schedule_free_eval_params`:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.schedule_free_adamw(learning_rate=0.1)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     updates, state = tx.update(grads, state, params)
      ...     params = jgd.apply_updates(params, updates)
      ...
      >>> print(sorted(state.slots), sorted(state.carry))
      ['nu', 'z'] ['max_lr', 'weight_sum']
      >>> print(params)
      [ 0.7900001 -1.7900001]
      >>> print(jgd.schedule_free_eval_params(state, params))
      [ 0.80000013 -1.8000001 ]
    """
    _check_warmup(warmup_steps)

    def rule(g, z, v, y, *, t, b1, b2, eps, weight_decay, lr_t, ck):
        v = b2 * v + (1 - b2) * g * g
        step = lr_t * (g / (jnp.sqrt(v / (1 - b2**t)) + eps) + weight_decay * y)
        u, z = _interpolate(y, z, step, b1=b1, ck=ck)
        return u, (z, v)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "weight_decay": weight_decay}
    hp["weight_lr_power"] = weight_lr_power
    return _schedule_free("schedule_free_adamw", rule, hp, ("z", "nu"), state_dtype, warmup_steps)


def schedule_free_eval_params(state: PyTree, params: PyTree) -> PyTree:
    """The averaged point ``x_t = (y_t - (1 - β1) z_t) / β1`` to evaluate, from a schedule-free state and its params.

    Args:
      state: the state of :func:`schedule_free_sgd` or :func:`schedule_free_adamw`, or any tree holding it.
      params: the params that transform updates, the gradient points ``y_t`` (``jgd.types.PyTree``).

    Examples:
      The average ``x_t`` a schedule-free method is measured at, read from its state and the train-step
      params ``y_t``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.schedule_free_sgd(learning_rate=0.1, b1=0.9)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     updates, state = tx.update(grads, state, params)
      ...     params = jgd.apply_updates(params, updates)
      ...
      >>> print(params)
      [ 0.895 -1.79 ]
      >>> print(jgd.schedule_free_eval_params(state, params))
      [ 0.9 -1.8]
    """
    found = made_by("schedule_free_eval_params", state, ("schedule_free_sgd", "schedule_free_adamw"))
    b1, z = {**found.hyperparams, **found.scheduled}["b1"], dequantize(found.slots["z"])
    return jax.tree.map(lambda y, z: ((y - (1 - b1) * z) / b1).astype(y.dtype), params, z)
