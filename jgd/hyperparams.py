"""Hyperparameters as data: their current values live in the optimizer state.

A hyperparameter is a Python float, an array (a tracer too, so a sweep is a
plain ``jax.vmap``) or a schedule ``step -> value``. Constant values are stored
in ``state.hyperparams`` and can be changed between steps with
:func:`set_hyperparams` without recompiling; scheduled ones are recomputed from
the step count each update and their current values kept in ``state.scheduled``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jgd import trees
from jgd.types import PyTree


class TransformState(NamedTuple):
    """The state of every jgd transform.

    count: updates applied so far (int32).
    hyperparams: current values of the constant hyperparameters (settable).
    scheduled: current values of the hyperparameters that follow a schedule.
    slots: per-parameter accumulators, each a tree shaped like the params.
    carry: per-step scalars a method carries besides the count.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    scheduled: dict[str, jax.Array]
    slots: dict[str, PyTree]
    carry: dict[str, jax.Array]


def _nonnegative(v):
    return v >= 0


def _positive(v):
    return v > 0


def _unit(v):
    return (v >= 0) & (v < 1)


def _real(v):
    return np.isfinite(v)


# Range of every hyperparameter name used in jgd; the same name means the same thing everywhere.
_RANGES: dict[str, tuple[Callable, str]] = {
    "learning_rate": (_nonnegative, ">= 0"),
    "momentum": (_unit, "in [0, 1)"),
    "decay": (_unit, "in [0, 1)"),
    "rho": (_unit, "in [0, 1)"),
    "b1": (_unit, "in [0, 1)"),
    "b2": (_unit, "in [0, 1)"),
    "eps": (_nonnegative, ">= 0"),
    "eps_root": (_nonnegative, ">= 0"),
    "initial_accumulator": (_nonnegative, ">= 0"),
    "momentum_decay": (_nonnegative, ">= 0"),
    "max_value": (_positive, "> 0"),
    "max_norm": (_positive, "> 0"),
    "rate": (_nonnegative, ">= 0"),
    "factor": (_real, "finite"),
    "weight_decay": (_nonnegative, ">= 0"),
    "threshold": (_nonnegative, ">= 0"),
    "trust_coefficient": (_positive, "> 0"),
    "decay_rate": (_nonnegative, ">= 0"),
    "decay_offset": (_nonnegative, ">= 0"),
    "clipping_threshold": (_positive, "> 0"),
    "weight_decay_rate": (_nonnegative, ">= 0"),
    "min_scale": (_positive, "> 0"),
    "weight_lr_power": (_nonnegative, ">= 0"),
    "beta": (_unit, "in [0, 1)"),
    "adam_b1": (_unit, "in [0, 1)"),
    "adam_b2": (_unit, "in [0, 1)"),
    "adam_eps_root": (_nonnegative, ">= 0"),
    "adam_weight_decay": (_nonnegative, ">= 0"),
    "adam_learning_rate": (_nonnegative, ">= 0"),
}


def _float_array(value: Any, dtype=None) -> jax.Array:
    if dtype is None:
        dtype = jnp.result_type(value)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
    return jnp.asarray(value, dtype=dtype)


def validate(name: str, value: Any) -> None:
    """Raises ``ValueError`` if a concrete ``value`` is out of ``name``'s range; tracers pass."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, an array or a schedule, got {value!r}") from None
    check, text = _RANGES.get(name, (_real, "finite"))
    if not (np.all(np.isfinite(array)) and np.all(check(array))):
        raise ValueError(f"{name} must be {text}, got {value!r}")


def split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Callable]]:
    """Validates hyperparameters and separates constants from schedules."""
    constants, schedules = {}, {}
    for name, value in values.items():
        if callable(value):
            first = value(jnp.zeros((), jnp.int32))
            if jnp.shape(first) != ():
                raise ValueError(f"{name} schedule must return a scalar, got shape {jnp.shape(first)}")
            validate(name, first)
            schedules[name] = value
        else:
            if jnp.shape(value) != ():
                raise ValueError(f"{name} must be a scalar (vmap over a batch of values), got shape {jnp.shape(value)}")
            validate(name, value)
            constants[name] = _float_array(value)
    return constants, schedules


def fresh(constants: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Copies of the constant values for a new state: donating that state must not free the transform's own."""
    return {name: jnp.array(value, copy=True) for name, value in constants.items()}


def evaluate(schedules: dict[str, Callable], count: jax.Array, like: dict[str, jax.Array] | None = None):
    """Evaluates ``schedules`` at ``count``, in the dtypes of ``like`` where given."""
    return {name: _float_array(fn(count), None if like is None else like[name].dtype) for name, fn in schedules.items()}


def _is_state(x) -> bool:
    return isinstance(x, TransformState)


def transform_states(state: PyTree) -> list[TransformState]:
    """Every :class:`TransformState` inside ``state`` (a chain's tuple, a wrapper's NamedTuple, ...), in order."""
    return trees.instances(state, TransformState)


def hyperparams(state: PyTree) -> dict[str, jax.Array | tuple[jax.Array, ...]]:
    """Current hyperparameter values of a transform's state, through nested chains.

    A name used by several transforms of a chain maps to the tuple of their
    values, in chain order.
    """
    found: dict[str, list] = {}
    for s in transform_states(state):
        for name, value in {**s.hyperparams, **s.scheduled}.items():
            found.setdefault(name, []).append(value)
    return {name: v[0] if len(v) == 1 else tuple(v) for name, v in found.items()}


def set_hyperparams(state: PyTree, **values: Any) -> PyTree:
    """Returns ``state`` with hyperparameters changed; a jitted step using it does not recompile.

    A name used by several transforms of a chain is set in all of them.
    Raises ``ValueError`` for an unknown name, a name that follows a schedule,
    or an invalid concrete value.
    """
    states = transform_states(state)
    settable = {name for s in states for name in s.hyperparams}
    for name, value in values.items():
        if name not in settable:
            if any(name in s.scheduled for s in states):
                raise ValueError(f"{name} follows a schedule and cannot be set")
            raise ValueError(f"unknown hyperparameter {name!r}; this state has {sorted(settable)}")
        validate(name, value)

    def replace(s):
        if not _is_state(s):
            return s
        new = {
            name: _float_array(values[name], old.dtype) if name in values else old
            for name, old in s.hyperparams.items()
        }
        return s._replace(hyperparams=new)

    return jax.tree.map(replace, state, is_leaf=_is_state)
