"""Adam and its variants AMSGrad, AdamW, AdaMax and Nadam (seeds 000, 001, 003)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax.numpy as jnp

from jgd.base import GradientTransformation
from jgd.leafwise import leafwise
from jgd.numerics import abs_sq
from jgd.types import Mask, ScalarOrSchedule, StateDtype

_REAL = ("nu", "nu_max")  # |g|² and its running max stay real for complex params


def _adam_direction(amsgrad: str | None, eps_hat: bool, nesterov: bool):
    """Adam's ``m̂_t`` and ``√(v̂_t + ε_root) + ε`` on one array and its new slots, with the second
    moment's running max (``rest[0]``), ε̂ and the Nesterov form of ``m̂_t`` as asked."""

    def direction(g, m, v, rest, t, b1, b2, eps, eps_root):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * abs_sq(g)
        correction2 = 1 - b2**t
        second, new = v / correction2, (m, v)
        if amsgrad == "nu":  # torch, Keras: the max of the raw moment, corrected afterwards
            v_max = jnp.maximum(rest[0], v)
            second, new = v_max / correction2, (m, v, v_max)
        elif amsgrad == "nu_hat":  # optax: the max of the corrected moment
            second = jnp.maximum(rest[0], second)
            new = (m, v, second)
        if eps_hat:  # Keras adds ε to √v before the correction: ε / √(1 - β2^t) after it
            eps = eps / jnp.sqrt(correction2)
        if nesterov:  # optax's form: the next step's momentum, m_{t+1} with g_{t+1} = g_t, corrected
            m_hat = b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        else:
            m_hat = m / (1 - b1**t)
        return m_hat, jnp.sqrt(second + eps_root) + eps, new

    return direction


def _amsgrad_form(amsgrad: bool | str) -> str | None:
    if amsgrad is False:
        return None
    if amsgrad is True:
        return "nu"
    if amsgrad not in ("nu", "nu_hat"):
        raise ValueError(f"amsgrad must be False, True, 'nu' or 'nu_hat', got {amsgrad!r}")
    return amsgrad


def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    amsgrad: bool | Literal["nu", "nu_hat"] = False,
    eps_hat: bool = False,
    nesterov: bool = False,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Adam: bias-corrected averages of the gradient and of its square.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``v_t = β2 v_{t-1} + (1 - β2) g_t²``,
    ``m̂_t = m_t / (1 - β1^t)``, ``v̂_t = v_t / (1 - β2^t)``,
    ``θ_{t+1} = θ_t - η m̂_t / (√(v̂_t + ε_root) + ε)``.
    Kingma & Ba, "Adam: a method for stochastic optimization", ICLR 2015, Alg. 1
    (ε outside the root; optax and torch write it so). Seeds 000 and 003 write
    ``√(v̂ + ε)``: ``eps=0, eps_root=ε``.

    AMSGrad (Reddi, Kale & Kumar, "On the convergence of Adam and beyond", ICLR 2018)
    divides by a running maximum instead of ``v̂_t``: ``amsgrad=True`` (or ``"nu"``) takes
    ``v_max,t = max(v_max,t-1, v_t)`` and divides by ``√(v_max,t / (1 - β2^t))``, as torch's
    and Keras's ``amsgrad=True``; ``amsgrad="nu_hat"`` takes the max of the corrected
    ``v̂_t``, as optax's ``amsgrad``. ``eps_hat=True`` reads ε as the paper's ε̂ (before its
    §2.1), added to ``√v_t`` before the correction: the denominator becomes
    ``√v̂_t + ε / √(1 - β2^t)``, Keras's ``Adam`` (whose ε is 1e-7).

    ``nesterov=True`` is optax's ``adam(nesterov=True)``, Nadam's form with a constant β1 (Dozat 2016):
    ``m̂_t = β1 m_t / (1 - β1^{t+1}) + (1 - β1) g_t / (1 - β1^t)``.

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``); 1e-3 as the paper.
      b1, b2: β1, β2, as for the learning rate; 0.9 and 0.999 as the paper.
      eps, eps_root: ε outside and inside the root, as for the learning rate; 1e-8 and 0 as the paper.
      amsgrad: False (default, Adam), True / ``"nu"`` (torch, Keras) or ``"nu_hat"`` (optax).
      eps_hat: whether ε is ε̂ (Keras); default False.
      nesterov: whether ``m̂_t`` takes the Nesterov form (above); default False, as optax.
      state_dtype: the dtype of ``mu`` and ``nu`` (optax's ``mu_dtype``):
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      The first step moves each parameter by about η against its gradient's sign, whatever the gradient's
      size (``m̂ = g``, ``v̂ = g²``); the state keeps ``mu`` and ``nu``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.adam(learning_rate=0.1)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print(jgd.apply_updates(params, updates))
      [ 0.9 -1.9]
      >>> print(state.slots["mu"], state.slots["nu"])
      [ 0.05000001 -0.10000002] [0.00025    0.00099999]

      ``m = 0.1 g`` and ``v = 0.001 g²`` before the bias correction. ``amsgrad=True`` adds the running
      maximum:

      >>> print(sorted(jgd.adam(0.1, amsgrad=True).init(params).slots))
      ['mu', 'nu', 'nu_max']
    """
    form = _amsgrad_form(amsgrad)
    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    slots = ("mu", "nu") + (("nu_max",) if form else ())
    direction = _adam_direction(form, eps_hat, nesterov)

    def rule(g, m, v, *rest, t, learning_rate, b1, b2, eps, eps_root):
        m_hat, denominator, new = direction(g, m, v, rest, t, b1, b2, eps, eps_root)
        return -learning_rate * m_hat / denominator, new

    return leafwise(
        "adam",
        rule,
        hp,
        slots,
        state_dtype=state_dtype,
        real_slots=_REAL,
        nonnegative_slots=slots[1:],
        complex_leaves=True,
    )


def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None,
    *,
    amsgrad: bool | Literal["nu", "nu_hat"] = False,
    eps_hat: bool = False,
    nesterov: bool = False,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """AdamW: Adam with decoupled weight decay scaled by the current learning rate.

    ``θ_{t+1} = θ_t - η_t (m̂_t / (√(v̂_t + ε_root) + ε) + λ θ_t)`` with :func:`adam`'s
    ``m̂_t, v̂_t``. Loshchilov & Hutter, "Decoupled weight decay regularization", ICLR 2019
    (their schedule multiplier is η_t / η_0 here); the decay is multiplied by the scheduled
    η_t as in optax's ``adamw`` and torch's ``AdamW`` (``θ ← θ (1 - η_t λ)`` before the step),
    and Keras's ``AdamW`` (add ``eps_hat=True``, ``eps=1e-7``, ``weight_decay=0.004``).

    Args:
      learning_rate, b1, b2, eps, eps_root, amsgrad, eps_hat, nesterov, state_dtype: as :func:`adam`.
      weight_decay: λ, a float, an array or a schedule; 1e-4 as optax.
      mask: which leaves decay (``jgd.types.Mask``): None or True (default None) every leaf, False none,
        a tree of bools (a prefix of the params), or a function ``params -> such a tree``.

    Examples:
      Adam's step plus the decay ``−η λ θ`` on the leaves the mask selects, here the kernel and not the
      bias:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"kernel": jnp.array([1.0, -2.0]), "bias": jnp.array([1.0])}
      >>> grads = {"kernel": jnp.array([0.0, 0.0]), "bias": jnp.array([0.0])}
      >>> tx = jgd.adamw(learning_rate=0.1, weight_decay=0.5, mask={"kernel": True, "bias": False})
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates["kernel"], updates["bias"])
      [-0.05  0.1 ] [-0.]

      With a zero gradient only the decay moves the kernel, by ``−0.1 · 0.5 · θ``; the bias, outside the
      mask, stays.
    """
    form = _amsgrad_form(amsgrad)
    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    hp["weight_decay"] = weight_decay
    slots = ("mu", "nu") + (("nu_max",) if form else ())
    direction = _adam_direction(form, eps_hat, nesterov)

    def rule(g, m, v, *rest, t, learning_rate, b1, b2, eps, eps_root, weight_decay, decayed):
        m_hat, denominator, new = direction(g, m, v, rest, t, b1, b2, eps, eps_root)
        u = -learning_rate * m_hat / denominator
        return (u - learning_rate * weight_decay * rest[-1] if decayed else u), new

    return leafwise(
        "adamw",
        rule,
        hp,
        slots,
        state_dtype=state_dtype,
        with_params=True,
        masks={"decayed": mask},
        real_slots=_REAL,
        nonnegative_slots=slots[1:],
        complex_leaves=True,
    )


def adamax(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    *,
    eps_in_max: bool = False,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """AdaMax: Adam with the infinity norm.

    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, ``u_t = max(β2 u_{t-1}, |g_t|)``,
    ``θ_{t+1} = θ_t - η / (1 - β1^t) · m_t / (u_t + ε)``.
    Kingma & Ba, ICLR 2015, Alg. 2 (η = 0.002); ε guards a zero gradient, as in Keras and optax.
    ``eps_in_max=True`` is torch's ``Adamax`` and optax's ``adamax``: ``u_t = max(β2 u_{t-1}, |g_t| + ε)``,
    ``θ_{t+1} = θ_t - η / (1 - β1^t) · m_t / u_t``.

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``); 2e-3 as the paper.
      b1, b2: β1, β2, as for the learning rate; 0.9 and 0.999 as the paper.
      eps: ε, as for the learning rate; 1e-8.
      eps_in_max: put ε inside the max (torch, optax); default False.
      state_dtype: the dtype of ``mu`` and ``inf_norm``:
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      The state keeps ``m`` and the infinity norm ``u = max(β2 u, |g|)``; the first step is ``−η g /
      |g|``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.adamax(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(state.slots["inf_norm"])
      [0.5 1. ]
      >>> print(updates)
      [-0.1  0.1]
    """

    def rule(g, m, u, *, t, learning_rate, b1, b2, eps):
        m = b1 * m + (1 - b1) * g
        if eps_in_max:
            u = jnp.maximum(b2 * u, jnp.abs(g) + eps)
            return -learning_rate / (1 - b1**t) * m / u, (m, u)
        u = jnp.maximum(b2 * u, jnp.abs(g))
        return -learning_rate / (1 - b1**t) * m / (u + eps), (m, u)

    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps}
    slots = ("mu", "inf_norm")
    return leafwise(
        "adamax",
        rule,
        hp,
        slots,
        state_dtype=state_dtype,
        real_slots=("inf_norm",),
        nonnegative_slots=("inf_norm",),
        complex_leaves=True,
    )


def nadam(
    learning_rate: ScalarOrSchedule = 2e-3,
    b1: ScalarOrSchedule = 0.9,
    b2: ScalarOrSchedule = 0.999,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    form: Literal["dozat", "b1", "seed"] = "dozat",
    momentum_decay: ScalarOrSchedule | None = 0.004,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Nadam: Adam with Nesterov momentum.

    ``form="dozat"`` (Dozat, "Incorporating Nesterov momentum into Adam", ICLR
    workshop 2016, Alg. 2), with the momentum schedule
    ``μ_t = β1 (1 - ½ · 0.96^(t ψ))``, ``ψ = momentum_decay``
    (a constant ``μ_t = β1`` when ``momentum_decay=None``, optax's form):
    ``m_t = μ_t m_{t-1} + (1 - μ_t) g_t``, ``v_t = β2 v_{t-1} + (1 - β2) g_t²``,
    ``m̄_t = μ_{t+1} m_t / (1 - Π_{i≤t+1} μ_i) + (1 - μ_t) g_t / (1 - Π_{i≤t} μ_i)``,
    ``θ_{t+1} = θ_t - η m̄_t / (√(v_t / (1 - β2^t) + ε_root) + ε)``.

    ``form="b1"`` averages the first moment with the constant β1,
    ``m_t = β1 m_{t-1} + (1 - β1) g_t``, and uses the μ schedule in ``m̄_t`` only, as
    Keras 3 and torch do. torch's ``NAdam`` is ``form="b1"`` (ψ = 0.004, ε = 1e-8);
    Keras's ``Nadam`` computes ``μ_t = β1 (1 - ½ · 0.96^t)``, i.e.
    ``form="b1", momentum_decay=1.0, eps=1e-7``. With ``momentum_decay=None`` this form is
    optax's ``nadam``.

    ``form="seed"`` (seed 000): ``θ_{t+1} = θ_t - η (β1 m̂_t + (1 - β1) g_t / (1 - β1^t)) / √(v̂_t + ε)``
    with Adam's ``m̂_t, v̂_t``; write its ``√(v̂ + ε)`` as ``eps=0, eps_root=ε``.
    ``momentum_decay`` is unused in this form.

    Args:
      learning_rate: η, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``); 2e-3 as Dozat.
      b1, b2: β1, β2, as for the learning rate; 0.9 (Dozat's μ) and 0.999.
      eps, eps_root: ε outside and inside the root, as for the learning rate; 1e-8 and 0.
      form: ``"dozat"`` (default), ``"b1"`` (Keras, torch) or ``"seed"``.
      momentum_decay: ψ, as for the learning rate; 0.004 as Dozat (his 0.96^(t/250)); None for μ_t = β1.
      state_dtype: the dtype of ``mu`` and ``nu``:
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      Dozat's Nadam: the state keeps Adam's moments and the product of the momentum schedule ``μ_1 ⋯
      μ_t``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.nadam(learning_rate=0.1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(sorted(state.slots), state.carry["mu_product"])
      ['mu', 'nu'] 0.45007348
      >>> print(updates)
      [-0.13104433  0.13104433]

      ``μ_1 = 0.9 (1 − ½ · 0.96^0.004) ≈ 0.4502``.
    """
    if form not in ("dozat", "b1", "seed"):
        raise ValueError(f"form must be 'dozat', 'b1' or 'seed', got {form!r}")
    hp = {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root}
    if form == "seed":
        rule: Callable[..., Any] = _nadam_seed_rule
        scheduling: dict[str, Any] = {}
    else:
        if momentum_decay is not None:
            hp["momentum_decay"] = momentum_decay
        rule = _nadam_dozat_rule(form)
        scheduling = {"carry": {"mu_product": 1.0}, "prepare": _momentum_schedule(momentum_decay is not None)}
        scheduling["prepared"] = ("mu_t", "mu_next", "product", "product_next")
    return leafwise(
        "nadam",
        rule,
        hp,
        ("mu", "nu"),
        state_dtype=state_dtype,
        **scheduling,
        real_slots=_REAL,
        nonnegative_slots=("nu",),
        complex_leaves=True,
    )


def _nadam_seed_rule(g, m, v, *, t, learning_rate, b1, b2, eps, eps_root):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * abs_sq(g)
    m_bar = b1 * m / (1 - b1**t) + (1 - b1) * g / (1 - b1**t)
    return -learning_rate * m_bar / (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps), (m, v)


def _nadam_dozat_rule(form: str) -> Callable[..., Any]:
    """Dozat's rule; ``form="b1"`` averages the first moment with the constant β1, the schedule in ``m̄_t`` only."""

    def dozat_rule(g, m, v, *, t, learning_rate, b1, b2, eps, eps_root, mu_t, mu_next, product, product_next):
        average = b1 if form == "b1" else mu_t
        m = average * m + (1 - average) * g
        v = b2 * v + (1 - b2) * abs_sq(g)
        m_bar = mu_next * m / (1 - product_next) + (1 - mu_t) * g / (1 - product)
        return -learning_rate * m_bar / (jnp.sqrt(v / (1 - b2**t) + eps_root) + eps), (m, v)

    return dozat_rule


def _momentum_schedule(scheduled: bool) -> Callable[..., Any]:
    """``prepare`` of Dozat's forms: ``μ_t``, ``μ_{t+1}`` and the running products of the momentum schedule.

    ``μ_t = β1 (1 - ½ · 0.96^(t ψ))`` where ``scheduled``, else ``μ_t = β1``; the two ``prepare`` functions differ
    in signature, as leafwise passes each the hyperparameters it names.
    """

    def products(t, carry, mu):
        """``μ_t``, ``μ_{t+1}`` and the running products ``Π_{i≤t} μ_i``, ``Π_{i≤t+1} μ_i``."""
        mu_t, mu_next = mu(t), mu(t + 1)
        product = carry["mu_product"] * mu_t
        prepared = {"mu_t": mu_t, "mu_next": mu_next, "product": product, "product_next": product * mu_next}
        return prepared, {"mu_product": product}

    def scheduled_prepare(updates, t, carry, *, b1, momentum_decay):
        return products(t, carry, lambda step: b1 * (1 - 0.5 * 0.96 ** (step * momentum_decay)))

    def constant_prepare(updates, t, carry, *, b1):
        return products(t, carry, lambda step: b1 + 0 * step)

    return scheduled_prepare if scheduled else constant_prepare
