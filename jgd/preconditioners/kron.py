"""PSGD-Kron: momentum preconditioned by a Kronecker product of per-axis factors fitted on a Lie group."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jgd import masks as masks_lib
from jgd import trees
from jgd.base import GradientTransformation
from jgd.hyperparams import Hyperparameters
from jgd.leafwise import slot_dtypes
from jgd.lowbit import formats as lowbit
from jgd.preconditioners import kron_factors as factors_lib
from jgd.preconditioners.transform import PreconditionerState, check_update_trees
from jgd.ranges import validate
from jgd.state import check_state
from jgd.types import Mask, ScalarOrSchedule

# psgd-jax's fixed seed: the default draws are its draws.
PSGD_JAX_KEY = 5318008
# The damping of the fitted gradient, √ε of float32 as psgd-jax computes it (a float32 value).
DEFAULT_DAMPING = float(np.sqrt(np.finfo(np.float32).eps))
# psgd-jax rescales the factors to a common size with this probability at each preconditioner update.
BALANCE_PROBABILITY = 0.01
# The update's RMS is capped here: that of a well-fitted preconditioned gradient is about 1.
MAX_UPDATE_RMS = 1.1


def update_probability(
    max_prob: float = 1.0, min_prob: float = 0.03, decay: float = 0.001, flat_start: int = 500
) -> Callable[[jax.Array], jax.Array]:
    """psgd-jax's default schedule of the preconditioner update probability, as a jgd schedule.

    ``p_n = min(max(max_prob · exp(-decay (n - flat_start)), min_prob), max_prob)`` at the ``n``-th update
    (``n = count + 1``: jgd evaluates a schedule at the count of updates before, psgd-jax at the step number).
    The defaults (psgd-jax's): 1 for the first 500 updates, then down to 0.03 by about update 4000.

    Examples:
      >>> from jgd.preconditioners.kron import update_probability
      >>> schedule = update_probability()
      >>> print(schedule(0), schedule(499), round(float(schedule(1499)), 4), schedule(10_000))
      1.0 1.0 0.3679 0.03
    """

    def schedule(count):
        n = count + 1
        return jnp.minimum(jnp.maximum(max_prob * jnp.exp(-decay * (n - flat_start)), min_prob), max_prob)

    return schedule


def _start_key(key: Any) -> jax.Array:
    """``key`` as a typed key: an int seeds ``jax.random.key``; a raw ``PRNGKey`` is wrapped."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array | np.ndarray) and key.shape == (2,) and key.dtype == np.uint32:
        return jax.random.wrap_key_data(jnp.asarray(key))  # a raw ``jax.random.PRNGKey``
    raise ValueError(f"key must be an int, a jax.random.key or a jax.random.PRNGKey, got {key!r}")


def _check_arguments(max_size_triangular, min_ndim_triangular, state_dtype, precond_dtype) -> Any:
    """Raises ``ValueError`` naming the first bad Python-side argument; returns the momentum's dtype."""
    for name, value, low in (
        ("max_size_triangular", max_size_triangular, 1),
        ("min_ndim_triangular", min_ndim_triangular, 0),
    ):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    mu_dtype = slot_dtypes("kron", ("mu",), state_dtype)["mu"]  # one dtype, or {"mu": dtype}
    for name, dtype in (("state_dtype", mu_dtype), ("precond_dtype", precond_dtype)):
        try:
            floating = dtype is None or (not lowbit.is_spec(dtype) and jnp.issubdtype(jnp.dtype(dtype), jnp.floating))
        except TypeError:
            floating = False
        if not floating:
            raise ValueError(f"kron: {name} must be a floating dtype or None, got {dtype!r}")
    return mu_dtype


def kron(
    learning_rate: ScalarOrSchedule = 0.001,
    b1: ScalarOrSchedule = 0.9,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    preconditioner_update_probability: ScalarOrSchedule | None = None,
    max_size_triangular: int = 8192,
    min_ndim_triangular: int = 2,
    memory_save_mode: str | None = None,
    momentum_into_precond_update: bool = True,
    preconditioner_lr: ScalarOrSchedule = 0.1,
    preconditioner_init_scale: float | jax.Array = 1.0,
    damping: ScalarOrSchedule = DEFAULT_DAMPING,
    *,
    key: Any = PSGD_JAX_KEY,
    state_dtype: Any = None,
    precond_dtype: Any = None,
    precond_update_precision: str | None = "tensorfloat32",
    precond_grads_precision: str | None = None,
) -> GradientTransformation:
    """PSGD-Kron: momentum preconditioned by ``QᵀQ``, ``Q`` a Kronecker product of per-axis factors.

    Each param of shape ``(n_1, …, n_k)`` keeps a factor ``Q_i`` per axis (upper triangular ``n_i × n_i``,
    or diagonal for axes longer than ``max_size_triangular``, axes of length 1 and params with fewer than
    ``min_ndim_triangular`` axes; a 0-d param keeps a scalar), ``Q = Q_1 ⊗ … ⊗ Q_k``, ``Q_i = s^(1/k) I``
    at the start. Each update:

        ``m_t = β1 m_{t-1} + (1 - β1) g_t``,  ``m̂_t = m_t / (1 - β1^t)``;
        on a preconditioner update: ``h = m̂_t + δ mean|m̂_t| v``, ``v ~ N(0, I)``,
        ``A = Q h``, ``B = Q⁻ᵀ v`` (axis by axis), and for each axis, with ``AA = A_(i) A_(i)ᵀ``,
        ``BB = B_(i) B_(i)ᵀ`` the products of the unfoldings along axis ``i``,
        ``Q_i ← Q_i − μ triu(AA − BB) Q_i / ‖AA + BB‖_lb``  (diagonal ``Q_i``: ``(AA − BB) Q_i / max|AA + BB|``
        elementwise);
        ``u = QᵀQ m̂_t``,  ``u ← u / max(1, RMS(u) / 1.1)``,  ``θ_{t+1} = θ_t − η (u + λ θ_t)``.

    The fit is the relative gradient step on the group of upper triangular matrices that drives
    ``E[P h hᵀ P] = E[v vᵀ]`` for ``P = QᵀQ`` (so ``P`` approaches the inverse of ``h``'s covariance, the
    Newton-like preconditioner), ``‖·‖_lb`` a cheap lower bound of the spectral norm that normalises the step.
    Li, "Preconditioned stochastic gradient descent", IEEE TNNLS 2018 (the fit criterion and the
    Kronecker-product preconditioner); Li, "Preconditioner on matrix Lie group for SGD", ICLR 2019 (the
    group and its update). With probability 0.01 at a preconditioner update the factors are first rescaled to
    a common ``max|Q_i|`` (their product unchanged), as psgd-jax does; jgd computes the scales in the factors'
    dtype, psgd-jax in float32 (in float64 its rebalanced ``Q`` moves by float32 rounding, jgd's does not).

    The preconditioner update runs under ``lax.cond``, on a deterministic counter: it runs at an update when
    the steps since the last one reach ``1 / p`` (``p = 1/k``: every ``k``-th step; ``p = 0``: never); the other
    steps cost the momentum and ``QᵀQ m̂``. By default ``p`` follows psgd-jax's schedule
    (``jgd.preconditioners.kron.update_probability()``): 1 for 500 steps, then ``exp(−0.001 (n − 500))``
    down to 0.03.

    The random probes and the balance draw come from ``key`` folded with the step count, split into the
    balance draw and one key per leaf in ``jax.tree.leaves`` order; the default key is psgd-jax's fixed seed,
    so the default draws are psgd-jax's (reordering the leaves changes the draws, as in optax's ``noisy_sgd``).
    Everything else matches psgd-jax's ``kron`` with the same arguments (max relative difference 2e-13 over
    20 float64 steps, tests/preconditioners/test_kron.py). psgd-jax's ``mu_dtype`` is ``state_dtype`` here;
    its ``scanned_layers`` and ``lax_map_*`` are not offered.

    The factors are kept in ``precond_dtype`` whatever the params' dtype (float32, or float64 under x64, as
    psgd-jax), in the :class:`jgd.PreconditionerState`'s ``factors["q"]``; the momentum in slot ``mu``.

    Args:
      learning_rate: ``η``, a float, an array or a schedule, ≥ 0; 1e-3 (psgd-jax).
      b1: ``β1`` in [0, 1), a float, an array or a schedule; 0.9 (psgd-jax). 0: the gradient itself.
      weight_decay: ``λ`` ≥ 0, decoupled (added to the preconditioned step), a float, an array or a schedule;
        0 (psgd-jax).
      weight_decay_mask: which leaves are decayed (a bool, a tree of bools or ``params -> tree of bools``);
        every leaf (psgd-jax's ``None``).
      preconditioner_update_probability: ``p`` in [0, 1], a float, an array or a schedule (evaluated at the
        count of updates before, 0 at the first); None: psgd-jax's schedule, above.
      max_size_triangular: axes longer than this (an int ≥ 1) get a diagonal factor; 8192 (psgd-jax).
      min_ndim_triangular: params with fewer axes than this (an int ≥ 0) get diagonal factors only; 2 (psgd-jax).
      memory_save_mode: None; ``"one_diag"``: the longest axis of each param gets a diagonal factor;
        ``"all_diag"``: every axis does.
      momentum_into_precond_update: fit the factors to ``m̂_t`` (True, psgd-jax's default) or to ``g_t``.
      preconditioner_lr: ``μ`` ≥ 0, the factors' step size, a float, an array or a schedule; 0.1 (psgd-jax).
      preconditioner_init_scale: ``s`` > 0, a float or an array; 1 (psgd-jax). Used by ``init`` alone, so not
        kept in the state.
      damping: ``δ`` ≥ 0, the probe's share of the fitted vector, a float, an array or a schedule; √ε of
        float32 (psgd-jax's fixed value).
      key: an int seed, a ``jax.random.key`` or a ``jax.random.PRNGKey``, Python-side (not data); psgd-jax's
        5318008.
      state_dtype: the momentum's dtype (a floating dtype, or ``{"mu": dtype}``); None keeps each param's
        (psgd-jax's ``mu_dtype``). The low-bit forms are refused: the momentum is a plain array.
      precond_dtype: the factors' dtype (a floating dtype); None: float32, float64 under x64 (psgd-jax).
      precond_update_precision: the matmul precision of the fit (``jax.default_matmul_precision``);
        ``"tensorfloat32"`` (psgd-jax).
      precond_grads_precision: the matmul precision of ``QᵀQ m̂``; None, JAX's default (psgd-jax).

    Examples:
      A matrix keeps a triangular factor per axis and a vector a diagonal one. The first update fits the
      factors before they precondition it; each leaf's step, in units of ``η``, has an RMS of at most 1.1:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
      >>> grads = {"w": jnp.array([[1.0, -2.0], [0.5, 0.0], [0.0, 1.0]]), "b": jnp.array([0.5, -1.0])}
      >>> tx = jgd.kron(learning_rate=0.1)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print([q.shape for q in state.factors["q"]["w"]], state.factors["q"]["b"][0].shape)
      [(3, 3), (2, 2)] (2,)
      >>> print(jnp.sign(updates["b"]), round(float(jnp.sqrt(jnp.mean(updates["w"] ** 2))) / 0.1, 3))
      [-1.  1.] 0.809
    """
    mu_dtype = _check_arguments(max_size_triangular, min_ndim_triangular, state_dtype, precond_dtype)
    factors_lib.triangular_axes((), 1, 0, memory_save_mode)  # checks the mode
    validate("preconditioner_init_scale", preconditioner_init_scale)
    if preconditioner_update_probability is None:
        preconditioner_update_probability = update_probability()
    hp = {
        "learning_rate": learning_rate,
        "b1": b1,
        "weight_decay": weight_decay,
        "preconditioner_update_probability": preconditioner_update_probability,
        "preconditioner_lr": preconditioner_lr,
        "damping": damping,
    }
    component = Hyperparameters("kron", hp)
    start = _start_key(key)
    layout = partial(
        factors_lib.triangular_axes,
        max_size_triangular=max_size_triangular,
        min_ndim_triangular=min_ndim_triangular,
        memory_save_mode=memory_save_mode,
    )

    init_fn = _initializer(component, layout, preconditioner_init_scale, mu_dtype, precond_dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        state = check_state("kron", state, PreconditionerState)
        hp, core = component.resolve(state.inner)  # which checks that kron made it
        check_update_trees("kron", updates, params, ("the state's 'mu'", core.slots["mu"]))
        leaves, treedef = jax.tree.flatten(updates)
        step = _Step(leaves, treedef.flatten_up_to(core.slots["mu"]), hp, core.count + 1)
        do_update, counter = _due(core.carry["update_counter"], hp["preconditioner_update_probability"])
        # psgd-jax's draws: a key per step, split into the balance draw and one key per leaf, in leaf order.
        _, fit_key = jax.random.split(jax.random.fold_in(start, core.count))
        fit_input = step.debiased if momentum_into_precond_update else step.grads
        fit = partial(_fit_all, fit_input, hp, precond_update_precision)
        q_leaves = jax.lax.cond(do_update, fit, lambda _, qs: qs, fit_key, treedef.flatten_up_to(state.factors["q"]))
        flags = masks_lib.leaf_flags("weight_decay_mask", weight_decay_mask, params)
        with jax.default_matmul_precision(precond_grads_precision):
            out = [
                _leaf_update(m, qs, p, decayed, hp, g.dtype)
                for m, qs, p, decayed, g in zip(step.debiased, q_leaves, treedef.flatten_up_to(params), flags, leaves)
            ]
        core = component.advance(core, slots={"mu": treedef.unflatten(step.new_mu)}, carry={"update_counter": counter})
        return treedef.unflatten(out), PreconditionerState(core, {"q": treedef.unflatten(q_leaves)})

    return GradientTransformation(init_fn, update_fn)


def _initializer(component, layout, init_scale, mu_dtype, precond_dtype) -> Callable:
    """``init``: the momentum at zero, ``Q_i = s^(1/k) I`` for each param, the update counter at 0."""

    def init_fn(params):
        trees.check_floating("params", params, method="kron")
        factor_dtype = jnp.result_type(float) if precond_dtype is None else precond_dtype

        def first_factors(p):
            shape = tuple(np.shape(p))
            return factors_lib.initial_factors(shape, layout(shape), init_scale, factor_dtype)

        mu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=mu_dtype or jnp.result_type(p)), params)
        core = component.init(slots={"mu": mu}, carry={"update_counter": jnp.zeros((), jnp.int32)})
        return PreconditionerState(core, {"q": jax.tree.map(first_factors, params)})

    return init_fn


def _due(counter: jax.Array, probability: jax.Array) -> tuple[jax.Array, jax.Array]:
    """psgd-jax's deterministic schedule: whether the factors are fitted at this step (the steps since the
    last fit reach ``1 / p``; never for ``p = 0``), and the counter after it."""
    counter = counter + 1
    due = counter.astype(probability.dtype) >= 1 / probability
    return due, jnp.where(due, 0, counter)


def _real(value, dtype) -> jax.Array:
    return jnp.asarray(value).astype(dtype)


class _Step:
    """One update's momentum, leaf by leaf, each in at least float32: ``m_t = β1 m_{t-1} + (1 - β1) g_t``,
    ``m̂_t = m_t / (1 - β1^t)``; ``new_mu`` holds ``m_t`` in the slot's dtype."""

    def __init__(self, leaves, mu_leaves, hp, t):
        self.grads, self.debiased, self.new_mu = [], [], []
        for g, mu in zip(leaves, mu_leaves):
            dtype = jnp.promote_types(jnp.result_type(g), jnp.float32)
            b1 = _real(hp["b1"], dtype)
            g = jnp.asarray(g).astype(dtype)
            m = (1 - b1) * g + b1 * mu.astype(dtype)
            self.grads.append(g)
            self.debiased.append(m / (1 - b1**t))
            self.new_mu.append(m.astype(mu.dtype))


def _fit_all(fit_input, hp, precision, key, q_leaves):
    """Every leaf's factors after one preconditioner update (psgd-jax's draws from ``key``): with probability
    ``BALANCE_PROBABILITY`` rebalanced first, then fitted to ``h = x + δ mean|x| v``, ``v ~ N(0, I)``."""
    key, balance_key = jax.random.split(key)
    do_balance = jax.random.uniform(balance_key) < BALANCE_PROBABILITY
    _, probe_key = jax.random.split(key)
    keys = jax.random.split(probe_key, len(fit_input))
    fitted = []
    with jax.default_matmul_precision(precision):
        for x, qs, leaf_key in zip(fit_input, q_leaves, keys):
            probe = jax.random.normal(leaf_key, x.shape, x.dtype)
            fitted.append(_fit_leaf(x, probe, qs, do_balance, hp))
    return fitted


def _fit_leaf(x, probe, qs, do_balance, hp):
    """One leaf's factors rebalanced where ``do_balance`` and fitted to ``x`` damped with ``probe``, computed
    in the wider of ``x``'s and the factors' dtypes and kept in the factors'."""
    dtype = jnp.promote_types(x.dtype, qs[0].dtype)
    x, probe = x.astype(dtype), probe.astype(dtype)
    damping = _real(hp["damping"], x.dtype)
    h = x + damping * jnp.mean(jnp.abs(x)) * probe
    work = tuple(q.astype(dtype) for q in qs)
    work = jax.lax.cond(do_balance, factors_lib.balance, tuple, work)
    new = factors_lib.fit(work, h, probe, _real(hp["preconditioner_lr"], dtype))
    return tuple(q_new.astype(q.dtype) for q_new, q in zip(new, qs))


def _leaf_update(m, qs, p, decayed, hp, out_dtype):
    """``-η (clip(P m̂) + λ θ)`` on one leaf (``λ θ`` where the leaf is decayed), in the leaf's dtype."""
    dtype = jnp.promote_types(m.dtype, qs[0].dtype)
    u = factors_lib.precondition(tuple(q.astype(dtype) for q in qs), m.astype(dtype))
    u = u / jnp.maximum(1, jnp.sqrt(jnp.mean(u * u)) / MAX_UPDATE_RMS)
    if decayed:
        u = u + _real(hp["weight_decay"], dtype) * jnp.asarray(p).astype(dtype)
    return (-_real(hp["learning_rate"], dtype) * u).astype(out_dtype)
