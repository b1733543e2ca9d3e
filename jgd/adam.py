"""Adam and its variants AdaMax and Nadam (seeds 000, 001, 003)."""

from __future__ import annotations

from typing import Any, Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise


def adam(
    learning_rate: float = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Adam: bias-corrected averages of the gradient and of its square.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``v_t = β2 v_{t-1} + (1 - β2) g_t²``,
    ``m̂_t = m_t / (1 - β1^t)``, ``v̂_t = v_t / (1 - β2^t)``,
    ``θ_{t+1} = θ_t - η m̂_t / (√(v̂_t + ε_root) + ε)``.
    Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015, Alg. 1
    (ε outside the root). Seeds 000 and 003 write ``√(v̂ + ε)``: ``eps=0, eps_root=ε``.

    ``state_dtype`` is the dtype of the slots ``mu`` and ``nu``: one dtype, or a mapping per slot
    (``{"mu": jnp.bfloat16}``); default each param's own. The step is computed in at least
    float32 and no slot's dtype changes across updates.
    """

    def rule(g, m, v, *, t, learning_rate, b1, b2, eps, eps_root):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        return -learning_rate * m_hat / (jnp.sqrt(v_hat + eps_root) + eps), (m, v)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    return leafwise("adam", rule, hp, ("mu", "nu"), state_dtype=state_dtype)


def adamax(
    learning_rate: float = 2e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *, state_dtype: Any = None
) -> GradientTransformation:
    """AdaMax: Adam with the infinity norm.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``u_t = max(β2 u_{t-1}, |g_t|)``,
    ``θ_{t+1} = θ_t - η / (1 - β1^t) · m_t / (u_t + ε)``.
    Kingma & Ba, ICLR 2015, Alg. 2 (η = 0.002); ε guards a zero gradient, as in Keras.

    ``state_dtype`` is the dtype of the slots ``mu`` and ``inf_norm``: one dtype, or a mapping per slot
    (``{"mu": jnp.bfloat16}``); default each param's own. The step is computed in at least
    float32 and no slot's dtype changes across updates.
    """

    def rule(g, m, u, *, t, learning_rate, b1, b2, eps):
        m = b1 * m + (1 - b1) * g
        u = jnp.maximum(b2 * u, jnp.abs(g))
        return -learning_rate / (1 - b1**t) * m / (u + eps), (m, u)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps}
    return leafwise("adamax", rule, hp, ("mu", "inf_norm"), state_dtype=state_dtype)


def nadam(
    learning_rate: float = 2e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    form: Literal["dozat", "seed"] = "dozat",
    momentum_decay: float | None = 0.004,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Nadam: Adam with Nesterov momentum.

    ``form="dozat"`` (Dozat, "Incorporating Nesterov momentum into Adam", ICLR
    workshop 2016, Alg. 2), with the momentum schedule
    ``μ_t = β1 (1 - ½ · 0.96^(t ψ))``, ``ψ = momentum_decay``
    (a constant ``μ_t = β1`` when ``momentum_decay=None``, optax's form):
    ``m_t = μ_t m_{t-1} + (1 - μ_t) g_t``, ``v_t = β2 v_{t-1} + (1 - β2) g_t²``,
    ``m̄_t = μ_{t+1} m_t / (1 - Π_{i≤t+1} μ_i) + (1 - μ_t) g_t / (1 - Π_{i≤t} μ_i)``,
    ``θ_{t+1} = θ_t - η m̄_t / (√(v_t / (1 - β2^t) + ε_root) + ε)``.

    ``form="seed"`` (seed 000): ``θ_{t+1} = θ_t - η (β1 m̂_t + (1 - β1) g_t / (1 - β1^t)) / √(v̂_t + ε)``
    with Adam's ``m̂_t, v̂_t``; write its ``√(v̂ + ε)`` as ``eps=0, eps_root=ε``.
    ``momentum_decay`` is unused in this form.

    ``state_dtype`` is the dtype of the slots ``mu`` and ``nu``: one dtype, or a mapping per slot
    (``{"mu": jnp.bfloat16}``); default each param's own. The step is computed in at least
    float32 and no slot's dtype changes across updates.
    """
    if form not in ("dozat", "seed"):
        raise ValueError(f"form must be 'dozat' or 'seed', got {form!r}")
    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}

    if form == "seed":

        def seed_rule(g, m, v, *, t, learning_rate, b1, b2, eps, eps_root):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            m_bar = b1 * m / (1 - b1**t) + (1 - b1) * g / (1 - b1**t)
            return -learning_rate * m_bar / (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps), (m, v)

        return leafwise("nadam", seed_rule, hp, ("mu", "nu"), state_dtype=state_dtype)

    scheduled = momentum_decay is not None
    if scheduled:
        hp["momentum_decay"] = momentum_decay

    def prepare(updates, t, carry, *, b1, momentum_decay=None, **_):
        def mu(step):
            return b1 * (1 - 0.5 * 0.96 ** (step * momentum_decay)) if scheduled else b1 + 0 * step

        mu_t, mu_next = mu(t), mu(t + 1)
        product = carry["mu_product"] * mu_t
        prepared = {"mu_t": mu_t, "mu_next": mu_next, "product": product, "product_next": product * mu_next}
        return prepared, {"mu_product": product}

    def dozat_rule(g, m, v, *, t, learning_rate, b2, eps, eps_root, mu_t, mu_next, product, product_next, **_):
        m = mu_t * m + (1 - mu_t) * g
        v = b2 * v + (1 - b2) * g * g
        m_bar = mu_next * m / (1 - product_next) + (1 - mu_t) * g / (1 - product)
        return -learning_rate * m_bar / (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps), (m, v)

    return leafwise(
        "nadam", dozat_rule, hp, ("mu", "nu"), state_dtype=state_dtype, carry={"mu_product": 1.0}, prepare=prepare
    )
