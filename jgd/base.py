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

    Examples:
      A transform is a pair of pure functions; any pair with these call shapes is one, and goes into
      :func:`jgd.chain`:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> def double(g, state, params=None):
      ...     return 2 * g, state
      ...
      >>> double = jgd.GradientTransformation(init=lambda params: None, update=double)
      >>> tx = jgd.chain(double, jgd.sgd(0.1))
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.1  0.2]
      >>> tx.init is tx[0]
      True
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

    Examples:
      A transform whose ``update`` takes no extra keyword arguments gets one that accepts and drops them,
      as :func:`jgd.chain` passes them (``loss=``, ``value_fn=``) to every member:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> plain = jgd.GradientTransformation(lambda params: None, lambda g, state, params=None: (-g, state))
      >>> tx = jgd.with_extra_args(plain)
      >>> updates, _ = tx.update(grads, tx.init(params), params, loss=3.0)
      >>> print(updates)
      [-0.5  1. ]
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

    Examples:
      Clip, then SGD: each transform's output is the next one's input, and the state is the tuple of
      theirs:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.chain(jgd.clip_by_global_norm(0.5), jgd.sgd(learning_rate=1.0))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates, jgd.global_norm(updates))
      [-0.2236068  0.4472136] 0.49999997
      >>> len(state)
      2

      ``‖g‖ = √1.25 ≈ 1.118``, so the gradient is scaled by ``0.5 / 1.118`` before the step.
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

    Examples:
      Labels tell apart two members' hyperparameters of the same name, to read and set one at a time:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.chain(jgd.named("fast", jgd.sgd(0.1)), jgd.named("slow", jgd.sgd(0.01)))
      >>> state = tx.init(params)
      >>> print(sorted(jgd.hyperparams(state)))
      ['fast/learning_rate', 'slow/learning_rate']
      >>> state = jgd.set_hyperparams(state, {"slow/learning_rate": 0.02})
      >>> print(jgd.hyperparams(state)["slow/learning_rate"])
      0.02
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

    Examples:
      ``params + updates``, each leaf keeping its param's dtype:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.array([1.0, 2.0], dtype=jnp.bfloat16), "b": jnp.array([0.5])}
      >>> new = jgd.apply_updates(params, {"w": jnp.array([0.25, -0.5]), "b": jnp.array([-0.5])})
      >>> print(new["w"], new["w"].dtype, new["b"])
      [1.25 1.5] bfloat16 [0.]
    """
    trees.check_matching("updates", updates, "params", params)
    return jax.tree.map(
        lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )
