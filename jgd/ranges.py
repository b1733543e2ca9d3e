"""The range of every hyperparameter name, and the checks of concrete values against it.

One name means one thing across the library, so one table gives each name its
range. A method may narrow a name's range next to its rule (schedule-free ``b1``
in (0, 1), RAdam's ``threshold`` above 4); the narrowed range travels with the
state the method makes, so :func:`jgd.set_hyperparams` checks against it too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Range:
    """The interval a hyperparameter's values must lie in: ``low`` to ``high``, each end open or closed."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def contains(self, values: np.ndarray) -> bool:
        """Whether every value is finite and inside the interval."""
        above = values > self.low if self.low_open else values >= self.low
        below = values < self.high if self.high_open else values <= self.high
        return bool(np.all(np.isfinite(values)) and np.all(above & below))

    def __str__(self) -> str:
        if math.isinf(self.low) and math.isinf(self.high):
            return "finite"
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


NONNEGATIVE = Range(low=0.0)
POSITIVE = Range(low=0.0, low_open=True)
UNIT = Range(0.0, 1.0, high_open=True)
OPEN_UNIT = Range(0.0, 1.0, low_open=True, high_open=True)
CLOSED_UNIT = Range(0.0, 1.0)
REAL = Range()

# The range of every hyperparameter name used in jgd; the same name means the same thing everywhere.
RANGES: dict[str, Range] = {
    **dict.fromkeys(("learning_rate", "eps", "eps_root", "initial_accumulator", "momentum_decay"), NONNEGATIVE),
    **dict.fromkeys(("weight_decay", "rate", "multiplier", "threshold", "num_std", "decay_rate"), NONNEGATIVE),
    **dict.fromkeys(("decay_offset", "weight_decay_rate", "weight_lr_power"), NONNEGATIVE),
    **dict.fromkeys(("adam_eps_root", "adam_weight_decay", "adam_learning_rate"), NONNEGATIVE),
    **dict.fromkeys(("momentum", "decay", "rho", "b1", "b2", "b3", "beta", "adam_b1", "adam_b2"), UNIT),
    **dict.fromkeys(("max_value", "max_norm", "trust_coefficient", "clipping_threshold", "min_scale"), POSITIVE),
    **dict.fromkeys(("c1", "c2", "shrink", "eta_minus"), OPEN_UNIT),
    **dict.fromkeys(
        ("min_norm", "min_step_size", "alpha", "max_learning_rate", "scaling", "eta", "gamma"), NONNEGATIVE
    ),
    **dict.fromkeys(("cautious_eps", "mars_gamma"), NONNEGATIVE),  # the modifiers' own settings
    "alpha_b3_warmup": NONNEGATIVE,  # AdEMAMix's warm-up length in steps; 0: none
    "clip_threshold": POSITIVE,  # Sophia's bound on each entry of the preconditioned step
    "lower_bound": REAL,  # MoMo's lower bound of the loss (optax's name; polyak_sgd's f_min)
    **dict.fromkeys(("mars_b1", "ema_decay"), UNIT),
    **dict.fromkeys(("normuon_b2",), UNIT),  # muon's own settings
    **dict.fromkeys(("normuon_eps",), NONNEGATIVE),
    "consistent_rms": POSITIVE,
    "matrix_eps": NONNEGATIVE,  # Shampoo's damping of its factors
    "shampoo_beta": UNIT,  # SOAP's decay of its factors
    **dict.fromkeys(("init_distance", "init_relative_distance", "init_estim_sq_dist"), POSITIVE),  # DoG, DoWG
    **dict.fromkeys(("estim_lr0", "estim_lr_coef", "s_init"), POSITIVE),  # Prodigy, D-Adaptation, Mechanic
    "init_learning_rate": NONNEGATIVE,
    "max_step_size": POSITIVE,
    # PSGD-Kron's (jgd.kron): the factors' step size, their damping and initial scale, the update probability.
    **dict.fromkeys(("preconditioner_lr", "damping"), NONNEGATIVE),
    "preconditioner_init_scale": POSITIVE,
    "preconditioner_update_probability": CLOSED_UNIT,
    "eta_plus": Range(low=1.0, low_open=True),
    "dampening": CLOSED_UNIT,
    "f_min": REAL,
    "factor": REAL,
}

# Pairs of names whose values must be ordered (smaller, larger) wherever both are concrete.
ORDERED: tuple[tuple[str, str], ...] = (("c1", "c2"), ("min_step_size", "max_step_size"))


def concrete(value: Any) -> bool:
    """Whether ``value`` can be checked now: not a tracer (a ``jit``/``vmap`` argument is checked by nobody)."""
    return not isinstance(value, jax.core.Tracer)


def validate(name: str, value: Any, narrowed: Mapping[str, Range] | None = None) -> None:
    """Raises ``ValueError`` if a concrete ``value`` is not a number in ``name``'s range; tracers pass.

    Args:
      name: the hyperparameter's name, which selects its range.
      value: a float, an int or an array (each element is checked).
      narrowed: ranges a method narrowed for its own names, taking the place of the table's.
    """
    if not concrete(value):
        return
    array = np.asarray(value) if not isinstance(value, str | bytes) else None
    if array is None or not (jnp.issubdtype(array.dtype, jnp.integer) or jnp.issubdtype(array.dtype, jnp.floating)):
        raise ValueError(f"{name} must be a number, an array or a schedule, got {value!r}")
    allowed = (narrowed or {}).get(name, RANGES.get(name, REAL))
    if not allowed.contains(array):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def validate_order(values: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` where two ordered names (``c1 < c2``) are both concrete and out of order."""
    for low, high in ORDERED:
        if low in values and high in values and concrete(values[low]) and concrete(values[high]):
            if not np.all(np.asarray(values[low]) < np.asarray(values[high])):
                raise ValueError(
                    f"{low} must be smaller than {high}, got {low}={values[low]!r}, {high}={values[high]!r}"
                )
