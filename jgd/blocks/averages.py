"""Averaging blocks: momentum accumulators, exponential averages and their bias correction."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jgd.base import GradientTransformation, chain
from jgd.leafwise import leafwise
from jgd.types import ScalarOrSchedule, StateDtype


def trace(
    decay: ScalarOrSchedule = 0.9, nesterov: bool = False, *, state_dtype: StateDtype = None
) -> GradientTransformation:
    """Momentum accumulator ``v_t = γ v_{t-1} + g_t``; ``u = v_t`` (``g_t + γ v_t`` with ``nesterov``).

    Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and
    momentum in deep learning", ICML 2013. The step is computed in at least float32 and no
    slot's dtype changes across updates.

    Args:
      decay: γ, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``); 0.9 as Sutskever et al.
      nesterov: return Nesterov's ``g_t + γ v_t`` instead of ``v_t``; default False.
      state_dtype: the dtype of ``velocity`` (``{"velocity": jnp.bfloat16}``):
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      The momentum buffer ``v ← γv + g``; the state keeps ``velocity``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.trace(decay=0.9)
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(grads, state)
      ...
      >>> print(updates, state.slots["velocity"])
      [ 0.95 -1.9 ] [ 0.95 -1.9 ]

      ``v = g + 0.9 g = 1.9 g`` after two steps.
    """

    def rule(g, v, *, decay):
        v = decay * v + g
        return (g + decay * v if nesterov else v), (v,)

    return leafwise("trace", rule, {"decay": decay}, ("velocity",), state_dtype=state_dtype, complex_leaves=True)


def ema(decay: ScalarOrSchedule = 0.9, *, state_dtype: StateDtype = None) -> GradientTransformation:
    """Exponentially weighted average ``v_t = β v_{t-1} + (1 - β) g_t``; ``u = v_t``.

    Starts from ``v_0 = 0``, so early values are biased towards zero; follow it
    with :func:`bias_correction` for the unbiased average (seed 001). The step is computed
    in at least float32 and no slot's dtype changes across updates.

    Args:
      decay: β, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``); 0.9, Adam's β1
        (Kingma & Ba).
      state_dtype: the dtype of ``average`` (``{"average": jnp.bfloat16}``):
        one dtype, or a mapping per slot name; default each param's own dtype.

    Examples:
      The running average ``v ← βv + (1 − β)g`` starts at zero, so its first value is ``(1 − β) g``;
      :func:`jgd.bias_correction` undoes that:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.ema(decay=0.9)
      >>> updates, state = tx.update(grads, tx.init(params))
      >>> print(updates, sorted(state.slots))
      [ 0.05000001 -0.10000002] ['average']
      >>> tx = jgd.chain(jgd.ema(0.9), jgd.bias_correction(0.9))
      >>> updates, _ = tx.update(grads, tx.init(params))
      >>> print(updates)
      [ 0.5 -1. ]
    """

    def rule(g, v, *, decay):
        v = decay * v + (1 - decay) * g
        return v, (v,)

    return leafwise("ema", rule, {"decay": decay}, ("average",), state_dtype=state_dtype, complex_leaves=True)


def bias_correction(decay: ScalarOrSchedule = 0.9) -> GradientTransformation:
    """``u = g / (1 - β^t)``: undoes the zero start of an :func:`ema` with the same β.

    Kingma & Ba, "Adam: A method for stochastic optimization", ICLR 2015, §3.

    Args:
      decay: β, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``): the same value as the
        :func:`ema`'s it corrects; 0.9 as :func:`ema`.

    Examples:
      ``u = g / (1 − β^t)``, the step count kept in its state; after an :func:`jgd.ema` of a constant
      gradient it gives the gradient back at every step:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.chain(jgd.ema(0.5), jgd.bias_correction(0.5))
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...     updates, state = tx.update(grads, state)
      ...     print(updates)
      ...
      [ 0.5 -1. ]
      [ 0.5 -1. ]
      [ 0.5 -1. ]
    """
    return leafwise(
        "bias_correction", lambda g, *, t, decay: (g / (1 - decay**t), ()), {"decay": decay}, complex_leaves=True
    )


def scale_by_rms(
    decay: ScalarOrSchedule = 0.9,
    eps: ScalarOrSchedule = 1e-8,
    eps_root: ScalarOrSchedule = 0.0,
    *,
    bias_correction: bool = False,
    numerator: GradientTransformation | None = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Divides by a running root mean square: ``u = n_t / (√(v̂_t + ε_root) + ε)``.

    ``v_t = ρ v_{t-1} + (1 - ρ) g_t²``, ``v̂_t = v_t / (1 - ρ^t)`` if
    ``bias_correction`` else ``v_t``, and ``n_t`` is ``g_t``, or the output of the
    ``numerator`` transform applied to the same ``g_t``: with
    ``numerator=chain(ema(β1), bias_correction(β1))`` and ``bias_correction=True``
    this is Adam.

    Tieleman & Hinton, "Lecture 6.5 - RMSProp", COURSERA: Neural Networks for
    Machine Learning, 2012. The step is computed in at least float32 and no slot's dtype
    changes across updates.

    Args:
      decay: ρ, a float, an array or a schedule (``jgd.types.ScalarOrSchedule``); 0.9 as Tieleman & Hinton.
      eps, eps_root: ε outside and inside the root, as for the decay; 1e-8 (Adam's) and 0.
      bias_correction: divide ``v_t`` by ``1 - ρ^t``; default False (RMSprop).
      numerator: a gradient transformation whose output is divided, or None (default) for ``g_t``.
      state_dtype: the dtype of ``second_moment`` (``{"second_moment": jnp.bfloat16}``):
        one dtype, or a mapping per slot name; default each param's own dtype. ``numerator`` keeps its own.

    Examples:
      RMSprop's division by a running root mean square, here with a bias correction so that its first step
      divides by ``|g|``; with ``numerator=`` and the bias correction it is Adam:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.scale_by_rms(decay=0.9, bias_correction=True)
      >>> updates, _ = tx.update(grads, tx.init(params))
      >>> print(updates)
      [ 1. -1.]
      >>> momentum = jgd.chain(jgd.ema(0.9), jgd.bias_correction(0.9))
      >>> adam = jgd.chain(
      ...     jgd.scale_by_rms(0.999, 1e-8, bias_correction=True, numerator=momentum),
      ...     jgd.scale_by_learning_rate(0.1),
      ... )
      >>> updates, _ = adam.update(grads, adam.init(params))
      >>> print(updates)
      [-0.1  0.1]
    """

    def denominator(g, v, *, t, decay, eps, eps_root):
        v = decay * v + (1 - decay) * g * g
        v_hat = v / (1 - decay**t) if bias_correction else v
        return jnp.sqrt(v_hat + eps_root) + eps, (v,)

    rms = leafwise(
        "scale_by_rms",
        denominator,
        {"decay": decay, "eps": eps, "eps_root": eps_root},
        ("second_moment",),
        state_dtype=state_dtype,
        nonnegative_slots=("second_moment",),
    )
    top = chain(numerator) if numerator else chain()

    def init_fn(params):
        return rms.init(params), top.init(params)

    def update_fn(updates, state, params=None, **extra_args):
        denominators, rms_state = rms.update(updates, state[0], params)
        numerators, top_state = top.update(updates, state[1], params, **extra_args)
        scaled = jax.tree.map(lambda n, d: (n / d).astype(n.dtype), numerators, denominators)
        return scaled, (rms_state, top_state)

    return GradientTransformation(init_fn, update_fn)
