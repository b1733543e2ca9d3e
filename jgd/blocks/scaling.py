"""Scaling blocks: multiply the updates by a factor or by minus the learning rate."""

from __future__ import annotations

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.types import ScalarOrSchedule


def scale(factor: ScalarOrSchedule) -> GradientTransformation:
    """``u = factor · g``.

    Args:
      factor: any finite float, array or schedule; ``scale(-1.0)`` first in a chain maximizes.
    """
    return leafwise("scale", lambda g, *, factor: (factor * g, ()), {"factor": factor}, complex_leaves=True)


def scale_by_learning_rate(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    """``u = -η · g``: the step of gradient descent, and the last block of most chains.

    Args:
      learning_rate: ``η ≥ 0``, a float, an array or a schedule (so a scheduled rate multiplies
        a momentum buffer from outside, as optax's and torch's SGD do).
    """

    def rule(g, *, learning_rate):
        return -learning_rate * g, ()

    return leafwise("scale_by_learning_rate", rule, {"learning_rate": learning_rate}, complex_leaves=True)
