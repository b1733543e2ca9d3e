"""Adafactor: second moments in O(n + m) memory for an n × m matrix (Shazeer & Stern 2018)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.types import Mask, ScalarOrSchedule, StateDtype

_FactoredDims = Callable[[jax.Array], tuple[int, int] | None]  # a leaf's factored axes, or None for a full moment


def relative_step_size(step: jax.Array) -> jax.Array:
    """The paper's step size ``ρ_t = min(10⁻², 1/√t)``, ``t = step + 1`` (Shazeer & Stern 2018, §8)."""
    return jnp.minimum(1e-2, jax.lax.rsqrt(jnp.asarray(step, jnp.result_type(float)) + 1))


def factored_dims(shape: tuple[int, ...], min_dim_size_to_factor: int) -> tuple[int, int] | None:
    """The axes ``(second largest, largest)`` to keep row and column statistics over, or ``None``.

    ``None`` (a full second moment) when the leaf has fewer than two axes or its second
    largest axis is shorter than ``min_dim_size_to_factor``. Ties go to the later axis,
    so an n × m matrix keeps row statistics over its columns and column statistics over its rows.
    """
    if len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def _rms(x):
    return jnp.sqrt(jnp.mean(x * x))


def adafactor(
    learning_rate: ScalarOrSchedule = relative_step_size,
    min_dim_size_to_factor: int = 128,
    decay_rate: ScalarOrSchedule = 0.8,
    decay_offset: ScalarOrSchedule = 0.0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: ScalarOrSchedule | None = 1.0,
    momentum: ScalarOrSchedule | None = None,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: ScalarOrSchedule = 1e-30,
    factored: bool = True,
    weight_decay_mask: Mask = True,
    *,
    min_scale: ScalarOrSchedule = 1e-3,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Adafactor: Adam-like steps from factored second moments, clipped and relative to the parameter's scale.

    ``β̂_t = 1 - (t - offset)^(-c)``, ``G² = g_t² + ε1``. For a leaf factored over axes (i, j) (an
    n × m matrix): row and column statistics ``R_t = β̂_t R_{t-1} + (1 - β̂_t) mean_j G²``,
    ``C_t = β̂_t C_{t-1} + (1 - β̂_t) mean_i G²`` and ``V̂_t = R_t C_t / mean(R_t)``; other leaves
    keep ``V̂_t = β̂_t V̂_{t-1} + (1 - β̂_t) G²``. Then ``U_t = g_t / √V̂_t``,
    ``Û_t = U_t / max(1, RMS(U_t) / d)``, ``α_t = ρ_t max(ε2, RMS(θ_{t-1}))``,
    ``θ_t = θ_{t-1} - α_t Û_t`` (with ``momentum`` β1: ``m_t = β1 m_{t-1} + (1 - β1) α_t Û_t`` replaces
    ``α_t Û_t``, as in the authors' code; with ``weight_decay_rate`` w: ``- w θ_{t-1}`` too).
    Shazeer & Stern, "Adafactor: adaptive learning rates with sublinear memory cost", ICML 2018,
    Alg. 4 and 5 (``mean`` in place of sums: the same ``V̂``).

    Complex params are refused (a ``ValueError`` naming the leaf): the factored statistics are means
    of ``g² + ε1`` over rows and columns, and neither the paper nor optax defines them for ``|g|²``.

    Args:
      learning_rate: ``ρ_t``, a float, an array or a schedule; the paper's ``jgd.methods.adafactor.relative_step_size``.
        optax's ``learning_rate=None`` (no such factor) is ``learning_rate=1.0``.
      min_dim_size_to_factor: factor a leaf only if its two largest axes are at least this long; 128.
      decay_rate: ``c``, ≥ 0; 0.8 (paper).
      decay_offset: steps subtracted from ``t`` in ``β̂_t``, ≥ 0; 0.
      multiply_by_parameter_scale: whether ``α_t`` includes ``max(ε2, RMS(θ_{t-1}))`` (paper: yes).
      clipping_threshold: ``d``, > 0, or ``None`` for no clipping; 1 (paper).
      momentum: ``β1`` in [0, 1), or ``None`` for none (paper's default).
      weight_decay_rate: ``w`` ≥ 0 (not multiplied by ``ρ_t``), or ``None`` for none.
      eps: ``ε1`` added to ``g²``, ≥ 0; 1e-30 (paper).
      factored: whether to factor at all.
      weight_decay_mask: which leaves are decayed (a bool, a tree of bools or ``params -> tree of bools``).
      min_scale: ``ε2``, > 0; 1e-3 (paper).
      state_dtype: dtype of the statistics and the momentum; default each param's own.

    Examples:
      A matrix keeps one row and one column of second moments instead of a full matrix; a vector keeps a
      full one:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.ones((256, 512)), "b": jnp.zeros(512)}
      >>> tx = jgd.adafactor(learning_rate=0.01)
      >>> state = tx.init(params)
      >>> print({k: v["w"].shape for k, v in state.slots.items()})
      {'v_row': (256,), 'v_col': (512,), 'v': (1,)}
      >>> print({k: v["b"].shape for k, v in state.slots.items()})
      {'v_row': (1,), 'v_col': (1,), 'v': (512,)}
      >>> grads = {"w": jnp.full((256, 512), 0.5), "b": jnp.full(512, 0.5)}
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates["w"][0, 0], updates["b"][0])
      -0.01 -1.0000001e-05

      The relative step multiplies η by the parameters' RMS (1 for ``w``, at least ``min_scale = 1e-3``
      for ``b``), and the first step has unit RMS before that.
    """
    if learning_rate is None:
        raise ValueError("learning_rate must be a number, an array or a schedule; optax's None is 1.0")
    hp = {"learning_rate": learning_rate, "decay_rate": decay_rate, "decay_offset": decay_offset, "eps": eps}
    hp["min_scale"] = min_scale
    optional = {"clipping_threshold": clipping_threshold, "momentum": momentum, "weight_decay_rate": weight_decay_rate}
    hp.update({k: v for k, v in optional.items() if v is not None})

    def dims(p):
        return factored_dims(p.shape, min_dim_size_to_factor) if factored else None

    slots = ("v_row", "v_col", "v") + (("mu",) if momentum is not None else ())
    return leafwise(
        "adafactor",
        _adafactor_rule(dims, multiply_by_parameter_scale),
        hp,
        slots,
        state_dtype=state_dtype,
        with_params=True,
        slot_init=_second_moment_initializers(dims),
        nonnegative_slots=("v_row", "v_col", "v"),
        masks={"decayed": weight_decay_mask},
    )


def _second_moment_initializers(dims: _FactoredDims) -> dict[str, Callable[..., jax.Array]]:
    """Zero row, column and full statistics; a factored leaf's full slot and a full leaf's row and column are (1,)."""

    def init_row(p, dtype):  # statistics over the largest axis
        d = dims(p)
        return jnp.zeros((1,), dtype) if d is None else jnp.zeros(np.delete(p.shape, d[1]), dtype)

    def init_col(p, dtype):  # statistics over the second largest axis
        d = dims(p)
        return jnp.zeros((1,), dtype) if d is None else jnp.zeros(np.delete(p.shape, d[0]), dtype)

    def init_full(p, dtype):
        return jnp.zeros_like(p, dtype=dtype) if dims(p) is None else jnp.zeros((1,), dtype)

    return {"v_row": init_row, "v_col": init_col, "v": init_full}


def _normalized_by_second_moment(g, v_row, v_col, v, beta, g2, d):
    """``U_t = g_t / √V̂_t`` and the updated statistics, factored over the axes ``d`` or full where ``d`` is None."""
    if d is None:
        v = beta * v + (1 - beta) * g2
        return g / jnp.sqrt(v), (v_row, v_col, v)
    second, largest = d
    v_row = beta * v_row + (1 - beta) * jnp.mean(g2, axis=largest)
    v_col = beta * v_col + (1 - beta) * jnp.mean(g2, axis=second)
    row_mean = jnp.mean(v_row, axis=second - (second > largest), keepdims=True)
    u = g * jax.lax.rsqrt(jnp.expand_dims(v_row / row_mean, largest) * jnp.expand_dims(v_col, second))
    return u, (v_row, v_col, v)


def _adafactor_rule(dims: _FactoredDims, multiply_by_parameter_scale: bool) -> Callable[..., Any]:
    """The per-leaf rule: normalize by the second moments, clip, scale, then the optional momentum and decay."""

    def rule(
        g,
        v_row,
        v_col,
        v,
        *rest,
        t,
        learning_rate,
        decay_rate,
        decay_offset,
        eps,
        min_scale,
        decayed,
        clipping_threshold=None,
        momentum=None,
        weight_decay_rate=None,
    ):
        *mu, p = rest
        beta = 1 - (t - decay_offset) ** -decay_rate
        u, second_moments = _normalized_by_second_moment(g, v_row, v_col, v, beta, g * g + eps, dims(p))
        if clipping_threshold is not None:
            u = u / jnp.maximum(1, _rms(u) / clipping_threshold)
        u = learning_rate * u
        if multiply_by_parameter_scale:
            u = u * jnp.maximum(_rms(p), min_scale)
        if momentum is not None:
            mu = [momentum * mu[0] + (1 - momentum) * u]
            u = mu[0]
        if weight_decay_rate is not None and decayed:
            u = u + weight_decay_rate * p
        return -u, (*second_moments, *mu)

    return rule
