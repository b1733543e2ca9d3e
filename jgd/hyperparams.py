"""Hyperparameters as data: one component owns their life cycle for every transform.

A hyperparameter is a Python float, an array (a tracer too, so a sweep is a
plain ``jax.vmap``) or a schedule ``step -> value``. :class:`Hyperparameters`,
built once from a transform's values, validates them, puts them into a new
state, resolves each update's values against the state, and advances the count.
Methods (through :func:`jgd.leafwise.leafwise`), the quasi-Newton methods and
their line searches, and wrappers with settings of their own all use it, so
every transform follows the same rules:

- Constant values are kept in ``state.hyperparams``; :func:`jgd.set_hyperparams`
  changes them between steps without recompiling.
- A scheduled value is evaluated at the step count, 0 at the first update. The
  state reports the value its last update used (``sched(k - 1)`` after ``k``
  updates, optax's ``inject_hyperparams`` convention, so a log written after a
  step shows the rate that step took); a fresh state reports the value its first
  update will use (``sched(0)``).
- Whose value wins. A user sets a hyperparameter in two ways: through a
  transform (a new transform with other constants, ``optax.inject_hyperparams``,
  Flax's ``state.replace(tx=...)``) or through :func:`jgd.set_hyperparams` on a
  state. The value set most recently applies. To tell the two apart, the state
  records the transform's own constants as of its last update
  (``transform_constants``): where the updating transform's constant equals the
  recorded one, the transform has not changed and the state's value applies (it
  may have been set since); where it differs, the transform's value applies and
  is written into the state. A name the transform schedules follows its
  schedule; a name the state scheduled but the transform now gives as a constant
  takes that constant. The comparison is data (``jnp.where``), so it holds for
  traced values too. A transform built again with exactly the constants it was
  built with is the unchanged transform: it does not undo a later ``set_hyperparams``.
- Ranges. Each name has one range (:mod:`jgd.ranges`); a method may narrow it,
  and the state records the narrowed ranges (:class:`jgd.state.Origin`), so
  ``set_hyperparams`` checks a new value against the range of the transform
  that made the state.

:func:`jgd.hyperparams` and :func:`jgd.set_hyperparams`, which read and set the
values of any state, live in :mod:`jgd.hyperparams_access`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jgd.ranges import Range, validate, validate_order
from jgd.state import Origin, TransformState, check_state
from jgd.types import ScalarOrSchedule


def as_float_array(value: Any, dtype=None) -> jax.Array:
    """``value`` as an array of ``dtype``, or of its own floating dtype (float for an int)."""
    if dtype is None:
        dtype = jnp.result_type(value)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
    return jnp.asarray(value, dtype=dtype)


def check_values(values: Mapping[str, ScalarOrSchedule], narrowed: Mapping[str, Range] | None = None) -> None:
    """Raises ``ValueError`` naming the first hyperparameter that is not a scalar in its range.

    A schedule is checked by its first value.

    Args:
      values: name -> a float, a scalar array or a schedule.
      narrowed: ranges a transform narrowed for its own names.
    """
    _split(values, narrowed)


def _split(values: Mapping[str, Any], narrowed: Mapping[str, Range] | None):
    """Validates hyperparameters and separates constants from schedules."""
    constants, schedules, firsts = {}, {}, {}
    for name, value in values.items():
        if callable(value):
            first = value(jnp.zeros((), jnp.int32))
            if jnp.shape(first) != ():
                raise ValueError(f"{name} schedule must return a scalar, got shape {jnp.shape(first)}")
            validate(name, first, narrowed)
            schedules[name], firsts[name] = value, first
        else:
            validate(name, value, narrowed)
            if jnp.shape(value) != ():
                raise ValueError(f"{name} must be a scalar (vmap over a batch of values), got shape {jnp.shape(value)}")
            constants[name] = firsts[name] = as_float_array(value)
    validate_order(firsts)
    return constants, schedules


def _copies(constants: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Copies of the constant values for a new state: donating that state must not free the transform's own."""
    return {name: jnp.array(value, copy=True) for name, value in constants.items()}


def _evaluate(schedules: Mapping[str, Callable], count: jax.Array, like: Mapping[str, jax.Array]):
    """Evaluates ``schedules`` at ``count``, in the dtypes of ``like`` where it has the name."""
    return {
        name: as_float_array(fn(count), like[name].dtype if name in like else None) for name, fn in schedules.items()
    }


class Hyperparameters:
    """One transform's hyperparameters and their life cycle: validate, start, resolve, advance.

    Args:
      owner: the transform's public name; the states it makes record it, and an ``update`` given
        another transform's state is a ``TypeError`` naming both.
      values: name -> a float, a scalar array (a tracer too) or a schedule ``step -> value``.
      narrowed: name -> :class:`jgd.ranges.Range`, for names whose range this transform narrows
        (checked at construction and by ``set_hyperparams``).
    """

    def __init__(self, owner: str, values: Mapping[str, ScalarOrSchedule], narrowed: Mapping[str, Range] | None = None):
        narrowed = dict(narrowed or {})
        unknown = sorted(set(narrowed) - set(values))
        if unknown:
            raise ValueError(f"{owner}: narrowed ranges name no hyperparameter {unknown}")
        self.owner = owner
        self.origin = Origin(owner, tuple(sorted(narrowed.items())))
        self.constants, self.schedules = _split(values, narrowed)

    @property
    def names(self) -> frozenset[str]:
        """Every hyperparameter name, constant or scheduled."""
        return frozenset(self.constants) | frozenset(self.schedules)

    def init(self, *, slots: dict | None = None, carry: dict | None = None) -> TransformState:
        """A new state at count 0: the constants, the schedules' first values, ``slots`` and ``carry``."""
        count = jnp.zeros((), jnp.int32)
        return TransformState(
            count=count,
            hyperparams=_copies(self.constants),
            scheduled=_evaluate(self.schedules, count, {}),
            slots=slots or {},
            carry=carry or {},
            transform_constants=_copies(self.constants),
            origin=self.origin,
        )

    def resolve(self, state: Any) -> tuple[dict[str, jax.Array], TransformState]:
        """The values this update uses, by the rules of the module docstring, and ``state`` holding them.

        Returns ``(values, state)``: ``values`` maps every name to its value for this step; the
        state's ``hyperparams``, ``scheduled`` and ``transform_constants`` hold what the next update
        compares with and what :func:`jgd.hyperparams` reports. The count is left to :meth:`advance`.
        Raises ``TypeError`` if ``state`` is not a state this transform makes.
        """
        state = check_state(self.owner, state)
        current, used, recorded = {}, {}, {}
        for name, own in self.constants.items():
            if name in state.hyperparams and name in state.transform_constants:
                held, last = state.hyperparams[name], state.transform_constants[name]
                own = as_float_array(own, last.dtype)
                current[name] = jnp.where(own != last, own, held).astype(held.dtype)
                # The same choice written apart: XLA then recomputes it inside each leaf's kernel instead of
                # every leaf waiting on a kernel of its own that writes the state's copy (8 % of Lion's step
                # on a 96-leaf tree, on CPU).
                used[name] = jnp.where(own == last, held, own).astype(held.dtype)
            else:  # new to this state (it scheduled the name, or never had it)
                current[name] = as_float_array(own, state.scheduled[name].dtype if name in state.scheduled else None)
                used[name] = own = current[name]
            recorded[name] = jnp.array(own, copy=True)
        scheduled = _evaluate(self.schedules, state.count, state.scheduled)
        new_state = state._replace(hyperparams=current, scheduled=scheduled, transform_constants=recorded)
        return {**used, **scheduled}, new_state

    def advance(self, state: TransformState, **fields: Any) -> TransformState:
        """``state`` one update later: its count plus one, and the ``fields`` given (``slots``, ``carry``) replaced."""
        return state._replace(count=state.count + 1, **fields)
