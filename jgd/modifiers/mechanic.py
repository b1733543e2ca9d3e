"""Mechanic: a learned scale for any method's steps, from the start point and the steps' sum."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jgd import trees
from jgd.base import GradientTransformation, check_transform, with_extra_args
from jgd.methods.whole_tree import WholeTree, copy_of_param, tree_sum
from jgd.numerics import abs_sq
from jgd.state import TransformState, check_state
from jgd.types import PyTree, ScalarOrSchedule


class MechanicState(NamedTuple):
    """The state of :func:`mechanize`.

    Attributes:
      mechanic: the state holding ``weight_decay``, ``eps`` and ``s_init`` as data, the reference point
        (slot ``initial_params``) and, in ``carry``, Mechanic's ``r``, ``m``, ``v`` and ``s``, one entry per β.
      inner: the wrapped transform's state.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> state = jgd.mechanize(jgd.sgd(1.0), num_betas=3).init(jnp.zeros(2))
      >>> print(state.mechanic.carry["s"].shape, jgd.hyperparams(state)["s_init"])
      (3,) 1e-06
    """

    mechanic: TransformState
    inner: PyTree


def _scale_update(hp, carry, h, t, n):
    """Mechanic's scalars after the step's ``h``: ``m, v, r`` per β and the new scales ``s``."""
    scalar = h.dtype
    betas = jnp.asarray([1 - 0.1**i for i in range(1, n + 1)], scalar)
    s = jnp.where(t == 1, hp["s_init"] * jnp.ones(n, scalar), carry["s"])
    clipped = jnp.clip(h, -carry["m"], carry["m"])  # the authors' clipping of h by the previous m
    m = jnp.maximum(betas * carry["m"], jnp.abs(h) + hp["eps"])
    v = betas**2 * carry["v"] + h**2
    r = betas * carry["r"] + clipped * s
    wealth = hp["s_init"] / n * m + jnp.maximum(r, 0)
    return {"r": r, "m": m, "v": v, "s": wealth / (jnp.sqrt(v) + hp["eps"])}


def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: ScalarOrSchedule = 1e-2,
    eps: ScalarOrSchedule = 1e-8,
    s_init: ScalarOrSchedule = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    """Mechanic: scales the sum of ``base_optimizer``'s steps by a learned ``Σ s``, from the start point.

    With ``u_t`` the base's update, ``x_ref`` the params at the first update and ``S_t = Σ_i s_{t,i}``:
    ``Δ_t = (x_ref - θ_t) / (S_t + ε)`` (the base steps so far), ``g̃ = g_t + λ S_t (‖g_t‖ / (‖θ_t‖ + ε)) θ_t``,
    ``h_t = ⟨g̃, Δ_t⟩``; for each ``β_i = 1 - 10⁻ⁱ`` (``i = 1..n``): ``m_i ← max(β_i m_i, |h_t| + ε)``,
    ``v_i ← β_i² v_i + h_t²``, ``r_i ← β_i r_i + clip(h_t, ±m_i^{old}) s_i``,
    ``s_i ← (s_init m_i / n + max(r_i, 0)) / (√v_i + ε)``, and ``θ_{t+1} = x_ref - S_{t+1} (Δ_t - u_t)``;
    every norm and inner product over all leaves, ``s_{1,i} = s_init``. Cutkosky, Defazio & Mehta,
    "Mechanic: a learning rate tuner", NeurIPS 2023, Alg. 1 in the memory-saving form of their optax code
    (``Δ`` recomputed from the params, ``h`` clipped by ``m``), which jgd follows. Give the base a learning
    rate of 1 (or a schedule from 1): Mechanic learns the scale. Complex leaves are taken where the base
    takes them (the inner product's real part).

    Args:
      base_optimizer: the transform whose steps are scaled (jgd's or optax's); it receives the extra keyword
        arguments.
      weight_decay: ``λ``, ≥ 0, a float, an array or a schedule; 0.01 (paper).
      eps: ``ε``, ≥ 0; 1e-8 (paper).
      s_init: ``s_init``, > 0; 1e-6 as optax.
      num_betas: ``n``, the number of β's, a Python int ≥ 1; 6 (paper).

    Examples:
      The first step has ``Δ_1 = 0``, so ``h_1 = 0`` and each ``s_i`` becomes ``s_init / n``: it is the base's
      step ``-g`` scaled by ``s_init``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.zeros(2), jnp.array([0.5, -1.0])
      >>> tx = jgd.mechanize(jgd.sgd(1.0))
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-5.e-07  1.e-06]
    """
    if isinstance(num_betas, bool) or not isinstance(num_betas, int) or num_betas < 1:
        raise ValueError(f"num_betas must be an int >= 1, got {num_betas!r}")
    tx = with_extra_args(check_transform("base_optimizer", base_optimizer))
    method = WholeTree(
        "mechanize",
        {"weight_decay": weight_decay, "eps": eps, "s_init": s_init},
        {"initial_params": copy_of_param},
        dict.fromkeys(("r", "m", "v", "s"), (num_betas,)),
        complex_leaves=True,
    )

    def init_fn(params):
        return MechanicState(method.init(params), tx.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("mechanize", state, MechanicState)
        hp, mechanic, t, leaves = method.begin(updates, state.mechanic, params)
        base_updates, inner = tx.update(updates, state.inner, params, **extra_args)
        trees.check_matching("the updates of base_optimizer", base_updates, "the gradients", updates)
        scalar = method.scalar_dtype(mechanic)
        g, p = leaves.grads, leaves.params
        u = [jnp.asarray(x).astype(gi.dtype) for x, gi in zip(jax.tree.leaves(base_updates), g)]
        # The reference point is the params of the first update, which may have been replaced since init.
        x_ref = [jnp.where(t == 1, pi, x0) for pi, x0 in zip(p, leaves.slots["initial_params"])]
        scale = jnp.where(t == 1, hp["s_init"] * num_betas, jnp.sum(mechanic.carry["s"]))
        grad_norm = jnp.sqrt(tree_sum([jnp.sum(abs_sq(gi)) for gi in g], scalar))
        param_norm = jnp.sqrt(tree_sum([jnp.sum(abs_sq(pi)) for pi in p], scalar))
        decay = hp["weight_decay"] * scale * grad_norm / (param_norm + hp["eps"])
        delta = [(x0 - pi) / (scale + hp["eps"]) for x0, pi in zip(x_ref, p)]
        h = tree_sum([jnp.real(jnp.vdot(gi + decay * pi, di)) for gi, pi, di in zip(g, p, delta)], scalar)
        carry = _scale_update(hp, mechanic.carry, h, t, num_betas)
        out = [x0 - jnp.sum(carry["s"]) * (di - ui) - pi for x0, di, ui, pi in zip(x_ref, delta, u, p)]
        new_updates, mechanic = method.finish(updates, mechanic, out, {"initial_params": x_ref}, carry)
        return new_updates, MechanicState(mechanic, inner)

    return GradientTransformation(init_fn, update_fn)
