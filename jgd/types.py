"""The types shared by every module: one definition each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax.typing import DTypeLike

PyTree = Any
"""A nested structure of arrays (dicts, lists, tuples, NamedTuples, dataclasses registered with JAX)."""

Schedule = Callable[[jax.Array], jax.Array]
"""A function ``step -> value`` evaluated at the transform's step count (0 at the first update)."""

ScalarOrSchedule = float | jax.Array | Schedule
"""A hyperparameter: a Python float, a scalar array (a tracer too, for ``jax.vmap`` sweeps) or a :data:`Schedule`."""

StateDtype = DTypeLike | Mapping[str, DTypeLike | None] | None
"""The dtype of a transform's state slots: one floating dtype for every slot, a mapping from slot name to
dtype (``{"mu": jnp.bfloat16}``; a slot not named keeps its param's dtype), or None for each param's own."""

Mask = bool | None | PyTree | Callable[[PyTree], PyTree]
"""Which leaves a transform applies to: ``None`` or ``True`` every leaf, ``False`` none, a tree of Python bools
(a prefix of the params tree: a bool stands for its whole subtree), or a function ``params -> such a tree``."""
