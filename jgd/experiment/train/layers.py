"""The activations and weight initializers a model's hidden layers may use, by their config names.

They are JAX's own functions (the ones Flax re-exports), so the config schema
can list the names without loading Flax.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": jax.nn.leaky_relu,  # max(αz, z), α = 0.01
    "elu": jax.nn.elu,  # α(exp(z) - 1) for z < 0, α = 1
    "tanh": jax.numpy.tanh,
    "sigmoid": jax.nn.sigmoid,
}

# Zero-mean (truncated) normal draws with the seed's variances, as Keras' he_normal and glorot_normal:
# He σ² = 2 / fan_in (for ReLUs), Glorot σ² = 2 / (fan_in + fan_out).
INITIALIZERS: dict[str, jax.nn.initializers.Initializer] = {
    "he": jax.nn.initializers.he_normal(),
    "glorot": jax.nn.initializers.glorot_normal(),
}
