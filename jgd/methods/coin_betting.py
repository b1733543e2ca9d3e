"""COCOB-Backprop: each coordinate bets a fraction of the reward it has won, with no learning rate to tune."""

from __future__ import annotations

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.methods.whole_tree import copy_of_param
from jgd.types import Mask, ScalarOrSchedule, StateDtype


def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: ScalarOrSchedule = 100.0,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """COCOB-Backprop: each coordinate is the starting point plus a bet on the sum of its negative gradients.

    Entry by entry, with ``c_t = γ_t (g_t + λ θ_t)``: ``L_t = max(L_{t-1}, |c_t|)`` (from ``L_0 = ε``),
    ``G_t = G_{t-1} + |c_t|``, ``R_t = max(R_{t-1} - c_t (θ_t - θ_1), 0)``, ``C_t = C_{t-1} - c_t``,
    ``θ_{t+1} = θ_1 + C_t (L_t + R_t) / (L_t max(G_t + L_t, α L_t))``, from ``G_0 = R_0 = C_0 = 0``.
    Orabona & Tommasi, "Training deep networks without learning rates through coin betting", NeurIPS 2017,
    Alg. 2 (``C`` is their ``θ``, ``R`` their ``Reward``). As optax's ``contrib.cocob``: ``ε`` floors ``L``
    (a coordinate whose gradients were all zero divides by ``ε²``, not 0), a weight decay ``λ`` joins the
    gradient and ``γ_t`` multiplies it (the paper's ``γ = 1``).

    Args:
      learning_rate: ``γ_t``, a float, an array or a schedule, ≥ 0; 1.
      alpha: ``α``, which caps the fraction bet early on, ≥ 0; 100 (paper).
      eps: ``ε``, ≥ 0; 1e-8.
      weight_decay: ``λ``, ≥ 0; 0.
      mask: which leaves decay (``jgd.types.Mask``); None every leaf.
      state_dtype: the dtype of the slots ``initial_params``, ``cumulative_gradients``, ``scale``,
        ``subgradients`` and ``reward``; default each param's.

    Examples:
      The first step bets ``|g| / (α |g|)`` of the way: ``θ_2 - θ_1 = -sign(g) / α``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.cocob()
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.01  0.01]
    """

    def rule(g, x0, cumulative, scale, subgradients, reward, p, *, learning_rate, alpha, eps, weight_decay, decayed):
        c = learning_rate * (g + weight_decay * p if decayed else g)
        # The slot keeps max |c| alone: ε, data like any hyperparameter, floors it where it is read.
        scale = jnp.maximum(scale, jnp.abs(c))
        floored = jnp.maximum(scale, eps)
        subgradients = subgradients + jnp.abs(c)
        reward = jnp.maximum(reward - c * (p - x0), 0)
        cumulative = cumulative - c
        bet = cumulative / (floored * jnp.maximum(subgradients + floored, alpha * floored)) * (floored + reward)
        return x0 + bet - p, (x0, cumulative, scale, subgradients, reward)

    slots = ("initial_params", "cumulative_gradients", "scale", "subgradients", "reward")
    hp = {"learning_rate": learning_rate, "alpha": alpha, "eps": eps, "weight_decay": weight_decay}
    return leafwise(
        "cocob",
        rule,
        hp,
        slots,
        state_dtype=state_dtype,
        with_params=True,
        slot_init={"initial_params": copy_of_param},
        masks={"decayed": mask},
        nonnegative_slots=("scale", "subgradients", "reward"),
    )
