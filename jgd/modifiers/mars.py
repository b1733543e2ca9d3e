"""MARS: a variance-reduced gradient, corrected with the previous one, handed to any method."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from jgd.base import GradientTransformation, check_transform, with_extra_args
from jgd.leafwise import leafwise
from jgd.numerics import leaf_norm
from jgd.state import TransformState, check_state
from jgd.types import PyTree, ScalarOrSchedule, StateDtype


class MarsState(NamedTuple):
    """The state of :func:`mars`.

    Attributes:
      correction: the state holding ``mars_gamma``, ``mars_b1`` and the previous gradient (slot ``previous_grad``).
      inner: the wrapped transform's state.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.mars(jgd.adam(0.1))
      >>> _, state = tx.update(jnp.array([0.5, -1.0]), tx.init(jnp.zeros(2)), jnp.zeros(2))
      >>> print(state.correction.slots["previous_grad"], jgd.hyperparams(state)["mars_gamma"])
      [ 0.5 -1. ] 0.025
    """

    correction: TransformState
    inner: PyTree


def _corrected(g, previous, *, mars_gamma, mars_b1):
    """``c = g_t + γ β1/(1 - β1) (g_t - g_{t-1})``, divided by ``‖c‖₂`` where ``‖c‖₂ > 1``; the slot keeps ``g_t``."""
    c = g + mars_gamma * mars_b1 / (1 - mars_b1) * (g - previous)
    norm = leaf_norm(c)
    return c / jnp.where(norm > 1, norm, 1), (g,)


def mars(
    tx: GradientTransformation,
    mars_gamma: ScalarOrSchedule = 0.025,
    mars_b1: ScalarOrSchedule = 0.95,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Runs ``tx`` on MARS' variance-reduced gradient instead of the gradient.

    Each leaf's gradient ``g_t`` is replaced by

        ``c_t = g_t + γ β1/(1 - β1) (g_t - g_{t-1})``,  ``c̃_t = c_t / ‖c_t‖₂`` if ``‖c_t‖₂ > 1``, else ``c_t``,

    and ``tx`` steps with ``c̃_t``. Yuan, Liu, Wu, Zhou & Gu, "MARS: unleashing the power of variance
    reduction for training large models", 2024: ``jgd.mars(jgd.adamw(η, b1=0.95, b2=0.99), 0.025, 0.95)``
    is their MARS-AdamW; any other method takes the corrected gradient the same way.

    This is the paper's approximate form (MARS-approx, the default of their code): ``g_{t-1}`` is the
    gradient the previous update received, at ``θ_{t-1}`` on the previous batch, not a second gradient at
    ``θ_{t-1}`` on the current batch (the exact form, two gradients a step, which a transform given one
    gradient cannot compute). As in their code, ``g_0 = 0``, and the norm is each leaf's (each tensor's):
    their code applies MARS to the matrices and AdamW to the vectors, which
    ``jgd.partition`` writes with labels from a function of the params.

    Args:
      tx: the transform that steps with the corrected gradient (a gradient transformation, jgd's or optax's);
        it receives the extra keyword arguments.
      mars_gamma: the correction's scale ``γ ≥ 0``, a float, an array or a schedule; data like any
        hyperparameter. 0 hands ``tx`` the gradient clipped to norm 1 per leaf. Default 0.025, the paper's.
      mars_b1: the ``β1`` in ``γ β1 / (1 - β1)``, in [0, 1), a float, an array or a schedule: give the
        inner method's ``b1``. Default 0.95, the paper's.
      state_dtype: the dtype of the previous gradient (``jgd.types.StateDtype``, slot ``previous_grad``);
        None keeps each param's.

    Examples:
      With ``γ β1 / (1 - β1) = 0.5``, the second step's gradient gains half its change since the first:
      ``c = g_2 + 0.5 (g_2 - g_1)``; SGD with rate 1 then steps by ``-c``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = jnp.array([1.0, -1.0])
      >>> tx = jgd.mars(jgd.sgd(1.0), mars_gamma=0.5, mars_b1=0.5)
      >>> state = tx.init(params)
      >>> _, state = tx.update(jnp.array([0.1, 0.2]), state, params)
      >>> updates, state = tx.update(jnp.array([0.2, 0.2]), state, params)
      >>> print(updates)
      [-0.25 -0.2 ]
    """
    tx = with_extra_args(check_transform("tx", tx))
    hyperparams = {"mars_gamma": mars_gamma, "mars_b1": mars_b1}
    correction = leafwise(
        "mars", _corrected, hyperparams, ("previous_grad",), state_dtype=state_dtype, complex_leaves=True
    )

    def init_fn(params):
        return MarsState(correction.init(params), tx.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("mars", state, MarsState)
        corrected, new_correction = correction.update(updates, state.correction)
        new_updates, inner = tx.update(corrected, state.inner, params, **extra_args)
        return new_updates, MarsState(new_correction, inner)

    return GradientTransformation(init_fn, update_fn)
