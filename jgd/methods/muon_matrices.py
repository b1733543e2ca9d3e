"""Which leaves Muon takes as matrices, and how: dimension numbers per leaf, and the leaves left to Adam.

A leaf's :class:`MuonDimensionNumbers` name its reduction axes (the input side of ``y = x W``) and its
output axes; the other axes are batch axes (stacked or scanned layers), each index a matrix of its own.
Inside :func:`jgd.muon` a leaf is held in its *matrix form*: the batch axes first, then the reduction
axes flattened into one, then the output axes into one, ``(*batch, fan_in, fan_out)``. A 2-D kernel and
a stack of them keep their own shape; a conv kernel ``(H, W, I, O)`` is the matrix ``(H·W·I, O)``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import cast

import jax

from jgd import masks
from jgd.types import PyTree


@dataclasses.dataclass(frozen=True)
class MuonDimensionNumbers:
    """The axes of a leaf that form Muon's matrix: ``reduction_axis`` (its rows, the input) and ``output_axis``.

    Each is an axis or a sequence of axes (negative counts from the end); several are flattened into one,
    in order. The axes named by neither are batch axes: each index along them is a matrix of its own.
    optax's ``optax.contrib.MuonDimensionNumbers`` is taken as well (any object with these two fields).

    Examples:
      A stack of matrices over a leading layer axis, and a conv kernel ``(H, W, I, O)`` as ``(H·W·I) × O``:

      >>> import jgd
      >>> stacked = jgd.MuonDimensionNumbers(reduction_axis=-2, output_axis=-1)
      >>> conv = jgd.MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3)
      >>> print(conv)
      MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3)
    """

    reduction_axis: int | Sequence[int] = 0
    output_axis: int | Sequence[int] = 1


def is_dimension_numbers(x) -> bool:
    """Whether ``x`` is a dimension-number spec (jgd's or optax's: the two fields)."""
    return hasattr(x, "reduction_axis") and hasattr(x, "output_axis")


class _Value:
    """A spec held as one leaf: optax's NamedTuple and ``None`` would be a subtree to ``jax.tree``."""

    def __init__(self, spec):
        self.spec = spec


@dataclasses.dataclass(frozen=True)
class Matrix:
    """A leaf's matrix form: the permutation to ``(*batch, *reduction, *output)`` and how many axes each side has."""

    shape: tuple[int, ...]
    permutation: tuple[int, ...]
    batch: int  # how many batch axes lead
    outputs: int  # how many output axes end

    @property
    def fan_in(self) -> int:
        return math.prod(self.shape[i] for i in self.permutation[self.batch : -self.outputs])

    @property
    def fan_out(self) -> int:
        return math.prod(self.shape[i] for i in self.permutation[-self.outputs :])

    def canonical(self, x):
        """``x`` (the leaf's shape) in its matrix form ``(*batch, fan_in, fan_out)``."""
        batch = tuple(self.shape[i] for i in self.permutation[: self.batch])
        return x.transpose(self.permutation).reshape((*batch, self.fan_in, self.fan_out))

    def restore(self, y):
        """The inverse of :meth:`canonical`."""
        permuted = tuple(self.shape[i] for i in self.permutation)
        inverse = sorted(range(len(self.permutation)), key=lambda i: self.permutation[i])
        return y.reshape(permuted).transpose(inverse)


def _axes(argument: str, where: str, axes, ndim: int) -> tuple[int, ...]:
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    if not axes or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        raise ValueError(f"{argument}: the axes for {where} must be ints, one or more, got {axes!r}")
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{argument}: axis {a} is out of range for {where}, which has {ndim} axes")
    normal = tuple(a % ndim for a in axes)
    if len(set(normal)) != len(normal):
        raise ValueError(f"{argument}: the axes {axes!r} for {where} repeat an axis")
    return normal


def matrix(argument: str, path: str, spec, shape: tuple[int, ...]) -> Matrix:
    """The matrix form ``spec`` gives a leaf of ``shape`` at ``path``; a ``ValueError`` naming ``argument`` if none."""
    where = f"the parameter {path!r} of shape {shape}"
    if len(shape) < 2:
        raise ValueError(f"{argument} gives {where} dimension numbers, but a matrix needs two axes or more")
    reduction = _axes(argument, where, spec.reduction_axis, len(shape))
    output = _axes(argument, where, spec.output_axis, len(shape))
    if set(reduction) & set(output):
        raise ValueError(f"{argument}: the reduction axes {reduction} and output axes {output} of {where} overlap")
    batch = tuple(i for i in range(len(shape)) if i not in reduction and i not in output)
    return Matrix(tuple(shape), batch + reduction + output, len(batch), len(output))


def muon_dimension_numbers(params: PyTree, *, flatten_conv: bool = False, stacked_matrices: bool = False) -> PyTree:
    """The usual dimension numbers: a tree like ``params`` holding a :class:`MuonDimensionNumbers` or ``None``.

    A 2-D leaf ``(fan_in, fan_out)`` is a matrix (reduction axis 0, output axis 1). A leaf of three or more
    axes is a convolution kernel ``(*spatial, in, out)`` taken as the matrix ``(spatial·in) × out`` with
    ``flatten_conv`` (Jordan's CIFAR-10 Muon flattens each filter so), a stack of matrices over its leading
    axes with ``stacked_matrices`` (scanned layers), and ``None`` (Adam) with neither. Leaves of fewer than
    two axes are ``None``. This is :func:`jgd.muon`'s rule when ``muon_weight_dimension_numbers`` is None.

    Args:
      params: the params (arrays, ``jax.ShapeDtypeStruct`` or NNX Variables).
      flatten_conv: whether leaves of three or more axes are conv kernels, flattened; False.
      stacked_matrices: whether leaves of three or more axes are stacks of matrices; False.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"conv": jnp.ones((3, 3, 8, 16)), "dense": jnp.ones((16, 10)), "bias": jnp.ones(10)}
      >>> dims = jgd.muon_dimension_numbers(params, flatten_conv=True)
      >>> print(dims["conv"], dims["bias"])
      MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3) None
    """
    if flatten_conv and stacked_matrices:
        raise ValueError("flatten_conv and stacked_matrices both name leaves of three or more axes: choose one")

    def spec(leaf):
        ndim = len(leaf.shape)
        if ndim == 2:
            return MuonDimensionNumbers(0, 1)
        if ndim > 2 and flatten_conv:
            return MuonDimensionNumbers(tuple(range(ndim - 1)), ndim - 1)
        if ndim > 2 and stacked_matrices:
            return MuonDimensionNumbers(ndim - 2, ndim - 1)
        return None

    return jax.tree.map(spec, params)


def resolve(argument: str, dimension_numbers, params: PyTree) -> list[tuple[str, Matrix | None]]:
    """Each leaf's path and matrix form (``None``: not a matrix), from a spec, a tree of them or a function."""
    specs = dimension_numbers(params) if callable(dimension_numbers) else dimension_numbers
    held = jax.tree.map(_Value, specs, is_leaf=lambda x: x is None or is_dimension_numbers(x))
    for path, value in jax.tree_util.tree_flatten_with_path(held)[0]:
        if not isinstance(value, _Value) or not (value.spec is None or is_dimension_numbers(value.spec)):
            kind = type(value.spec if isinstance(value, _Value) else value).__name__
            where = masks.path_name(path) or "the root"
            raise ValueError(f"{argument} must hold MuonDimensionNumbers or None, got {kind} at {where}")
    shapes = [tuple(leaf.shape) for leaf in jax.tree.leaves(params)]
    given = [(path, cast(_Value, value).spec) for path, value in masks.broadcast(argument, held, params)]
    return [(p, None if spec is None else matrix(argument, p, spec, s)) for (p, spec), s in zip(given, shapes)]


# A key naming an embedding table (Flax's Embed and its `embedding`, token/position embeddings, GPT-2's wte/wpe),
# or an output layer by the names models give it.
_EMBEDDING = re.compile(r"embed|^wte$|^wpe$", re.IGNORECASE)
_OUTPUT = re.compile(r"^(head|lm_head|classifier|logits|readout)$|_head$", re.IGNORECASE)
# Dense layers numbered in order: Linen's Dense_0, Dense_1, ..., and attribute names like linear2, fc3, dense_1.
_NUMBERED_DENSE = re.compile(r"^(dense|linear|fc)_?(\d+)$", re.IGNORECASE)


def muon_adam_mask(params: PyTree) -> PyTree:
    """:func:`jgd.muon`'s default ``adam_mask``: ``True`` for the embeddings and the output layer, as recipes route.

    Jordan et al. and Moonlight optimise the embeddings and the classifier head with AdamW, Muon taking
    the hidden matrices only. A leaf is ``True`` when a key of its path (:func:`jgd.masks.paths`, so the
    same for Linen params, an ``nnx.State`` and NNX Variables):

    - names an embedding: contains ``embed`` (any case: Linen's ``Embed_0/embedding``, ``token_embedding``,
      ``pos_embed``), or is ``wte`` or ``wpe``;
    - names an output layer: ``head``, ``lm_head``, ``classifier``, ``logits``, ``readout`` or ends in ``_head``;
    - otherwise, when no key names an output layer, is the last of the model's numbered Dense layers:
      among the top-level keys (below a single wrapping key such as Linen's ``params``) of the form
      ``Dense_3``, ``dense3``, ``linear2``, ``fc_2`` (any case), the one with the largest number. Linen's
      auto-named ``Dense_k`` are numbered in call order, so it is the last Dense layer called.

    Other names are not guessed: pass ``adam_mask`` to :func:`jgd.muon` (a tree of bools or a function).

    Args:
      params: the params (arrays, ``jax.ShapeDtypeStruct`` or NNX Variables).

    Examples:
      A Linen CNN's auto-named layers: the last Dense layer (``Dense_1``) goes to Adam:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"Conv_0": {"kernel": jnp.ones((3, 3, 1, 8))}, "Dense_0": {"kernel": jnp.ones((8, 8))},
      ...           "Dense_1": {"kernel": jnp.ones((8, 10))}, "Embed_0": {"embedding": jnp.ones((5, 8))}}
      >>> for name, flags in jgd.muon_adam_mask(params).items():
      ...     print(name, flags)
      Conv_0 {'kernel': False}
      Dense_0 {'kernel': False}
      Dense_1 {'kernel': True}
      Embed_0 {'embedding': True}
    """
    leaves = [masks.path_keys(path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    named_output = any(_OUTPUT.search(key) for keys in leaves for key in keys)
    depth = 0  # below single wrapping keys ({"params": {...}}, a model wrapping one module)
    while leaves and all(len(k) > depth + 1 and k[depth] == leaves[0][depth] for k in leaves):
        depth += 1
    numbered = {
        key: int(match.group(2))
        for key in {k[depth] for k in leaves if len(k) > depth + 1}
        if (match := _NUMBERED_DENSE.match(key))
    }
    last_dense = None if named_output or not numbered else max(numbered, key=numbered.__getitem__)

    def to_adam(keys: tuple[str, ...]) -> bool:
        if any(_EMBEDDING.search(key) or _OUTPUT.search(key) for key in keys):
            return True
        return last_dense is not None and len(keys) > depth + 1 and keys[depth] == last_dense

    flags = iter([to_adam(keys) for keys in leaves])
    return jax.tree.map(lambda _: next(flags), params)
