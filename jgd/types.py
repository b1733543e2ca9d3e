"""The types shared by every module: one definition each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
from jax.typing import DTypeLike

from jgd.lowbit.formats import Quantized, Stochastic

PyTree = Any
"""A nested structure of arrays (dicts, lists, tuples, NamedTuples, dataclasses registered with JAX)."""

Schedule = Callable[[jax.Array], jax.Array]
"""A function ``step -> value`` evaluated at the transform's step count (0 at the first update)."""

ScalarOrSchedule = float | jax.Array | Schedule
"""A hyperparameter: a Python float, a scalar array (a tracer too, for ``jax.vmap`` sweeps) or a :data:`Schedule`."""

SlotDtype = DTypeLike | Quantized | Stochastic | None
"""One slot's form: a floating dtype, :func:`jgd.quantized` (8 or 4 bits), :func:`jgd.stochastic` (bfloat16
written with stochastic rounding), or None for its param's dtype."""

StateDtype = SlotDtype | Mapping[str, SlotDtype]
"""The form of a transform's state slots: one :data:`SlotDtype` for every slot, or a mapping from slot name to
one (``{"mu": jnp.bfloat16, "nu": jgd.quantized(8)}``; a slot not named keeps its param's dtype)."""

Mask = bool | None | PyTree | Callable[[PyTree], PyTree]
"""Which leaves a transform applies to: ``None`` or ``True`` every leaf, ``False`` none, a tree of Python bools
(a prefix of the params tree: a bool stands for its whole subtree), or a function ``params -> such a tree``."""
