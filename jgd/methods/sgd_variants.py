"""Gradient descent with one thing added: an optimistic correction, Polyak's step size, or gradient noise."""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jgd import trees
from jgd.base import GradientTransformation
from jgd.hyperparams import Hyperparameters
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.ranges import NONNEGATIVE
from jgd.state import check_state
from jgd.types import ScalarOrSchedule


def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule = 0.01,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
) -> GradientTransformation:
    """Optimistic gradient descent: a step along the gradient, corrected by how it changed since the last one.

    ``θ_{t+1} = θ_t - η ((α + β) g_t - β g_{t-1})``, with ``g_0 = g_1`` (the first step is ``-η α g_1``).
    Mokhtari, Ozdaglar & Pattathil, "A unified analysis of extra-gradient and optimistic gradient methods for
    saddle point problems: proximal point approach", AISTATS 2020, the generalised OGDA (their step sizes
    ``α, β`` are ``ηα, ηβ`` here); ``α = β = 1`` is OGDA, ``θ_{t+1} = θ_t - 2η g_t + η g_{t-1}``. For a
    saddle point, negate the gradients of the variables that ascend.

    Here ``beta`` is a weight ≥ 0, not a decay in [0, 1) as elsewhere in jgd: the name is optax's.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 0.01.
      alpha: ``α``, the weight of the current gradient, ≥ 0; 1 (OGDA).
      beta: ``β``, the weight of the gradient's change, ≥ 0; 1 (OGDA).

    Examples:
      The first step is ``-η α g``; the second adds ``-η β`` times the gradient's change:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.optimistic_gradient_descent(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> print(updates)
      [-0.05  0.1 ]
      >>> updates, state = tx.update(jnp.array([1.0, -1.0]), state)
      >>> print(updates)
      [-0.15  0.1 ]
    """

    def rule(g, previous, *, t, learning_rate, alpha, beta):
        previous = jnp.where(t == 1, g, previous)
        return -learning_rate * ((alpha + beta) * g - beta * previous), (g,)

    hp = {"learning_rate": learning_rate, "alpha": alpha, "beta": beta}
    return leafwise(
        "optimistic_gradient_descent",
        rule,
        hp,
        ("previous_grad",),
        complex_leaves=True,
        narrowed={"beta": NONNEGATIVE},
    )


# optax's threshold below which the squared gradient norm counts as zero: float64's machine epsilon.
_TINY = float(np.finfo(np.float64).eps)


def polyak_sgd(
    max_learning_rate: ScalarOrSchedule = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: ScalarOrSchedule = 0.0,
    eps: ScalarOrSchedule = 0.0,
    variant: Literal["sps", "sps+"] = "sps",
) -> GradientTransformation:
    """SGD with Polyak's step size, from the loss's gap to its lower bound: ``update(..., value=loss)``.

    ``γ_t = min((f(θ_t) - f*) / (σ² ‖g_t‖² + ε), γ_max)``, ``θ_{t+1} = θ_t - σ γ_t g_t``, the norm over every
    leaf together, ``γ_t = 0`` where ``σ² ‖g_t‖² + ε`` is at most float64's machine epsilon; ``variant="sps+"``
    takes ``max(f(θ_t) - f*, 0)``. Loizou et al., "Stochastic Polyak step-size for SGD: an adaptive learning
    rate for fast convergence", AISTATS 2021, SPS_max with ``c = σ`` and ``γ_b = σ γ_max``
    (``σ = 1``: ``c = 1``); ``sps+`` is Garrigos et al., "Function value learning", 2023.

    ``update`` takes the loss as ``value=`` (a scalar, a tracer too); the last one given is kept in the state's
    ``carry``. Every other number is data; the loss is an argument of each step, not a hyperparameter.

    Args:
      max_learning_rate: ``γ_max``, ≥ 0; 1.
      scaling: ``σ``, a float, an array or a schedule, ≥ 0; 1.
      f_min: ``f*``, a lower bound of the loss, any real; 0.
      eps: ``ε``, ≥ 0; 0.
      variant: ``"sps"`` or ``"sps+"`` (above).

    Examples:
      With the loss 2.5 and ``‖g‖² = 1.25`` the step size is ``min(2.5 / 1.25, 1) = 1``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.polyak_sgd()
      >>> updates, state = tx.update(grads, tx.init(params), params, value=2.5)
      >>> print(updates)
      [-0.5  1. ]
    """
    if variant not in ("sps", "sps+"):
        raise ValueError(f"variant must be 'sps' or 'sps+', got {variant!r}")

    def prepare(updates, t, carry, *, max_learning_rate, scaling, f_min, eps):
        norm_sq = scaling**2 * sum(jnp.sum(abs_sq(jnp.asarray(g))) for g in jax.tree.leaves(updates))
        gap = carry["value"] - f_min
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        step = jnp.where(norm_sq + eps <= _TINY, 0.0, jnp.minimum(gap / (norm_sq + eps), max_learning_rate))
        return {"polyak_step": scaling * step}, carry

    def rule(g, *, polyak_step):
        return -polyak_step * g, ()

    hp = {"max_learning_rate": max_learning_rate, "scaling": scaling, "f_min": f_min, "eps": eps}
    inner = leafwise(
        "polyak_sgd",
        rule,
        hp,
        carry={"value": 0.0},
        prepare=prepare,
        prepared=("polyak_step",),
        complex_leaves=True,
    )

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        state = check_state("polyak_sgd", state)
        if value is None:
            raise ValueError("polyak_sgd needs the loss: call update(updates, state, params, value=loss)")
        carry = {**state.carry, "value": jnp.asarray(value).astype(state.carry["value"].dtype)}
        return inner.update(updates, state._replace(carry=carry), params)

    return GradientTransformation(inner.init, update_fn)


def noisy_sgd(
    learning_rate: ScalarOrSchedule = 0.01,
    eta: ScalarOrSchedule = 0.01,
    gamma: ScalarOrSchedule = 0.55,
    key: Any = 0,
) -> GradientTransformation:
    """SGD on the gradient plus annealed Gaussian noise.

    ``θ_{t+1} = θ_t - η_lr (g_t + σ_t ξ_t)``, ``σ_t² = η / t^γ``, ``ξ_t ~ N(0, I)`` drawn afresh each step.
    Neelakantan et al., "Adding gradient noise improves learning for very deep networks", 2015
    (``η ∈ {0.01, 0.3, 1}``, ``γ = 0.55``). The draws are optax's ``noisy_sgd``'s: the state's key is split into
    the next key and one for the step, which is split into one key per leaf, in the leaves' order, each
    drawing in the leaf's dtype (a complex leaf's noise is complex, of the same total variance).

    The key is not a hyperparameter: ``key`` is the seed of the state ``init`` makes, which keeps the current
    key (as raw key data, ``carry["key"]``); ``learning_rate``, ``eta`` and ``gamma`` are data.

    Args:
      learning_rate: ``η_lr``, a float, an array or a schedule; 0.01.
      eta: ``η``, the noise's variance at the first step, ≥ 0; 0.01 (paper).
      gamma: ``γ``, the variance's decay exponent, ≥ 0; 0.55 (paper).
      key: an int seed or a JAX key (``jax.random.key``); 0.

    Examples:
      Without noise (``eta=0``) it is SGD; the noise's draws depend on ``key`` alone:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.noisy_sgd(learning_rate=0.1, eta=0.0, key=0)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> print(updates)
      [-0.05  0.1 ]
    """
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        start = key
    elif isinstance(key, int | np.integer):
        start = jax.random.key(key)
    else:
        raise ValueError(f"key must be an int or a jax.random.key, got {key!r}")
    impl = jax.random.key_impl(start)  # the key is kept as raw data, read back with its implementation
    component = Hyperparameters("noisy_sgd", {"learning_rate": learning_rate, "eta": eta, "gamma": gamma})

    def init_fn(params):
        trees.check_floating("params", params, method="noisy_sgd", allow_complex=True)
        return component.init(carry={"key": jax.random.key_data(start)})

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        hp, state = component.resolve(check_state("noisy_sgd", state))
        trees.check_floating("updates", updates, method="noisy_sgd", allow_complex=True)
        t = state.count + 1
        carried = state.carry["key"]
        next_key, sample = jax.random.split(jax.random.wrap_key_data(carried, impl=impl))
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample, len(leaves))
        out = [_noisy_step(g, k, t, **hp) for g, k in zip(leaves, keys)]
        carry = {"key": jax.random.key_data(next_key)}
        return treedef.unflatten(out), component.advance(state, carry=carry)

    return GradientTransformation(init_fn, update_fn)


def _noisy_step(g, key, t, *, learning_rate, eta, gamma):
    """``-η_lr (g + √(η / t^γ) ξ)`` on one leaf, in at least float32, returned in the leaf's dtype."""
    g = jnp.asarray(g)
    noise = jax.random.normal(key, g.shape, g.dtype)
    dtype = jnp.promote_types(g.dtype, jnp.float32)
    real = jnp.finfo(dtype).dtype
    deviation = jnp.sqrt(jnp.asarray(eta, real) / jnp.asarray(t, real) ** jnp.asarray(gamma, real))
    step = -jnp.asarray(learning_rate, real) * (g.astype(dtype) + deviation * noise.astype(dtype))
    return step.astype(g.dtype)
