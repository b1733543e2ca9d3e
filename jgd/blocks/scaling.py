"""Scaling blocks: multiply the updates by a factor or by minus the learning rate."""

from __future__ import annotations

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.types import ScalarOrSchedule


def scale(factor: ScalarOrSchedule) -> GradientTransformation:
    """``u = factor · g``.

    Args:
      factor: any finite float, array or schedule; ``scale(-1.0)`` first in a chain maximizes.

    Examples:
      ``u = factor · g``; ``scale(-1.0)`` first in a chain turns descent into ascent:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.scale(0.5)
      >>> updates, _ = tx.update(grads, tx.init(params))
      >>> print(updates)
      [ 0.25 -0.5 ]
    """
    return leafwise("scale", lambda g, *, factor: (factor * g, ()), {"factor": factor}, complex_leaves=True)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """``u = -η · g``: the step of gradient descent, and the last block of most chains.

    Args:
      learning_rate: ``η ≥ 0``, a float, an array or a schedule (so a scheduled rate multiplies
        a momentum buffer from outside, as optax's and torch's SGD do).

    Examples:
      The descent step ``−η g``, after a momentum buffer (the rate outside it, as optax's and torch's
      SGD):

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.chain(jgd.trace(decay=0.9), jgd.scale_by_learning_rate(0.1))
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.05  0.1 ]
      >>> print(sorted(jgd.hyperparams(state)))
      ['decay', 'learning_rate']
    """

    def rule(g, *, learning_rate):
        return -learning_rate * g, ()

    return leafwise("scale_by_learning_rate", rule, {"learning_rate": learning_rate}, complex_leaves=True)
