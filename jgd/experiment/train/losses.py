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
    """Per-example ``-log softmax(outputs)[label]``.

    Examples:
      Per example; equal outputs for two classes cost ``log 2``:

      >>> import jax.numpy as jnp
      >>> from jgd.experiment.train.losses import softmax_cross_entropy
      >>> print(softmax_cross_entropy(jnp.array([[0.0, 0.0], [10.0, 0.0]]), jnp.array([0, 0])).round(4))
      [0.6931 0.    ]
    """
    # optax loads when a loss is first traced, not with the module: the config schema lists LOSSES.
    import optax

    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels)


def mean_squared_error(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example ``mean_k (outputs_k - onehot(label)_k)²``.

    Examples:
      Against the one-hot label:

      >>> import jax.numpy as jnp
      >>> from jgd.experiment.train.losses import mean_squared_error
      >>> print(mean_squared_error(jnp.array([[1.0, 0.0], [0.5, 0.5]]), jnp.array([0, 1])))
      [0.   0.25]
    """
    return jnp.mean((outputs - _targets(outputs, labels)) ** 2, axis=-1)


def mean_absolute_error(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example ``mean_k |outputs_k - onehot(label)_k|``.

    Examples:
      Against the one-hot label:

      >>> import jax.numpy as jnp
      >>> from jgd.experiment.train.losses import mean_absolute_error
      >>> print(mean_absolute_error(jnp.array([[1.0, 0.0], [0.5, 0.5]]), jnp.array([0, 1])))
      [0.  0.5]
    """
    return jnp.mean(jnp.abs(outputs - _targets(outputs, labels)), axis=-1)


LOSSES: dict[str, Loss] = {
    "cross_entropy": softmax_cross_entropy,
    "mse": mean_squared_error,
    "mae": mean_absolute_error,
}


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean of ``values`` over the entries where ``mask`` is true (all of them without a mask).

    Examples:
      The mean over the real examples of a padded batch:

      >>> import jax.numpy as jnp
      >>> from jgd.experiment.train.losses import masked_mean
      >>> values = jnp.array([1.0, 2.0, 3.0, 100.0])
      >>> print(masked_mean(values, jnp.array([True, True, True, False])), masked_mean(values))
      2.0 26.5
    """
    if mask is None:
        return jnp.mean(values)
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1)


def accuracy(outputs: jax.Array, labels: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Fraction of (kept) examples whose largest output is at the label.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jgd.experiment.train.losses import accuracy
      >>> outputs = jnp.array([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
      >>> labels = jnp.array([0, 1, 1])
      >>> print(accuracy(outputs, labels), accuracy(outputs, labels, mask=jnp.array([True, True, False])))
      0.6666667 1.0
    """
    return masked_mean((jnp.argmax(outputs, axis=-1) == labels).astype(jnp.float32), mask)
