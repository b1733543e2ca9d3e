"""Epoch sampling as seed 001 describes it: shuffle the set, partition it into batches, iterate.

A batch size equal to the set is (full-batch) gradient descent, a smaller one
mini-batch gradient descent, and 1 stochastic gradient descent. An epoch is one
``lax.scan`` over its batches, so it runs on the device with no Python loop.
Batches have one static shape; when the batch size does not divide the set, the
last batch is padded and a mask marks its real examples, so every example is
seen exactly once per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import jax
import jax.numpy as jnp

from jgd.types import PyTree

__all__ = [
    "epoch_order",
    "num_batches",
    "resolve_batch_size",
    "scan_epoch",
]

Carry = TypeVar("Carry")


def resolve_batch_size(batch_size: int | None, num_examples: int) -> int:
    """The batch size to use: ``None`` (full batch) or anything larger than the set becomes the set's size.

    Examples:
      >>> from jgd.experiment.train.batching import resolve_batch_size
      >>> print(resolve_batch_size(None, 1000), resolve_batch_size(4096, 1000), resolve_batch_size(32, 1000))
      1000 1000 32
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return num_examples if batch_size is None else min(batch_size, num_examples)


def num_batches(num_examples: int, batch_size: int) -> int:
    """Batches per epoch: ``⌈n / batch_size⌉``.

    Examples:
      >>> from jgd.experiment.train.batching import num_batches
      >>> print(num_batches(1000, 32), num_batches(1024, 32))
      32 32
    """
    return math.ceil(num_examples / batch_size)


def epoch_order(key: jax.Array, num_examples: int, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Shuffles ``range(num_examples)`` with ``key`` and partitions it into batches.

    Returns ``(indices, mask)``, both ``[num_batches, batch_size]``: the example
    indices of each batch, and which of them are real (padding is ``False``).

    Examples:
      Five examples in batches of two: three batches, the last padded (its mask is ``False`` there); every
      example appears once:

      >>> import jax
      >>> from jgd.experiment.train.batching import epoch_order
      >>> indices, mask = epoch_order(jax.random.key(0), 5, 2)
      >>> print(indices.shape, mask)
      (3, 2) [[ True  True]
       [ True  True]
       [ True False]]
      >>> print(sorted(indices[mask].tolist()))
      [0, 1, 2, 3, 4]
    """
    batches = num_batches(num_examples, batch_size)
    padding = batches * batch_size - num_examples
    order = jax.random.permutation(key, num_examples)
    indices = jnp.concatenate([order, jnp.zeros(padding, order.dtype)]).reshape(batches, batch_size)
    mask = (jnp.arange(batches * batch_size) < num_examples).reshape(batches, batch_size)
    return indices, mask


def scan_epoch(
    step: Callable[[Carry, PyTree, jax.Array, jax.Array], tuple[Carry, PyTree]],
    carry: Carry,
    data: PyTree,
    key: jax.Array,
    batch_size: int,
) -> tuple[Carry, PyTree]:
    """Runs one epoch of ``step(carry, batch, mask, batch_key) -> (carry, out)`` over shuffled batches of ``data``.

    ``data`` is a pytree of arrays sharing a leading example axis; ``key`` fixes
    both the order and the per-batch keys (for dropout). Returns the final carry
    and the stacked per-batch outputs.

    Examples:
      A step that adds up each batch's real examples and reports how many it saw:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> from jgd.experiment.train.batching import scan_epoch
      >>> def step(total, batch, mask, key):
      ...     return total + jnp.sum(jnp.where(mask, batch, 0.0)), jnp.sum(mask)
      ...
      >>> total, counts = scan_epoch(step, jnp.float32(0.0), jnp.arange(5.0), jax.random.key(0), 2)
      >>> print(total, counts)
      10.0 [2 2 1]
    """
    num_examples = jax.tree.leaves(data)[0].shape[0]
    order_key, step_key = jax.random.split(key)
    indices, mask = epoch_order(order_key, num_examples, batch_size)
    step_keys = jax.random.split(step_key, indices.shape[0])

    def body(carry, xs):
        batch_indices, batch_mask, batch_key = xs
        batch = jax.tree.map(lambda a: a[batch_indices], data)
        return step(carry, batch, batch_mask, batch_key)

    return jax.lax.scan(body, carry, (indices, mask, step_keys))
