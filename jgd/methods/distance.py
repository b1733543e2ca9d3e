"""Step sizes from the distance travelled: DoG and DoWG, gradient descent with no learning rate to tune."""

from __future__ import annotations

from typing import Any, Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.methods.whole_tree import WholeTree, copy_of_param, tree_sum
from jgd.numerics import abs_sq
from jgd.state import check_state
from jgd.types import Mask, ScalarOrSchedule

# DoG's ``init_step`` tags and the hyperparameter each one's value is kept as.
_INIT_STEP = {"distance": "init_distance", "heuristic": "init_relative_distance", "learning_rate": "init_learning_rate"}


def _decayed(leaves, weight_decay):
    """``g + λ θ`` on the leaves the mask selects (optax's ``add_decayed_weights`` before the step)."""
    return [g + weight_decay * p if on else g for g, p, on in zip(leaves.grads, leaves.params, leaves.flags["decayed"])]


def _distance_sq(leaves, scalar):
    """``‖θ_t - θ_0‖²`` over every leaf."""
    return tree_sum([jnp.sum(abs_sq(p - p0)) for p, p0 in zip(leaves.params, leaves.slots["initial_params"])], scalar)


def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple[Literal["distance", "learning_rate", "heuristic"], Any] = ("heuristic", 1e-6),
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule | None = None,
    mask: Mask = None,
) -> GradientTransformation:
    """DoG (distance over gradients): SGD whose step is the largest distance from the start over the gradients' norm.

    ``r̄_t = max(r_ε, max_{k≤t} ‖θ_k - θ_0‖)``, ``G_t = Σ_{k≤t} ‖g_k‖²``,
    ``θ_{t+1} = θ_t - γ_t (r̄_t / √(G_t + ε)) g_t``, the norms over every leaf together; ``γ_t`` is the
    learning rate (a multiplier, 1 by default). Ivgi, Hinder & Carmon, "DoG is SGD's best friend: a
    parameter-free dynamic step size schedule", ICML 2023, Alg. 1 (``ε = 0`` there). As optax's ``dog``, a
    weight decay ``λ`` is added to the gradient first (``g ← g + λ θ``), and ``init_step`` gives ``r_ε``:
    ``("distance", r)`` sets ``r_ε = r``; ``("heuristic", α)`` sets ``r_ε = α (1 + ‖θ_0‖)`` (the paper's,
    ``α = 10⁻⁶``, or ``10⁻⁴`` with batch normalisation); ``("learning_rate", η_0)`` takes ``η_0`` as the first
    step size and ``r_ε = 0``. The paper recommends averaging the iterates (``jgd.ema_params``).

    Args:
      learning_rate: ``γ_t``, a float, an array or a schedule, ≥ 0; 1.
      init_step: ``(tag, value)`` as above; the tag is a Python string, the value a float, an array or a
        schedule, kept as ``init_distance``, ``init_relative_distance`` (both > 0) or ``init_learning_rate``
        (≥ 0). Default ``("heuristic", 1e-6)``, optax's and the paper's.
      eps: ``ε`` added to ``G_t``, ≥ 0; 1e-8 as optax.
      weight_decay: ``λ``, ≥ 0, or None (default) for none.
      mask: which leaves decay (``jgd.types.Mask``); None every leaf.

    Examples:
      From ``θ_0 = (1, -2)``, the first step size is ``r_ε / ‖g‖ = 10⁻⁶ (1 + √5) / √1.25``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.dog()
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-1.4472136e-06  2.8944272e-06]
    """
    tag, value = init_step
    if tag not in _INIT_STEP:
        raise ValueError(f"init_step's tag must be one of {sorted(_INIT_STEP)}, got {tag!r}")
    start = _INIT_STEP[tag]
    hp = {"learning_rate": learning_rate, "eps": eps, "weight_decay": 0.0 if weight_decay is None else weight_decay}
    method = WholeTree(
        "dog",
        {**hp, start: value},
        {"initial_params": copy_of_param},
        ("max_distance", "sum_sq_norm_grads"),
        masks={"decayed": mask},
        complex_leaves=True,
    )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        hp, state, t, leaves = method.begin(updates, check_state("dog", state), params)
        scalar = method.scalar_dtype(state)
        grads = _decayed(leaves, hp["weight_decay"])
        if tag == "heuristic":
            norm_sq = tree_sum([jnp.sum(abs_sq(p0)) for p0 in leaves.slots["initial_params"]], scalar)
            r_eps = hp[start] * (1 + jnp.sqrt(norm_sq))
        else:
            r_eps = hp[start] if tag == "distance" else jnp.zeros((), scalar)
        previous = jnp.where(t == 1, r_eps, state.carry["max_distance"])
        max_distance = jnp.maximum(previous, jnp.sqrt(_distance_sq(leaves, scalar)))
        sum_sq = state.carry["sum_sq_norm_grads"] + tree_sum([jnp.sum(abs_sq(g)) for g in grads], scalar)
        step = max_distance / jnp.sqrt(sum_sq + hp["eps"])
        if tag == "learning_rate":
            step = jnp.where(t == 1, hp[start], step)
        out = [-(hp["learning_rate"] * step).astype(jnp.finfo(g.dtype).dtype) * g for g in grads]
        carry = {"max_distance": max_distance, "sum_sq_norm_grads": sum_sq}
        return method.finish(updates, state, out, {}, carry)

    return GradientTransformation(method.init, update_fn)


def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: ScalarOrSchedule | None = None,
    eps: ScalarOrSchedule = 1e-4,
    weight_decay: ScalarOrSchedule | None = None,
    mask: Mask = None,
) -> GradientTransformation:
    """DoWG (distance over weighted gradients): DoG with each gradient weighted by the squared distance so far.

    ``r̄_t² = max(r̄_{t-1}², ‖θ_t - θ_0‖²)``, ``v_t = v_{t-1} + r̄_t² ‖g_t‖²``,
    ``θ_{t+1} = θ_t - γ_t (r̄_t² / (√v_t + ε)) g_t``, the norms over every leaf together, ``v_0 = 0``.
    Khaled, Mishchenko & Jin, "DoWG unleashed: an efficient universal parameter-free gradient descent
    method", NeurIPS 2023, Alg. 1 (``ε = 0`` there, ``r̄_0 = r_ε``). As optax's ``dowg``: ``r̄_0²`` is
    ``init_estim_sq_dist``, or ``ε`` where None; a weight decay ``λ`` is added to the gradient first.

    Args:
      learning_rate: ``γ_t``, a float, an array or a schedule, ≥ 0; 1.
      init_estim_sq_dist: ``r̄_0²``, > 0, or None (default) for ``ε``.
      eps: ``ε``, ≥ 0; 1e-4 as optax.
      weight_decay: ``λ``, ≥ 0, or None (default) for none.
      mask: which leaves decay (``jgd.types.Mask``); None every leaf.

    Examples:
      At the first step ``r̄_1² = ε`` and ``v_1 = ε ‖g‖²``, so the step is ``ε g / (√ε ‖g‖ + ε)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.dowg()
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.00443249  0.00886498]
    """
    hp = {"learning_rate": learning_rate, "eps": eps, "weight_decay": 0.0 if weight_decay is None else weight_decay}
    if init_estim_sq_dist is not None:
        hp["init_estim_sq_dist"] = init_estim_sq_dist
    method = WholeTree(
        "dowg",
        hp,
        {"initial_params": copy_of_param},
        ("estim_sq_dist", "weighted_sq_norm_grads"),
        masks={"decayed": mask},
        complex_leaves=True,
    )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        hp, state, t, leaves = method.begin(updates, check_state("dowg", state), params)
        scalar = method.scalar_dtype(state)
        grads = _decayed(leaves, hp["weight_decay"])
        start = hp.get("init_estim_sq_dist", hp["eps"])
        previous = jnp.where(t == 1, start, state.carry["estim_sq_dist"])
        estim_sq_dist = jnp.maximum(previous, _distance_sq(leaves, scalar))
        norm_sq = tree_sum([jnp.sum(abs_sq(g)) for g in grads], scalar)
        weighted = state.carry["weighted_sq_norm_grads"] + estim_sq_dist * norm_sq
        step = estim_sq_dist / (jnp.sqrt(weighted) + hp["eps"])
        out = [-(hp["learning_rate"] * step).astype(jnp.finfo(g.dtype).dtype) * g for g in grads]
        carry = {"estim_sq_dist": estim_sq_dist, "weighted_sq_norm_grads": weighted}
        return method.finish(updates, state, out, {}, carry)

    return GradientTransformation(method.init, update_fn)
