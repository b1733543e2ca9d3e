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
    """The number of rows of a settings table; raises ``ValueError`` if it is empty or ragged.

    Examples:
      >>> from jgd.experiment.sweep.settings import num_settings
      >>> print(num_settings({"learning_rate": [1e-3, 1e-2, 1e-1], "seed": [0, 0, 1]}))
      3
    """
    lengths = {name: len(np.atleast_1d(column)) for name, column in settings.items()}
    if not lengths or min(lengths.values()) == 0:
        raise ValueError(f"a sweep needs at least one setting, got columns {lengths}")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"settings columns differ in length: {lengths}")
    return next(iter(lengths.values()))


def cross(*tables: Mapping[str, Any]) -> Settings:
    """Every row of each table combined with every row of the others, the last table varying fastest.

    Examples:
      Every row of one table with every row of the other, the last varying fastest:

      >>> from jgd.experiment.sweep.settings import cross
      >>> table = cross({"learning_rate": [0.1, 0.01]}, {"b1": [0.9, 0.99], "b2": [0.999, 0.9999]})
      >>> for name, column in table.items():
      ...     print(name, column)
      ...
      learning_rate [0.1  0.1  0.01 0.01]
      b1 [0.9  0.99 0.9  0.99]
      b2 [0.999  0.9999 0.999  0.9999]
    """
    names = [name for t in tables for name in t]
    if len(set(names)) < len(names):
        raise ValueError(f"tables to cross share a column: {names}")
    index = np.meshgrid(*(np.arange(num_settings(t)) for t in tables), indexing="ij")
    return {name: np.asarray(column)[i.ravel()] for t, i in zip(tables, index) for name, column in t.items()}


def grid(**axes: Sequence[float]) -> Settings:
    """Every combination of the values of ``axes``, the last varying fastest.

    ``grid(learning_rate=[1e-3, 1e-2], seed=[0, 1])`` is four settings.

    Examples:
      Four settings, the last name varying fastest:

      >>> from jgd.experiment.sweep.settings import grid
      >>> print(grid(learning_rate=[1e-3, 1e-2], seed=[0, 1]))
      {'learning_rate': array([0.001, 0.001, 0.01 , 0.01 ]), 'seed': array([0, 1, 0, 1])}
    """
    return cross(*({name: np.asarray(values)} for name, values in axes.items()))


def uniform(low: float, high: float) -> Distribution:
    """Values drawn uniformly from ``[low, high)``.

    Examples:
      A distribution for :func:`random_search`:

      >>> from jgd.experiment.sweep.settings import random_search, uniform
      >>> values = random_search(1000, seed=0, b1=uniform(0.8, 0.99))["b1"]
      >>> print(bool(values.min() >= 0.8), bool(values.max() < 0.99))
      True True
    """
    if not low < high:
        raise ValueError(f"uniform needs low < high, got {low} and {high}")
    return lambda rng, n: rng.uniform(low, high, n)


def log_uniform(low: float, high: float) -> Distribution:
    """Values whose logarithm is uniform on ``[log low, log high)``: the usual prior of a learning rate.

    Examples:
      As many learning rates in each decade:

      >>> import numpy as np
      >>> from jgd.experiment.sweep.settings import log_uniform, random_search
      >>> rates = random_search(3000, seed=0, learning_rate=log_uniform(1e-4, 1e-1))["learning_rate"]
      >>> print(np.histogram(np.log10(rates), bins=[-4, -3, -2, -1])[0] // 100)
      [ 9 10  9]
    """
    if not 0 < low < high:
        raise ValueError(f"log_uniform needs 0 < low < high, got {low} and {high}")
    return lambda rng, n: np.exp(rng.uniform(np.log(low), np.log(high), n))


def random_search(samples: int, seed: int = 0, **space: Distribution | Sequence[float]) -> Settings:
    """``samples`` settings drawn with ``np.random.default_rng(seed)``; a list in ``space`` is a uniform choice.

    Examples:
      Draws from distributions, and from lists as uniform choices; the same seed draws the same settings:

      >>> from jgd.experiment.sweep.settings import log_uniform, random_search
      >>> space = {"learning_rate": log_uniform(1e-4, 1e-1), "b1": [0.9, 0.99]}
      >>> settings = random_search(4, seed=0, **space)
      >>> print(sorted(settings), len(settings["learning_rate"]), set(settings["b1"]) <= {0.9, 0.99})
      ['b1', 'learning_rate'] 4 True
      >>> print((settings["learning_rate"] == random_search(4, seed=0, **space)["learning_rate"]).all())
      True
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    return {
        name: np.asarray(draw(rng, samples) if callable(draw) else rng.choice(np.asarray(draw), samples))
        for name, draw in space.items()
    }
