"""What the Kronecker-factored preconditioners share: which axes get a factor, blocks of long axes, and the schedule.

A leaf of shape ``(n_0, …, n_{k-1})`` keeps one factor per preconditioned axis ``i``: an ``n_i × n_i`` matrix
acting on that axis (``G ×_i M``, the mode-``i`` product). :func:`plan_axes` decides, from the shape alone (so the
state has fixed shapes), what each axis gets:

- a full factor (``n_i ≤ max_precond_dim``, or ``n_i ≤ block_size`` when blocks are asked for);
- blocks: with ``block_size = b`` and ``n_i > b`` the factor is block diagonal, ``⌈n_i / b⌉`` blocks of
  ``b × b`` held as one ``(count, b, b)`` array (the axis is padded with zeros to ``count · b``; the padded
  entries of a gradient are zero, so its statistics there are zero too);
- none (identity on that axis) when ``n_i > max_precond_dim`` and no blocks are asked for, as the references'
  ``max_precondition_dim`` does.

A 0-D leaf, and a 1-D leaf unless ``precondition_1d``, gets no factor: the methods fall back to their diagonal rule.

Every factor is an array of shape ``(count, b, b)`` (``count = 1``, ``b = n_i`` for a full one), so a batch of
``eigh``/``qr`` covers every block at once. :func:`refresh` runs the expensive part (an inverse root, an
eigendecomposition, a QR) under ``lax.cond``, so the steps between two refreshes cost a diagonal method's step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Axis:
    """One preconditioned axis: its length and the side of its blocks (``block == size`` for a full factor)."""

    size: int
    block: int

    @property
    def count(self) -> int:
        """How many blocks."""
        return math.ceil(self.size / self.block)

    @property
    def padded(self) -> int:
        """The axis length padded to whole blocks."""
        return self.count * self.block

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of the axis' factor: ``(count, block, block)``."""
        return (self.count, self.block, self.block)


def plan_axes(
    shape: tuple[int, ...], *, block_size: int | None, max_precond_dim: int, precondition_1d: bool
) -> tuple[Axis | None, ...]:
    """For each axis of a leaf of ``shape``: its :class:`Axis`, or ``None`` where it is left unpreconditioned."""
    if len(shape) == 0 or (len(shape) == 1 and not precondition_1d):
        return (None,) * len(shape)
    plans: list[Axis | None] = []
    for n in shape:
        if block_size is not None and n > block_size:
            plans.append(Axis(n, block_size))
        elif n > max_precond_dim:
            plans.append(None)
        else:
            plans.append(Axis(n, n))
    return tuple(plans)


def check_positive_int(name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``value`` is an int ≥ 1 (or ``None`` where allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, got {value!r}")


def to_blocks(x: jax.Array, axis: int, plan: Axis) -> jax.Array:
    """``x`` with ``axis`` first, padded with zeros to whole blocks and split: ``(count, block, rest)``."""
    front = jnp.moveaxis(x, axis, 0).reshape(plan.size, -1)
    if plan.padded != plan.size:
        front = jnp.pad(front, ((0, plan.padded - plan.size), (0, 0)))
    return front.reshape(plan.count, plan.block, -1)


def from_blocks(blocks: jax.Array, axis: int, plan: Axis, shape: tuple[int, ...]) -> jax.Array:
    """The inverse of :func:`to_blocks` for a leaf of ``shape``."""
    rest = shape[:axis] + shape[axis + 1 :]
    front = blocks.reshape(plan.padded, *rest)[: plan.size]
    return jnp.moveaxis(front, 0, axis)


def gram(x: jax.Array, axis: int, plan: Axis) -> jax.Array:
    """The diagonal blocks of ``unfold_axis(x) unfold_axis(x)ᵀ``: ``(count, block, block)``."""
    blocks = to_blocks(x, axis, plan)
    return jnp.einsum("cir,cjr->cij", blocks, blocks)


def mode_product(x: jax.Array, axis: int, plan: Axis, factor: jax.Array, *, transpose: bool = False) -> jax.Array:
    """``x ×_axis M``: the block-diagonal ``M`` (``factor``, ``(count, block, block)``; ``Mᵀ`` with ``transpose``)
    applied to every fibre of ``x`` along ``axis``."""
    blocks = to_blocks(x, axis, plan)
    product = jnp.einsum("cji,cjr->cir" if transpose else "cij,cjr->cir", factor, blocks)
    return from_blocks(product, axis, plan, x.shape)


def padding(plan: Axis, dtype: Any) -> jax.Array:
    """``(count, block)``: 1 at the padded entries of the axis, 0 at its own."""
    return jnp.asarray(np.arange(plan.padded).reshape(plan.count, plan.block) >= plan.size, dtype)


def identities(plan: Axis, dtype: Any) -> jax.Array:
    """``count`` identity blocks: ``(count, block, block)``."""
    return jnp.broadcast_to(jnp.eye(plan.block, dtype=dtype), plan.shape)


def due(t: jax.Array, every: int, offset: int = 0) -> jax.Array:
    """Whether step ``t`` (1-based) is one of ``offset + every``, ``offset + 2·every``, …: a bool array."""
    return jnp.logical_and(t > offset, (t - offset) % every == 0)


def refresh(when: jax.Array, compute: Callable[..., Any], keep: Any, *operands: Any) -> Any:
    """``compute(*operands)`` where ``when`` is true, else ``keep``: under ``lax.cond``, so a step that keeps does not
    pay for ``compute``. ``compute`` must return a tree shaped like ``keep``."""
    return jax.lax.cond(when, lambda: compute(*operands), lambda: keep)
