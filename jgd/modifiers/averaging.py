"""An average of the iterates (exponential, or Polyak's running mean) kept in the state for evaluation."""

from __future__ import annotations

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.lowbit import dequantize
from jgd.state import made_by
from jgd.types import PyTree, ScalarOrSchedule, StateDtype


def _average(u, average, p, *, ema_decay):
    """The update passes through; ``θ̄ ← d θ̄ + (1 - d) (θ + u)``, the average of the new iterate."""
    return u, (ema_decay * average + (1 - ema_decay) * (p + u),)


def _start_at_params(p, dtype):
    """The average starts at the initial params: a copy, so that donating the params leaves the state whole."""
    return jnp.array(p, dtype=dtype, copy=True)


def ema_params(ema_decay: ScalarOrSchedule = 0.999, *, state_dtype: StateDtype = None) -> GradientTransformation:
    """Keeps an exponential moving average of the params in the state; the updates pass through unchanged.

    Chain it after the method, ``jgd.chain(jgd.adamw(η), jgd.ema_params(0.999))``: it receives the
    method's update ``u_t`` and the params ``θ_t``, and averages the new iterate ``θ_{t+1} = θ_t + u_t``:

        ``θ̄_0 = θ_0``,  ``θ̄_{t+1} = d_t θ̄_t + (1 - d_t) θ_{t+1}``.

    Read the average with :func:`averaged_params` to evaluate it. Polyak & Juditsky, "Acceleration of
    stochastic approximation by averaging", SIAM J. Control Optim. 1992, for averaging the iterates;
    the exponential form is the one of TensorFlow's ``ExponentialMovingAverage`` and of target networks
    (optax's ``incremental_update(θ_{t+1}, θ̄_t, 1 - d)``).

    ``d_t`` may follow a schedule of the step count ``k`` (0 at the first update):
    ``ema_decay=lambda k: k / (k + 1.0)`` gives Polyak's running mean ``θ̄_t = (θ_1 + … + θ_t) / t``,
    and ``lambda k: jnp.minimum(0.999, (1 + k) / (10 + k))`` a decay that warms up, so that the
    first iterate weighs little after a short run.

    Args:
      ema_decay: ``d`` in [0, 1), a float, an array or a schedule; data like any hyperparameter, read and
        set as ``ema_decay``. Default 0.999.
      state_dtype: the dtype of the average (``jgd.types.StateDtype``, slot ``average``); None keeps each
        param's. ``jnp.float32`` averages bfloat16 params without losing the small steps ``(1 - d) θ``.

    Examples:
      One SGD step from ``[1, 2]`` to ``[0, 1]``; with ``d = 0.5`` the average is halfway:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = jnp.array([1.0, 2.0])
      >>> tx = jgd.chain(jgd.sgd(1.0), jgd.ema_params(0.5))
      >>> updates, state = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
      >>> print(jgd.apply_updates(params, updates), jgd.averaged_params(state))
      [0. 1.] [0.5 1.5]
    """
    return leafwise(
        "ema_params",
        _average,
        {"ema_decay": ema_decay},
        ("average",),
        state_dtype=state_dtype,
        with_params=True,
        slot_init={"average": _start_at_params},
        complex_leaves=True,
    )


def averaged_params(state: PyTree) -> PyTree:
    """The average :func:`ema_params` keeps, a tree like the params, in the average's dtype.

    From ``nnx.Optimizer.opt_state`` it is a tree of the optimizer's Variables: ``nnx.to_pure_dict`` gives
    the arrays.

    Args:
      state: the state of :func:`ema_params`, or any tree holding it (a chain's, Flax's ``opt_state``).

    Examples:
      Polyak's running mean of the iterates ``[1, 3]`` and ``[2, 2]``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = jnp.array([0.0, 4.0])
      >>> tx = jgd.chain(jgd.sgd(1.0), jgd.ema_params(lambda k: k / (k + 1.0)))
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.array([-1.0, 1.0]), state, params)
      ...     params = jgd.apply_updates(params, updates)
      >>> print(params, jgd.averaged_params(state))
      [2. 2.] [1.5 2.5]
    """
    found = made_by("averaged_params", state, ("ema_params",))
    return dequantize(found.slots["average"])
