"""A Flax (linen) multilayer perceptron with the choices of seed 003.

Each hidden layer is ``Dense → [BatchNorm] → activation → [Dropout]``: batch
norm sits just before the activation, as the seed places it, and then the
Dense layer needs no bias (BatchNorm's β shifts instead). The output layer is
linear (the loss applies the softmax) and uses Glorot initialization, the
seed's choice for layers without a rectifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jgd.experiment.train.layers import ACTIVATIONS, INITIALIZERS

__all__ = [
    "MLP",
    "init_variables",
]


class MLP(nn.Module):
    """Fully connected classifier returning one output (logit) per class.

    Attributes:
      hidden: width of each hidden layer.
      num_outputs: number of outputs.
      activation: a key of ``jgd.experiment.train.layers.ACTIVATIONS``.
      initializer: ``"he"`` or ``"glorot"``, for the hidden layers' kernels.
      dropout: dropout rate of the hidden layers' outputs (0 disables it).
      batch_norm: whether to normalize each hidden layer's pre-activations.

    Examples:
      A 64-16-10 classifier; one output (logit) per class:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> variables = init_variables(model, jax.random.key(0), data.x_train.shape[1])
      >>> print(jax.tree.map(lambda a: a.shape, variables["params"]))
      {'Dense_0': {'bias': (16,), 'kernel': (64, 16)}, 'Dense_1': {'bias': (10,), 'kernel': (16, 10)}}
      >>> print(model.apply(variables, data.x_train[:5]).shape)
      (5, 10)
    """

    hidden: Sequence[int]
    num_outputs: int
    activation: str = "relu"
    initializer: str = "he"
    dropout: float = 0.0
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False, mask: jax.Array | None = None) -> jax.Array:
        """Outputs for inputs ``x`` of shape ``[batch, features]``.

        ``train`` turns on dropout and batch statistics; ``mask`` marks the real
        examples of a padded batch, the only ones batch norm averages over.
        """
        activation = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = nn.Dense(width, use_bias=not self.batch_norm, kernel_init=INITIALIZERS[self.initializer])(x)
            if self.batch_norm:
                bn_mask = None if mask is None else mask[:, None]
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x, mask=bn_mask)
            x = activation(x)
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_outputs, kernel_init=INITIALIZERS["glorot"])(x)


def init_variables(model: nn.Module, key: jax.Array, num_features: int) -> dict[str, Any]:
    """The model's variables: ``params`` and, with batch norm, ``batch_stats``.

    Examples:
      The parameters, and with batch norm its statistics:

      >>> import jax
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> model = MLP(hidden=(32, 16), num_outputs=10, batch_norm=True, dropout=0.1)
      >>> variables = init_variables(model, jax.random.key(0), num_features=64)
      >>> print(sorted(variables), sorted(variables["params"]))
      ['batch_stats', 'params'] ['BatchNorm_0', 'BatchNorm_1', 'Dense_0', 'Dense_1', 'Dense_2']
      >>> print(variables["params"]["Dense_0"]["kernel"].shape)
      (64, 32)
    """
    return dict(model.init({"params": key}, jnp.zeros((1, num_features), jnp.float32)))
