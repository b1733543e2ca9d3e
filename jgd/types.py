"""The types shared by every module: one definition each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

PyTree = Any
"""A nested structure of arrays (dicts, lists, tuples, NamedTuples, dataclasses registered with JAX)."""

Schedule = Callable[[jax.Array], jax.Array]
"""A function ``step -> value`` evaluated at the transform's step count (0 at the first update)."""

ScalarOrSchedule = float | jax.Array | Schedule
"""A hyperparameter: a Python float, a scalar array (a tracer too, for ``jax.vmap`` sweeps) or a :data:`Schedule`."""
