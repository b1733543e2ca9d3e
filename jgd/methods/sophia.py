"""Sophia (Liu et al., ICLR 2024): momentum divided by a running estimate of the Hessian's diagonal, clipped.

The estimate is refreshed every ``update_interval`` steps from a function of the params; by default
Hutchinson's ``u ⊙ (∇²f u)``, which needs the loss as a function of the params through ``update``'s
``obj_fn=`` (optax's name) or ``value_fn=`` (the name jgd's line searches and runner use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.state import check_state
from jgd.types import Mask, ScalarOrSchedule, StateDtype

HessianDiagonal = Callable[..., Any]


def hutchinson_diagonal(params, key, *, obj_fn=None, value_fn=None, **extra_args):
    """Hutchinson's estimate of the Hessian's diagonal at ``params``: ``u ⊙ (∇²f(θ) u)``, ``u`` Rademacher signs.

    optax's ``hutchinson_estimator_diag_hessian``'s draws: one key per leaf from ``split(key, leaves)``, in the
    leaves' order, each drawing float32 signs cast to the leaf's dtype (optax casts every leaf's to the narrowest
    dtype of the tree, the same where the leaves share one, and which the product with the Hessian refuses where
    they do not).
    """
    del extra_args
    loss = obj_fn if obj_fn is not None else value_fn
    if loss is None:
        raise ValueError(
            "sophia's Hessian estimate needs the loss as a function of the params: "
            "call update(updates, state, params, obj_fn=loss_fn)"
        )
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    signs = treedef.unflatten(
        [jax.random.rademacher(k, jnp.shape(x), jnp.float32).astype(jnp.result_type(x)) for k, x in zip(keys, leaves)]
    )
    hvp = jax.jvp(jax.grad(loss), (params,), (signs,))[1]
    return jax.tree.map(lambda h, u: h * u, hvp, signs)


def _start_key(key: Any) -> jax.Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, int | np.integer):
        return jax.random.key(key)
    raise ValueError(f"key must be an int or a jax.random.key, got {key!r}")


def sophia(
    learning_rate: ScalarOrSchedule = 1e-4,
    b1: ScalarOrSchedule = 0.965,
    b2: ScalarOrSchedule = 0.99,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    weight_decay_mask: Mask = None,
    gamma: ScalarOrSchedule = 0.01,
    clip_threshold: ScalarOrSchedule | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: HessianDiagonal | None = None,
    *,
    key: Any = 0,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Sophia: momentum divided by a running estimate of the Hessian's diagonal, each entry clipped.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``; every ``k`` steps (``t = 1, k + 1, 2k + 1, ...``) an estimate
    ``ĥ_t`` of the Hessian's diagonal at ``θ_t`` refreshes ``h_t = β2 h_{t-k} + (1 - β2) ĥ_t`` (``h_t = h_{t-1}``
    between); ``θ_{t+1} = θ_t - η (clip(m_t / max(γ h_t, ε), -ρ, ρ) + λ θ_t)``.
    Liu, Li, Hall, Liang & Ma, "Sophia: a scalable stochastic second-order optimizer for language model
    pre-training", ICLR 2024, Alg. 3 (its clipping bound is ``ρ = 1``). The paper's Sophia-H draws Gaussian
    ``u``; the default estimate is Hutchinson's with Rademacher signs, optax's, as unbiased.
    ``λ`` applies to the leaves ``weight_decay_mask`` selects.

    ``form="optax"`` is optax's ``contrib.sophia``: the step divides the bias-corrected ``m_t / (1 - β1^t)``
    by ``h_{t-1}``, the estimate before this step's refresh (the first step is ``η ρ sign(g_1)``).

    ``update`` takes the loss as a function of the params, ``obj_fn=`` (or ``value_fn=``), for the default
    estimate. Not hyperparameters: ``update_interval`` (an int), ``hessian_diagonal_fn`` (a function) and
    ``key`` (the seed of the state's key, kept as raw key data in ``carry["key"]`` and split at each refresh).

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 1e-4.
      b1: ``β1``, in [0, 1); 0.965 (paper).
      b2: ``β2``, in [0, 1); 0.99 (paper).
      eps: ``ε``, the smallest denominator, ≥ 0; 1e-8 (optax; the paper's 1e-15).
      weight_decay: ``λ``, ≥ 0; 1e-4 (optax; the paper's 0.2 with larger rates).
      weight_decay_mask: which leaves are decayed: None or True every leaf, False none, a tree of bools (a
        prefix of the params) or a function ``params -> tree of bools``.
      gamma: ``γ``, the estimate's scale, ≥ 0; 0.01 (paper).
      clip_threshold: ``ρ``, > 0, or None for no clipping; 1 (paper).
      update_interval: ``k``, a positive int; 10 (paper).
      hessian_diagonal_fn: ``fn(params, key, **extra_args) -> tree like params``, called at each refresh with a
        fresh key and ``update``'s keyword arguments; None for Hutchinson's
        (``jgd.methods.sophia.hutchinson_diagonal``).
      key: an int seed or a JAX key (``jax.random.key``); 0.
      form: ``"paper"`` or ``"optax"`` (above).
      state_dtype: dtype of the momentum and of the estimate's average; default each param's own.

    Examples:
      On ``f(θ) = ‖θ‖²`` the Hessian's diagonal is 2; the first step's ``m / (γ h)`` is clipped to ``ρ = 1``:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> def f(x):
      ...     return jnp.sum(x**2)
      >>> params = jnp.array([1.0, -2.0])
      >>> tx = jgd.sophia(learning_rate=0.1, weight_decay=0.0)
      >>> updates, state = tx.update(jax.grad(f)(params), tx.init(params), params, obj_fn=f)
      >>> print(updates, state.slots["nu"])
      [-0.1  0.1] [0.02 0.02]
    """
    _check_arguments(form, update_interval)
    start = _start_key(key)
    estimate = hessian_diagonal_fn if hessian_diagonal_fn is not None else hutchinson_diagonal

    def prepare(updates, t, carry):
        return {"refresh": (t - 1) % update_interval == 0}, carry

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "weight_decay": weight_decay}
    hp["gamma"] = gamma
    if clip_threshold is not None:
        hp["clip_threshold"] = clip_threshold
    inner = leafwise(
        "sophia",
        _sophia_rule(form),
        hp,
        ("mu", "nu"),
        state_dtype=state_dtype,
        with_params=True,
        carry={},
        prepare=prepare,
        prepared=("refresh",),
        masks={"decayed": weight_decay_mask},
        inputs=("hessian",),
    )
    return _with_hessian_refresh(inner, start, estimate, update_interval)


def _check_arguments(form: str, update_interval: Any) -> None:
    if form not in ("paper", "optax"):
        raise ValueError(f"form must be 'paper' or 'optax', got {form!r}")
    if not (isinstance(update_interval, int | np.integer) and update_interval > 0):
        raise ValueError(f"update_interval must be a positive int, got {update_interval!r}")


def _sophia_rule(form: str) -> Callable[..., Any]:
    """The per-leaf rule of ``form``: the momentum, the estimate's average refreshed where ``refresh``, the ratio."""

    # clip_threshold=None: a transform built without the bound does not clip (leafwise passes the names given).
    def rule(
        g,
        m,
        h,
        p,
        *,
        t,
        learning_rate,
        b1,
        b2,
        eps,
        weight_decay,
        gamma,
        decayed,
        refresh,
        hessian,
        clip_threshold=None,
    ):
        m = b1 * m + (1 - b1) * g
        refreshed = jnp.where(refresh > 0, b2 * h + (1 - b2) * hessian, h)
        if form == "paper":
            ratio = m / jnp.maximum(gamma * refreshed, eps)
        else:
            ratio = m / (1 - b1**t) / jnp.maximum(gamma * h, eps)
        if clip_threshold is not None:
            ratio = jnp.clip(ratio, -clip_threshold, clip_threshold)
        if decayed:
            ratio = ratio + weight_decay * p
        return -learning_rate * ratio, (m, refreshed)

    return rule


def _with_hessian_refresh(
    inner: GradientTransformation, start: jax.Array, estimate: HessianDiagonal, update_interval: int
) -> GradientTransformation:
    """``inner`` fed a fresh estimate of the Hessian's diagonal every ``update_interval`` steps (zeros between).

    The state's carry holds the key as raw data, split at each refresh.
    """
    impl = jax.random.key_impl(start)  # the key is kept as raw data, read back with its implementation

    def init_fn(params):
        state = inner.init(params)
        return state._replace(carry={"key": jax.random.key_data(start)})

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("sophia", state)
        if params is None:
            raise ValueError("sophia needs params: call update(updates, state, params, obj_fn=loss_fn)")

        def refreshed():
            next_key, sample = jax.random.split(jax.random.wrap_key_data(state.carry["key"], impl=impl))
            return jax.random.key_data(next_key), estimate(params, sample, **extra_args)

        def kept():
            return state.carry["key"], jax.tree.map(jnp.zeros_like, params)

        key_data, hessian = jax.lax.cond(state.count % update_interval == 0, refreshed, kept)
        state = state._replace(carry={"key": key_data})
        return inner.update(updates, state, params, hessian=hessian)

    return GradientTransformation(init_fn, update_fn)
