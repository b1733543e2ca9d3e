"""The protocol: a gradient transformation is a pair of pure functions."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import NamedTuple, cast

import jax
import jax.numpy as jnp

from jgd import trees
from jgd.types import PyTree


class GradientTransformation(NamedTuple):
    """``init(params) -> state`` and ``update(updates, state, params=None, **extra) -> (updates, state)``.

    The same shape as optax's, so jgd transforms work inside ``optax.chain``,
    ``flax.training.train_state.TrainState`` and ``flax.nnx.Optimizer``.
    """

    init: Callable[[PyTree], PyTree]
    update: Callable[..., tuple[PyTree, PyTree]]


class Label(str):
    """A label the user wrote (:func:`named`, a ``partition`` group), as a dict key of a state.

    It is a ``str`` (equal to and hashed as the plain string, so checkpoints and trees that hold the
    plain string still match); :func:`jgd.hyperparams` finds it on the path to a state and keys that
    state's hyperparameters by it (``"encoder/learning_rate"``), even where it is the only label.
    """

    __slots__ = ()


def check_transform(argument: str, tx: object) -> GradientTransformation:
    """Returns ``tx`` if it is a gradient transformation; else a ``TypeError`` naming ``argument``.

    A factory passed uncalled (``jgd.adam`` for ``jgd.adam(1e-3)``) is named as such.

    Args:
      argument: the name of the argument ``tx`` was passed as, for the message.
      tx: the value to check: anything with callable ``init`` and ``update`` (jgd's or optax's).
    """
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return cast(GradientTransformation, tx)  # or optax's, of the same shape
    if callable(tx):
        name = getattr(tx, "__name__", repr(tx))
        raise TypeError(f"{argument} must be a gradient transformation; got the function {name}: call it ({name}(...))")
    raise TypeError(f"{argument} must be a gradient transformation (init, update), got {tx!r}")


def _takes_extra_args(update: Callable) -> bool:
    params = inspect.signature(update).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def with_extra_args(tx: GradientTransformation) -> GradientTransformation:
    """``tx`` with an ``update`` that accepts (and, if ``tx`` does not take them, drops) extra keyword arguments.

    Args:
      tx: any gradient transformation (jgd's or optax's); returned as it is if its ``update`` takes ``**kwargs``.
    """
    if _takes_extra_args(check_transform("tx", tx).update):
        return tx

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        return tx.update(updates, state, params)

    return GradientTransformation(tx.init, update_fn)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Applies ``transforms`` in order; the state is the tuple of their states.

    Extra keyword arguments reach every transform whose ``update`` accepts
    ``**kwargs``; others (plain optax transforms) are called without them.

    Args:
      *transforms: gradient transformations (jgd's or optax's), applied first to last; none gives the identity.
    """
    transforms = tuple(with_extra_args(check_transform(f"chain argument {i}", t)) for i, t in enumerate(transforms))

    def init_fn(params):
        return tuple(t.init(params) for t in transforms)

    def update_fn(updates, state, params=None, **extra_args):
        if len(state) != len(transforms):
            raise ValueError(f"chain of {len(transforms)} transforms got a state of {len(state)} entries")
        new_state = []
        for t, s in zip(transforms, state):
            updates, s = t.update(updates, s, params, **extra_args)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init_fn, update_fn)


def named(label: str, tx: GradientTransformation) -> GradientTransformation:
    """``tx`` with its state under ``label``: ``{label: state}``.

    :func:`jgd.hyperparams` and :func:`jgd.set_hyperparams` key a name that several transforms
    use by such labels (``"encoder/learning_rate"``), so one member of a chain can be read and set
    alone. The state is a plain dict, so the label survives ``optax.chain``, ``optax.masked``,
    ``optax.partition``, Flax's ``TrainState`` and ``nnx.Optimizer``, and checkpoints.

    Args:
      label: a non-empty string without ``/``.
      tx: any gradient transformation (jgd's or optax's).
    """
    if not isinstance(label, str) or not label or "/" in label:
        raise ValueError(f"label must be a non-empty string without '/', got {label!r}")
    inner = with_extra_args(check_transform("tx", tx))
    label = Label(label)

    def init_fn(params):
        return {label: inner.init(params)}

    def update_fn(updates, state, params=None, **extra_args):
        if not isinstance(state, dict) or set(state) != {label}:
            raise ValueError(f"the state of named({label!r}, ...) must be {{{label!r}: state}}, got {type(state)}")
        updates, inner_state = inner.update(updates, state[label], params, **extra_args)
        return updates, {label: inner_state}

    return GradientTransformation(init_fn, update_fn)


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    """Returns ``params + updates``, each leaf keeping the dtype of its param.

    Args:
      params: a tree of arrays (``jgd.types.PyTree``); ``None`` leaves stay ``None``.
      updates: a tree of the same structure, as a transform's ``update`` returns it.
    """
    trees.check_matching("updates", updates, "params", params)
    return jax.tree.map(
        lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )
