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
    """The names of the keys of a key path, without an NNX Variable's ``.value`` (see :func:`path_name`)."""
    return tuple(_key_name(key) for key in path if not _is_variable_value(key))


def path_name(path: tuple) -> str:
    """The ``/``-joined form of a key path from ``jax.tree_util.tree_flatten_with_path``.

    A ``.value`` attribute key is left out: ``nnx.Optimizer`` initialises a transform with a tree of NNX
    Variables (``head/bias/value``) and updates it with plain arrays (``head/bias``), and a leaf's path
    must be the same string at both.
    """
    return "/".join(path_keys(path))


def paths(tree: PyTree) -> PyTree:
    """A tree shaped like ``tree`` holding each leaf's path, e.g. ``"encoder/0/kernel"``."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path_name(path), tree)


def by_path(params: PyTree, pattern: str) -> PyTree:
    """``True`` where the leaf's path (``/``-joined) fully matches the regular expression ``pattern``."""
    compiled = re.compile(pattern)
    return jax.tree_util.tree_map_with_path(lambda path, _: compiled.fullmatch(path_name(path)) is not None, params)


def decayed(params: PyTree) -> PyTree:
    """The usual weight-decay mask: ``True`` for weight matrices and kernels, ``False`` for the rest.

    A leaf is excluded when it has fewer than two dimensions (biases, the scales
    and offsets of normalisation layers) or when its path names a normalisation
    layer (a key containing ``norm``, or ``ln``/``bn`` alone or followed by ``_...`` or digits) or ends in ``scale``,
    ``gamma`` or ``beta``. Pass it as a ``mask``:
    ``jgd.masked(jgd.weight_decay(1e-4), jgd.masks.decayed(params))``.
    """

    def decay(path, leaf):
        return jnp.ndim(leaf) >= 2 and _NORMALISATION.search(path_name(path)) is None

    return jax.tree_util.tree_map_with_path(decay, params)


def leaf_flags(argument: str, mask: Mask, tree: PyTree) -> list[bool]:
    """One Python bool per leaf of ``tree`` (in ``jax.tree.leaves`` order), from a mask in any of its forms.

    ``None`` or ``True`` selects every leaf and ``False`` none; a tree of bools selects by position,
    where a bool may stand for a whole subtree (a prefix of ``tree``, as optax's masks); a function
    is called on ``tree`` and its result read the same way. Paths are compared as :func:`path_name`
    writes them, so a mask built from a tree of NNX Variables applies to the same tree of arrays.

    Args:
      argument: the name of the argument the mask was passed as, for the messages.
      mask: ``None``, a bool, a tree of bools or a function ``tree -> tree of bools``.
      tree: the params (or updates) the mask selects from.
    """
    keyed = jax.tree_util.tree_flatten_with_path(tree)[0]
    if mask is None or isinstance(mask, bool):
        return [mask is not False] * len(keyed)
    resolved = mask(tree) if callable(mask) else mask
    flags = {path_keys(path): flag for path, flag in jax.tree_util.tree_flatten_with_path(resolved)[0]}
    wrong = [f"{'/'.join(p) or 'the root'}: {type(f).__name__}" for p, f in flags.items() if not _is_bool(f)]
    if wrong:
        raise ValueError(f"{argument} must hold Python bools (static), got {wrong[:3]}")
    chosen, used = [], set()
    for path, _ in keyed:
        keys = path_keys(path)
        prefix = next((keys[:n] for n in range(len(keys) + 1) if keys[:n] in flags), None)
        if prefix is None:
            raise ValueError(f"{argument} has no entry for the parameter {'/'.join(keys)!r} (nor for a tree above it)")
        chosen.append(bool(flags[prefix]))
        used.add(prefix)
    unused = sorted("/".join(p) or "the root" for p in set(flags) - used)
    if unused:
        raise ValueError(f"{argument} has entries {unused[:3]} that match no parameter")
    return chosen


def _is_bool(flag) -> bool:
    return isinstance(flag, bool | np.bool_)
