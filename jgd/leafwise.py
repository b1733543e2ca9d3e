"""Lifts a method written on one array to a gradient transformation on pytrees.

A method is a ``rule(g, *slots, [p,] t=..., **hyperparams) -> (update, new_slots)``
on a single array, written next to its equation. :func:`leafwise` turns it into
a :class:`~jgd.base.GradientTransformation` that maps it over the leaves, keeps
the slots and hyperparameters in a :class:`~jgd.hyperparams.TransformState`,
evaluates schedules, checks trees, and handles dtypes: each leaf is computed in
at least float32, updates keep the leaf's dtype, and every slot keeps the dtype
it was created with (``state_dtype``, one dtype or one per slot), whatever the
dtypes of the grads and hyperparameters, so a state is a fixed ``lax.scan`` /
``lax.while_loop`` carry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jgd import trees
from jgd.base import GradientTransformation
from jgd.hyperparams import resolve, split, start
from jgd.types import PyTree, StateDtype

Prepare = Callable[..., tuple[dict[str, jax.Array], dict[str, jax.Array]]]
Mask = bool | PyTree | Callable[[PyTree], PyTree]
"""A tree of Python bools (or a prefix of the params tree), or a function ``params -> such a tree``."""


def slot_dtypes(name: str, slots: Sequence[str], state_dtype: StateDtype) -> dict[str, Any]:
    """Each slot's dtype from ``state_dtype`` (one dtype, or slot name -> dtype); ``None`` means the param's."""
    chosen = dict(state_dtype) if isinstance(state_dtype, Mapping) else {s: state_dtype for s in slots}
    unknown = sorted(set(chosen) - set(slots))
    if unknown:
        raise ValueError(f"{name}: state_dtype names no slot {unknown}; its slots are {list(slots)}")
    for slot, dtype in chosen.items():
        try:
            floating = dtype is None or jnp.issubdtype(jnp.dtype(dtype), jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            raise ValueError(f"{name}: state_dtype for slot {slot!r} must be a floating dtype, got {dtype!r}")
    return {s: chosen.get(s) for s in slots}


def leafwise(
    name: str,
    rule: Callable,
    hyperparams: dict[str, Any],
    slots: Sequence[str] = (),
    *,
    state_dtype: StateDtype = None,
    with_params: bool = False,
    carry: dict[str, float] | None = None,
    prepare: Prepare | None = None,
    slot_init: dict[str, Callable] | None = None,
    masks: dict[str, Mask] | None = None,
) -> GradientTransformation:
    """Builds the transform ``name`` from its per-array ``rule``.

    Args:
      name: the public name, used in error messages.
      rule: ``rule(g, *slots, [p], t, **hyperparams, **prepared) -> (update, tuple(new_slots))``,
        where ``t`` is the 1-based step number.
      hyperparams: name -> float, array or schedule.
      slots: names of the per-parameter accumulators, initialised to zero.
      state_dtype: one dtype for every slot, or slot name -> dtype; a slot not named keeps each param's dtype.
      with_params: whether ``rule`` takes the param as its last positional argument.
      carry: per-step scalars and their initial values, updated by ``prepare``.
      prepare: ``prepare(updates, t, carry, **hyperparams) -> (prepared, new_carry)``,
        run once per step before the rule (for values shared by all leaves).
      slot_init: slot name -> ``init(param, dtype) -> array``, for slots that do not start
        at zero or are not shaped like their param (factored statistics).
      masks: keyword -> :data:`Mask`; the rule receives, as that keyword, the leaf's own
        Python bool (resolved against the params, or the updates when the rule takes no params).
    """
    constants, schedules = split(hyperparams)
    carry = carry or {}
    dtypes = slot_dtypes(name, slots, state_dtype)
    slot_init = slot_init or {}
    masks = masks or {}

    def init_fn(params):
        trees.check_floating("params", params)

        def zeros(p, dtype):  # zeros_like keeps the param's sharding
            return jnp.zeros_like(p, dtype=dtype)

        def initial(slot, p):
            dtype = jnp.result_type(p) if dtypes[slot] is None else dtypes[slot]
            return slot_init[slot](p, dtype) if slot in slot_init else zeros(p, dtype)

        return start(
            constants,
            schedules,
            slots={slot: jax.tree.map(lambda p, slot=slot: initial(slot, p), params) for slot in slots},
            carry={k: jnp.asarray(v, jnp.result_type(float)) for k, v in carry.items()},
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if with_params and params is None:
            raise ValueError(f"{name} needs params: call update(updates, state, params)")
        trees.check_floating("updates", updates)
        for s in slots:
            trees.check_matching("updates", updates, f"the state's {s!r}", state.slots[s])
            if s not in slot_init:  # an initialised slot may have another shape (factored statistics)
                trees.check_shapes("updates", updates, f"the state's {s!r}", state.slots[s])
        if params is not None:
            trees.check_matching("updates", updates, "params", params)
            trees.check_shapes("updates", updates, "params", params)
        hp, state = resolve(constants, schedules, state)
        t = state.count + 1
        prepared, new_carry = prepare(updates, t, state.carry, **hp) if prepare else ({}, state.carry)
        new_carry = {k: jnp.asarray(v).astype(state.carry[k].dtype) for k, v in new_carry.items()}

        leaves, treedef = jax.tree.flatten(updates)
        slot_leaves = [treedef.flatten_up_to(state.slots[s]) for s in slots]
        param_leaves = [treedef.flatten_up_to(params)] if with_params else []
        mask_leaves = {k: _mask_leaves(k, m, params if with_params else updates, treedef) for k, m in masks.items()}
        scalars_by_dtype = {}  # hyperparameters cast once per compute dtype, not once per leaf
        out_u, out_slots = [], [[] for _ in slots]
        for i, (g, *rest) in enumerate(zip(leaves, *slot_leaves, *param_leaves)):
            g = jnp.asarray(g)
            dtype = jnp.promote_types(g.dtype, jnp.float32)
            if dtype not in scalars_by_dtype:
                values = {"t": t, **hp, **prepared}
                scalars_by_dtype[dtype] = {k: jnp.asarray(v).astype(dtype) for k, v in values.items()}
            args = [jnp.asarray(x).astype(dtype) for x in (g, *rest)]
            u, new = rule(*args, **scalars_by_dtype[dtype], **{k: m[i] for k, m in mask_leaves.items()})
            out_u.append(u.astype(g.dtype))
            for acc, old, value in zip(out_slots, rest, new):
                acc.append(value.astype(old.dtype))
        new_state = state._replace(
            count=t, slots={s: treedef.unflatten(v) for s, v in zip(slots, out_slots)}, carry=new_carry
        )
        return treedef.unflatten(out_u), new_state

    return GradientTransformation(init_fn, update_fn)


def _mask_leaves(name: str, mask: Mask, tree: PyTree, treedef) -> list[bool]:
    """One Python bool per leaf of ``tree``, from a mask that is a prefix tree of bools or a function of ``tree``."""
    resolved = mask(tree) if callable(mask) else mask
    try:
        full = jax.tree.map(lambda flag, sub: jax.tree.map(lambda _: flag, sub), resolved, tree)
        flags = treedef.flatten_up_to(full)
    except ValueError as error:
        raise ValueError(f"{name} must be a bool, or a tree of bools that is a prefix of the params: {error}") from None
    if not all(isinstance(f, bool | np.bool_) for f in flags):
        raise ValueError(f"{name} must hold Python bools (static), got {[type(f).__name__ for f in flags]}")
    return [bool(f) for f in flags]
