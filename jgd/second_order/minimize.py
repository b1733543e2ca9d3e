"""``minimize``: runs a transform to convergence inside one jitted ``lax.while_loop``, scipy-style."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jgd import trees
from jgd.base import GradientTransformation, apply_updates, with_extra_args
from jgd.second_order.quasi_newton import QuasiNewtonState, bfgs, lbfgs
from jgd.trees import global_norm
from jgd.types import PyTree

# Why the loop stopped, indexed by ``MinimizeResult.status`` (0 is success, as in scipy).
STATUS_MESSAGES = (
    "converged: the gradient norm is at most tol",
    "stopped after maxiter iterations",
    "stopped: f is not finite",
    "stopped: the step left x unchanged (the line search found no decrease)",
)


class MinimizeResult(NamedTuple):
    """What :func:`minimize` found; the property ``message`` gives the text of ``status``.

    Attributes:
      x: the last iterate (shaped like ``x0``).
      fun: ``f(x)``.
      grad_norm: ``‖∇f(x)‖₂``.
      nit: iterations made.
      nfev: evaluations of ``f`` and ``∇f``.
      success: ``grad_norm ≤ tol``.
      status: why the loop stopped, an index into ``jgd.second_order.minimize.STATUS_MESSAGES`` (0 is
        success).

    Examples:
      What :func:`jgd.minimize` returns; ``message`` reads ``status``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> result = jgd.minimize(lambda x: jnp.sum((x - 1.0) ** 2), jnp.zeros(3), maxiter=1, method=jgd.sgd(0.1))
      >>> print(result.x, result.fun, result.nit, result.success)
      [0.2 0.2 0.2] 1.9200001 1 False
      >>> print(result.status, result.message)
      1 stopped after maxiter iterations
    """

    x: PyTree
    fun: jax.Array
    grad_norm: jax.Array
    nit: jax.Array
    nfev: jax.Array
    success: jax.Array
    status: jax.Array

    @property
    def message(self) -> str | list[str]:
        """The reason for ``status``; a list of reasons for a batch of results (``jax.vmap``)."""
        status = np.asarray(self.status)
        return STATUS_MESSAGES[int(status)] if status.ndim == 0 else [STATUS_MESSAGES[int(s)] for s in status.flat]


_METHODS: dict[str, Callable[[], GradientTransformation]] = {"lbfgs": lbfgs, "bfgs": bfgs}


@functools.cache
def _named(method: str, x64: bool) -> GradientTransformation:
    # One instance per name, so the jitted loop is compiled once per objective; one per float width,
    # since the line search's constants are made in the default float dtype.
    return _METHODS[method]()


def minimize(
    fun: Callable[[PyTree], jax.Array],
    x0: PyTree,
    method: str | GradientTransformation = "lbfgs",
    *,
    maxiter: int = 1000,
    tol: float = 1e-6,
) -> MinimizeResult:
    """Minimizes ``fun`` from ``x0``: ``x_{k+1} = x_k + u_k``, ``u_k`` the transform's update at ``x_k``.

    ``method`` is ``"lbfgs"``, ``"bfgs"`` (:func:`jgd.lbfgs`, :func:`jgd.bfgs` with their defaults)
    or any gradient transformation, to which ``update`` passes ``value=f(x_k)``, ``grad=∇f(x_k)`` and
    ``value_fn=fun``. The loop stops when ``‖∇f(x_k)‖₂ ≤ tol``, after ``maxiter`` iterations, when ``f``
    is not finite, or when a step leaves ``x`` unchanged (a line search that found no decrease).
    It runs in one ``lax.while_loop`` compiled with ``jax.jit`` (once per ``fun`` and ``method``;
    ``maxiter`` and ``tol`` are data), works under ``jax.vmap``, and ``x0`` may be any pytree.
    The quasi-Newton methods reuse the ``f`` and ``∇f`` their line search computed at the new point.
    The result carries the fields ``x, fun, nit, nfev, success, status, message`` of scipy's ``OptimizeResult``
    (``scipy.optimize.minimize``), with the same meaning, and ``grad_norm``.

    Args:
      fun: the objective ``x -> scalar``, differentiable by ``jax.grad``.
      x0: the starting point, a tree of floating arrays (``jgd.types.PyTree``).
      method: ``"lbfgs"`` (default), ``"bfgs"`` or a gradient transformation.
      maxiter: an int ≥ 1 (or an int array), the most iterations; 1000.
      tol: the gradient-norm tolerance, a float ≥ 0 (or a scalar array); 1e-6.

    Examples:
      L-BFGS to ``‖∇f‖ ≤ 10⁻³`` (in float32) in one compiled loop; the result says why it stopped:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> def rosenbrock(x):
      ...     return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
      ...
      >>> result = jgd.minimize(rosenbrock, jnp.zeros(5), method="lbfgs", tol=1e-3)
      >>> print(result.x.round(3), result.success, result.message)
      [1. 1. 1. 1. 1.] True converged: the gradient norm is at most tol
      >>> print(bool(result.nit < 100), bool(result.grad_norm <= 1e-3))
      True True

      Any pytree is an ``x0``, and any transform a method; on this quadratic SGD with ``η = 1/2`` is
      Newton's step:

      >>> def f(p):
      ...     return (p["a"] - 3.0) ** 2 + p["b"] ** 2
      ...
      >>> result = jgd.minimize(f, {"a": 0.0, "b": 1.0}, method=jgd.sgd(0.5))
      >>> print(result.x["a"], result.x["b"], result.nit, result.success)
      3.0 0.0 1 True
    """
    if isinstance(method, str):
        if method not in _METHODS:
            raise ValueError(f"method must be one of {sorted(_METHODS)} or a GradientTransformation, got {method!r}")
        method = _named(method, bool(jax.config.read("jax_enable_x64")))
    elif not (callable(getattr(method, "init", None)) and callable(getattr(method, "update", None))):
        raise ValueError(f"method must be one of {sorted(_METHODS)} or a GradientTransformation, got {method!r}")
    if not isinstance(maxiter, jax.core.Tracer):
        count = np.asarray(maxiter)
        if count.shape != () or not np.issubdtype(count.dtype, np.integer) or count < 1:
            raise ValueError(f"maxiter must be a positive int, got {maxiter!r}")
    if not isinstance(tol, jax.core.Tracer) and not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be finite and >= 0, got {tol!r}")
    return _minimize(fun, method, x0, maxiter, tol)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _minimize(fun, tx, x0, maxiter, tol) -> MinimizeResult:
    trees.check_floating("x0", x0)  # at trace time only: dtypes are static
    tx, maxiter = with_extra_args(tx), jnp.asarray(maxiter, jnp.int32)
    if isinstance(jax.eval_shape(tx.init, x0), QuasiNewtonState):
        # The quasi-Newton transforms flatten the params anyway: run on the flat vector.
        flat, unravel = ravel_pytree(x0)
        result = _loop(lambda v: fun(unravel(v)), tx, flat, maxiter, tol, reuse=True)
        return result._replace(x=unravel(result.x))
    return _loop(fun, tx, x0, maxiter, tol, reuse=False)


class _Carry(NamedTuple):
    x: PyTree
    value: jax.Array
    grad: PyTree
    grad_norm: jax.Array
    state: PyTree
    nit: jax.Array
    nfev: jax.Array
    moved: jax.Array


def _loop(fun, tx, x0, maxiter, tol, *, reuse: bool) -> MinimizeResult:
    value_and_grad = jax.value_and_grad(fun)
    value, grad = value_and_grad(x0)
    tol = jnp.asarray(tol, jnp.result_type(value))
    state = tx.init(x0)
    if reuse:
        # f and ∇f live in the quasi-Newton state alone: a second copy in the carry costs a copy per iteration.
        state, value, grad = state._replace(value=jnp.asarray(value, state.value.dtype), grad=grad), None, None

    def current(c):
        return (c.state.value, c.state.grad) if reuse else (c.value, c.grad)

    def cond(c):
        return (c.nit < maxiter) & (c.grad_norm > tol) & jnp.isfinite(current(c)[0]) & c.moved

    def body(c):
        value, grad = current(c)
        updates, state = tx.update(grad, c.state, c.x, value=value, grad=grad, value_fn=fun)
        x = apply_updates(c.x, updates)
        if reuse:
            value, grad, nfev, grad_norm = None, None, 1 + state.nfev, global_norm(state.grad)
        else:
            (value, grad), nfev = value_and_grad(x), c.nfev + 1
            grad_norm = global_norm(grad)
        moved = jax.tree.reduce(jnp.logical_or, jax.tree.map(lambda u: jnp.any(u != 0), updates), False)
        return _Carry(x, value, grad, grad_norm, state, c.nit + 1, nfev, moved)

    zero = jnp.zeros((), jnp.int32)
    start = _Carry(x0, value, grad, global_norm(state.grad if reuse else grad), state, zero, zero + 1, jnp.array(True))
    end = jax.lax.while_loop(cond, body, start)
    value = current(end)[0]
    success = (end.grad_norm <= tol) & jnp.isfinite(value)
    # The first reason that holds, in the order of STATUS_MESSAGES.
    status = jnp.select([success, end.nit >= maxiter, ~jnp.isfinite(value)], [0, 1, 2], 3).astype(jnp.int32)
    nfev = jnp.asarray(end.nfev, jnp.int32)
    return MinimizeResult(end.x, value, end.grad_norm, end.nit, nfev, success, status)
