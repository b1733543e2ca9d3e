"""Line searches along a descent direction: strong-Wolfe zoom and backtracking Armijo.

A line search works on flat vectors (ravel a pytree with ``jax.flatten_util.ravel_pytree``).
Its float hyperparameters are data: :func:`jgd.bfgs` and :func:`jgd.lbfgs` keep them in
their state, so they can be arrays, tracers (``jax.vmap`` over ``c1``) or schedules.
Every search makes at most ``max_steps`` evaluations in a fixed-shape ``lax.while_loop``,
so it runs under ``jit`` and ``vmap``, and on failure falls back to a safe step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jgd.hyperparams import check_values
from jgd.types import ScalarOrSchedule

ValueAndGrad = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


class LineSearchResult(NamedTuple):
    """What a line search found along ``x + α d``.

    Attributes:
      step: the accepted ``α``; 0 when no trial decreased ``f`` enough (the safe fallback).
      value: ``f`` at ``x + α d``, for the caller to reuse.
      grad: the flat gradient at ``x + α d``, for the caller to reuse.
      nfev: evaluations of ``f`` and its gradient made by this search.
      success: whether ``step`` meets the search's conditions.

    Examples:
      What a search found: the step, ``f`` and ``∇f`` there, the evaluations made and whether the
      conditions hold:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> search = jgd.zoom_linesearch()
      >>> f = lambda x: jnp.sum((x - 1.0) ** 2)
      >>> x = jnp.zeros(2)
      >>> value, grad = jax.value_and_grad(f)(x)
      >>> result = search.search(jax.value_and_grad(f), x, value, grad, -grad, jnp.array(1.0), **search.hyperparams)
      >>> print(result.step, result.value, result.grad, result.nfev, result.success)
      0.5 0.0 [0. 0.] 2 True
    """

    step: jax.Array
    value: jax.Array
    grad: jax.Array
    nfev: jax.Array
    success: jax.Array


class LineSearch(NamedTuple):
    """A line search: its float hyperparameters and a pure search function.

    ``search(value_and_grad, x, value, grad, direction, step, **hyperparams) -> LineSearchResult``
    where ``value_and_grad(x) -> (f(x), ∇f(x))`` on flat vectors, ``value, grad`` are ``f`` and
    ``∇f`` at ``x``, ``direction`` is a descent direction and ``step`` the first trial ``α``.

    Examples:
      A line search is its hyperparameters and a pure search function; the quasi-Newton methods call it:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> search = jgd.backtracking_linesearch()
      >>> print(sorted(search.hyperparams))
      ['c1', 'shrink']
      >>> f = lambda x: jnp.sum(x**2)
      >>> x = jnp.array([1.0, 1.0])
      >>> value, grad = jax.value_and_grad(f)(x)
      >>> result = search.search(jax.value_and_grad(f), x, value, grad, -grad, jnp.array(1.0), **search.hyperparams)
      >>> print(result.step, result.value, result.success)
      0.5 0.0 True

      The full step ``−∇f = (−2, −2)`` overshoots to ``(−1, −1)`` with no decrease; half of it reaches the
      minimum.
    """

    hyperparams: dict[str, Any]
    search: Callable[..., LineSearchResult]


def _check(hyperparams: dict[str, Any]) -> dict[str, Any]:
    """Validates a line search's hyperparameters by the one range table (schedules by their first value)."""
    check_values(hyperparams)
    return hyperparams


def _check_max_steps(max_steps: int) -> None:
    if not isinstance(max_steps, (int, np.integer)) or isinstance(max_steps, bool) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")


def _cubicmin(a, fa, dfa, b, fb, c, fc):
    """Minimizer of the cubic through ``(a, fa)`` with slope ``dfa``, ``(b, fb)`` and ``(c, fc)``; NaN if none."""
    db, dc = b - a, c - a
    rb, rc = fb - fa - dfa * db, fc - fa - dfa * dc
    denom = (db * dc) ** 2 * (db - dc)
    big_a = (dc**2 * rb - db**2 * rc) / denom
    big_b = (-(dc**3) * rb + db**3 * rc) / denom
    return a + (-big_b + jnp.sqrt(big_b**2 - 3 * big_a * dfa)) / (3 * big_a)


def _quadmin(a, fa, dfa, b, fb):
    """Minimizer of the quadratic through ``(a, fa)`` with slope ``dfa`` and ``(b, fb)``."""
    db = b - a
    return a - dfa / (2 * (fb - fa - dfa * db) / db**2)


class _Zoom(NamedTuple):
    """Loop carry of the zoom search; a point is the vector ``(α, φ(α), φ'(α))``."""

    nfev: jax.Array
    bracketing: jax.Array  # in Alg. 3.5 (looking for a bracket) rather than Alg. 3.6 (zooming into it)
    done: jax.Array
    prev: jax.Array  # the last bracketing trial
    lo: jax.Array  # the bracket end with the lowest sufficient-decrease value
    hi: jax.Array
    rec: jax.Array  # the point dropped last from the bracket, the cubic's third point
    best: jax.Array  # the point to return: the Wolfe point, else the lowest sufficient decrease
    best_grad: jax.Array


def zoom_linesearch(c1: ScalarOrSchedule = 1e-4, c2: ScalarOrSchedule = 0.9, max_steps: int = 20) -> LineSearch:
    """Strong-Wolfe line search: bracketing, then zoom.

    Finds ``α`` with ``φ(α) ≤ φ(0) + c1 α φ'(0)`` (sufficient decrease) and
    ``|φ'(α)| ≤ c2 |φ'(0)|`` (curvature), ``φ(α) = f(x + α d)``, ``0 < c1 < c2 < 1``.
    Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, Alg. 3.5 (bracketing, doubling
    ``α``) and Alg. 3.6 (zoom), the trial inside the bracket taken by safeguarded cubic, then
    quadratic interpolation, then bisection (§3.5, eqs. 3.57–3.59; as scipy's ``line_search_wolfe2``).
    After ``max_steps`` evaluations without a Wolfe point it returns the trial of lowest value with
    sufficient decrease, or ``α = 0``.

    Args:
      c1: the sufficient-decrease constant, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``)
        in (0, 1); 1e-4 as Nocedal & Wright (§3.1).
      c2: the curvature constant, as for ``c1``, with ``c1 < c2``; 0.9 as Nocedal & Wright for
        quasi-Newton directions (§3.1).
      max_steps: an int ≥ 1, the most evaluations of ``f`` and its gradient per search; 20.

    Examples:
      L-BFGS's default search; its constants are hyperparameters like any other, in the state:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.lbfgs(linesearch=jgd.zoom_linesearch(c1=1e-4, c2=0.9))
      >>> state = tx.init(jnp.zeros(2))
      >>> print(jgd.hyperparams(state)["c2"])
      0.9
      >>> result = jgd.minimize(lambda x: jnp.sum((x - 2.0) ** 2), jnp.zeros(2), method=tx)
      >>> print(result.x, result.nit)
      [2. 2.] 2

      On a quadratic the first step, ``H_0 ∇f`` cut to length 1, is followed by an exact one.
    """
    hyperparams = _check({"c1": c1, "c2": c2})
    _check_max_steps(max_steps)

    def search(value_and_grad, x, value, grad, direction, step, *, c1, c2):
        dtype = x.dtype
        c1, c2, step = (jnp.asarray(v, dtype) for v in (c1, c2, step))
        value = jnp.asarray(value, dtype)
        slope = grad @ direction
        origin = jnp.stack([jnp.zeros((), dtype), value, slope])

        def trial(c):
            left, right = jnp.minimum(c.lo[0], c.hi[0]), jnp.maximum(c.lo[0], c.hi[0])
            width = right - left
            cubic = _cubicmin(*c.lo, *c.hi[:2], *c.rec[:2])
            cubic_ok = (c.rec[0] != c.lo[0]) & (cubic > left + 0.2 * width) & (cubic < right - 0.2 * width)
            quad = _quadmin(*c.lo, *c.hi[:2])
            quad_ok = (quad > left + 0.1 * width) & (quad < right - 0.1 * width)
            inside = jnp.where(cubic_ok, cubic, jnp.where(quad_ok, quad, left + width / 2))
            outward = jnp.where(c.nfev == 0, step, 2 * c.prev[0])
            return jnp.where(c.bracketing, outward, inside)

        def body(c):
            a = trial(c)
            f, g = value_and_grad(x + a * direction)
            new = jnp.stack([a, jnp.asarray(f, dtype), g @ direction])
            decrease = new[1] <= value + c1 * a * slope  # False for NaN: a step out of the domain is too long
            curvature = jnp.abs(new[2]) <= c2 * jnp.abs(slope)
            # Alg. 3.5: the trial ends the bracket if it lacks decrease or rises above the last trial.
            too_far = ~decrease | ((new[1] >= c.prev[1]) & (c.nfev > 0))
            past_min = ~too_far & ~curvature & (new[2] >= 0)
            # Alg. 3.6: the trial replaces hi if it lacks decrease or is not below lo; else it becomes lo.
            z_high = ~decrease | (new[1] >= c.lo[1])
            z_flip = ~z_high & (new[2] * (c.hi[0] - c.lo[0]) >= 0)
            found = jnp.where(c.bracketing, ~too_far, ~z_high) & curvature

            b_lo = jnp.where(past_min, new, c.prev)
            b_hi = jnp.where(past_min, c.prev, new)
            z_lo = jnp.where(z_high, c.lo, new)
            z_hi = jnp.where(z_high, new, jnp.where(z_flip, c.lo, c.hi))
            z_rec = jnp.where(z_high | z_flip, c.hi, c.lo)
            lo = jnp.where(c.bracketing, b_lo, z_lo)
            better = found | (decrease & (new[1] < c.best[1]))
            return _Zoom(
                nfev=c.nfev + 1,
                bracketing=c.bracketing & ~too_far & ~past_min,
                done=found,
                prev=new,
                lo=lo,
                hi=jnp.where(c.bracketing, b_hi, z_hi),
                rec=jnp.where(c.bracketing, lo, z_rec),  # entering the zoom: no third point yet
                best=jnp.where(better, new, c.best),
                best_grad=jnp.where(better, g, c.best_grad),
            )

        def cond(c):
            return ~c.done & (c.nfev < max_steps)

        start = _Zoom(jnp.zeros((), jnp.int32), jnp.array(True), jnp.array(False), *(origin,) * 4, origin, grad)
        # The first trial runs outside the loop: most searches end there, and on XLA's CPU runtime a
        # while loop whose body runs costs several µs more than the same ops outside it.
        end = jax.lax.while_loop(cond, body, body(start))
        return LineSearchResult(end.best[0], end.best[1], end.best_grad, end.nfev, end.done)

    return LineSearch(hyperparams, search)


class _Backtrack(NamedTuple):
    nfev: jax.Array
    step: jax.Array
    done: jax.Array
    value: jax.Array
    grad: jax.Array


def unit_step() -> LineSearch:
    """No search: the step ``α = 1`` along the direction, evaluating ``f`` and ``∇f`` there once.

    With :func:`jgd.lbfgs`'s ``learning_rate`` this is optax's ``lbfgs(learning_rate, linesearch=None)``:
    a fixed step ``-η H ∇f``. ``success`` is whether ``f`` is finite at the new point.

    Examples:
      No search: a fixed step ``−η H ∇f``, optax's ``lbfgs(learning_rate, linesearch=None)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.lbfgs(linesearch=jgd.unit_step(), learning_rate=0.5)
      >>> result = jgd.minimize(lambda x: jnp.sum((x - 2.0) ** 2), jnp.zeros(2), method=tx, maxiter=1)
      >>> print(result.x)
      [0.35355338 0.35355338]

      L-BFGS's first direction is ``−∇f`` cut to length 1, ``(1, 1) / √2``, and ``η = 0.5`` takes half of
      it.
    """

    def search(value_and_grad, x, value, grad, direction, step):
        f, g = value_and_grad(x + step * direction)
        f = jnp.asarray(f, x.dtype)
        return LineSearchResult(jnp.asarray(step, x.dtype), f, g, jnp.ones((), jnp.int32), jnp.isfinite(f))

    return LineSearch({}, search)


def backtracking_linesearch(
    c1: ScalarOrSchedule = 1e-4, shrink: ScalarOrSchedule = 0.5, max_steps: int = 30
) -> LineSearch:
    """Backtracking until sufficient decrease (Armijo).

    Tries ``α, ρα, ρ²α, ...`` until ``f(x + α d) ≤ f(x) + c1 α ∇fᵀd``, ``ρ = shrink``.
    Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, Alg. 3.1. Each trial evaluates
    the gradient too, so the caller gets ``∇f`` at the accepted point. After ``max_steps``
    trials without sufficient decrease it returns ``α = 0``.

    Args:
      c1: the sufficient-decrease constant, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``)
        in (0, 1); 1e-4 as Nocedal & Wright (§3.1).
      shrink: ρ, the factor each rejected trial multiplies ``α`` by, as for ``c1``, in (0, 1); 0.5.
      max_steps: an int ≥ 1, the most trials per search; 30.

    Examples:
      Armijo backtracking in place of the zoom search:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.bfgs(linesearch=jgd.backtracking_linesearch(c1=1e-4, shrink=0.5))
      >>> result = jgd.minimize(lambda x: jnp.sum((x - 2.0) ** 2), jnp.zeros(2), method=tx)
      >>> print(result.x, result.success)
      [2. 2.] True
      >>> print(sorted(jgd.hyperparams(tx.init(jnp.zeros(2)))))
      ['c1', 'shrink']
    """
    hyperparams = _check({"c1": c1, "shrink": shrink})
    _check_max_steps(max_steps)

    def search(value_and_grad, x, value, grad, direction, step, *, c1, shrink):
        dtype = x.dtype
        c1, shrink, value = jnp.asarray(c1, dtype), jnp.asarray(shrink, dtype), jnp.asarray(value, dtype)
        slope = grad @ direction

        def body(c):
            f, g = value_and_grad(x + c.step * direction)
            f = jnp.asarray(f, dtype)
            ok = f <= value + c1 * c.step * slope  # False for NaN
            return _Backtrack(
                c.nfev + 1,
                jnp.where(ok, c.step, shrink * c.step),
                ok,
                jnp.where(ok, f, c.value),
                jnp.where(ok, g, c.grad),
            )

        def cond(c):
            return ~c.done & (c.nfev < max_steps)

        start = _Backtrack(jnp.zeros((), jnp.int32), jnp.asarray(step, dtype), jnp.array(False), value, grad)
        end = jax.lax.while_loop(cond, body, body(start))  # the first trial outside the loop, as in the zoom
        return LineSearchResult(jnp.where(end.done, end.step, 0), end.value, end.grad, end.nfev, end.done)

    return LineSearch(hyperparams, search)
