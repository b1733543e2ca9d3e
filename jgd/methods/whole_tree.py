"""The state and the leaves of a method whose step needs values of the whole tree at once.

DoG's distance from the start, Prodigy's ``⟨g, θ_0 - θ⟩`` and ``‖s‖₁``: such a step reads the params, the
slots and the gradients of every leaf before any leaf's update is known, which a per-array rule
(:func:`jgd.leafwise.leafwise`) cannot. :class:`WholeTree` keeps what those methods share: the
hyperparameters as data (:class:`jgd.hyperparams.Hyperparameters`), the slots in their own dtypes
(``state_dtype``), whole-tree scalars in the state's ``carry``, and the leaves read in at least float32 and
written back in their own dtypes, so a state is a fixed ``lax.scan`` carry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jgd import masks as masks_lib
from jgd import trees
from jgd.hyperparams import Hyperparameters
from jgd.leafwise import _seed as stochastic_seed
from jgd.leafwise import slot_dtypes
from jgd.lowbit import formats as lowbit
from jgd.ranges import Range
from jgd.state import TransformState
from jgd.types import Mask, StateDtype


class Leaves(NamedTuple):
    """One step's leaves, each in its compute dtype (the leaf's, at least float32), in ``jax.tree.leaves`` order.

    grads: the updates' leaves.
    params: the params' leaves.
    slots: slot name -> its leaves.
    flags: mask keyword -> one Python bool per leaf.
    """

    grads: list[jax.Array]
    params: list[jax.Array]
    slots: dict[str, list[jax.Array]]
    flags: dict[str, list[bool]]


def tree_sum(values: Sequence[jax.Array], dtype) -> jax.Array:
    """``Σ`` of one number per leaf, in ``dtype`` (the state's scalars')."""
    return sum((jnp.asarray(v).astype(dtype) for v in values), jnp.zeros((), dtype))


class WholeTree:
    """A whole-tree method's state and leaves: :meth:`init`, then per step :meth:`begin` and :meth:`finish`.

    Args:
      name: the method's public name, recorded in its states and used in messages.
      hyperparams: name -> a float, an array or a schedule.
      slots: slot name -> ``init(param, dtype) -> array`` (``None``: zeros like the param).
      carry: the names of the whole-tree scalars the state carries, each 0 in a new state; or name -> shape,
        for a few numbers that are not one (Mechanic's one per β).
      state_dtype: one slot form for every slot, or slot name -> form (``jgd.types.StateDtype``: a floating dtype,
        :func:`jgd.quantized`, :func:`jgd.stochastic`); None keeps each param's dtype.
      nonnegative_slots: the slots that are never negative (a quantized one takes the unsigned code).
      masks: mask keyword -> :data:`jgd.types.Mask`, resolved against the params.
      complex_leaves: whether the method takes complex leaves.
      narrowed: name -> :class:`jgd.ranges.Range`, for names whose range the method narrows.
    """

    def __init__(
        self,
        name: str,
        hyperparams: Mapping[str, Any],
        slots: Mapping[str, Callable | None],
        carry: Sequence[str] | Mapping[str, tuple[int, ...]],
        *,
        state_dtype: StateDtype = None,
        nonnegative_slots: Sequence[str] = (),
        masks: Mapping[str, Mask] | None = None,
        complex_leaves: bool = False,
        narrowed: Mapping[str, Range] | None = None,
    ):
        self.name, self.complex_leaves = name, complex_leaves
        self.carry = dict(carry) if isinstance(carry, Mapping) else dict.fromkeys(carry, ())
        self.component = Hyperparameters(name, hyperparams, narrowed)
        self.slot_init = dict(slots)
        self.dtypes = slot_dtypes(name, tuple(slots), state_dtype)
        self.nonnegative = frozenset(nonnegative_slots)
        self.masks = dict(masks or {})
        for keyword, mask in self.masks.items():
            masks_lib.check_mask(keyword, mask)

    def init(self, params) -> TransformState:
        """A new state: each slot from its ``init`` (or zeros) in its dtype, each carried scalar 0."""
        trees.check_floating("params", params, method=self.name, allow_complex=self.complex_leaves)

        def slot(name, path, p):
            chosen, made = self.dtypes[name], self.slot_init[name]
            dtype = lowbit.storage_dtype(chosen) or jnp.result_type(p)
            value = made(p, dtype) if made else jnp.zeros_like(p, dtype=dtype)
            where = f"{self.name}, slot {name!r} of params{jax.tree_util.keystr(path)}"
            return lowbit.initial(where, value, chosen, signed=name not in self.nonnegative)

        slots = {}
        for name, chosen in self.dtypes.items():
            tree = jax.tree_util.tree_map_with_path(lambda path, p, name=name: slot(name, path, p), params)
            slots[name] = lowbit.hoist(tree) if lowbit.is_quantized(chosen) else tree
        scalar = jnp.result_type(float)
        return self.component.init(slots=slots, carry={k: jnp.zeros(shape, scalar) for k, shape in self.carry.items()})

    def begin(self, updates, state, params) -> tuple[dict[str, jax.Array], TransformState, jax.Array, Leaves]:
        """This step's hyperparameters (in the scalars' dtype), the state holding them, the step ``t`` (from 1)
        and the leaves; ``ValueError`` where the params are missing or the trees do not fit together."""
        if params is None:
            raise ValueError(f"{self.name} needs params: call update(updates, state, params)")
        hp, state = self.component.resolve(state)
        trees.check_floating("updates", updates, method=self.name, allow_complex=self.complex_leaves)
        trees.check_matching("updates", updates, "params", params)
        trees.check_shapes("updates", updates, "params", params)
        for s in self.slot_init:
            slot = lowbit.logical(state.slots[s])  # a quantized leaf stands for one array
            trees.check_matching("updates", updates, f"the state's {s!r}", slot)
            trees.check_shapes("updates", updates, f"the state's {s!r}", slot)
        scalar = self.scalar_dtype(state)
        hp = {k: jnp.asarray(v).astype(scalar) for k, v in hp.items()}
        grads, treedef = jax.tree.flatten(updates)
        compute = [jnp.promote_types(jnp.result_type(g), jnp.float32) for g in grads]

        def read(tree):
            return [lowbit.read(x, d) for x, d in zip(treedef.flatten_up_to(tree), compute)]

        flags = {k: masks_lib.leaf_flags(k, m, params) for k, m in self.masks.items()}
        slots = {s: read(state.slots[s]) for s in self.slot_init}
        return hp, state, state.count + 1, Leaves(read(updates), read(params), slots, flags)

    def scalar_dtype(self, state: TransformState):
        """The dtype of the whole-tree scalars: the carry's (float32, or float64 with x64 at ``init``)."""
        return next(iter(state.carry.values())).dtype if state.carry else jnp.result_type(float)

    def finish(self, updates, state, out: Sequence[jax.Array], slots: Mapping[str, Sequence[jax.Array]], carry):
        """The updates in their leaves' dtypes and the state one step later, each slot and scalar in its dtype."""
        treedef = jax.tree.structure(updates)
        dtypes = [jnp.result_type(g) for g in jax.tree.leaves(updates)]
        new_updates = treedef.unflatten([u.astype(d) for u, d in zip(out, dtypes)])
        new_slots = dict(state.slots)  # a slot not given (the starting point) is kept as it is
        order = list(self.slot_init)
        for s, leaves in slots.items():
            old, chosen, j = treedef.flatten_up_to(state.slots[s]), self.dtypes[s], order.index(s)
            written = [
                lowbit.write(x, o, chosen, partial(stochastic_seed, state.count + 1, i, j))
                for i, (x, o) in enumerate(zip(leaves, old))
            ]
            new_slots[s] = treedef.unflatten(written)
        new_carry = {k: jnp.asarray(carry[k]).astype(state.carry[k].dtype) for k in self.carry}
        return new_updates, self.component.advance(state, slots=new_slots, carry=new_carry)


def copy_of_param(p, dtype) -> jax.Array:
    """A slot that starts as the param itself (the starting point ``θ_0``), in ``dtype``."""
    return jnp.asarray(p).astype(dtype)
