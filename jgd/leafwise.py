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

Complex leaves (complex64, complex128) are taken by the rules that declare it (``complex_leaves``):
the update and the slots stay complex, except the ``real_slots`` (squares, norms), which hold the
leaf's real dtype; hyperparameters and ``t`` are real. For a complex slot, a floating ``state_dtype``
means the complex dtype of that precision (float32 or narrower -> complex64, float64 -> complex128).
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
from jgd.numerics import real_dtype
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
    real_slots: Sequence[str] = (),
    complex_leaves: bool = False,
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
      real_slots: slots that stay real for a complex param (|g|², norms); in the param's real dtype.
      complex_leaves: whether ``rule`` is defined on complex arrays; otherwise complex leaves are refused.
    """
    constants, schedules = split(hyperparams)
    carry = carry or {}
    dtypes = slot_dtypes(name, slots, state_dtype)
    slot_init = slot_init or {}
    masks = masks or {}
    real_slots = frozenset(real_slots)

    def init_fn(params):
        trees.check_floating("params", params, method=name, allow_complex=complex_leaves)

        def zeros(p, dtype):  # zeros_like keeps the param's sharding
            return jnp.zeros_like(p, dtype=dtype)

        def initial(slot, p):
            dtype = _slot_dtype(jnp.result_type(p), dtypes[slot], slot in real_slots)
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
        trees.check_floating("updates", updates, method=name, allow_complex=complex_leaves)
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
            real = real_dtype(dtype)  # hyperparameters, t and the real slots
            if dtype not in scalars_by_dtype:
                values = {"t": t, **hp, **prepared}
                scalars_by_dtype[dtype] = {k: jnp.asarray(v).astype(real) for k, v in values.items()}
            slot_types = [real if s in real_slots else dtype for s in slots]
            args = [jnp.asarray(x).astype(d) for x, d in zip((g, *rest), [dtype, *slot_types, dtype])]
            u, new = rule(*args, **scalars_by_dtype[dtype], **{k: m[i] for k, m in mask_leaves.items()})
            out_u.append(u.astype(g.dtype))
            for acc, old, value in zip(out_slots, rest, new):
                acc.append(value.astype(old.dtype))
        new_state = state._replace(
            count=t, slots={s: treedef.unflatten(v) for s, v in zip(slots, out_slots)}, carry=new_carry
        )
        return treedef.unflatten(out_u), new_state

    return GradientTransformation(init_fn, update_fn)


def _slot_dtype(param_dtype, chosen, real: bool):
    """A slot's dtype for one param: ``chosen`` (or the param's), real for a real slot, complex for the
    others when the param is complex (``chosen``'s precision)."""
    if chosen is None:
        return real_dtype(param_dtype) if real else param_dtype
    if real or not jnp.issubdtype(param_dtype, jnp.complexfloating):
        return chosen
    return jnp.promote_types(chosen, jnp.complex64)


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
