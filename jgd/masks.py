"""Parameter paths, and the masks built from them (``True`` where a transform applies).

A leaf's path is the ``/``-joined names of the keys leading to it: dict keys,
attribute names, and sequence indices as numbers, e.g. ``"encoder/layers/0/kernel"``
for ``params["encoder"]["layers"][0]["kernel"]``. The ``value`` attribute of a
container (an NNX ``Param``) is not part of it, so a tree of NNX Variables and
the same tree of arrays have the same paths.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from jgd.types import Mask, PyTree

__all__ = [
    "bracket_name",
    "broadcast",
    "by_path",
    "check_mask",
    "decayed",
    "leaf_flags",
    "path_keys",
    "path_name",
    "paths",
]

# Key names of normalisation layers' parameters (Flax LayerNorm/BatchNorm/RMSNorm, Keras, PyTorch ports).
_NORMALISATION = re.compile(r"(^|/)([^/]*norm[^/]*|(ln|bn)(_\w+|\d+)?)(/|$)|(^|/)(scale|gamma|beta)$", re.IGNORECASE)


def _key_name(key) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _is_variable_value(key) -> bool:
    """The attribute through which a container such as an NNX Variable holds its array (``Param.value``)."""
    return isinstance(key, jax.tree_util.GetAttrKey) and key.name == "value"


def path_keys(path: tuple) -> tuple[str, ...]:
    """The names of the keys of a key path, without an NNX Variable's ``.value`` (see :func:`path_name`).

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"encoder": [{"kernel": jnp.ones(2)}]}
      >>> (path, _), = jax.tree_util.tree_flatten_with_path(params)[0]
      >>> print(jgd.masks.path_keys(path))
      ('encoder', '0', 'kernel')
    """
    return tuple(_key_name(key) for key in path if not _is_variable_value(key))


def path_name(path: tuple) -> str:
    """The ``/``-joined form of a key path from ``jax.tree_util.tree_flatten_with_path``.

    A ``.value`` attribute key is left out: ``nnx.Optimizer`` initialises a transform with a tree of NNX
    Variables (``head/bias/value``) and updates it with plain arrays (``head/bias``), and a leaf's path
    must be the same string at both.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"encoder": [{"kernel": jnp.ones(2)}]}
      >>> (path, _), = jax.tree_util.tree_flatten_with_path(params)[0]
      >>> print(jgd.masks.path_name(path))
      encoder/0/kernel
    """
    return "/".join(path_keys(path))


def bracket_name(path: tuple) -> str:
    """``jax.tree_util.keystr`` of a key path (``"['encoder'][0]"``), without an NNX Variable's ``.value``.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"encoder": [{"kernel": jnp.ones(2)}]}
      >>> (path, _), = jax.tree_util.tree_flatten_with_path(params)[0]
      >>> print(jgd.masks.bracket_name(path))
      ['encoder'][0]['kernel']
    """
    return jax.tree_util.keystr(tuple(key for key in path if not _is_variable_value(key)))


def paths(tree: PyTree) -> PyTree:
    """A tree shaped like ``tree`` holding each leaf's path, e.g. ``"encoder/0/kernel"``.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"encoder": [{"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}], "head": jnp.ones(3)}
      >>> print(jgd.masks.paths(params))
      {'encoder': [{'bias': 'encoder/0/bias', 'kernel': 'encoder/0/kernel'}], 'head': 'head'}
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: path_name(path), tree)


def by_path(params: PyTree, pattern: str) -> PyTree:
    """``True`` where the leaf's path (``/``-joined) fully matches the regular expression ``pattern``.

    Examples:
      A mask from a regular expression on the paths, for ``masked``, ``freeze`` or a method's ``mask``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"encoder": {"kernel": jnp.ones(2), "bias": jnp.ones(2)}, "head": {"kernel": jnp.ones(2)}}
      >>> print(jgd.masks.by_path(params, ".*/kernel"))
      {'encoder': {'bias': False, 'kernel': True}, 'head': {'kernel': True}}
      >>> print(jgd.masks.by_path(params, "encoder/.*"))
      {'encoder': {'bias': True, 'kernel': True}, 'head': {'kernel': False}}
    """
    compiled = re.compile(pattern)
    return jax.tree_util.tree_map_with_path(lambda path, _: compiled.fullmatch(path_name(path)) is not None, params)


def decayed(params: PyTree) -> PyTree:
    """The usual weight-decay mask: ``True`` for weight matrices and kernels, ``False`` for the rest.

    A leaf is excluded when it has fewer than two dimensions (biases, the scales
    and offsets of normalisation layers) or when its path names a normalisation
    layer (a key containing ``norm``, or ``ln``/``bn`` alone or followed by ``_...`` or digits) or ends in ``scale``,
    ``gamma`` or ``beta``. Pass it as a ``mask``:
    ``jgd.masked(jgd.weight_decay(1e-4), jgd.masks.decayed(params))``.

    Examples:
      Weight matrices decay; biases, norm layers' scales and other vectors do not:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}, "layer_norm": {"scale": jnp.ones(2)}}
      >>> print(jgd.masks.decayed(params))
      {'dense': {'bias': False, 'kernel': True}, 'layer_norm': {'scale': False}}
      >>> tx = jgd.adamw(1e-3, weight_decay=1e-2, mask=jgd.masks.decayed)
    """

    def decay(path, leaf):
        return jnp.ndim(leaf) >= 2 and _NORMALISATION.search(path_name(path)) is None

    return jax.tree_util.tree_map_with_path(decay, params)


def broadcast(argument: str, spec: PyTree, tree: PyTree) -> list[tuple[str, object]]:
    """Each leaf of ``tree``, as its :func:`path_name`, with the value ``spec`` gives it.

    ``spec`` is one value for every leaf, or a tree whose leaves lie at the leaves' paths or at
    prefixes of them (a value stands for its whole subtree, as optax's masks and labels). Paths are
    compared as :func:`path_name` writes them, not by node type, so a plain dict applies to an
    ``nnx.State`` and a tree of NNX Variables to the same tree of arrays. A ``spec`` entry at no
    parameter's path nor a prefix of one, or a parameter under no entry, is a ``ValueError`` naming it.

    Args:
      argument: the name of the argument ``spec`` came from, for the messages.
      spec: a single value, or a tree of values.
      tree: the params or updates; ``None`` leaves (another group's) take no value but count as paths.

    Examples:
      Each leaf's path with the value a prefix tree gives it:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"encoder": {"kernel": jnp.ones(2), "bias": jnp.ones(2)}, "head": jnp.ones(2)}
      >>> print(jgd.masks.broadcast("labels", {"encoder": "frozen", "head": "adam"}, params))
      [('encoder/bias', 'frozen'), ('encoder/kernel', 'frozen'), ('head', 'adam')]
    """
    entries = {path_keys(path): value for path, value in jax.tree_util.tree_flatten_with_path(spec)[0]}
    every = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)[0]
    prefixes = {keys[:n] for keys in (path_keys(path) for path, _ in every) for n in range(len(keys) + 1)}
    for keys in entries:
        if keys not in prefixes | {()}:
            raise ValueError(
                f"{argument} has an entry at {'/'.join(keys)!r}, which is no parameter's path nor a prefix of one"
            )
    found = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = path_keys(path)
        prefix = next((keys[:n] for n in range(len(keys) + 1) if keys[:n] in entries), None)
        if prefix is None:
            raise ValueError(
                f"{argument} has no entry for the parameter {'/'.join(keys)!r}: give one value, "
                "or a tree that is a prefix of the params"
            )
        found.append(("/".join(keys), entries[prefix]))
    return found


def leaf_flags(argument: str, mask: Mask, tree: PyTree) -> list[bool]:
    """One Python bool per leaf of ``tree`` (in ``jax.tree.leaves`` order), from a mask in any of its forms.

    ``None`` or ``True`` selects every leaf and ``False`` none; a tree of bools is read by
    :func:`broadcast` (a bool may stand for a whole subtree); a function is called on ``tree`` and
    its result read the same way.

    Args:
      argument: the name of the argument the mask was passed as, for the messages.
      mask: ``None``, a bool, a tree of bools or a function ``tree -> tree of bools``.
      tree: the params (or updates) the mask selects from.

    Examples:
      One bool per leaf, in ``jax.tree.leaves`` order, from a mask in any of its forms:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"a": jnp.ones(2), "b": {"c": jnp.ones(2), "d": jnp.ones(2)}}
      >>> print(jgd.masks.leaf_flags("mask", {"a": True, "b": False}, params))
      [True, False, False]
      >>> print(jgd.masks.leaf_flags("mask", lambda p: jgd.masks.by_path(p, "b/d"), params))
      [False, False, True]
    """
    resolved = mask(tree) if callable(mask) else mask
    resolved = True if resolved is None else resolved
    check_mask(argument, resolved)
    return [bool(flag) for _, flag in broadcast(argument, resolved, tree)]


def check_mask(argument: str, mask: Mask) -> None:
    """Raises ``TypeError`` naming the first leaf of a mask tree that is not a Python bool.

    A function is checked when it is called; ``None`` needs no check.

    Args:
      argument: the name of the argument the mask was passed as, for the message.
      mask: a mask in any of its forms (``jgd.types.Mask``).

    Examples:
      A mask's leaves must be Python bools:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> jgd.masks.check_mask("mask", {"a": True, "b": False})
      >>> try:
      ...     jgd.masks.check_mask("mask", {"a": True, "b": jnp.array(1.0)})
      ... except TypeError as error:
      ...     print(error)
      ...
      mask must hold Python bools (static), got ArrayImpl at b
    """
    if mask is None or callable(mask):
        return
    for path, flag in jax.tree_util.tree_flatten_with_path(mask)[0]:
        if not isinstance(flag, bool | np.bool_):
            where = path_name(path) or "the root"
            raise TypeError(f"{argument} must hold Python bools (static), got {type(flag).__name__} at {where}")
