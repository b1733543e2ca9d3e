"""Gradient descent, with classical or Nesterov momentum (seeds 000-003)."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.lowbit import dequantize
from jgd.state import made_by
from jgd.types import PyTree, ScalarOrSchedule, StateDtype


def sgd(
    learning_rate: ScalarOrSchedule = 0.01,
    momentum: ScalarOrSchedule | None = None,
    nesterov: bool = False,
    *,
    dampening: ScalarOrSchedule | None = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Gradient descent ``θ_{t+1} = θ_t - η ∇J(θ_t)``.

    Full-batch, mini-batch or single-sample (stochastic) gradient descent
    differ only in the data ``∇J`` is computed on (seed 001).
    Robbins & Monro, "A stochastic approximation method", 1951.

    With ``momentum``, the learning rate stays outside the velocity, as optax's
    ``sgd(lr, momentum, nesterov)`` and torch's ``SGD`` write it: this is
    ``momentum(..., form="trace")`` (or ``nesterov(..., form="trace")``), see there.
    Keras's ``SGD(momentum=...)`` is the velocity form, :func:`momentum`'s default.

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``).
      momentum: μ, as for the learning rate; None (default) for plain gradient descent.
      nesterov: use Nesterov's form of the momentum (needs ``momentum``).
      dampening: torch's ``dampening`` (needs ``momentum``), as for the learning rate; None means 0, torch's default.
      state_dtype: the dtype of ``velocity``:
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      One step of θ − ηg, then SGD with momentum (the rate outside the velocity, optax's and torch's
      form), whose state keeps the velocity ``v``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.sgd(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(jgd.apply_updates(params, updates))
      [ 0.95 -1.9 ]
      >>> tx = jgd.sgd(0.1, momentum=0.9)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print(state.slots["velocity"])
      [ 0.95 -1.9 ]
      >>> print(updates)
      [-0.095  0.19 ]

      After two steps ``v = g + 0.9 g = 1.9 g`` and the update is ``−η v``.
    """
    if momentum is None:
        if nesterov or dampening is not None:
            raise ValueError("nesterov and dampening need a momentum value")

        def rule(g, *, learning_rate):
            return -learning_rate * g, ()

        return leafwise("sgd", rule, {"learning_rate": learning_rate}, complex_leaves=True)
    return _trace("sgd", learning_rate, momentum, 0.0 if dampening is None else dampening, nesterov, state_dtype)


def _trace(name, learning_rate, momentum, dampening, nesterov, state_dtype) -> GradientTransformation:
    """``v_t = μ v_{t-1} + (1 - d) g_t`` (``v_1 = g_1``), ``θ_{t+1} = θ_t - η v_t``
    (``- η (g_t + μ v_t)`` with Nesterov): optax's ``trace`` and torch's ``SGD``."""

    def rule(g, v, *, t, learning_rate, momentum, dampening):
        # torch starts the buffer at the first gradient itself, undamped; with d = 0 that is μ·0 + g.
        v = jnp.where(t == 1, g, momentum * v + (1 - dampening) * g)
        return -learning_rate * (g + momentum * v if nesterov else v), (v,)

    hp = {"learning_rate": learning_rate, "momentum": momentum, "dampening": dampening}
    # The form is part of the recorded name: look_ahead reads the velocity of the velocity form alone.
    return leafwise(f"{name}(trace)", rule, hp, ("velocity",), state_dtype=state_dtype, complex_leaves=True)


def momentum(
    learning_rate: ScalarOrSchedule = 0.01,
    momentum: ScalarOrSchedule = 0.9,
    form: Literal["velocity", "ema", "trace"] = "velocity",
    *,
    dampening: ScalarOrSchedule | None = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Gradient descent with momentum, in either form of seed 001.

    ``form="velocity"`` (seeds 000, 003): ``v_t = γ v_{t-1} + η g_t``, ``θ_{t+1} = θ_t - v_t``.
    ``form="ema"`` (seed 001): ``v_t = β v_{t-1} + (1 - β) g_t``, ``θ_{t+1} = θ_t - η v_t``.
    ``form="trace"`` (optax ``sgd(lr, momentum)``, torch ``SGD(momentum, dampening)``):
    ``v_t = μ v_{t-1} + (1 - d) g_t`` with ``v_1 = g_1``, ``θ_{t+1} = θ_t - η v_t``.
    The velocity form is Keras's ``SGD(momentum=...)``. All three give the same iterates
    for a constant rate when ``η_ema = η / (1 - β)`` and ``η_trace = η``, ``d = 0``; once η
    is scheduled they differ, as the rate is applied when the gradient enters the
    velocity (velocity form) or when the velocity is applied (the others).
    Polyak, "Some methods of speeding up the convergence of iteration
    methods", 1964; Sutskever et al., ICML 2013.

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``).
      momentum: γ (or β, μ), as for the learning rate; 0.9 as Sutskever et al.
      form: ``"velocity"`` (default, the seeds'), ``"ema"`` or ``"trace"``.
      dampening: d of the trace form (torch), as for the learning rate; None means 0.
      state_dtype: the dtype of ``velocity``:
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      The velocity form ``v ← γv + ηg`` (the rate inside the velocity) and the average form ``v ← βv + (1
      − β)g``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.momentum(learning_rate=0.1, momentum=0.9)
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(grads, state, params)
      ...
      >>> print(state.slots["velocity"])
      [ 0.095 -0.19 ]
      >>> tx = jgd.momentum(0.1, 0.9, form="ema")
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(state.slots["velocity"], updates)
      [ 0.05000001 -0.10000002] [-0.005  0.01 ]

      Two velocity steps: ``v = 0.1g + 0.9 · 0.1g = 0.19 g``; one average step: ``v = 0.1 g``, update
      ``−0.1 v``.
    """
    if form not in ("velocity", "ema", "trace"):
        raise ValueError(f"form must be 'velocity', 'ema' or 'trace', got {form!r}")
    if form == "trace":
        return _trace("momentum", learning_rate, momentum, 0.0 if dampening is None else dampening, False, state_dtype)
    if dampening is not None:
        raise ValueError("dampening needs form='trace'")

    def rule(g, v, *, learning_rate, momentum):
        if form == "velocity":
            v = momentum * v + learning_rate * g
            return -v, (v,)
        v = momentum * v + (1 - momentum) * g
        return -learning_rate * v, (v,)

    hp = {"learning_rate": learning_rate, "momentum": momentum}
    recorded = "momentum" if form == "velocity" else "momentum(ema)"
    return leafwise(recorded, rule, hp, ("velocity",), state_dtype=state_dtype, complex_leaves=True)


def nesterov(
    learning_rate: ScalarOrSchedule = 0.01,
    momentum: ScalarOrSchedule = 0.9,
    form: Literal["velocity", "trace"] = "velocity",
    *,
    dampening: ScalarOrSchedule | None = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Nesterov accelerated gradient, in the form that needs no look-ahead gradient.

    The seeds' form evaluates the gradient ahead of the iterate:
    ``v_t = γ v_{t-1} + η ∇J(θ_t - γ v_{t-1})``, ``θ_{t+1} = θ_t - v_t``.
    Tracking ``φ_t = θ_t - γ v_{t-1}`` instead gives this transform, which takes
    the gradient at its own iterate: ``v_t = γ v_{t-1} + η ∇J(φ_t)``,
    ``φ_{t+1} = φ_t - (γ v_t + η ∇J(φ_t))``. Its iterates are the look-ahead
    points of the seeds' form; :func:`look_ahead` runs that form literally.
    Nesterov, "A method for solving the convex programming problem with
    convergence rate O(1/k²)", 1983; Sutskever et al., ICML 2013.
    This velocity form is Keras's ``SGD(momentum, nesterov=True)``.

    ``form="trace"`` keeps the rate outside the velocity (optax ``sgd(lr, momentum,
    nesterov=True)``, torch ``SGD(nesterov=True)``): ``v_t = μ v_{t-1} + (1 - d) g_t``
    with ``v_1 = g_1``, ``θ_{t+1} = θ_t - η (g_t + μ v_t)``.

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``).
      momentum: γ, as for the learning rate; 0.9 as Sutskever et al.
      form: ``"velocity"`` (default) or ``"trace"``.
      dampening: d of the trace form (torch), as for the learning rate; None means 0.
      state_dtype: the dtype of ``velocity``:
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      Nesterov's momentum: the update looks one velocity step ahead, ``−(γv + ηg)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.nesterov(learning_rate=0.1, momentum=0.9)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(state.slots["velocity"])
      [ 0.05 -0.1 ]
      >>> print(updates)
      [-0.095  0.19 ]

      ``v = ηg = [0.05, −0.1]`` and the update is ``−(0.9 v + ηg) = −1.9 ηg``.
    """
    if form not in ("velocity", "trace"):
        raise ValueError(f"form must be 'velocity' or 'trace', got {form!r}")
    if form == "trace":
        return _trace("nesterov", learning_rate, momentum, 0.0 if dampening is None else dampening, True, state_dtype)
    if dampening is not None:
        raise ValueError("dampening needs form='trace'")

    def rule(g, v, *, learning_rate, momentum):
        v = momentum * v + learning_rate * g
        return -(momentum * v + learning_rate * g), (v,)

    hp = {"learning_rate": learning_rate, "momentum": momentum}
    return leafwise("nesterov", rule, hp, ("velocity",), state_dtype=state_dtype, complex_leaves=True)


def look_ahead(params: PyTree, state: PyTree) -> PyTree:
    """The point ``θ - γ v`` where the seeds' Nesterov form takes its gradient.

    ``state`` is (or contains) the state of a velocity-form :func:`momentum`:
    evaluating the gradient at ``look_ahead(θ, state)`` and applying the
    momentum update to ``θ`` is Nesterov's method as the seeds write it.

    Args:
      params: the current params ``θ``, a tree of arrays (``jgd.types.PyTree``).
      state: the optimizer state, holding a velocity-form :func:`momentum`'s (the first one found is used);
        any other state (another form, :func:`nesterov`, ``rmsprop``'s momentum) is a ``ValueError``.

    Examples:
      The point ``θ − γv`` at which seed 000's literal Nesterov takes its next gradient, from the state of
      :func:`jgd.momentum`:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.momentum(0.1, 0.9)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> params = jgd.apply_updates(params, updates)
      >>> print(params)
      [ 0.95 -1.9 ]
      >>> print(jgd.look_ahead(params, state))
      [ 0.905 -1.81 ]

      ``v = ηg = [0.05, −0.1]``, so the look-ahead point is ``params − 0.9 v``.
    """
    found = made_by("look_ahead", state, ("momentum",))
    gamma, velocity = found.hyperparams["momentum"], dequantize(found.slots["velocity"])
    return jax.tree.map(lambda p, v: (p - gamma * v).astype(p.dtype), params, velocity)
