"""Where each leaf of an optimizer state lives: like its param, or split further over a data axis (ZeRO-1).

The state is never built: its shapes, dtypes and memory spaces come from tracing
``tx.init`` (``jax.make_jaxpr``), so the result can place a state directly, with
``jax.jit(tx.init, out_shardings=state_sharding(tx, params, ...))(params)``.
"""

from __future__ import annotations

from typing import cast

import jax
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec, Sharding

from jgd.base import GradientTransformation
from jgd.compat import on_host
from jgd.lowbit import QuantizedArray
from jgd.types import PyTree

_HOST = "pinned_host"


def _keys(path) -> tuple[str, ...]:
    return tuple(jax.tree_util.keystr((key,)) for key in path)


def _is_sharding(x) -> bool:
    return isinstance(x, (Sharding, PartitionSpec))


def _param_shardings(params: PyTree, param_sharding: PyTree, mesh: Mesh | None) -> dict[tuple[str, ...], tuple]:
    """Param path -> (shape, sharding), with PartitionSpecs placed on ``mesh``."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    if _is_sharding(param_sharding):
        shardings = [param_sharding] * len(flat)
    else:
        treedef = jax.tree.structure(params)
        try:
            shardings = treedef.flatten_up_to(param_sharding)
        except (ValueError, TypeError) as error:
            raise ValueError(f"param_sharding must be one sharding or a tree shaped like params: {error}") from None
    found = {}
    for (path, leaf), sharding in zip(flat, shardings):
        where = jax.tree_util.keystr(path) or "the root"
        if isinstance(sharding, PartitionSpec):
            if mesh is None:
                raise ValueError(f"param_sharding at {where} is a PartitionSpec: pass mesh= to place it")
            sharding = NamedSharding(mesh, sharding)
        elif not isinstance(sharding, Sharding):
            raise ValueError(f"param_sharding at {where} must be a Sharding or a PartitionSpec, got {sharding!r}")
        found[_keys(path)] = (tuple(np.shape(leaf)), sharding)
    return found


def _split_over(sharding: Sharding, shape: tuple[int, ...], axis: str) -> Sharding:
    """``sharding`` also split over ``axis`` on the first unsharded dimension it divides (unchanged if none does)."""
    if not isinstance(sharding, NamedSharding):
        raise ValueError(f"shard_over needs NamedSharding (or PartitionSpec) param shardings, got {sharding!r}")
    entries = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    used = {name for e in entries if e is not None for name in (e if isinstance(e, tuple) else (e,))}
    size = sharding.mesh.shape[axis]
    if axis in used:
        return sharding
    for dim, (entry, n) in enumerate(zip(entries, shape)):
        if entry is None and n % size == 0:
            entries[dim] = axis
            return NamedSharding(sharding.mesh, PartitionSpec(*entries), memory_kind=sharding.memory_kind)
    return sharding


def _find_mesh(mesh: Mesh | None, by_path: dict) -> Mesh | None:
    if mesh is not None:
        return mesh
    meshes = [cast(Mesh, s.mesh) for _, s in by_path.values() if isinstance(s, NamedSharding)]
    return meshes[0] if meshes else None


def _replicated(mesh: Mesh | None, by_path: dict) -> Sharding:
    """Replicated over the mesh, or over the devices of the params' shardings."""
    if mesh is None:
        devices = sorted({d for _, s in by_path.values() for d in s.device_set}, key=lambda d: d.id)
        mesh = Mesh(np.array(devices), ("devices",))
    return NamedSharding(mesh, PartitionSpec())


def _size(mesh: Mesh | AbstractMesh, axes: tuple[str, ...]) -> int:
    return int(np.prod([mesh.shape[a] for a in axes]))


def _leading_axes(node: QuantizedArray, like: Sharding | None) -> tuple[str, ...]:
    """The mesh axes that split a quantized slot's blocks (rows) as its param is split, or () if they cannot:
    the param must be split on its leading axis alone, into whole blocks."""
    if not isinstance(like, NamedSharding) or not like.spec or node.ndim == 0:
        return ()
    first, *rest = tuple(like.spec)
    if first is None or any(e is not None for e in rest):
        return ()
    axes = first if isinstance(first, tuple) else (first,)
    split = _size(like.mesh, axes)
    whole = node.rank1 or (node.size // split) % node.block_size == 0
    return axes if node.shape[0] % split == 0 and whole and node.codes.shape[0] % split == 0 else ()


def _quantized(node: QuantizedArray, like: Sharding | None, replicated: Sharding, shard_over: str | None):
    """A :class:`QuantizedArray` of shardings for a quantized slot: codes and scales split on their first axis
    (blocks, rows) with the param where :func:`_leading_axes` allows, and further over ``shard_over`` where
    that axis divides; column scales replicated."""
    axes = _leading_axes(node, like)
    mesh = like.mesh if axes and isinstance(like, NamedSharding) else getattr(replicated, "mesh", None)
    if shard_over is not None and mesh is not None and shard_over not in axes:
        if node.codes.shape[0] % (_size(mesh, axes) * mesh.shape[shard_over]) == 0:
            axes = (*axes, shard_over)
    codes, scales = replicated, replicated
    if axes and mesh is not None:
        entry = axes[0] if len(axes) == 1 else axes
        codes, scales = NamedSharding(mesh, PartitionSpec(entry, None)), NamedSharding(mesh, PartitionSpec(entry))
    # The same pytree as the slot, a sharding at each of its arrays (codes, scales, then column scales).
    return jax.tree.unflatten(jax.tree.structure(node), [codes, scales, replicated][: len(jax.tree.leaves(node))])


def _belongs_to_a_param(keys: tuple[str, ...], by_path: dict) -> bool:
    """Whether a state leaf's path holds a param's path: an array kept for that param but not shaped like it
    (a preconditioner's factor ``factors["stats"]["w"][0]``, a matrix slot in Muon's flattened shape)."""
    return any(keys[i:j] in by_path for i in range(len(keys)) for j in range(i + 1, len(keys) + 1))


def _on_host(shardings, avals):
    """``shardings`` (a sharding or a tree of them) in pinned host memory if ``tx.init`` put the leaves there."""
    if any(on_host(aval) for aval in avals):
        return jax.tree.map(lambda s: s.with_memory_kind(_HOST), shardings)
    return shardings


def state_sharding(
    tx: GradientTransformation,
    params: PyTree,
    param_sharding: PyTree,
    mesh: Mesh | None = None,
    shard_over: str | None = None,
) -> PyTree:
    """A sharding for every leaf of ``tx.init(params)``, in a tree shaped like the state.

    A state leaf whose tree path ends with a param's path and whose shape is that
    param's (a slot such as ``state.slots["mu"]["w"]`` for ``params["w"]``) is
    placed like the param; other leaves (step counts, hyperparameters, a
    quasi-Newton matrix) are replicated. With ``shard_over="data"`` each such
    slot is also split over the mesh axis ``data`` on its first dimension that
    is not sharded yet and that the axis size divides: ZeRO-1, each device
    holding ``1/size`` of the slots while params and grads stay as they are.
    So is every other array kept for one param (its path holds the param's path)
    though not shaped like it, such as a preconditioner's factors
    (:func:`jgd.shampoo`, :func:`jgd.soap`, :func:`jgd.kron`), which are replicated without ``shard_over``.
    Leaves that ``tx.init`` puts in host memory (:func:`jgd.offload`) get
    ``memory_kind="pinned_host"``. A quantized slot (:func:`jgd.quantized`) gets a
    :class:`jgd.QuantizedArray` of shardings: its codes and scales split over their blocks (rows) as
    the param is over its leading axis, when that axis alone is split and into whole blocks, and
    over ``shard_over`` where the number of blocks allows; otherwise replicated.

    Args:
      tx: the transform (any: chains, wrappers, optax transforms).
      params: the params, or ``jax.ShapeDtypeStruct`` s of them; nothing is computed.
      param_sharding: one ``Sharding`` / ``PartitionSpec`` for all params, or a tree of them shaped like params.
      mesh: the mesh for ``PartitionSpec`` s and the replicated leaves; default the params' ``NamedSharding`` mesh.
      shard_over: a mesh axis to split the slots over, or ``None`` (slots exactly like their params).

    Returns:
      A tree shaped like the state, of ``jax.sharding.Sharding`` s, for ``jax.jit(..., out_shardings=...)``
      or ``jax.device_put``. A jitted step keeps ZeRO-1 slots split if its ``out_shardings`` say so.

    Examples:
      A sharding for every leaf of the state: slots like their params, the rest replicated. With
      ``shard_over`` a slot is also split over that mesh axis (ZeRO-1). Here on a mesh of the one CPU
      device:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> from jax.sharding import Mesh, PartitionSpec
      >>> mesh = Mesh(jax.devices()[:1], ("data",))
      >>> params = {"w": jnp.ones((4, 2))}
      >>> tx = jgd.adam(1e-3)
      >>> sharding = jgd.state_sharding(tx, params, PartitionSpec(), mesh, shard_over="data")
      >>> print(sharding.slots["mu"]["w"].spec, sharding.count.spec)
      P('data', None) P()
      >>> state = jax.jit(tx.init, out_shardings=sharding)(params)
      >>> print(state.slots["mu"]["w"].sharding == sharding.slots["mu"]["w"])
      True
    """
    by_path = _param_shardings(params, param_sharding, mesh)
    mesh = _find_mesh(mesh, by_path)
    if shard_over is not None:
        if mesh is None:
            raise ValueError(f"shard_over={shard_over!r} needs a mesh: pass mesh= or NamedSharding param shardings")
        if shard_over not in mesh.axis_names:
            raise ValueError(f"shard_over={shard_over!r} is not an axis of the mesh, whose axes are {mesh.axis_names}")
    jaxpr, abstract = jax.make_jaxpr(tx.init, return_shape=True)(params)
    quantized = lambda x: isinstance(x, QuantizedArray)  # noqa: E731
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract, is_leaf=quantized)
    replicated = _replicated(mesh, by_path)
    avals, out = iter(jaxpr.out_avals), []
    for path, leaf in flat:
        keys = _keys(path)
        suffixes = (keys[i:] for i in range(len(keys) + 1))  # the longest first
        match = next((by_path[k] for k in suffixes if k in by_path and by_path[k][0] == tuple(leaf.shape)), None)
        if quantized(leaf):
            like, over = (None, None) if match is None else (match[1], shard_over)
            sharding = _quantized(leaf, like, replicated, over)
        else:
            sharding = replicated if match is None or leaf.ndim == 0 else match[1]
            if leaf.ndim and shard_over is not None and (match is not None or _belongs_to_a_param(keys, by_path)):
                sharding = _split_over(sharding, leaf.shape, shard_over)
        out.append(_on_host(sharding, [next(avals) for _ in jax.tree.leaves(leaf)]))
    return jax.tree.unflatten(treedef, out)
