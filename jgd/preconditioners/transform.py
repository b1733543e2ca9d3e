"""A per-leaf step with matrix factors, lifted to a transform on pytrees, as :func:`jgd.leafwise.leafwise` lifts a rule.

The factors (statistics, inverse roots, eigenbases) are not shaped like their params, and a leaf holds one per
preconditioned axis, so they cannot be ``leafwise`` slots. The state is a :class:`PreconditionerState`: a
:class:`jgd.state.TransformState` for the count, the hyperparameters and the diagonal slots (shaped like the
params, in ``state_dtype``), and ``factors``, a dict of trees holding for each param a tuple of ordinary arrays
(one per preconditioned axis) in the statistics' dtype. :func:`jgd.hyperparams`, :func:`jgd.set_hyperparams`,
:func:`jgd.state_sharding` (factors are replicated: their shapes are not the params'), checkpoints and
``jax.eval_shape`` read it as any state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jgd import trees
from jgd.base import GradientTransformation
from jgd.hyperparams import Hyperparameters
from jgd.leafwise import slot_dtypes
from jgd.lowbit import formats as lowbit
from jgd.ranges import Range
from jgd.state import TransformState, check_state
from jgd.types import PyTree, StateDtype

# step(g, p, slots, factors, *, t, **hyperparams) -> (update, new_slots, new_factors), on one leaf.
LeafStep = Callable[..., tuple[jax.Array, tuple[jax.Array, ...], tuple[tuple[jax.Array, ...], ...]]]


class PreconditionerState(NamedTuple):
    """The state of :func:`jgd.shampoo`, :func:`jgd.soap` and :func:`jgd.kron`.

    Attributes:
      inner: the count, the hyperparameters and the diagonal slots (momentum, second moments), each slot a tree
        shaped like the params; Kron's ``carry["update_counter"]`` (int32), the steps since its last fit.
      factors: name -> a tree holding, for each param, a tuple with one array per preconditioned axis (an empty
        tuple for a param that has none). Shampoo and SOAP: each ``(blocks, b, b)``; Kron (``"q"``): ``Q_i``, an
        ``n_i × n_i`` upper triangular matrix or a vector of ``n_i`` (one scalar for a 0-d param), in
        ``precond_dtype``. Ordinary arrays: :func:`jgd.state_sharding` replicates them.

    Examples:
      SOAP's factors of a 3 × 2 matrix: the statistics and the eigenbasis of each axis; a vector has none:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> state = jgd.soap().init({"w": jnp.ones((3, 2)), "b": jnp.zeros(2)})
      >>> print(sorted(state.factors), [x.shape for x in state.factors["bases"]["w"]], state.factors["bases"]["b"])
      ['bases', 'stats'] [(1, 3, 3), (1, 2, 2)] ()
      >>> print(state.inner.count, sorted(state.inner.slots))
      0 ['mu', 'nu']
    """

    inner: TransformState
    factors: dict[str, PyTree]


def statistics_dtype(precision: Any) -> jnp.dtype:
    """The dtype factors are kept and inverted in: ``precision``, or float32 (float64 under x64) for ``None``."""
    dtype = jnp.dtype(jnp.result_type(float) if precision is None else precision)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"precision must be float32 or float64 (or None), got {precision!r}")
    return dtype


def check_update_trees(name: str, updates: PyTree, params: PyTree, *others: tuple[str, PyTree]) -> None:
    """Raises ``ValueError`` naming the first path where ``updates`` do not fit: not floating, or not the tree and
    shapes of each of ``others`` (label, tree), then of ``params``, which ``name`` needs."""
    if params is None:
        raise ValueError(f"{name} needs params: call update(updates, state, params)")
    trees.check_floating("updates", updates, method=name)
    for label, tree in (*others, ("params", params)):
        trees.check_matching("updates", updates, label, tree)
        trees.check_shapes("updates", updates, label, tree)


def preconditioned(
    name: str,
    step: LeafStep,
    hyperparams: Mapping[str, Any],
    slots: Sequence[str],
    factor_init: Callable[[jax.Array], dict[str, tuple[jax.Array, ...]]],
    *,
    state_dtype: StateDtype = None,
    narrowed: Mapping[str, Range] | None = None,
) -> GradientTransformation:
    """Builds the transform ``name`` from its per-leaf ``step``.

    Args:
      name: the public name, recorded in the states it makes and used in the messages.
      step: ``step(g, p, slots, factors, *, t, **hyperparams) -> (update, new_slots, new_factors)`` on one leaf:
        ``g`` and ``p`` in the leaf's compute dtype (at least float32), ``slots`` a tuple in the order of ``slots``
        (read in the compute dtype), ``factors`` a dict name -> tuple of arrays, ``t`` the 1-based step.
      hyperparams: name -> a float, an array or a schedule.
      slots: the diagonal slots' names, each initialised to zeros shaped like the param.
      factor_init: ``param -> {factor name: tuple of arrays}``, the factors of one param.
      state_dtype: the diagonal slots' dtype (one, or slot name -> dtype); ``None`` keeps each param's.
      narrowed: hyperparameter name -> :class:`jgd.ranges.Range` for names whose range ``name`` narrows.
    """
    component = Hyperparameters(name, hyperparams, narrowed)
    dtypes = slot_dtypes(name, slots, state_dtype)
    for slot, chosen in dtypes.items():
        if lowbit.is_spec(chosen):
            raise ValueError(
                f"{name}: state_dtype for slot {slot!r} must be a floating dtype; low-bit slots are not "
                "supported by the preconditioners"
            )

    def init_fn(params):
        trees.check_floating("params", params, method=name)
        diagonal = {
            s: jax.tree.map(lambda p, s=s: jnp.zeros_like(p, dtype=dtypes[s] or p.dtype), params) for s in slots
        }
        per_leaf = [factor_init(p) for p in jax.tree.leaves(params)]
        treedef = jax.tree.structure(params)
        factor_names = per_leaf[0].keys() if per_leaf else ()
        factors = {f: treedef.unflatten([leaf[f] for leaf in per_leaf]) for f in factor_names}
        return PreconditionerState(component.init(slots=diagonal), factors)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        state = check_state(name, state, PreconditionerState)
        check_update_trees(name, updates, params)
        hp, inner = component.resolve(state.inner)
        t = inner.count + 1
        leaves, treedef = jax.tree.flatten(updates)
        slot_leaves = [treedef.flatten_up_to(inner.slots[s]) for s in slots]
        factor_leaves = {f: treedef.flatten_up_to(tree) for f, tree in state.factors.items()}
        out, new_slots, new_factors = [], [[] for _ in slots], {f: [] for f in state.factors}
        for i, (g, p) in enumerate(zip(leaves, treedef.flatten_up_to(params))):
            dtype = jnp.promote_types(jnp.result_type(g), jnp.float32)
            values = {k: jnp.asarray(v).astype(dtype) for k, v in hp.items()}
            own_slots = tuple(jnp.asarray(s[i]).astype(dtype) for s in slot_leaves)
            own_factors = {f: leaves_f[i] for f, leaves_f in factor_leaves.items()}
            u, slot_values, factor_values = step(
                jnp.asarray(g).astype(dtype), jnp.asarray(p).astype(dtype), own_slots, own_factors, t=t, **values
            )
            out.append(u.astype(jnp.result_type(g)))
            for acc, value in zip(new_slots, slot_values):
                acc.append(value)
            for f, value in factor_values.items():
                new_factors[f].append(tuple(v.astype(o.dtype) for v, o in zip(value, own_factors[f])))
        slot_trees = {
            s: treedef.unflatten([v.astype(jnp.result_type(o)) for v, o in zip(new_slots[j], slot_leaves[j])])
            for j, s in enumerate(slots)
        }
        factor_trees = {f: treedef.unflatten(v) for f, v in new_factors.items()}
        return treedef.unflatten(out), PreconditionerState(component.advance(inner, slots=slot_trees), factor_trees)

    return GradientTransformation(init_fn, update_fn)
