"""Optimizer statistics kept in the state for logging: norms of gradients, updates and params, and their ratio."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jgd import masks, trees
from jgd.base import GradientTransformation, check_transform, with_extra_args
from jgd.hyperparams_access import hyperparams
from jgd.state import check_state, transform_states
from jgd.trees import global_norm
from jgd.types import PyTree
from jgd.wrappers.partition import PartitionState

STATISTICS = ("grad_norm", "update_norm", "param_norm", "update_ratio")


class MonitorState(NamedTuple):
    """The state of :func:`monitor`.

    Attributes:
      inner: the wrapped transform's state.
      leaves: ``{statistic: {path: float32 scalar}}`` for the last step, one entry per parameter.
      totals: ``{statistic: float32 scalar}`` over all parameters together.

    Examples:
      The wrapped state, each parameter's statistics by path, and the totals:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.array([3.0, 4.0])}
      >>> tx = jgd.monitor(jgd.sgd(0.1))
      >>> _, state = tx.update({"w": jnp.array([1.0, 0.0])}, tx.init(params), params)
      >>> print(sorted(state.totals))
      ['grad_norm', 'param_norm', 'update_norm', 'update_ratio']
      >>> print(state.leaves["param_norm"]["w"], state.totals["update_norm"])
      5.0 0.1
    """

    inner: PyTree
    leaves: dict[str, dict[str, jax.Array]]
    totals: dict[str, jax.Array]


def _ratio(update_norm, param_norm):
    return update_norm / param_norm  # inf or NaN for a zero or missing param, which a log should show


def _measure(grads, updates, params) -> tuple[dict, dict]:
    """Per-leaf and global norms; the param norm and the ratio are NaN when ``params`` is not given."""
    keyed = jax.tree_util.tree_flatten_with_path(grads)[0]
    paths = [masks.path_name(path) for path, _ in keyed]
    nan = jnp.full((), jnp.nan, jnp.float32)
    trees_by_name = {"grad_norm": grads, "update_norm": updates, "param_norm": params}
    leaves, totals = {}, {}
    for name, tree in trees_by_name.items():
        values = [nan] * len(paths) if tree is None else [global_norm(x) for x in jax.tree.leaves(tree)]
        leaves[name] = dict(zip(paths, values))
        totals[name] = nan if tree is None else global_norm(tree)
    leaves["update_ratio"] = {p: _ratio(leaves["update_norm"][p], leaves["param_norm"][p]) for p in paths}
    totals["update_ratio"] = _ratio(totals["update_norm"], totals["param_norm"])
    return leaves, totals


def monitor(tx: GradientTransformation) -> GradientTransformation:
    """Runs ``tx`` and keeps in the state, per parameter and over all of them, the last step's statistics.

    ``grad_norm = ‖g‖₂`` (the updates ``tx`` receives), ``update_norm = ‖u‖₂``
    (the updates it returns), ``param_norm = ‖θ‖₂`` (NaN when ``update`` is
    called without params) and ``update_ratio = ‖u‖₂ / ‖θ‖₂``, each per leaf and
    for the whole tree, all in float32. Read them, with the hyperparameters and
    per-group values, as a flat dict with :func:`statistics`. Under
    ``jgd.accumulate``, put ``monitor`` inside (``accumulate(monitor(tx), k)``)
    to measure the accumulated gradient.

    Args:
      tx: the gradient transformation to run and measure (jgd's or optax's).

    Examples:
      The last step's norms, per parameter and over all, kept in the state and read with
      :func:`jgd.statistics`:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.array([0.0, 4.0]), "b": jnp.array([0.0])}
      >>> grads = {"w": jnp.array([1.0, 0.0]), "b": jnp.array([0.0])}
      >>> tx = jgd.monitor(jgd.sgd(0.5))
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> stats = jgd.statistics(state)
      >>> print(stats["grad_norm"], stats["update_norm"], stats["param_norm"], stats["update_ratio"])
      1.0 0.5 4.0 0.125
      >>> print(stats["param_norm/w"], stats["learning_rate"])
      4.0 0.5
    """
    tx = with_extra_args(check_transform("tx", tx))

    def init_fn(params):
        trees.check_floating("params", params)
        zeros = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=jnp.float32), params)
        leaves, totals = _measure(zeros, zeros, zeros)
        return MonitorState(tx.init(params), leaves, totals)

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("monitor", state, MonitorState)
        new_updates, inner = tx.update(updates, state.inner, params, **extra_args)
        leaves, totals = _measure(updates, new_updates, params)
        return new_updates, MonitorState(inner, leaves, totals)

    return GradientTransformation(init_fn, update_fn)


def _python(value):
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()  # a list per swept value under vmap


def _group_statistics(leaves: dict[str, dict], members) -> dict[str, object]:
    found = {}
    for group, paths in members:
        paths = [p for p in paths if p in leaves["grad_norm"]]
        for name in ("grad_norm", "update_norm", "param_norm"):
            squares = [np.square(np.asarray(leaves[name][p], np.float64)) for p in paths]
            found[f"{name}/group:{group}"] = np.sqrt(sum(squares, np.float64(0)))
        found[f"update_ratio/group:{group}"] = found[f"update_norm/group:{group}"] / found[f"param_norm/group:{group}"]
    return found


def statistics(state: PyTree) -> dict[str, object]:
    """The statistics of the first :func:`monitor` in ``state``, as a flat dict of Python numbers for a logger.

    Keys: ``"grad_norm"`` etc. for the whole tree, ``"grad_norm/encoder/kernel"``
    per parameter (its ``/``-joined path), ``"grad_norm/group:encoder"`` per
    group of a :func:`jgd.partition` found in the state, and each hyperparameter
    by the key :func:`jgd.hyperparams` gives it (``"encoder/learning_rate"``
    for a name several transforms use; none for an optax transform's state). Under ``vmap`` each value
    is a list.

    Args:
      state: a state holding a :class:`MonitorState` (a chain's, optax's wrappers', ...).

    Examples:
      A flat dict of Python numbers, ready for a logger: the totals, each parameter's, and the
      hyperparameters:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
      >>> tx = jgd.monitor(jgd.adam(0.5))
      >>> _, state = tx.update({"w": jnp.array([1.0, 0.0]), "b": jnp.array([0.0])}, tx.init(params), params)
      >>> stats = jgd.statistics(state)
      >>> print(sorted(k for k in stats if k.startswith("grad_norm")))
      ['grad_norm', 'grad_norm/b', 'grad_norm/w']
      >>> print(stats["grad_norm"], stats["learning_rate"])
      1.0 0.5
    """
    found = trees.instances(state, MonitorState)
    if not found:
        raise ValueError("the state holds no jgd.monitor state; wrap the transform in jgd.monitor(...)")
    leaves, totals = found[0].leaves, found[0].totals
    flat = dict(totals)
    for name in STATISTICS:
        flat.update({f"{name}/{path}": value for path, value in leaves[name].items()})
    with np.errstate(divide="ignore", invalid="ignore"):
        for part in trees.instances(found[0].inner, PartitionState):
            flat.update(_group_statistics(leaves, part.members))
    if transform_states(found[0].inner):  # an optax transform's state holds no jgd hyperparameters
        flat.update(hyperparams(found[0].inner))
    return {key: _python(value) for key, value in flat.items()}
