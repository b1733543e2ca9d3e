"""Methods that step by the sign of the gradient: Signum and Rprop."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.ranges import Range
from jgd.types import ScalarOrSchedule, StateDtype


def signum(
    learning_rate: ScalarOrSchedule = 1e-3,
    beta: ScalarOrSchedule = 0.9,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Signum: the sign of the gradient's momentum.

    ``m_t = β m_{t-1} + (1 - β) g_t``, ``θ_{t+1} = θ_t - η sign(m_t)``.
    Bernstein et al., "signSGD: compressed optimisation for non-convex problems", ICML 2018, Signum;
    ``beta=0`` is its signSGD. The momentum is not bias-corrected: a positive factor leaves the sign as
    it is.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-3.
      beta: ``β``, in [0, 1); 0.9 (paper).
      state_dtype: dtype of the momentum (optax's ``accumulator_dtype``); default each param's own.

    Examples:
      Each entry moves by ``η``, in the direction of its momentum's sign:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.signum(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> print(updates)
      [-0.1  0.1]
    """

    def rule(g, m, *, learning_rate, beta):
        m = beta * m + (1 - beta) * g
        return -learning_rate * jnp.sign(m), (m,)

    return leafwise("signum", rule, {"learning_rate": learning_rate, "beta": beta}, ("mu",), state_dtype=state_dtype)


def rprop(
    learning_rate: ScalarOrSchedule = 0.1,
    eta_minus: ScalarOrSchedule = 0.5,
    eta_plus: ScalarOrSchedule = 1.2,
    min_step_size: ScalarOrSchedule = 1e-6,
    max_step_size: ScalarOrSchedule = 50.0,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Rprop (iRprop⁻): a step size per entry, grown while the gradient keeps its sign, shrunk when it flips.

    With ``s_t = g_t g_{t-1}`` (``g_0 = 0``) and ``Δ_0 = η``:
    ``Δ_t = min(η⁺ Δ_{t-1}, Δ_max)`` where ``s_t > 0``, ``max(η⁻ Δ_{t-1}, Δ_min)`` where ``s_t < 0``,
    ``Δ_{t-1}`` where ``s_t = 0``; where ``s_t < 0`` the entry does not move and ``g_t`` is taken as 0 for the
    next step, elsewhere ``θ_{t+1} = θ_t - sign(g_t) Δ_t``.
    Riedmiller & Braun, "A direct adaptive method for faster backpropagation learning: the RPROP algorithm",
    ICNN 1993 (the defaults); without its weight-backtracking, the iRprop⁻ of Igel & Hüsken, "Empirical
    evaluation of the improved Rprop learning algorithms", Neurocomputing 2003.

    ``form="optax"`` is optax's ``rprop``, which applies each step's move one step late: its first update is 0
    and its update at step ``t`` is ``-sign(g_{t-1}) Δ_{t-1}`` (0 where ``g_{t-1}`` was taken as 0, or where
    ``s_t < 0``); the step sizes follow the rule above.

    Args:
      learning_rate: ``η``, the initial step size ``Δ_0``, > 0, read at the first step; 0.1 (paper).
      eta_minus: ``η⁻``, in (0, 1); 0.5 (paper).
      eta_plus: ``η⁺``, > 1; 1.2 (paper).
      min_step_size: ``Δ_min``, ≥ 0; 1e-6 (paper).
      max_step_size: ``Δ_max``, > ``min_step_size``; 50 (paper).
      form: ``"paper"`` or ``"optax"`` (above).
      state_dtype: dtype of the step sizes and of the last gradient; default each param's own.

    Examples:
      The second entry's gradient flips sign at the second step: it stays put and its step size halves:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.rprop(learning_rate=0.1)
      >>> state = tx.init(jnp.zeros(2))
      >>> for g in ([0.5, -1.0], [0.5, 1.0], [0.5, 1.0]):
      ...     updates, state = tx.update(jnp.array(g), state)
      ...     print(updates, state.slots["step_size"])
      [-0.1  0.1] [0.1 0.1]
      [-0.12 -0.  ] [0.12 0.05]
      [-0.144... -0.05 ...] [0.144... 0.05 ...]
    """

    if form not in ("paper", "optax"):
        raise ValueError(f"form must be 'paper' or 'optax', got {form!r}")

    def rule(g, step, previous, *, t, learning_rate, eta_minus, eta_plus, min_step_size, max_step_size):
        # The slots start at zero; the first step reads Δ_0, which thus stays data.
        last = jnp.where(t == 1, learning_rate, step)
        s = g * previous
        grown, shrunk = jnp.minimum(eta_plus * last, max_step_size), jnp.maximum(eta_minus * last, min_step_size)
        step = jnp.where(s > 0, grown, jnp.where(s < 0, shrunk, last))
        g = jnp.where(s < 0, 0, g)
        move = jnp.sign(g) * step if form == "paper" else jnp.where(s < 0, 0, jnp.sign(previous) * last)
        return -move, (step, g)

    hp = {"learning_rate": learning_rate, "eta_minus": eta_minus, "eta_plus": eta_plus}
    hp.update(min_step_size=min_step_size, max_step_size=max_step_size)
    return leafwise(
        "rprop",
        rule,
        hp,
        ("step_size", "previous_grad"),
        state_dtype=state_dtype,
        nonnegative_slots=("step_size",),
        narrowed={"learning_rate": Range(low=0.0, low_open=True)},
    )
