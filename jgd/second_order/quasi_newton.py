"""BFGS and L-BFGS: quasi-Newton directions followed by a line search, as gradient transformations.

``update(grads, state, params, value=f(params), grad=∇f(params), value_fn=f)`` returns the step
``α d`` with ``d = -H grads`` and ``α`` from the line search, like optax's ``lbfgs``. ``value``
and ``grad`` default to ``value_fn(params)`` and ``grads``. The state keeps ``f`` and ``∇f`` at the
new params (``state.value``, ``state.grad``), so a loop need not evaluate them again.
Both methods flatten the params with ``ravel_pytree`` and keep fixed-shape arrays, so they run
under ``jit``, ``lax.while_loop`` and ``vmap``.

Inside ``optax.chain``, wrap them as ``optax.GradientTransformationExtraArgs(*jgd.lbfgs())``:
optax hands ``value``, ``grad`` and ``value_fn`` only to transforms of that type, and without
them ``update`` raises a ``ValueError`` asking for the objective. ``jgd.chain`` needs no wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jgd import trees
from jgd.base import GradientTransformation
from jgd.hyperparams import Hyperparameters
from jgd.second_order.linesearch import LineSearch, zoom_linesearch
from jgd.state import TransformState
from jgd.types import PyTree, ScalarOrSchedule


class BFGSMemory(NamedTuple):
    """inverse_hessian: the ``(n, n)`` approximation ``H``; pair_count: the curvature pairs taken into it."""

    inverse_hessian: jax.Array
    pair_count: jax.Array


class LBFGSMemory(NamedTuple):
    """The last ``m`` pairs in circular buffers: ``s``, ``y`` ``(m, n)``, ``rho = 1/sᵀy`` ``(m,)``
    (0 marks an empty slot), ``gamma`` the initial scaling, ``pair_count`` the pairs taken so far."""

    s: jax.Array
    y: jax.Array
    rho: jax.Array
    gamma: jax.Array
    pair_count: jax.Array


class QuasiNewtonState(NamedTuple):
    """State of :func:`bfgs` and :func:`lbfgs`.

    Attributes:
      common: the step count and the line search's hyperparameters, as in every jgd transform
        (so ``jgd.hyperparams`` and ``jgd.set_hyperparams`` reach ``c1``, ``c2``, ...).
      memory: the curvature information: ``BFGSMemory`` (the inverse Hessian approximation ``H``, a
        matrix over the raveled params) or ``LBFGSMemory`` (the last ``memory_size`` pairs ``s``, ``y``
        and their ``ρ = 1 / sᵀy``), both in ``jgd.second_order.quasi_newton``.
      value: ``f`` at the params after the last update.
      grad: ``∇f`` (shaped like the params) at the params after the last update.
      nfev: evaluations made by the line searches so far.
      linesearch_ok: whether the last line search met its conditions.

    Examples:
      The count and line-search settings, the curvature pairs, and ``f`` and ``∇f`` at the current params:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> def rosenbrock(x):
      ...     return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
      ...
      >>> tx = jgd.lbfgs(memory_size=3)
      >>> x = jnp.array([-1.2, 1.0])
      >>> state = tx.init(x)
      >>> print(state.memory.s.shape, sorted(jgd.hyperparams(state)))
      (3, 2) ['c1', 'c2']
      >>> updates, state = tx.update(jnp.array([-215.6, -88.0]), state, x, value_fn=rosenbrock)
      >>> print(state.common.count, state.linesearch_ok, state.value < 24.2)
      1 True True
    """

    common: TransformState
    memory: BFGSMemory | LBFGSMemory
    value: jax.Array
    grad: PyTree
    nfev: jax.Array
    linesearch_ok: jax.Array


def _quasi_newton(
    name: str,
    linesearch: LineSearch | None,
    init_memory: Callable[[int, Any], NamedTuple],
    apply_inverse: Callable[[Any, jax.Array], jax.Array],
    add_pair: Callable[..., NamedTuple],
    *,
    learning_rate: ScalarOrSchedule | None = None,
    scale_first_step: bool = True,
) -> GradientTransformation:
    """A quasi-Newton transform from its memory: ``apply_inverse(memory, g) = H g`` and
    ``add_pair(memory, s, y, sy, accept)``, which must leave the memory unchanged where ``accept`` is False.
    ``learning_rate`` scales the direction before the line search; ``scale_first_step`` cuts the first
    step (before any pair) to length at most 1."""
    linesearch = zoom_linesearch() if linesearch is None else linesearch
    if not isinstance(linesearch, LineSearch):
        raise ValueError(f"linesearch must be a jgd LineSearch (zoom_linesearch(), ...), got {linesearch!r}")
    rate = {} if learning_rate is None else {"learning_rate": learning_rate}
    component = Hyperparameters(name, {**linesearch.hyperparams, **rate})

    def init_fn(params):
        trees.check_floating("params", params)
        x, _ = ravel_pytree(params)
        return QuasiNewtonState(
            common=component.init(),
            memory=init_memory(x.size, x.dtype),
            value=jnp.asarray(jnp.inf, x.dtype),
            grad=jax.tree.map(jnp.zeros_like, params),
            nfev=jnp.zeros((), jnp.int32),
            linesearch_ok=jnp.array(True),
        )

    def update_fn(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        del extra_args
        if not isinstance(state, QuasiNewtonState):
            raise TypeError(f"{name}.update needs the state {name}.init makes, got {type(state).__name__}")
        if value_fn is None:
            raise ValueError(f"{name} needs the objective: call update(..., value_fn=f)")
        if params is None:
            raise ValueError(f"{name} needs params: call update(updates, state, params, value_fn=f)")
        x, unravel = ravel_pytree(params)
        u = ravel_pytree(updates)[0].astype(x.dtype)
        g = u if grad is None else ravel_pytree(grad)[0].astype(x.dtype)
        nfev = state.nfev
        if value is None:
            value, nfev = value_fn(params), nfev + 1
        value = jnp.asarray(value, x.dtype)

        def value_and_grad(z):
            f, gz = jax.value_and_grad(value_fn)(unravel(z))
            return f, ravel_pytree(gz)[0].astype(x.dtype)

        hp, common = component.resolve(state.common)
        # Before any curvature pair, H = I is scaled to a first step of length at most 1 (as optax, scipy).
        first = jnp.minimum(1, 1 / jnp.linalg.norm(u)) if scale_first_step else 1
        d = -apply_inverse(state.memory, u) * jnp.where(state.memory.pair_count == 0, first, 1)
        # H stays positive definite, but updates from an upstream transform need not make d a descent direction.
        steepest = -g * jnp.minimum(1, 1 / jnp.linalg.norm(g))
        d = jnp.where(g @ d < 0, d, steepest)
        if learning_rate is not None:
            d = hp["learning_rate"].astype(x.dtype) * d
        found = linesearch.search(value_and_grad, x, value, g, d, 1.0, **{k: hp[k] for k in linesearch.hyperparams})

        s, y = found.step * d, found.grad - g
        sy = s @ y
        # Skip the pair unless sᵀy > 0 (beyond rounding), which keeps H positive definite (N&W §6.1).
        accept = sy > jnp.finfo(x.dtype).eps * jnp.sqrt((s @ s) * (y @ y))
        new_state = QuasiNewtonState(
            common=component.advance(common),
            memory=add_pair(state.memory, s, y, sy, accept),
            value=found.value,
            grad=unravel(found.grad),
            nfev=nfev + found.nfev,
            linesearch_ok=found.success,
        )
        return unravel(s), new_state

    return GradientTransformation(init_fn, update_fn)


def bfgs(linesearch: LineSearch | None = None, *, initial_scaling: bool = False) -> GradientTransformation:
    """BFGS with a dense inverse-Hessian approximation.

    ``d_k = -H_k ∇f_k``, ``x_{k+1} = x_k + α_k d_k``, ``s_k = x_{k+1} - x_k``, ``y_k = ∇f_{k+1} - ∇f_k``,
    ``H_{k+1} = (I - ρ_k s_k y_kᵀ) H_k (I - ρ_k y_k s_kᵀ) + ρ_k s_k s_kᵀ``, ``ρ_k = 1 / y_kᵀ s_k``.
    Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, Alg. 6.1, eq. 6.17.
    ``H_0 = I``, its first step cut to length ``≤ 1``; ``initial_scaling=True`` sets
    ``H_0 = (y_0ᵀ s_0 / y_0ᵀ y_0) I`` before the first update (eq. 6.20). That heuristic is off by
    default: when the first step sees mostly high curvature it makes ``H`` too small everywhere,
    which BFGS corrects slowly (on a 10-D quadratic of condition 100: 42 iterations instead of 11).
    The update is skipped when ``sᵀy ≤ ε‖s‖‖y‖`` (``sᵀy ≤ 0`` up to rounding).
    The ``(n, n)`` matrix suits problems of up to a few thousand parameters.

    Args:
      linesearch: a :class:`jgd.LineSearch` (:func:`jgd.zoom_linesearch`, :func:`jgd.backtracking_linesearch`),
        whose float hyperparameters the state keeps; None (default) for ``zoom_linesearch()``, the strong
        Wolfe conditions BFGS's theory asks for (Nocedal & Wright §6.1).
      initial_scaling: set ``H_0`` by eq. 6.20 before the first update; default False (see above).

    Examples:
      BFGS on the 2-D Rosenbrock function from ``(−1.2, 1)``, a jitted step called from Python;
      ``update`` takes the objective as ``value_fn``, with ``f`` and ``∇f`` at the params:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> def rosenbrock(x):
      ...     return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
      ...
      >>> tx, x = jgd.bfgs(), jnp.array([-1.2, 1.0])
      >>> @jax.jit
      ... def step(x, state):
      ...     value, grad = jax.value_and_grad(rosenbrock)(x)
      ...     updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=rosenbrock)
      ...     return jgd.apply_updates(x, updates), state
      ...
      >>> state = tx.init(x)
      >>> for _ in range(40):
      ...     x, state = step(x, state)
      ...
      >>> print(x.round(4), state.memory.inverse_hessian.shape)
      [1. 1.] (2, 2)

      The minimum is ``(1, 1)``. :func:`jgd.minimize` runs the same loop in one compiled ``while_loop``.
    """

    def init_memory(n, dtype):
        return BFGSMemory(jnp.eye(n, dtype=dtype), jnp.zeros((), jnp.int32))

    def apply_inverse(memory, g):
        return memory.inverse_hessian @ g

    def add_pair(memory, s, y, sy, accept):
        rho = 1 / jnp.where(accept, sy, 1)
        h = memory.inverse_hessian
        if initial_scaling:
            gamma = sy / jnp.where(accept, y @ y, 1)
            h = jnp.where(memory.pair_count == 0, gamma * jnp.eye(s.size, dtype=s.dtype), h)
        hy = h @ y
        # (I - ρ s yᵀ) H (I - ρ y sᵀ) + ρ s sᵀ, expanded into rank-one terms (H is symmetric).
        new = h - rho * (jnp.outer(s, hy) + jnp.outer(hy, s)) + (rho**2 * (y @ hy) + rho) * jnp.outer(s, s)
        return BFGSMemory(jnp.where(accept, new, memory.inverse_hessian), memory.pair_count + accept)

    return _quasi_newton("bfgs", linesearch, init_memory, apply_inverse, add_pair)


def _two_loop(memory: LBFGSMemory, g: jax.Array) -> jax.Array:
    """``H g`` by the two-loop recursion over the circular buffers (N&W Alg. 7.4)."""
    m = memory.rho.shape[0]
    oldest_first = (memory.pair_count + jnp.arange(m)) % m

    def back(q, j):
        a = memory.rho[j] * (memory.s[j] @ q)
        return q - a * memory.y[j], a

    def forward(r, j_and_a):
        j, a = j_and_a
        b = memory.rho[j] * (memory.y[j] @ r)
        return r + (a - b) * memory.s[j], None

    # Empty slots have ρ = 0 and zero vectors, so they leave q and r unchanged.
    q, alphas = jax.lax.scan(back, g, oldest_first, reverse=True)
    return jax.lax.scan(forward, memory.gamma * q, (oldest_first, alphas))[0]


def lbfgs(
    memory_size: int = 10,
    linesearch: LineSearch | None = None,
    *,
    learning_rate: ScalarOrSchedule | None = None,
    scale_init_precond: bool = True,
) -> GradientTransformation:
    """L-BFGS: BFGS with ``H_k`` kept implicitly as its last ``m`` pairs ``(s_i, y_i)``.

    ``d_k = -H_k ∇f_k`` by the two-loop recursion: ``q = ∇f_k``; for ``i = k-1, ..., k-m``:
    ``α_i = ρ_i s_iᵀ q``, ``q ← q - α_i y_i``; ``r = γ_k q``, ``γ_k = s_{k-1}ᵀ y_{k-1} / y_{k-1}ᵀ y_{k-1}``;
    for ``i = k-m, ..., k-1``: ``β = ρ_i y_iᵀ r``, ``r ← r + s_i (α_i - β)``; ``H_k ∇f_k = r``.
    Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, Alg. 7.4 and 7.5, eq. 7.20;
    Liu & Nocedal, "On the limited memory BFGS method for large scale optimization",
    Math. Programming 45, 1989. A pair with ``sᵀy ≤ ε‖s‖‖y‖`` (``sᵀy ≤ 0`` up to rounding) is not
    stored.

    Args:
      memory_size: ``m``, an int ≥ 1, the pairs kept; 10 as optax (Nocedal & Wright suggest 3 to 20, §7.2).
      linesearch: a :class:`jgd.LineSearch`, as for :func:`bfgs`; None (default) for ``zoom_linesearch()``;
        :func:`jgd.unit_step` for none (optax's ``linesearch=None``).
      learning_rate: ``η`` ≥ 0, a float, an array or a schedule, scaling the direction to ``-η H ∇f``
        before the line search (optax's ``learning_rate``); None (default) for ``η = 1``.
      scale_init_precond: whether ``H_k``'s initial matrix is ``γ_k I`` (eq. 7.20) and the first step is cut
        to length at most 1, as optax's ``scale_init_precond=True`` (default); False keeps ``I`` and the
        first step ``-η ∇f``.

    Examples:
      L-BFGS on the 10-D Rosenbrock function, reading ``f`` and ``∇f`` back from the state (the line
      search computed them):

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> def rosenbrock(x):
      ...     return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
      ...
      >>> import jax
      >>> tx = jgd.lbfgs(memory_size=5)
      >>> value_and_grad = jgd.value_and_grad_from_state(rosenbrock)
      >>> @jax.jit
      ... def step(x, state):
      ...     value, grad = value_and_grad(x, state)
      ...     updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=rosenbrock)
      ...     return jgd.apply_updates(x, updates), state
      ...
      >>> x = jnp.zeros(10)
      >>> state = tx.init(x)
      >>> for _ in range(60):
      ...     x, state = step(x, state)
      ...
      >>> print(x.round(3))
      [1. 1. 1. 1. 1. 1. 1. 1. 1. 1.]
      >>> print(state.memory.s.shape, state.nfev > 60)
      (5, 10) True
    """
    if not isinstance(memory_size, (int, np.integer)) or isinstance(memory_size, bool) or memory_size < 1:
        raise ValueError(f"memory_size must be a positive int, got {memory_size!r}")
    m = int(memory_size)

    def init_memory(n, dtype):
        s, y = jnp.zeros((m, n), dtype), jnp.zeros((m, n), dtype)
        return LBFGSMemory(s, y, jnp.zeros((m,), dtype), jnp.ones((), dtype), jnp.zeros((), jnp.int32))

    def add_pair(memory, s, y, sy, accept):
        j = memory.pair_count % m
        return LBFGSMemory(
            s=memory.s.at[j].set(jnp.where(accept, s, memory.s[j])),
            y=memory.y.at[j].set(jnp.where(accept, y, memory.y[j])),
            rho=memory.rho.at[j].set(jnp.where(accept, 1 / jnp.where(accept, sy, 1), memory.rho[j])),
            gamma=jnp.where(accept & scale_init_precond, sy / jnp.where(accept, y @ y, 1), memory.gamma),
            pair_count=memory.pair_count + accept,
        )

    return _quasi_newton(
        "lbfgs",
        linesearch,
        init_memory,
        _two_loop,
        add_pair,
        learning_rate=learning_rate,
        scale_first_step=scale_init_precond,
    )


def value_and_grad_from_state(
    fun: Callable[[PyTree], jax.Array],
) -> Callable[[PyTree, PyTree], tuple[jax.Array, PyTree]]:
    """``(params, state) -> (f(params), ∇f(params))`` for a loop around :func:`bfgs` or :func:`lbfgs`.

    Before the first update it evaluates ``jax.value_and_grad(fun)``; after it, it reads ``f`` and
    ``∇f`` from the :class:`QuasiNewtonState` in ``state``, where the line search left them at the new
    params, so each iteration evaluates ``f`` only inside the line search. It holds as long as the
    params are moved by exactly the transform's updates. A step called from Python is fastest with its
    buffers donated::

        value_and_grad = jgd.value_and_grad_from_state(f)

        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(params, state):
            value, grad = value_and_grad(params, state)
            updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=f)
            return jgd.apply_updates(params, updates), state

    Args:
      fun: the objective ``params -> scalar``, the same function passed as ``value_fn`` to ``update``.

    Examples:
      ``f`` and ``∇f`` at the params, read from the quasi-Newton state after the first update instead of
      evaluated again:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> def rosenbrock(x):
      ...     return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
      ...
      >>> tx, value_and_grad = jgd.lbfgs(), jgd.value_and_grad_from_state(rosenbrock)
      >>> x = jnp.array([-1.2, 1.0])
      >>> state = tx.init(x)
      >>> value, grad = value_and_grad(x, state)
      >>> print(value, grad)
      24.20001 [-215.60005  -88.00002]
      >>> updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=rosenbrock)
      >>> x = jgd.apply_updates(x, updates)
      >>> print(value_and_grad(x, state)[0] == state.value, state.value < value)
      True True
    """

    def value_and_grad(params, state):
        found = trees.instances(state, QuasiNewtonState)
        if len(found) != 1:
            raise ValueError(f"state must hold one QuasiNewtonState (from jgd.bfgs or jgd.lbfgs), found {len(found)}")
        (qn,) = found

        def evaluate_here():
            value, grad = jax.value_and_grad(fun)(params)
            return jnp.asarray(value, qn.value.dtype), grad

        return jax.lax.cond(qn.common.count == 0, evaluate_here, lambda: (qn.value, qn.grad))

    return value_and_grad
