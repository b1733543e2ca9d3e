"""Host offload: chosen slots of a state wait in host memory between steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from jgd.base import GradientTransformation, with_extra_args
from jgd.compat import memory_space
from jgd.state import TransformState, transform_states
from jgd.types import PyTree


def _move(state: PyTree, slots: frozenset[str] | None, space: Any) -> PyTree:
    """``state`` with the chosen slots (all if ``slots`` is None) of every TransformState put in ``space``."""

    def move(node):
        if not isinstance(node, TransformState):
            return node
        chosen = {k: jax.device_put(v, space) if slots is None or k in slots else v for k, v in node.slots.items()}
        return node._replace(slots=chosen)

    return jax.tree.map(move, state, is_leaf=lambda x: isinstance(x, TransformState))


def offload(tx: GradientTransformation, slots: Sequence[str] | None = None) -> GradientTransformation:
    """``tx`` with the slots named in ``slots`` (default: every slot) kept in host memory between steps.

    ``init`` returns those slots in pinned host memory (``memory_kind="pinned_host"``);
    ``update`` brings them to the device, runs ``tx.update`` there and sends the new
    slots back to the host, all inside the caller's jitted step, where XLA can overlap
    the copies with the rest of the step. The arithmetic is ``tx``'s: the results equal
    keeping the slots on the device bit for bit. Device memory then holds the slots
    only while a step runs, which lets a model whose Adam moments do not fit beside
    its params and activations train, at the cost of two host-device copies of them
    per step.

    Wrap the outermost transform (``offload(apply_if_finite(chain(...)))``): the
    transforms inside see device arrays. The state's structure is ``tx``'s, so
    :func:`jgd.hyperparams`, :func:`jgd.set_hyperparams` and :func:`jgd.state_sharding`
    (which gives the offloaded slots ``pinned_host`` shardings) work unchanged. Slots
    are the per-parameter accumulators of jgd's transforms (``mu``, ``nu``,
    ``velocity``, ...); the memory of :func:`jgd.bfgs` / :func:`jgd.lbfgs` and the state
    of optax transforms inside a chain stay on the device. It needs JAX 0.7.1 or newer (``jax.memory``);
    on an older JAX, ``init`` raises a ``RuntimeError`` that says so.

    Args:
      tx: the transform whose slots to offload.
      slots: slot names, such as ``("mu", "nu")`` for :func:`jgd.adam`; ``None`` for every slot.

    Examples:
      Adam's moments kept in pinned host memory between steps, brought to the device inside the step; the
      numbers are those of ``adam`` itself:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.offload(jgd.adam(0.1), slots=("mu", "nu"))
      >>> state = tx.init(params)
      >>> print(state.slots["mu"].sharding.memory_kind)
      pinned_host
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates, state.slots["nu"].sharding.memory_kind)
      [-0.1  0.1] pinned_host
    """
    if isinstance(slots, str):
        raise ValueError(f"slots must be a sequence of slot names, such as ({slots!r},), got the string {slots!r}")
    chosen = None if slots is None else frozenset(slots)
    if not isinstance(tx, GradientTransformation):
        raise TypeError(
            f"offload moves the slots of jgd transforms; tx is a {type(tx).__module__}.{type(tx).__name__}, "
            "whose state offload cannot read (build it from jgd's transforms, e.g. jgd.adam for optax.adam)"
        )
    tx = with_extra_args(tx)

    def init_fn(params):
        state = tx.init(params)
        names = {name for s in transform_states(state) for name in s.slots}
        if not names:
            raise ValueError("offload: tx's state holds no jgd slots to offload (its transforms are not jgd's)")
        if chosen is not None:
            unknown = sorted(chosen - names)
            if unknown:
                raise ValueError(f"offload: no slot named {unknown} in the state; its slots are {sorted(names)}")
        return _move(state, chosen, memory_space("host"))

    def update_fn(updates, state, params=None, **extra_args):
        updates, state = tx.update(updates, _move(state, chosen, memory_space("device")), params, **extra_args)
        return updates, _move(state, chosen, memory_space("host"))

    return GradientTransformation(init_fn, update_fn)
