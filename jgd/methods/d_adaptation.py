"""Adam whose step size estimates the distance to the solution: D-Adaptation's AdamW and Prodigy."""

from __future__ import annotations

from typing import Any, Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.methods.whole_tree import WholeTree, copy_of_param, tree_sum
from jgd.state import check_state
from jgd.types import ScalarOrSchedule, StateDtype

_FORMS = ("paper", "optax")


def _check_form(form: str) -> None:
    if form not in _FORMS:
        raise ValueError(f"form must be one of {_FORMS}, got {form!r}")


def _step_size(hp, t, d, form):
    """``γ_t d_t``, times Adam's bias correction ``√(1 - β2^t) / (1 - β1^t)`` in optax's form."""
    dlr = d * hp["learning_rate"]
    if form == "optax":
        dlr = dlr * jnp.sqrt(1 - hp["b2"] ** t) / (1 - hp["b1"] ** t)
    return dlr


def _estimate(numerator, sums, d, coefficient):
    """``max(d, c · numerator / Σ|s|)``; while ``s = 0`` (no gradient yet, or a zero rate) ``d`` stays."""
    return jnp.maximum(d, jnp.where(sums > 0, coefficient * numerator / jnp.where(sums > 0, sums, 1), 0))


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[Any, Any] = (0.9, 0.999),
    beta3: ScalarOrSchedule | None = None,
    eps: ScalarOrSchedule = 1e-8,
    estim_lr0: ScalarOrSchedule = 1e-6,
    estim_lr_coef: ScalarOrSchedule = 1.0,
    weight_decay: ScalarOrSchedule = 0.0,
    safeguard_warmup: bool = False,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Prodigy: AdamW with its step size ``d_t`` estimated from the run (no learning rate to tune).

    ``m_{t+1} = β1 m_t + (1 - β1) d_t g_t``, ``v_{t+1} = β2 v_t + (1 - β2) d_t² g_t²``,
    ``r_{t+1} = β3 r_t + γ_t d_t² ⟨g_t, θ_0 - θ_t⟩``, ``s_{t+1} = β3 s_t + γ_t d_t² g_t``,
    ``d_{t+1} = max(d_t, c r_{t+1} / ‖s_{t+1}‖₁)``,
    ``θ_{t+1} = θ_t - γ_t d_t (m_{t+1} / (√v_{t+1} + d_t ε) + λ θ_t)``, from ``d_1 = d_0``; the inner
    product and the norm over every leaf together, ``β3 = √β2`` by default, ``d`` unchanged while
    ``s = 0``. Mishchenko & Defazio, "Prodigy: an expeditiously adaptive parameter-free learner", ICML 2024,
    the Adam version of its algorithm, with decoupled weight decay; ``safeguard_warmup`` drops ``γ_t`` from
    ``s`` (their code's option).

    ``form="optax"`` is optax's ``contrib.prodigy`` (the authors' code with its bias correction): ``γ_t d_t``
    times ``√(1 - β2^t) / (1 - β1^t)`` wherever it appears, and ``d_{t+1}`` instead of ``d_t`` in ``d ε``.

    Args:
      learning_rate: ``γ_t``, a multiplier of the estimated step (1, or a schedule from 1), ≥ 0; 1.
      betas: ``(β1, β2)``, each in [0, 1), a float, an array or a schedule; (0.9, 0.999).
      beta3: ``β3`` in [0, 1), or None (default) for ``√β2``.
      eps: ``ε``, ≥ 0; 1e-8.
      estim_lr0: ``d_0``, the first (under-)estimate, > 0; 1e-6.
      estim_lr_coef: ``c``, > 0; 1.
      weight_decay: ``λ``, ≥ 0; 0.
      safeguard_warmup: a Python bool; False.
      form: ``"paper"`` (default) or ``"optax"``.
      state_dtype: the dtype of ``mu``, ``nu``, ``grad_sum`` and ``initial_params``; default each param's.

    Examples:
      The first step is ``-γ d_0 sign(g)`` as Adam's; ``d`` then grows with the distance travelled:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.prodigy()
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates, state.carry["estim_lr"])
      [-3.1622776e-06  3.1622776e-06] 1e-06
    """
    _check_form(form)
    b1, b2 = betas
    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "estim_lr0": estim_lr0}
    hp.update(estim_lr_coef=estim_lr_coef, weight_decay=weight_decay, **({} if beta3 is None else {"b3": beta3}))
    slots = {"mu": None, "nu": None, "grad_sum": None, "initial_params": copy_of_param}
    method = WholeTree(
        "prodigy", hp, slots, ("estim_lr", "numerator_weighted"), state_dtype=state_dtype, nonnegative_slots=("nu",)
    )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        hp, state, t, leaves = method.begin(updates, check_state("prodigy", state), params)
        scalar = method.scalar_dtype(state)
        b1, b2, d0 = hp["b1"], hp["b2"], hp["estim_lr0"]
        b3 = hp.get("b3", jnp.sqrt(b2))
        d = jnp.where(t == 1, d0, state.carry["estim_lr"])
        dlr = _step_size(hp, t, d, form)
        weight = d * (d if safeguard_warmup else dlr)
        if form == "optax":
            weight = weight / d0
        mu, nu, s, x0 = (leaves.slots[k] for k in ("mu", "nu", "grad_sum", "initial_params"))
        g, p = leaves.grads, leaves.params
        inner = tree_sum([jnp.vdot(gi, x0i - pi) for gi, x0i, pi in zip(g, x0, p)], scalar)
        numerator = b3 * state.carry["numerator_weighted"] + (d * dlr / (d0 if form == "optax" else 1)) * inner
        mu = [b1 * m + (1 - b1) * d * gi for m, gi in zip(mu, g)]
        nu = [b2 * v + (1 - b2) * d**2 * gi**2 for v, gi in zip(nu, g)]
        s = [b3 * si + weight * gi for si, gi in zip(s, g)]
        new_d = _estimate(numerator, tree_sum([jnp.sum(jnp.abs(si)) for si in s], scalar), d, hp["estim_lr_coef"])
        eps_scale = new_d if form == "optax" else d
        out = [
            -hp["weight_decay"] * dlr * pi - dlr * m / (jnp.sqrt(v) + eps_scale * hp["eps"])
            for m, v, pi in zip(mu, nu, p)
        ]
        carry = {"estim_lr": new_d, "numerator_weighted": numerator}
        return method.finish(updates, state, out, {"mu": mu, "nu": nu, "grad_sum": s}, carry)

    return GradientTransformation(method.init, update_fn)


def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[Any, Any] = (0.9, 0.999),
    eps: ScalarOrSchedule = 1e-8,
    estim_lr0: ScalarOrSchedule = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """D-Adaptation's AdamW: Adam whose step size ``d_t`` is a growing lower bound on the distance to the solution.

    With ``λ_t = γ_t d_t`` and ``b = √β2``: ``r_{t+1} = b r_t + (1 - b) λ_t ⟨g_t, s_t / (√v_t + ε)⟩``,
    ``m_{t+1} = β1 m_t + (1 - β1) λ_t g_t``, ``v_{t+1} = β2 v_t + (1 - β2) g_t²``,
    ``s_{t+1} = b s_t + (1 - b) λ_t g_t``, ``d_{t+1} = max(d_t, r_{t+1} / ((1 - b) ‖s_{t+1}‖₁))``,
    ``θ_{t+1} = θ_t - m_{t+1} / (√v_{t+1} + ε) - λ_t λ θ_t``, from ``d_1 = d_0``; the inner product and the norm
    over every leaf together, ``d`` unchanged while ``s = 0``. Defazio & Mishchenko, "Learning-rate-free
    learning by D-adaptation", ICML 2023, Adam with D-Adaptation, with decoupled weight decay ``λ``.

    ``form="optax"`` is optax's ``contrib.dadapt_adamw``: ``λ_t`` times Adam's bias correction
    ``√(1 - β2^t) / (1 - β1^t)``.

    Args:
      learning_rate: ``γ_t``, a multiplier of the estimated step (1, or a schedule from 1), ≥ 0; 1.
      betas: ``(β1, β2)``, each in [0, 1), a float, an array or a schedule; (0.9, 0.999).
      eps: ``ε``, ≥ 0; 1e-8.
      estim_lr0: ``d_0``, the first (under-)estimate, > 0; 1e-6.
      weight_decay: ``λ``, ≥ 0; 0.
      form: ``"paper"`` (default) or ``"optax"``.
      state_dtype: the dtype of ``mu``, ``nu`` and ``grad_sum``; default each param's.

    Examples:
      The first step is ``(1 - β1) γ d_0 g / (√(1 - β2) |g|)``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.dadapt_adamw()
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-3.1622776e-06  3.1622776e-06]
    """
    _check_form(form)
    b1, b2 = betas
    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "estim_lr0": estim_lr0}
    hp["weight_decay"] = weight_decay
    slots = dict.fromkeys(("mu", "nu", "grad_sum"))
    method = WholeTree(
        "dadapt_adamw",
        hp,
        slots,
        ("estim_lr", "numerator_weighted"),
        state_dtype=state_dtype,
        nonnegative_slots=("nu",),
    )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        hp, state, t, leaves = method.begin(updates, check_state("dadapt_adamw", state), params)
        scalar = method.scalar_dtype(state)
        b1, b2, eps = hp["b1"], hp["b2"], hp["eps"]
        root = jnp.sqrt(b2)
        d = jnp.where(t == 1, hp["estim_lr0"], state.carry["estim_lr"])
        dlr = _step_size(hp, t, d, form)
        mu, nu, s = (leaves.slots[k] for k in ("mu", "nu", "grad_sum"))
        g = leaves.grads
        inner = tree_sum([jnp.vdot(gi, si / (jnp.sqrt(v) + eps)) for gi, si, v in zip(g, s, nu)], scalar)
        numerator = root * state.carry["numerator_weighted"] + (1 - root) * dlr * inner
        mu = [b1 * m + (1 - b1) * dlr * gi for m, gi in zip(mu, g)]
        nu = [b2 * v + (1 - b2) * gi**2 for v, gi in zip(nu, g)]
        s = [root * si + (1 - root) * dlr * gi for si, gi in zip(s, g)]
        sums = (1 - root) * tree_sum([jnp.sum(jnp.abs(si)) for si in s], scalar)
        new_d = _estimate(numerator, sums, d, 1.0)
        out = [-hp["weight_decay"] * dlr * pi - m / (jnp.sqrt(v) + eps) for m, v, pi in zip(mu, nu, leaves.params)]
        carry = {"estim_lr": new_d, "numerator_weighted": numerator}
        return method.finish(updates, state, out, {"mu": mu, "nu": nu, "grad_sum": s}, carry)

    return GradientTransformation(method.init, update_fn)
