"""Gradient descent, with classical or Nesterov momentum (seeds 000-003)."""

from __future__ import annotations

from typing import Any, Literal

import jax

from jgd.base import GradientTransformation
from jgd.hyperparams import transform_states
from jgd.leafwise import leafwise
from jgd.types import PyTree


def sgd(learning_rate: float = 0.01) -> GradientTransformation:
    """Gradient descent ``θ_{t+1} = θ_t - η ∇J(θ_t)``.

    Full-batch, mini-batch or single-sample (stochastic) gradient descent
    differ only in the data ``∇J`` is computed on (seed 001).
    Robbins & Monro, "A stochastic approximation method", 1951.
    """

    def rule(g, *, t, learning_rate):
        return -learning_rate * g, ()

    return leafwise("sgd", rule, {"learning_rate": learning_rate})


def momentum(
    learning_rate: float = 0.01,
    momentum: float = 0.9,
    form: Literal["velocity", "ema"] = "velocity",
    *,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Gradient descent with momentum, in either form of seed 001.

    ``form="velocity"`` (seeds 000, 003): ``v_t = γ v_{t-1} + η g_t``, ``θ_{t+1} = θ_t - v_t``.
    ``form="ema"`` (seed 001): ``v_t = β v_{t-1} + (1 - β) g_t``, ``θ_{t+1} = θ_t - η v_t``.
    The two give the same iterates when ``η_ema = η / (1 - β)``.
    Polyak, "Some methods of speeding up the convergence of iteration
    methods", 1964; Sutskever et al., ICML 2013.

    ``state_dtype`` is the dtype of the slot ``velocity``: one dtype, or a mapping per slot
    (``{"velocity": jnp.bfloat16}``); default each param's own. The step is computed in at least
    float32 and no slot's dtype changes across updates.
    """
    if form not in ("velocity", "ema"):
        raise ValueError(f"form must be 'velocity' or 'ema', got {form!r}")

    def rule(g, v, *, t, learning_rate, momentum):
        if form == "velocity":
            v = momentum * v + learning_rate * g
            return -v, (v,)
        v = momentum * v + (1 - momentum) * g
        return -learning_rate * v, (v,)

    hp = {"learning_rate": learning_rate, "momentum": momentum}
    return leafwise("momentum", rule, hp, ("velocity",), state_dtype=state_dtype)


def nesterov(learning_rate: float = 0.01, momentum: float = 0.9, *, state_dtype: Any = None) -> GradientTransformation:
    """Nesterov accelerated gradient, in the form that needs no look-ahead gradient.

    The seeds' form evaluates the gradient ahead of the iterate:
    ``v_t = γ v_{t-1} + η ∇J(θ_t - γ v_{t-1})``, ``θ_{t+1} = θ_t - v_t``.
    Tracking ``φ_t = θ_t - γ v_{t-1}`` instead gives this transform, which takes
    the gradient at its own iterate: ``v_t = γ v_{t-1} + η ∇J(φ_t)``,
    ``φ_{t+1} = φ_t - (γ v_t + η ∇J(φ_t))``. Its iterates are the look-ahead
    points of the seeds' form; :func:`look_ahead` runs that form literally.
    Nesterov, "A method for solving the convex programming problem with
    convergence rate O(1/k²)", 1983; Sutskever et al., ICML 2013.

    ``state_dtype`` is the dtype of the slot ``velocity``: one dtype, or a mapping per slot
    (``{"velocity": jnp.bfloat16}``); default each param's own. The step is computed in at least
    float32 and no slot's dtype changes across updates.
    """

    def rule(g, v, *, t, learning_rate, momentum):
        v = momentum * v + learning_rate * g
        return -(momentum * v + learning_rate * g), (v,)

    hp = {"learning_rate": learning_rate, "momentum": momentum}
    return leafwise("nesterov", rule, hp, ("velocity",), state_dtype=state_dtype)


def look_ahead(params: PyTree, state: PyTree) -> PyTree:
    """The point ``θ - γ v`` where the seeds' Nesterov form takes its gradient.

    ``state`` is (or contains) the state of a velocity-form :func:`momentum`:
    evaluating the gradient at ``look_ahead(θ, state)`` and applying the
    momentum update to ``θ`` is Nesterov's method as the seeds write it.
    """
    found = [s for s in transform_states(state) if "velocity" in s.slots and "momentum" in s.hyperparams]
    if not found:
        raise ValueError("look_ahead needs the state of a momentum transform")
    gamma, velocity = found[0].hyperparams["momentum"], found[0].slots["velocity"]
    return jax.tree.map(lambda p, v: (p - gamma * v).astype(p.dtype), params, velocity)
