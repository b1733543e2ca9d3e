"""Hyperparameters as data: their current values live in the optimizer state.

A hyperparameter is a Python float, an array (a tracer too, so a sweep is a
plain ``jax.vmap``) or a schedule ``step -> value``. Constant values are stored
in ``state.hyperparams`` and can be changed between steps with
:func:`set_hyperparams` without recompiling; scheduled ones are recomputed from
the step count each update and their current values kept in ``state.scheduled``.

Whose value wins. A user sets a hyperparameter in two ways: through a transform
(a new transform with other constants, ``optax.inject_hyperparams``, Flax's
``state.replace(tx=...)``) or through :func:`set_hyperparams` on a state. The
value set most recently applies. To tell the two apart, the state also records
the transform's own constants as of the last update (``transform_constants``):

- where the updating transform's constant equals the recorded one, the transform
  has not changed, so the state's value applies (it may have been set since);
- where it differs, the user changed the transform since, so the transform's
  value applies, and it is written into the state;
- a name the transform schedules follows its schedule; a name the state
  scheduled but the transform now gives as a constant takes that constant.

The comparison is data (``jnp.where``), so it holds for traced values too, and
``set_hyperparams`` with an unchanged transform never recompiles. A transform
built again with exactly the constants it was built with is the unchanged
transform: it does not undo a later ``set_hyperparams``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jgd.types import PyTree


class TransformState(NamedTuple):
    """The state of every jgd transform.

    count: updates applied so far (int32).
    hyperparams: current values of the constant hyperparameters (settable).
    scheduled: current values of the hyperparameters that follow a schedule.
    slots: per-parameter accumulators, each a tree shaped like the params.
    carry: per-step scalars a method carries besides the count.
    transform_constants: the constants of the transform that last updated (or made)
      this state, which tell whether the transform has been changed since (module docstring).
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    scheduled: dict[str, jax.Array]
    slots: dict[str, PyTree]
    carry: dict[str, jax.Array]
    transform_constants: dict[str, jax.Array]


def _nonnegative(v):
    return v >= 0


def _positive(v):
    return v > 0


def _unit(v):
    return (v >= 0) & (v < 1)


def _open_unit(v):
    return (v > 0) & (v < 1)


def _closed_unit(v):
    return (v >= 0) & (v <= 1)


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
    "dampening": (_closed_unit, "in [0, 1]"),
    "weight_decay": (_nonnegative, ">= 0"),
    "max_value": (_positive, "> 0"),
    "max_norm": (_positive, "> 0"),
    "rate": (_nonnegative, ">= 0"),
    "factor": (_real, "finite"),
    "c1": (_open_unit, "in (0, 1)"),
    "c2": (_open_unit, "in (0, 1)"),
    "shrink": (_open_unit, "in (0, 1)"),
    "multiplier": (_nonnegative, ">= 0"),
    "threshold": (_nonnegative, ">= 0"),
    "num_std": (_nonnegative, ">= 0"),
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

# Pairs of names whose values must be ordered (smaller, larger) wherever both are concrete.
_ORDERED: tuple[tuple[str, str], ...] = (("c1", "c2"),)


def _float_array(value: Any, dtype=None) -> jax.Array:
    if dtype is None:
        dtype = jnp.result_type(value)
        if not jnp.issubdtype(dtype, jnp.floating):
            dtype = jnp.result_type(float)
    return jnp.asarray(value, dtype=dtype)


def _concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def validate(name: str, value: Any) -> None:
    """Raises ``ValueError`` if a concrete ``value`` is not a number in ``name``'s range; tracers pass."""
    if not _concrete(value):
        return
    array = np.asarray(value) if not isinstance(value, (str, bytes)) else None
    if array is None or not (jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(array.dtype, jnp.floating)):
        raise ValueError(f"{name} must be a number, an array or a schedule, got {value!r}")
    check, text = _RANGES.get(name, (_real, "finite"))
    if not (np.all(np.isfinite(array)) and np.all(check(array))):
        raise ValueError(f"{name} must be {text}, got {value!r}")


def validate_order(values: dict[str, Any]) -> None:
    """Raises ``ValueError`` where two ordered names (``c1 < c2``) are both concrete and out of order."""
    for low, high in _ORDERED:
        if low in values and high in values and _concrete(values[low]) and _concrete(values[high]):
            if not np.all(np.asarray(values[low]) < np.asarray(values[high])):
                raise ValueError(
                    f"{low} must be smaller than {high}, got {low}={values[low]!r}, {high}={values[high]!r}"
                )


def split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Callable]]:
    """Validates hyperparameters and separates constants from schedules."""
    constants, schedules, firsts = {}, {}, {}
    for name, value in values.items():
        if callable(value):
            first = value(jnp.zeros((), jnp.int32))
            if jnp.shape(first) != ():
                raise ValueError(f"{name} schedule must return a scalar, got shape {jnp.shape(first)}")
            validate(name, first)
            schedules[name], firsts[name] = value, first
        else:
            validate(name, value)
            if jnp.shape(value) != ():
                raise ValueError(f"{name} must be a scalar (vmap over a batch of values), got shape {jnp.shape(value)}")
            constants[name] = firsts[name] = _float_array(value)
    validate_order(firsts)
    return constants, schedules


def fresh(constants: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Copies of the constant values for a new state: donating that state must not free the transform's own."""
    return {name: jnp.array(value, copy=True) for name, value in constants.items()}


def evaluate(schedules: dict[str, Callable], count: jax.Array, like: dict[str, jax.Array] | None = None):
    """Evaluates ``schedules`` at ``count``, in the dtypes of ``like`` where it has the name."""
    like = like or {}
    return {name: _float_array(fn(count), like[name].dtype if name in like else None) for name, fn in schedules.items()}


def start(constants: dict[str, jax.Array], schedules: dict[str, Callable], **fields: Any) -> TransformState:
    """A new state at count 0 for a transform with these hyperparameters; ``fields``: ``slots``, ``carry``."""
    count = jnp.zeros((), jnp.int32)
    return TransformState(
        count=count,
        hyperparams=fresh(constants),
        scheduled=evaluate(schedules, count),
        slots=fields.get("slots", {}),
        carry=fields.get("carry", {}),
        transform_constants=fresh(constants),
    )


def resolve(
    constants: dict[str, jax.Array], schedules: dict[str, Callable], state: TransformState
) -> tuple[dict[str, jax.Array], TransformState]:
    """The hyperparameter values an update uses, by the rule of the module docstring, and ``state`` holding them.

    Returns ``(values, state)``: ``values`` maps every name of the transform to its value for this
    step; the state's ``hyperparams``, ``scheduled`` and ``transform_constants`` hold what the next
    update compares with (its count and slots are the caller's to advance).
    """
    current, recorded = {}, {}
    for name, own in constants.items():
        if name in state.hyperparams and name in state.transform_constants:
            dtype = state.transform_constants[name].dtype
            own = _float_array(own, dtype)
            changed = own != state.transform_constants[name]
            current[name] = jnp.where(changed, own, state.hyperparams[name]).astype(state.hyperparams[name].dtype)
        else:  # new to this state (it scheduled the name, or never had it)
            current[name] = _float_array(own, state.scheduled[name].dtype if name in state.scheduled else None)
            own = current[name]
        recorded[name] = jnp.array(own, copy=True)
    scheduled = evaluate(schedules, state.count, state.scheduled)
    new_state = state._replace(hyperparams=current, scheduled=scheduled, transform_constants=recorded)
    return {**current, **scheduled}, new_state


def _is_state(x) -> bool:
    return isinstance(x, TransformState)


def transform_states(state: PyTree) -> list[TransformState]:
    """Every :class:`TransformState` inside ``state`` (a chain's tuple, a wrapper's NamedTuple, ...), in order."""
    return [s for _, s in _states_with_paths(state)]


def _states_with_paths(state: PyTree) -> list[tuple[tuple, TransformState]]:
    flat = jax.tree_util.tree_flatten_with_path(state, is_leaf=_is_state)[0]
    return [(path, node) for path, node in flat if _is_state(node)]


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _labels(paths: list[tuple]) -> list[str]:
    """A label for each state path: its string dict keys (``jgd.named``, ``optax.partition``), else the whole path.

    The components shared by all the paths are dropped, so ``nnx.Optimizer``'s or a wrapper's own
    keys do not show.
    """
    named = [[str(k.key) for k in p if isinstance(k, jax.tree_util.DictKey) and isinstance(k.key, str)] for p in paths]
    if len({"/".join(n) for n in named}) < len(paths):  # not unique: the full paths are
        named = [[_key_name(k) for k in p] for p in paths]
    shared = 0
    while all(len(n) > shared + 1 for n in named) and len({n[shared] for n in named}) == 1:
        shared += 1
    return ["/".join(n[shared:]) for n in named]


def _value(node: Any) -> jax.Array:
    """The array inside a hyperparameter's container (an NNX Variable, ...), or the array itself."""
    (leaf,) = jax.tree.leaves(node)
    return leaf


def _entries(state: PyTree) -> dict[str, list[tuple[str, int, bool]]]:
    """name -> [(key, state index, scheduled)], ``key`` the name, or ``label/name`` where the name repeats."""
    found = _states_with_paths(state)
    if not found:
        raise ValueError(
            "this state holds no jgd transform state (TransformState); pass the state a jgd transform made "
            "(restore a checkpoint with the optimizer's state as its target)"
        )
    by_name: dict[str, list[tuple[tuple, int, bool]]] = {}
    for index, (path, s) in enumerate(found):
        for name in (*s.hyperparams, *s.scheduled):
            by_name.setdefault(name, []).append((path, index, name in s.scheduled))
    entries = {}
    for name, places in by_name.items():
        labels = _labels([path for path, _, _ in places]) if len(places) > 1 else [""]
        entries[name] = [
            (f"{label}/{name}" if label else name, i, sched) for label, (_, i, sched) in zip(labels, places)
        ]
    return entries


def hyperparams(state: PyTree) -> dict[str, jax.Array]:
    """Current hyperparameter values of a transform's state, through chains and wrappers, as plain arrays.

    A name used by one transform is its own key. A name used by several (two learning rates in a
    chain, two groups of ``optax.partition``) is keyed by a label per transform: the names given
    with :func:`jgd.named` (or a partition's group names) on the way to it, as
    ``"encoder/learning_rate"``; where there are none, its position, as ``"0/learning_rate"``.
    Raises ``ValueError`` if ``state`` holds no jgd transform state.

    Args:
      state: a jgd transform's state, or any tree holding them (a chain's, optax's wrappers',
        ``nnx.Optimizer.opt_state``).
    """
    found = transform_states(state)
    values = {}
    for name, places in _entries(state).items():
        for key, index, _ in places:
            s = found[index]
            values[key] = _value(s.scheduled[name] if name in s.scheduled else s.hyperparams[name])
    return values


def set_hyperparams(state: PyTree, values: dict[str, Any] | None = None, /, **named_values: Any) -> PyTree:
    """Returns ``state`` with hyperparameters changed; a jitted step using it does not recompile.

    Args:
      state: a jgd transform's state, or any tree holding them (a chain's, optax's wrappers',
        ``nnx.Optimizer.opt_state``). Containers around the values (NNX Variables) are kept.
      values: keys as :func:`hyperparams` shows them, for labelled keys such as ``"encoder/learning_rate"``.
      **named_values: plain names; a name used by several transforms is set in all of them.

    Raises ``ValueError`` for an unknown name, a name that follows a schedule, or an invalid
    concrete value.
    """
    requested = {**(values or {}), **named_values}
    entries = _entries(state)
    targets: dict[int, dict[str, Any]] = {}
    keys = {key: (name, i, sched) for name, places in entries.items() for key, i, sched in places}
    for key, value in requested.items():
        name = key.rsplit("/", 1)[-1]
        if key in entries:
            places = [(name, i, sched) for _, i, sched in entries[key]]
        elif key in keys:
            places = [keys[key]]
        else:
            raise ValueError(f"unknown hyperparameter {key!r}; this state has {sorted(set(entries) | set(keys))}")
        validate(name, value)
        for _, index, scheduled in places:
            if scheduled:
                raise ValueError(f"{key} follows a schedule and cannot be set; give the transform a constant to set it")
            targets.setdefault(index, {})[name] = value
    found = transform_states(state)
    for index, new in targets.items():
        validate_order({**{k: _value(v) for k, v in found[index].hyperparams.items()}, **new})

    position = iter(range(len(found)))  # tree.map meets the states in the order _states_with_paths found them

    def replace(node):
        if not _is_state(node):
            return node
        new = targets.get(next(position), {})
        hyper = {
            name: jax.tree.map(lambda old, v=new[name]: _float_array(v, old.dtype), old) if name in new else old
            for name, old in node.hyperparams.items()
        }
        return node._replace(hyperparams=hyper)

    return jax.tree.map(replace, state, is_leaf=_is_state)
