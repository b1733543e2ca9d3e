"""Losses of a classifier's outputs against integer labels, averaged over the examples a mask keeps."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "accuracy",
    "masked_mean",
    "mean_absolute_error",
    "mean_squared_error",
    "softmax_cross_entropy",
]

Loss = Callable[[jax.Array, jax.Array], jax.Array]


def _targets(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    # MSE and MAE regress the one-hot code of the label (seed 004), so accuracy stays the argmax.
    return jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype)


def softmax_cross_entropy(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example ``-log softmax(outputs)[label]``."""
    # optax loads when a loss is first traced, not with the module: the config schema lists LOSSES.
    import optax

    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels)


def mean_squared_error(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example ``mean_k (outputs_k - onehot(label)_k)²``."""
    return jnp.mean((outputs - _targets(outputs, labels)) ** 2, axis=-1)


def mean_absolute_error(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example ``mean_k |outputs_k - onehot(label)_k|``."""
    return jnp.mean(jnp.abs(outputs - _targets(outputs, labels)), axis=-1)


LOSSES: dict[str, Loss] = {
    "cross_entropy": softmax_cross_entropy,
    "mse": mean_squared_error,
    "mae": mean_absolute_error,
}


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``values`` over the entries where ``mask`` is true (all of them without a mask)."""
    if mask is None:
        return jnp.mean(values)
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1)


def accuracy(outputs: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Fraction of (kept) examples whose largest output is at the label."""
    return masked_mean((jnp.argmax(outputs, axis=-1) == labels).astype(jnp.float32), mask)
