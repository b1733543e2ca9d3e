"""Scaling blocks: multiply the updates by a factor or by minus the learning rate."""

from __future__ import annotations

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise


def scale(factor: float) -> GradientTransformation:
    """``u = factor · g``."""
    return leafwise("scale", lambda g, *, t, factor: (factor * g, ()), {"factor": factor})


def scale_by_learning_rate(learning_rate: float) -> GradientTransformation:
    """``u = -η · g``: the step of gradient descent, and the last block of most chains."""

    def rule(g, *, t, learning_rate):
        return -learning_rate * g, ()

    return leafwise("scale_by_learning_rate", rule, {"learning_rate": learning_rate})
