"""Lifts a method written on one array to a gradient transformation on pytrees.

A method is a ``rule(g, *slots, [p], *, t, <names>) -> (update, new_slots)`` on a
single array, written next to its equation. The rule contract: the positional
arguments are the gradient, the slots in order and (``with_params``) the param;
the keyword-only ones are the names the rule uses, each the step ``t``, a
hyperparameter, a value ``prepare`` computes once per step, a mask keyword, or an
input tree the caller of ``update`` passes (``inputs``);
a hyperparameter the method may be built without is declared ``name=None``.
:func:`leafwise` reads the signature once and passes only those names; a rule
that takes ``**kwargs`` or a name that is none of these is refused when the
method is built. :func:`leafwise` turns the rule into
a :class:`~jgd.base.GradientTransformation` that maps it over the leaves, keeps
the slots and hyperparameters in a :class:`~jgd.state.TransformState` (their life
cycle is :class:`~jgd.hyperparams.Hyperparameters`'), checks trees, and handles dtypes: each leaf is computed in
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

import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, cast

import jax
import jax.numpy as jnp

from jgd import masks as masks_lib
from jgd import trees
from jgd.base import GradientTransformation
from jgd.hyperparams import Hyperparameters
from jgd.lowbit import formats as lowbit
from jgd.numerics import real_dtype
from jgd.ranges import RANGES, Range
from jgd.types import Mask, StateDtype

Prepare = Callable[..., tuple[dict[str, jax.Array], dict[str, jax.Array]]]


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def keyword_names(name: str, function: Callable, positional: int, allowed: Sequence[str], role: str) -> tuple[str, ...]:
    """The keyword-only names ``function`` declares, checked against the rule contract (module docstring).

    Args:
      name: the method's public name, for the messages.
      function: a rule or a ``prepare`` function.
      positional: how many positional arguments it must take.
      allowed: the names it may declare.
      role: what ``function`` is (``"rule"``, ``"prepare"``), for the messages.
    """
    parameters = list(inspect.signature(function).parameters.values())
    kinds = [p.kind for p in parameters]
    if inspect.Parameter.VAR_KEYWORD in kinds:
        raise ValueError(f"{name}: the {role} must name each keyword argument it uses, not take **kwargs")
    taken = [p.name for p in parameters if p.kind in _POSITIONAL]
    # ``*slots`` stands for the slots a method's options add (RMSprop's mean, velocity).
    if len(taken) > positional or (inspect.Parameter.VAR_POSITIONAL not in kinds and len(taken) != positional):
        raise ValueError(f"{name}: the {role} takes {len(taken)} positional arguments {taken}, expected {positional}")
    keywords = [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
    declared = tuple(p.name for p in keywords)
    # A hyperparameter a method may be built without (Adafactor's momentum) is declared ``name=None``.
    optional = {p.name for p in keywords if p.default is None and p.name in RANGES}
    unknown = sorted(set(declared) - set(allowed) - optional)
    if unknown:
        raise ValueError(
            f"{name}: the {role} takes {unknown}, which are neither hyperparameters {sorted(allowed)} "
            "nor prepared values nor masks"
        )
    return declared


def slot_dtypes(name: str, slots: Sequence[str], state_dtype: StateDtype) -> dict[str, Any]:
    """Each slot's dtype from ``state_dtype`` (one dtype, or slot name -> dtype); ``None`` means the param's.

    Args:
      name: the method's public name, for the messages.
      slots: the method's slot names.
      state_dtype: a floating dtype, a low-bit form (:func:`jgd.quantized`, :func:`jgd.stochastic`), None, or a
        mapping from slot name to one of these.
    """
    chosen = dict(state_dtype) if isinstance(state_dtype, Mapping) else {s: state_dtype for s in slots}
    unknown = sorted(set(chosen) - set(slots))
    if unknown:
        raise ValueError(f"{name}: state_dtype names no slot {unknown}; its slots are {list(slots)}")
    for slot, dtype in chosen.items():
        try:
            inexact = dtype is None or lowbit.is_spec(dtype) or jnp.issubdtype(jnp.dtype(cast(Any, dtype)), jnp.inexact)
        except TypeError:
            inexact = False
        if not inexact:
            raise ValueError(
                f"{name}: state_dtype for slot {slot!r} must be a floating (or, for complex params, complex) dtype, "
                f"got {dtype!r}"
            )
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
    prepared: Sequence[str] = (),
    slot_init: dict[str, Callable] | None = None,
    masks: dict[str, Mask] | None = None,
    real_slots: Sequence[str] = (),
    nonnegative_slots: Sequence[str] = (),
    complex_leaves: bool = False,
    narrowed: Mapping[str, Range] | None = None,
    inputs: Sequence[str] = (),
) -> GradientTransformation:
    """Builds the transform ``name`` from its per-array ``rule``.

    Args:
      name: the public name, used in error messages and recorded in the states it makes.
      rule: ``rule(g, *slots, [p], *, t, <names>) -> (update, tuple(new_slots))``, where ``t`` is the
        1-based step number and ``<names>`` any of the hyperparameters, ``prepared`` and ``masks``.
      hyperparams: name -> float, array or schedule.
      slots: names of the per-parameter accumulators, initialised to zero.
      state_dtype: one dtype for every slot, or slot name -> dtype; a slot not named keeps each param's dtype.
      with_params: whether ``rule`` takes the param as its last positional argument.
      carry: per-step scalars and their initial values, updated by ``prepare``.
      prepare: ``prepare(updates, t, carry, *, <hyperparameters>) -> (prepared, new_carry)``,
        run once per step before the rule (for values shared by all leaves). It may also declare the keywords
        ``params`` (the params; needs ``with_params``) and ``slots`` (slot name -> tree of the slots before the
        step, each leaf read in at least float32), for sums over the whole tree of the state (MoMo's step size).
      prepared: the names of the values ``prepare`` returns.
      slot_init: slot name -> ``init(param, dtype) -> array``, for slots that do not start
        at zero or are not shaped like their param (factored statistics).
      masks: keyword -> :data:`Mask`; the rule receives, as that keyword, the leaf's own
        Python bool (resolved against the params, or the updates when the rule takes no params).
      real_slots: slots that stay real for a complex param (|g|², norms); in the param's real dtype.
      nonnegative_slots: slots that are never negative (second moments, running maxima of ``|g|``); the
        others are signed. A quantized slot takes the unsigned code if nonnegative, the signed one if not
        (:func:`jgd.quantized`); a negative value in a slot declared here reads back as NaN.
      complex_leaves: whether ``rule`` is defined on complex arrays; otherwise complex leaves are refused.
      narrowed: hyperparameter name -> :class:`jgd.ranges.Range`, for names whose range this method narrows.
      inputs: names of trees shaped like the updates that the caller of ``update`` passes as keyword arguments
        (Sophia's Hessian estimate); the rule takes each leaf's as that keyword, in the compute dtype.
    """
    component = Hyperparameters(name, hyperparams, narrowed)
    masks = masks or {}
    if (prepare is None) != (not prepared):
        raise ValueError(f"{name}: prepare and the names it prepares come together")
    allowed = ["t", *component.names, *prepared, *masks, *inputs]
    uses = keyword_names(name, rule, 1 + len(slots) + with_params, allowed, "rule")
    for keyword, mask in masks.items():
        masks_lib.check_mask(keyword, mask)
    unused = sorted(set(masks) - set(uses))
    if unused:
        raise ValueError(f"{name}: the rule takes no mask keyword {unused}")
    state_keywords = ["params", "slots"] if with_params else ["slots"]
    prepare_uses = (
        keyword_names(name, prepare, 3, [*sorted(component.names), *state_keywords], "prepare") if prepare else ()
    )
    carry = carry or {}
    dtypes = slot_dtypes(name, slots, state_dtype)
    unknown = sorted(set(nonnegative_slots) - set(slots))
    if unknown:
        raise ValueError(f"{name}: nonnegative_slots names no slot {unknown}; its slots are {list(slots)}")
    lift = _Lifted(name, rule, uses, tuple(slots), with_params, frozenset(real_slots), masks, dtypes)
    slot_init = slot_init or {}

    def init_fn(params):
        trees.check_floating("params", params, method=name, allow_complex=complex_leaves)
        return component.init(
            slots=_new_slots(name, params, dtypes, slot_init, lift.real_slots, frozenset(nonnegative_slots)),
            carry={k: jnp.asarray(v, jnp.result_type(float)) for k, v in carry.items()},
        )

    # A state of constants alone carries nothing from one step to the next: None may stand for it, as optax's
    # stateless transforms take update(updates, None).
    stateless = not slots and not carry and not component.schedules

    def update_fn(updates, state, params=None, **extra_args):
        given = _given_inputs(name, inputs, updates, extra_args)
        if state is None and stateless:
            state = component.init()
        hp, state = component.resolve(state)
        _check_trees(name, updates, state, params, slots, slot_init, with_params, complex_leaves)
        t = state.count + 1
        new_carry, values = state.carry, {"t": t, **hp}
        if prepare:
            known = {**hp, "params": params}
            if "slots" in prepare_uses:  # read (de-quantized) only for a prepare that sums over them
                known["slots"] = _read_slots(state.slots)
            made, new_carry = prepare(updates, t, state.carry, **{k: known[k] for k in prepare_uses})
            if set(made) != set(prepared):
                raise ValueError(f"{name}: prepare returned {sorted(made)}, declared {sorted(prepared)}")
            values.update(made)
        new_carry = {k: jnp.asarray(v).astype(state.carry[k].dtype) for k, v in new_carry.items()}
        out, new_slots = lift(updates, state.slots, params, values, given)
        return out, component.advance(state, slots=new_slots, carry=new_carry)

    return GradientTransformation(init_fn, update_fn)


def _given_inputs(name: str, inputs: Sequence[str], updates, extra_args: Mapping[str, Any]) -> dict:
    """The per-leaf trees ``update`` was given for ``inputs``; a missing one, or one not shaped like the updates,
    is a ``ValueError`` naming it."""
    given = {}
    for key in inputs:
        if extra_args.get(key) is None:
            raise ValueError(f"{name} needs {key}: call update(updates, state, params, {key}=tree)")
        trees.check_matching("updates", updates, key, extra_args[key])
        trees.check_shapes("updates", updates, key, extra_args[key])
        given[key] = extra_args[key]
    return given


def _read_slots(slot_trees: Mapping[str, Any]) -> dict:
    """Each slot's tree with every leaf read in at least float32 (a low-bit one de-quantized), for ``prepare``."""

    def read(x):
        return lowbit.read(x, jnp.promote_types(x.dtype, jnp.float32))

    return {
        s: jax.tree.map(read, tree, is_leaf=lambda x: isinstance(x, lowbit.QuantizedArray))
        for s, tree in slot_trees.items()
    }


def _new_slots(name, params, dtypes, slot_init, real_slots, nonnegative) -> dict:
    """Each slot's first tree: zeros (or ``slot_init``'s values) in the slot's dtype, in its low-bit form if any."""

    def initial(slot, path, p):  # zeros_like keeps the param's sharding
        chosen = dtypes[slot]
        dtype = _slot_dtype(name, path, jnp.result_type(p), lowbit.storage_dtype(chosen), slot in real_slots)
        value = slot_init[slot](p, dtype) if slot in slot_init else jnp.zeros_like(p, dtype=dtype)
        where = f"{name}, slot {slot!r} of params{jax.tree_util.keystr(path)}"
        return lowbit.initial(where, value, chosen, signed=slot not in nonnegative)

    made = {slot: jax.tree_util.tree_map_with_path(partial(initial, slot), params) for slot in dtypes}
    return {slot: lowbit.hoist(tree) if lowbit.is_quantized(dtypes[slot]) else tree for slot, tree in made.items()}


def _check_trees(name, updates, state, params, slots, slot_init, with_params, complex_leaves) -> None:
    """Raises ``ValueError`` naming the first path where the updates, slots and params do not fit together."""
    if with_params and params is None:
        raise ValueError(f"{name} needs params: call update(updates, state, params)")
    trees.check_floating("updates", updates, method=name, allow_complex=complex_leaves)
    for s in slots:
        slot = lowbit.logical(state.slots[s])  # a quantized leaf stands for one array
        trees.check_matching("updates", updates, f"the state's {s!r}", slot)
        if s not in slot_init:  # an initialised slot may have another shape (factored statistics)
            trees.check_shapes("updates", updates, f"the state's {s!r}", slot)
    if params is not None:
        trees.check_matching("updates", updates, "params", params)
        trees.check_shapes("updates", updates, "params", params)


class _Lifted:
    """A rule mapped over the leaves: each leaf computed in at least float32, results in their own forms.

    A slot is read into the compute dtype and written back in its own dtype, or, for the low-bit forms
    (:mod:`jgd.lowbit`), de-quantized and re-quantized. Stochastic rounding takes its bits from the step
    count, the leaf's index and the slot's (:func:`_seed`): the same run gives the same bits.
    """

    def __init__(self, name, rule, uses, slots, with_params, real_slots, masks, dtypes):
        self.name, self.rule, self.uses, self.slots = name, rule, uses, slots
        self.with_params, self.real_slots, self.masks = with_params, real_slots, masks
        self.dtypes = [dtypes[s] for s in slots]

    def __call__(self, updates, slot_trees, params, values, given):
        leaves, treedef = jax.tree.flatten(updates)
        given_leaves = {k: treedef.flatten_up_to(tree) for k, tree in given.items()}
        slot_leaves = [treedef.flatten_up_to(slot_trees[s]) for s in self.slots]
        param_leaves = [treedef.flatten_up_to(params)] if self.with_params else []
        mask_tree = params if self.with_params else updates
        flags = {k: masks_lib.leaf_flags(k, m, mask_tree) for k, m in self.masks.items()}
        scalars_by_dtype = {}  # hyperparameters cast once per compute dtype, not once per leaf
        out_u, out_slots = [], [[] for _ in self.slots]
        for i, (g, *rest) in enumerate(zip(leaves, *slot_leaves, *param_leaves)):
            g = jnp.asarray(g)
            dtype = jnp.promote_types(g.dtype, jnp.float32)
            real = real_dtype(dtype)  # hyperparameters, t and the real slots
            if dtype not in scalars_by_dtype:
                scalars_by_dtype[dtype] = {k: jnp.asarray(values[k]).astype(real) for k in self.uses if k in values}
            slot_types = [real if s in self.real_slots else dtype for s in self.slots]
            args = [lowbit.read(x, d) for x, d in zip((g, *rest), [dtype, *slot_types, dtype])]
            inputs = {k: jnp.asarray(v[i]).astype(dtype) for k, v in given_leaves.items()}
            u, new = self.rule(*args, **scalars_by_dtype[dtype], **{k: f[i] for k, f in flags.items()}, **inputs)
            out_u.append(u.astype(g.dtype))
            for j, (acc, old, value, chosen) in enumerate(zip(out_slots, rest, new, self.dtypes)):
                acc.append(lowbit.write(value, old, chosen, partial(_seed, values["t"], i, j)))
        return treedef.unflatten(out_u), {s: treedef.unflatten(v) for s, v in zip(self.slots, out_slots)}


def _seed(t: jax.Array, leaf: int, slot: int) -> jax.Array:
    """The three uint32 words of the stochastic rounding of one slot of one leaf at step ``t``
    (:func:`jgd.lowbit.array.random_bits`): two from ``fold_in(fold_in(key(0), leaf), slot)``, and ``t φ 2^32``."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), leaf), slot)
    step = jnp.asarray(t).astype(jnp.uint32) * jnp.uint32(0x9E3779B9)
    return jnp.concatenate([jax.random.bits(key, (2,), jnp.uint32), step[None]])


def _slot_dtype(name: str, path: tuple, param_dtype, chosen, real: bool):
    """A slot's dtype for one param: ``chosen`` (or the param's), real for a real slot, complex for the
    others when the param is complex (``chosen``'s precision). A complex ``chosen`` for a real param is
    a ``ValueError`` naming the leaf."""
    if chosen is None:
        return real_dtype(param_dtype) if real else param_dtype
    is_complex = jnp.issubdtype(param_dtype, jnp.complexfloating)
    if jnp.issubdtype(jnp.dtype(chosen), jnp.complexfloating) and not is_complex:
        raise ValueError(
            f"{name}: state_dtype {jnp.dtype(chosen).name} is complex, but params{jax.tree_util.keystr(path)} "
            f"is {jnp.dtype(param_dtype).name}; a complex slot needs a complex param"
        )
    if real:
        return real_dtype(chosen)
    return jnp.promote_types(chosen, jnp.complex64) if is_complex else chosen
