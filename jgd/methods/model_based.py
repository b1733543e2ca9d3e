"""Model-based step sizes of optax.contrib: MoMo and MoMo-Adam (Schaipp et al., ICML 2024).

Both keep averages of the loss, of the gradient and of ``⟨g, θ⟩``, which make a model of the loss; the step
is its Polyak step, truncated at a lower bound of the loss and capped by the learning rate. The step size
is one number for the whole tree: ``prepare`` computes it from the params and the averages before the
rule moves each leaf. ``update`` takes the loss as ``value=``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.state import check_state
from jgd.types import ScalarOrSchedule, StateDtype

# optax's threshold below which the squared norm of the averaged gradient counts as zero: float64's epsilon.
_TINY = float(np.finfo(np.float64).eps)

_CARRY = {"value": 0.0, "loss_average": 0.0, "gamma": 0.0, "lower_bound": 0.0}


def _dot(a, b) -> jax.Array:
    """``⟨a, b⟩`` over every leaf of two trees."""
    return sum((jnp.sum(x * y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), jnp.zeros(()))


def _truncated_step(model, norm_sq, carry_bound, correction, *, t, learning_rate, lower_bound, weight_decay, adapt):
    """The step size ``τ`` and the next lower bound estimate, from the model's numbers.

    ``model = (f̄, γ, ⟨d, θ⟩)``; with ``ρ = 1 + ηλ`` and ``c`` the first moment's correction (1 for MoMo):
    ``τ = min(η / c, max(ρ (f̄ - c f* - γ) + ⟨d, θ⟩, 0) / ‖d‖²)`` (0 where ``‖d‖²`` is at most float64's
    epsilon). With ``adapt``, ``f*`` is estimated (Schaipp et al. 2024, Sec. 4, "MoMo*"): it is reset to
    ``max(h / (2 c ρ), f*_0)`` when the model's value ``h = ρ (f̄ - γ) + ⟨d, θ⟩`` falls below ``ρ c f*``,
    and after the step becomes ``max((f̄ + ⟨d, θ⟩ - γ - τ ‖d‖² / 2) / c, f*_0)``.
    """
    loss_average, gamma, inner = model
    decay = 1 + learning_rate * weight_decay
    bound = jnp.where(t == 1, lower_bound, carry_bound) if adapt else lower_bound
    if adapt:
        cap = decay * (loss_average - gamma) + inner
        bound = jnp.where(
            cap < decay * correction * bound, jnp.maximum(cap / (2 * correction * decay), lower_bound), bound
        )
    safe = jnp.where(norm_sq <= _TINY, 1, norm_sq)
    ratio = jnp.maximum(decay * (loss_average - correction * bound - gamma) + inner, 0) / safe
    tau = jnp.minimum(learning_rate / correction, jnp.where(norm_sq <= _TINY, 0, ratio))
    if adapt:
        bound = jnp.maximum((loss_average + inner - gamma - tau * norm_sq / 2) / correction, lower_bound)
    return tau, bound


def _decayed_step(p, direction, tau, learning_rate, weight_decay, form):
    """``θ_{t+1} - θ_t``: ``(θ - τ d) / (1 + ηλ)`` (paper), or optax's ``θ / (1 + ηλ) - τ d``."""
    shrink = learning_rate * weight_decay / (1 + learning_rate * weight_decay)
    if form == "paper":
        return -shrink * p - tau * direction / (1 + learning_rate * weight_decay)
    return -shrink * p - tau * direction


def _taking_the_loss(name: str, inner: GradientTransformation) -> GradientTransformation:
    """``inner`` with an ``update`` that takes the loss as ``value=`` and keeps it in the state's carry."""

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        state = check_state(name, state)
        if value is None:
            raise ValueError(f"{name} needs the loss: call update(updates, state, params, value=loss)")
        carry = {**state.carry, "value": jnp.asarray(value).astype(state.carry["value"].dtype)}
        return inner.update(updates, state._replace(carry=carry), params)

    return GradientTransformation(inner.init, update_fn)


def _check(form: str, adapt_lower_bound: bool) -> None:
    if form not in ("paper", "optax"):
        raise ValueError(f"form must be 'paper' or 'optax', got {form!r}")
    if not isinstance(adapt_lower_bound, bool):
        raise ValueError(f"adapt_lower_bound must be a bool, got {adapt_lower_bound!r}")


def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 0.9,
    lower_bound: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    adapt_lower_bound: bool = False,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """MoMo: SGD with momentum whose step size is the Polyak step of a model built from averages.

    With ``f_t`` the loss at ``θ_t`` (``update(..., value=f_t)``) and ``β_1 = 0`` (the averages start at the
    first values), ``β_t = β`` after: ``f̄_t = β_t f̄_{t-1} + (1 - β_t) f_t``,
    ``d_t = β_t d_{t-1} + (1 - β_t) g_t``, ``γ_t = β_t γ_{t-1} + (1 - β_t) ⟨g_t, θ_t⟩``;
    ``τ_t = min(η, max((1 + ηλ)(f̄_t - f* - γ_t) + ⟨d_t, θ_t⟩, 0) / ‖d_t‖²)`` (0 where ``‖d_t‖²`` is at most
    float64's epsilon), ``θ_{t+1} = (θ_t - τ_t d_t) / (1 + ηλ)``, every sum over the whole tree.
    Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: momentum models for adaptive learning rates", ICML
    2024, Alg. 1 (MoMo), with the proximal weight decay of its Sec. 5 (the authors' code);
    ``adapt_lower_bound=True`` estimates ``f*`` on the fly (its MoMo*), never below ``lower_bound``.

    ``form="optax"`` is optax's ``contrib.momo``, whose decay shrinks ``θ_t`` alone:
    ``θ_{t+1} = θ_t / (1 + ηλ) - τ_t d_t`` (the same where ``λ = 0``).

    The loss is an argument of each step (``value=``, a tracer too), not a hyperparameter; the last one is
    kept in the state's ``carry``. ``adapt_lower_bound`` is a Python bool: it changes the program.

    Args:
      learning_rate: ``η``, the step size's cap, a float, an array or a schedule; 1 (paper).
      beta: ``β``, in [0, 1); 0.9 (paper).
      lower_bound: ``f*``, a lower bound of the loss, any real; 0 (paper).
      weight_decay: ``λ``, ≥ 0; 0.
      adapt_lower_bound: whether ``f*`` is estimated (above); False.
      form: ``"paper"`` or ``"optax"`` (above).
      state_dtype: dtype of the gradient's average; default each param's own.

    Examples:
      On ``f(θ) = ‖θ‖²`` the model is exact at the first step, and its Polyak step (capped by ``η = 1``) is
      ``τ = f / ‖g‖² = 1/4``: half way to the minimum:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = jnp.array([1.0, -2.0])
      >>> value, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
      >>> tx = jgd.momo()
      >>> updates, state = tx.update(grads, tx.init(params), params, value=value)
      >>> print(updates)
      [-0.5  1. ]
    """
    _check(form, adapt_lower_bound)

    def prepare(updates, t, carry, *, params, slots, learning_rate, beta, lower_bound, weight_decay):
        b = jnp.where(t == 1, 0, beta)
        average = jax.tree.map(lambda g, d: b * d + (1 - b) * g, updates, slots["exp_avg"])
        loss_average = b * carry["loss_average"] + (1 - b) * carry["value"]
        gamma = b * carry["gamma"] + (1 - b) * _dot(updates, params)
        model = (loss_average, gamma, _dot(average, params))
        tau, bound = _truncated_step(
            model,
            _dot(average, average),
            carry["lower_bound"],
            1,
            t=t,
            learning_rate=learning_rate,
            lower_bound=lower_bound,
            weight_decay=weight_decay,
            adapt=adapt_lower_bound,
        )
        new_carry = {"value": carry["value"], "loss_average": loss_average, "gamma": gamma, "lower_bound": bound}
        return {"tau": tau}, new_carry

    def rule(g, d, p, *, t, learning_rate, beta, weight_decay, tau):
        b = jnp.where(t == 1, 0, beta)
        d = b * d + (1 - b) * g
        return _decayed_step(p, d, tau, learning_rate, weight_decay, form), (d,)

    hp = {"learning_rate": learning_rate, "beta": beta, "lower_bound": lower_bound, "weight_decay": weight_decay}
    inner = leafwise(
        "momo",
        rule,
        hp,
        ("exp_avg",),
        state_dtype=state_dtype,
        with_params=True,
        carry=_CARRY,
        prepare=prepare,
        prepared=("tau",),
    )
    return _taking_the_loss("momo", inner)


def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    lower_bound: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    adapt_lower_bound: bool = False,
    *,
    form: Literal["paper", "optax"] = "paper",
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """MoMo-Adam: Adam whose step size is the Polyak step of MoMo's model, in Adam's metric.

    With ``f_t`` the loss at ``θ_t`` (``update(..., value=f_t)``), every average starting at 0:
    ``f̄_t = β1 f̄_{t-1} + (1 - β1) f_t``, ``d_t = β1 d_{t-1} + (1 - β1) g_t``,
    ``γ_t = β1 γ_{t-1} + (1 - β1) ⟨g_t, θ_t⟩``, ``v_t = β2 v_{t-1} + (1 - β2) g_t²``,
    ``D_t = √(v_t / (1 - β2^t)) + ε``, ``c_t = 1 - β1^t``;
    ``τ_t = min(η / c_t, max((1 + ηλ)(f̄_t - c_t f* - γ_t) + ⟨d_t, θ_t⟩, 0) / ⟨d_t, d_t / D_t⟩)``
    (0 where the denominator is at most float64's epsilon), ``θ_{t+1} = (θ_t - τ_t d_t / D_t) / (1 + ηλ)``.
    Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: momentum models for adaptive learning rates", ICML
    2024, Alg. 2 (MoMo-Adam), with its proximal weight decay (the authors' code); ``adapt_lower_bound=True``
    estimates ``f*`` on the fly, never below ``lower_bound``.

    ``form="optax"`` is optax's ``contrib.momo_adam``, whose decay shrinks ``θ_t`` alone:
    ``θ_{t+1} = θ_t / (1 + ηλ) - τ_t d_t / D_t`` (the same where ``λ = 0``).

    The loss is an argument of each step (``value=``), not a hyperparameter; ``adapt_lower_bound`` is a
    Python bool.

    Args:
      learning_rate: ``η``, the step size's cap, a float, an array or a schedule; 1e-2 (paper).
      b1: ``β1``, in [0, 1); 0.9 (paper).
      b2: ``β2``, in [0, 1); 0.999 (paper).
      eps: ``ε`` added to the root, ≥ 0; 1e-8.
      lower_bound: ``f*``, a lower bound of the loss, any real; 0 (paper).
      weight_decay: ``λ``, ≥ 0; 0.
      adapt_lower_bound: whether ``f*`` is estimated; False.
      form: ``"paper"`` or ``"optax"`` (above).
      state_dtype: dtype of the two moments; default each param's own.

    Examples:
      At the first step the step size is capped: ``τ = η / (1 - β1)``, and the step is Adam's first,
      ``η sign(g)``:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = jnp.array([1.0, -2.0])
      >>> value, grads = jax.value_and_grad(lambda x: jnp.sum(x**2))(params)
      >>> tx = jgd.momo_adam()
      >>> updates, state = tx.update(grads, tx.init(params), params, value=value)
      >>> print(updates)
      [-0.01  0.01]
    """
    _check(form, adapt_lower_bound)

    def prepare(updates, t, carry, *, params, slots, learning_rate, b1, b2, eps, lower_bound, weight_decay):
        average = jax.tree.map(lambda g, d: b1 * d + (1 - b1) * g, updates, slots["exp_avg"])
        squares = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, slots["exp_avg_sq"])
        scaled = jax.tree.map(lambda d, v: d / (eps + jnp.sqrt(v / (1 - b2**t))), average, squares)
        loss_average = b1 * carry["loss_average"] + (1 - b1) * carry["value"]
        gamma = b1 * carry["gamma"] + (1 - b1) * _dot(updates, params)
        model = (loss_average, gamma, _dot(average, params))
        tau, bound = _truncated_step(
            model,
            _dot(average, scaled),
            carry["lower_bound"],
            1 - b1**t,
            t=t,
            learning_rate=learning_rate,
            lower_bound=lower_bound,
            weight_decay=weight_decay,
            adapt=adapt_lower_bound,
        )
        new_carry = {"value": carry["value"], "loss_average": loss_average, "gamma": gamma, "lower_bound": bound}
        return {"tau": tau}, new_carry

    def rule(g, d, v, p, *, t, learning_rate, b1, b2, eps, weight_decay, tau):
        d = b1 * d + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        direction = d / (eps + jnp.sqrt(v / (1 - b2**t)))
        return _decayed_step(p, direction, tau, learning_rate, weight_decay, form), (d, v)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "lower_bound": lower_bound}
    hp["weight_decay"] = weight_decay
    inner = leafwise(
        "momo_adam",
        rule,
        hp,
        ("exp_avg", "exp_avg_sq"),
        state_dtype=state_dtype,
        with_params=True,
        carry=_CARRY,
        prepare=prepare,
        prepared=("tau",),
        nonnegative_slots=("exp_avg_sq",),
    )
    return _taking_the_loss("momo_adam", inner)
