"""Settings tables for sweeps: a mapping from names to equally long columns, one row per setting.

Build them as a :func:`grid`, by :func:`random_search`, or :func:`cross` tables
with each other (a ``seed`` column, for instance). The sweep engine
(:func:`jgd.experiment.sweep.engine.sweep`) trains one setting per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "cross",
    "grid",
    "log_uniform",
    "num_settings",
    "random_search",
    "uniform",
]

Settings = dict[str, np.ndarray]
Distribution = Callable[[np.random.Generator, int], np.ndarray]


def num_settings(settings: Mapping[str, Any]) -> int:
    """The number of rows of a settings table; raises ``ValueError`` if it is empty or ragged."""
    lengths = {name: len(np.atleast_1d(column)) for name, column in settings.items()}
    if not lengths or min(lengths.values()) == 0:
        raise ValueError(f"a sweep needs at least one setting, got columns {lengths}")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"settings columns differ in length: {lengths}")
    return next(iter(lengths.values()))


def cross(*tables: Mapping[str, Any]) -> Settings:
    """Every row of each table combined with every row of the others, the last table varying fastest."""
    names = [name for t in tables for name in t]
    if len(set(names)) < len(names):
        raise ValueError(f"tables to cross share a column: {names}")
    index = np.meshgrid(*(np.arange(num_settings(t)) for t in tables), indexing="ij")
    return {name: np.asarray(column)[i.ravel()] for t, i in zip(tables, index) for name, column in t.items()}


def grid(**axes: Sequence[float]) -> Settings:
    """Every combination of the values of ``axes``, the last varying fastest.

    ``grid(learning_rate=[1e-3, 1e-2], seed=[0, 1])`` is four settings.
    """
    return cross(*({name: np.asarray(values)} for name, values in axes.items()))


def uniform(low: float, high: float) -> Distribution:
    """Values drawn uniformly from ``[low, high)``."""
    if not low < high:
        raise ValueError(f"uniform needs low < high, got {low} and {high}")
    return lambda rng, n: rng.uniform(low, high, n)


def log_uniform(low: float, high: float) -> Distribution:
    """Values whose logarithm is uniform on ``[log low, log high)``: the usual prior of a learning rate."""
    if not 0 < low < high:
        raise ValueError(f"log_uniform needs 0 < low < high, got {low} and {high}")
    return lambda rng, n: np.exp(rng.uniform(np.log(low), np.log(high), n))


def random_search(samples: int, seed: int = 0, **space: Distribution | Sequence[float]) -> Settings:
    """``samples`` settings drawn with ``np.random.default_rng(seed)``; a list in ``space`` is a uniform choice."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    return {
        name: np.asarray(draw(rng, samples) if callable(draw) else rng.choice(np.asarray(draw), samples))
        for name, draw in space.items()
    }
