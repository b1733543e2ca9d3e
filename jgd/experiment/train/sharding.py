"""Placing a training run on a device mesh, for data parallelism on one host or across a TPU pod.

A mesh is named by its axis sizes: ``{"data": 8}`` splits every batch over 8
devices and replicates the parameters and optimizer state; ``{"data": 4,
"model": 2}`` also splits each array whose last dimension the ``model`` axis
divides (a Dense kernel's output units, and its optimizer slots alike). The
arithmetic is the single-device program's: ``jax.jit`` partitions it and adds
the reductions, so results match one device to rounding.

Every function here works the same with one process or many (one per host
after ``jax.distributed.initialize()``): values are built from host copies that
every process holds; checkpoints (:mod:`jgd.experiment.train.checkpoint`) write and read each process's shards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, Sharding
from jax.sharding import PartitionSpec as P

import jgd
from jgd import GradientTransformation
from jgd.types import PyTree

AXES = ("data", "model")


def _automatic_axes(count: int) -> dict[str, Any]:
    """``jax.make_mesh``'s arguments for ``count`` automatic axes (sharded by ``jit``): current JAX takes
    ``axis_types``; JAX before 0.5.3 has none, and its axes are all automatic."""
    axis_type = getattr(jax.sharding, "AxisType", None)
    return {} if axis_type is None else {"axis_types": (axis_type.Auto,) * count}


def make_mesh(axes: Mapping[str, int]) -> Mesh:
    """A mesh with the given axis sizes (names from :data:`AXES`); one size may be -1, for all remaining devices.

    It takes the first devices of ``jax.devices()``; with several processes it must take them all.
    """
    for name in axes:
        if name not in AXES:
            raise ValueError(f"mesh axis {name!r} is not one of {', '.join(AXES)}")
    if list(axes.values()).count(-1) > 1:
        raise ValueError(f"mesh {dict(axes)}: only one axis size may be -1")
    available = jax.device_count()
    known = math.prod(size for size in axes.values() if size != -1)
    sizes = {name: available // known if size == -1 else size for name, size in axes.items()}
    needed = math.prod(sizes.values())
    if needed < 1 or needed > available or (jax.process_count() > 1 and needed != available):
        raise ValueError(f"mesh {dict(axes)} needs {needed} devices; {available} are available")
    return jax.make_mesh(
        tuple(sizes.values()),
        tuple(sizes),
        **_automatic_axes(len(sizes)),
        devices=jax.devices()[:needed],
    )


def replicated(mesh: Mesh) -> NamedSharding:
    """A whole copy on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Splits the leading (example) axis over the mesh's ``data`` axis."""
    return NamedSharding(mesh, P("data")) if "data" in mesh.axis_names else replicated(mesh)


def state_shardings(tree: PyTree, mesh: Mesh) -> PyTree:
    """Per leaf: split the last dimension over ``model`` where that axis divides it, else replicate.

    The rule depends on the shape alone, so optimizer slots are placed like their params.
    """
    model = dict(mesh.shape).get("model", 1)

    def sharding(leaf):
        shape = np.shape(leaf)
        if model > 1 and shape and shape[-1] % model == 0:
            return NamedSharding(mesh, P(*(None,) * (len(shape) - 1), "model"))
        return replicated(mesh)

    return jax.tree.map(sharding, tree)


def place(tree: PyTree, shardings: PyTree | Sharding) -> PyTree:
    """Global arrays placed by ``shardings`` (a tree like ``tree``, or one for all) from values every process holds."""

    def put(value, sharding):
        value = np.asarray(value)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    if isinstance(shardings, Sharding):
        return jax.tree.map(lambda value: put(value, shardings), tree)
    return jax.tree.map(put, tree, shardings)


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is set in any process, so that all of them take the same branch."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))


class RunPlacement(NamedTuple):
    """Where a training run's arrays live: all on the default device, or spread over a mesh.

    ``state``: the run state's shardings; ``batch``: how a batch is split; ``everywhere``: a whole copy on every
    device (data, the epoch number, the losses). All ``None`` on one device. ``init_opt_state``: the
    optimizer's ``init`` where its state is made directly in place (ZeRO-1), else ``None``.
    """

    state: PyTree | None = None
    batch: NamedSharding | None = None
    everywhere: NamedSharding | None = None
    init_opt_state: Callable[[PyTree], PyTree] | None = None

    def put(self, tree: PyTree) -> PyTree:
        """``tree`` (host values) on every device."""
        return jax.tree.map(jnp.asarray, tree) if self.everywhere is None else place(tree, self.everywhere)

    def place_state(self, state: PyTree) -> PyTree:
        """``state`` (a run state: ``params``, ``opt_state``, ...) placed by :attr:`state`.

        With :attr:`init_opt_state` the optimizer state is not read from ``state`` (it may be abstract) but made
        from the placed params by one compiled call that writes each device's part alone.
        """
        if self.state is None:
            return state
        if self.init_opt_state is None:
            return place(state, self.state)
        placed = place(state._replace(opt_state=()), self.state._replace(opt_state=()))
        opt_state = jax.jit(self.init_opt_state, out_shardings=self.state.opt_state)(placed.params)
        return placed._replace(opt_state=opt_state)


def run_placement(
    mesh: Mesh | Mapping[str, int] | None, state: PyTree, shard_optimizer_state_of: GradientTransformation | None = None
) -> RunPlacement:
    """The placement of a run of ``state`` on ``mesh`` (a ``Mesh``, axis sizes for :func:`make_mesh`, or none).

    ``shard_optimizer_state_of``: the run's transform, to split its state's slots over the ``data`` axis as
    well (ZeRO-1, :func:`jgd.state_sharding`), the state being made in place; ``state.opt_state`` may then be
    abstract (``jax.eval_shape(tx.init, params)``).
    """
    if mesh is None:
        if shard_optimizer_state_of is not None:
            raise ValueError("training.shard_optimizer_state needs training.mesh: there is nothing to shard over")
        return RunPlacement()
    if isinstance(mesh, Mapping):
        mesh = make_mesh(mesh)
    shardings = state_shardings(state, mesh)
    if shard_optimizer_state_of is None:
        return RunPlacement(shardings, batch_sharding(mesh), replicated(mesh))
    tx = shard_optimizer_state_of
    opt_shardings = jgd.state_sharding(tx, state.params, shardings.params, mesh, shard_over="data")
    return RunPlacement(shardings._replace(opt_state=opt_shardings), batch_sharding(mesh), replicated(mesh), tx.init)
