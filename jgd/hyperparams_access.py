"""Reading and setting the hyperparameters of any state, keyed by the labels the user wrote.

A name used by one transform is its own key (``"learning_rate"``). A label the
user wrote on the way to a state (:func:`jgd.named`, a ``partition`` group, an
``optax.partition`` label) always prefixes its keys (``"encoder/learning_rate"``),
even where it is the only one, so adding a group never renames a key. Where two
states would still have the same key (two unlabelled transforms in a chain),
their positions tell them apart (``"0/learning_rate"``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

import jax
import numpy as np

from jgd.base import Label
from jgd.hyperparams import as_float_array
from jgd.ranges import validate, validate_order
from jgd.state import TransformState, is_state, states_with_paths
from jgd.types import PyTree


class _Entry(NamedTuple):
    name: str
    position: int  # the state's position among the states found
    scheduled: bool


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey / FlattenedIndexKey, GetAttrKey
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _components(path: tuple) -> list[tuple[str, bool]]:
    """Each key of ``path`` as ``(text, whether it is a label the user wrote)``."""
    out, previous = [], None
    for key in path:
        label = isinstance(key, jax.tree_util.DictKey) and (
            isinstance(key.key, Label)  # jgd.named, jgd.partition's groups
            or (isinstance(previous, jax.tree_util.GetAttrKey) and previous.name == "inner_states")  # optax.partition
        )
        out.append((_key_name(key), label))
        previous = key
    return out


def _told_apart(paths: list[list[tuple[str, bool]]]) -> list[str]:
    """Prefixes for states whose labels alone coincide: their labels, then their path past what all share."""
    shared = 0
    while all(len(p) > shared + 1 for p in paths) and len({p[shared] for p in paths}) == 1:
        shared += 1
    return ["/".join([text for text, label in p[:shared] if label] + [text for text, _ in p[shared:]]) for p in paths]


def _entries(state: PyTree) -> tuple[dict[str, list[_Entry]], list[str]]:
    """``(lookup, shown)``: ``lookup`` maps each key :func:`hyperparams` shows to its entry, and each plain
    name to all of its entries; ``shown`` lists the keys :func:`hyperparams` shows, in the states' order."""
    found = states_with_paths(state)
    if not found:
        raise ValueError(
            "this state holds no jgd transform state (TransformState); pass the state a jgd transform made "
            "(restore a checkpoint with the optimizer's state as its target)"
        )
    by_key: dict[str, list[tuple[list, _Entry]]] = defaultdict(list)
    for index, (path, s) in enumerate(found):
        components = _components(path)
        labels = [text for text, label in components if label]
        for name in (*s.hyperparams, *s.scheduled):
            by_key["/".join([*labels, name])].append((components, _Entry(name, index, name in s.scheduled)))
    keyed: dict[str, list[_Entry]] = {}
    for key, rows in by_key.items():
        if len(rows) == 1:
            keyed[key] = [rows[0][1]]
            continue
        for prefix, (_, entry) in zip(_told_apart([components for components, _ in rows]), rows):
            keyed[f"{prefix}/{entry.name}" if prefix else entry.name] = [entry]
    plain: dict[str, list[_Entry]] = defaultdict(list)
    for entries in keyed.values():
        plain[entries[0].name] += entries
    return {**plain, **keyed}, list(keyed)


def _value(node: Any) -> jax.Array:
    """The array inside a hyperparameter's container (an NNX Variable, ...), or the array itself."""
    (leaf,) = jax.tree.leaves(node)
    return leaf


def hyperparams(state: PyTree) -> dict[str, jax.Array]:
    """Current hyperparameter values of a transform's state, through chains and wrappers, as plain arrays.

    Keys are the names, prefixed by the labels the user wrote on the way to each state
    (:func:`jgd.named`, a ``partition`` group, an ``optax.partition`` label), as
    ``"encoder/learning_rate"``; where two states would still share a key, by their positions,
    as ``"0/learning_rate"`` (module docstring). A scheduled name reports the value the last
    update used; a fresh state, the value its first update will use.
    Raises ``ValueError`` if ``state`` holds no jgd transform state.

    Args:
      state: a jgd transform's state, or any tree holding them (a chain's, optax's wrappers',
        ``nnx.Optimizer.opt_state``).

    Examples:
      The hyperparameters a state holds, by name, through chains and wrappers:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.chain(jgd.clip_by_global_norm(1.0), jgd.adam(learning_rate=0.1))
      >>> state = tx.init(params)
      >>> hp = jgd.hyperparams(state)
      >>> print(sorted(hp))
      ['b1', 'b2', 'eps', 'eps_root', 'learning_rate', 'max_norm']
      >>> print(hp["learning_rate"], hp["max_norm"])
      0.1 1.0
    """
    found = [s for _, s in states_with_paths(state)]
    lookup, shown = _entries(state)
    values = {}
    for key in shown:
        (entry,) = lookup[key]
        s = found[entry.position]
        values[key] = _value(s.scheduled[entry.name] if entry.scheduled else s.hyperparams[entry.name])
    return values


def _checked(key: str, entry: _Entry, state: TransformState, value: Any) -> Any:
    """``value`` after the checks against the range and shape of the hyperparameter ``entry`` names."""
    if entry.scheduled:
        raise ValueError(f"{key} follows a schedule and cannot be set; give the transform a constant to set it")
    validate(entry.name, value, dict(state.origin.narrowed))
    old_shape = np.shape(_value(state.hyperparams[entry.name]))
    if np.shape(value) not in ((), old_shape):
        raise ValueError(
            f"{key} holds an array of shape {old_shape}; set it to a scalar or an array of that shape, "
            f"got shape {np.shape(value)}"
        )
    return value


def set_hyperparams(state: PyTree, values: dict[str, Any] | None = None, /, **named_values: Any) -> PyTree:
    """Returns ``state`` with hyperparameters changed; a jitted step using it does not recompile.

    Each value is checked against the range of the transform that made the state (a method may
    narrow a name's range) and must be a scalar or have the shape the value has in the state (a
    vmapped sweep's state holds one value per member).

    Args:
      state: a jgd transform's state, or any tree holding them (a chain's, optax's wrappers',
        ``nnx.Optimizer.opt_state``). Containers around the values (NNX Variables) are kept.
      values: keys as :func:`hyperparams` shows them, for labelled keys such as ``"encoder/learning_rate"``.
      **named_values: keys too. A key :func:`hyperparams` shows sets that one value; a plain name it does
        not show as a key (``learning_rate`` where it shows ``"encoder/learning_rate"`` and
        ``"decoder/learning_rate"``) sets the value in every transform that has the name.

    Raises ``ValueError`` for an unknown name, a name that follows a schedule, a value out of its
    range, or a value of another shape.

    Examples:
      A new state with other values, checked against each name's range; a jitted step takes it without
      recompiling:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.adam(learning_rate=0.1)
      >>> state = jgd.set_hyperparams(tx.init(params), learning_rate=0.01, b1=0.5)
      >>> print(jgd.hyperparams(state)["learning_rate"], jgd.hyperparams(state)["b1"])
      0.01 0.5
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates)
      [-0.01  0.01]

      The state's value wins over the transform's, which has not changed since (:doc:`/hyperparameters`).
      A value out of range is an error naming it:

      >>> try:
      ...     jgd.set_hyperparams(state, b1=1.0)
      ... except ValueError as error:
      ...     print(error)
      ...
      b1 must be in [0, 1), got 1.0
    """
    requested = {**(values or {}), **named_values}
    found = [s for _, s in states_with_paths(state)]
    lookup, _ = _entries(state)
    targets: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in requested.items():
        if key not in lookup:
            raise ValueError(f"unknown hyperparameter {key!r}; this state has {sorted(set(lookup))}")
        for entry in lookup[key]:
            targets[entry.position][entry.name] = _checked(key, entry, found[entry.position], value)
    for index, new in targets.items():
        validate_order({**{k: _value(v) for k, v in found[index].hyperparams.items()}, **new})

    position = iter(range(len(found)))  # tree.map meets the states in the order states_with_paths found them

    def replace(node):
        if not is_state(node):
            return node
        new = targets.get(next(position), {})
        hyper = {
            name: jax.tree.map(lambda old, v=new[name]: _broadcast(v, old), old) if name in new else old
            for name, old in node.hyperparams.items()
        }
        return node._replace(hyperparams=hyper)

    return jax.tree.map(replace, state, is_leaf=is_state)


def _broadcast(value: Any, old: jax.Array) -> jax.Array:
    """``value`` in the dtype and shape of the value it replaces."""
    return jax.numpy.broadcast_to(as_float_array(value, old.dtype), np.shape(old))
