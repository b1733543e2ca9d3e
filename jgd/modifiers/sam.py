"""SAM: steps taken at an adversarially perturbed point, returned to the point they perturb."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jgd import trees
from jgd.base import GradientTransformation, apply_updates, check_transform, with_extra_args
from jgd.state import check_state
from jgd.types import PyTree


class SamState(NamedTuple):
    """The state of :func:`sam`.

    Attributes:
      steps_since_sync: adversarial steps since the last outer step (int32).
      opt_state: the outer optimizer's state.
      adv_state: the adversarial optimizer's state.
      cache: the params of the last outer step (the point the adversarial steps perturb); None in opaque mode.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> tx = jgd.sam(jgd.sgd(0.1), jgd.sgd(0.05))
      >>> state = tx.init(jnp.zeros(2))
      >>> print(state.steps_since_sync, state.cache)
      0 [0. 0.]
    """

    steps_since_sync: jax.Array
    opt_state: PyTree
    adv_state: PyTree
    cache: PyTree


def _negated(tree):
    return jax.tree.map(lambda x: -x, tree)


def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformation:
    """Sharpness-aware minimisation: ``sync_period - 1`` adversarial ascent steps, then an outer step from the start.

    Of every ``sync_period`` updates, the first ``sync_period - 1`` climb the loss with ``adv_optimizer``'s
    steps negated (``θ ← θ - u_adv``, an ascent), and the last returns to the params ``w`` they started from
    and steps from there with ``optimizer`` on the gradient taken at the perturbed point:
    ``w ← w + u(∇L(w + ε))``. With ``adv_optimizer`` a step of ``ρ g / ‖g‖`` (normalise the gradient, then
    ``sgd(ρ)``) and ``sync_period=2`` this is Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-aware
    minimization for efficiently improving generalization", ICLR 2021, Alg. 1: ``ε̂ = ρ g / ‖g‖``,
    ``w ← w - η ∇L(w + ε̂)`` for ``optimizer = sgd(η)``. As optax's ``contrib.sam``; each call updates one of
    the two states, and ``reset_state`` starts the adversary afresh after each outer step.

    With ``opaque_mode=True`` each call makes the whole round: ``update(grads, state, params, grad_fn=f)``
    takes ``sync_period - 1`` adversarial steps, calling ``f(perturbed_params, i)`` for each next gradient
    (``jax.lax.pmean`` over ``batch_axis_name`` where given), then the outer step, so the training loop sees
    only outer steps (batch-norm statistics stay in step with them). The hyperparameters are the two
    optimizers'; ``sync_period`` is a Python int, fixed when the transform is built.

    Args:
      optimizer: the outer transform (jgd's or optax's).
      adv_optimizer: the adversarial transform, whose steps are negated (jgd's or optax's).
      sync_period: updates per round, an int ≥ 1; 2 (SAM).
      reset_state: a Python bool, whether the adversary's state restarts after each outer step; True.
      opaque_mode: a Python bool, each call a whole round (above); False.
      batch_axis_name: the mapped axis the adversarial gradients are averaged over in opaque mode; None.

    Examples:
      The first call climbs by ``ρ g`` (here ``adv_optimizer = sgd(ρ)`` with ``ρ = 0.05``), the second returns
      and steps ``-η g'`` from the start, with ``g'`` the gradient at the climbed point:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = jnp.array([1.0, -2.0])
      >>> tx = jgd.sam(jgd.sgd(0.1), jgd.sgd(0.05))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -1.0]), state, params)
      >>> print(updates)
      [ 0.025 -0.05 ]
      >>> climbed = params + updates
      >>> updates, state = tx.update(jnp.array([0.6, -1.2]), state, climbed)
      >>> print(climbed + updates)
      [ 0.94 -1.88]
    """
    if isinstance(sync_period, bool) or not isinstance(sync_period, int) or sync_period < 1:
        raise ValueError(f"sync_period must be an int >= 1, got {sync_period!r}")
    optimizer = with_extra_args(check_transform("optimizer", optimizer))
    adv_optimizer = with_extra_args(check_transform("adv_optimizer", adv_optimizer))

    def init_fn(params):
        trees.check_floating("params", params, allow_complex=True)
        cache = None if opaque_mode else jax.tree.map(jnp.asarray, params)
        return SamState(jnp.zeros((), jnp.int32), optimizer.init(params), adv_optimizer.init(params), cache)

    def transparent(updates, state, params):
        first = state.steps_since_sync == 0
        cache = jax.tree.map(lambda p, c: jnp.where(first, p, c).astype(jnp.result_type(c)), params, state.cache)

        def outer(_):
            step, opt_state = optimizer.update(updates, state.opt_state, cache)
            to_start = jax.tree.map(lambda c, p, u: (c - p + u).astype(jnp.result_type(p)), cache, params, step)
            adv_state = adv_optimizer.init(params) if reset_state else state.adv_state
            return to_start, opt_state, adv_state

        def adversarial(_):
            step, adv_state = adv_optimizer.update(updates, state.adv_state, params)
            return _negated(step), state.opt_state, adv_state

        last = state.steps_since_sync == sync_period - 1
        new_updates, opt_state, adv_state = jax.lax.cond(last, outer, adversarial, None)
        return new_updates, SamState((state.steps_since_sync + 1) % sync_period, opt_state, adv_state, cache)

    def opaque(updates, state, params, grad_fn):
        if grad_fn is None:
            raise ValueError("sam with opaque_mode=True needs grad_fn: call update(grads, state, params, grad_fn=f)")
        adv_params, adv_state = params, state.adv_state
        for i in range(sync_period - 1):  # a Python loop: sync_period is fixed when the transform is built
            step, adv_state = adv_optimizer.update(updates, adv_state, adv_params)
            adv_params = apply_updates(adv_params, _negated(step))
            updates = grad_fn(adv_params, i)
            if batch_axis_name is not None:
                updates = jax.lax.pmean(updates, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        new_updates, opt_state = optimizer.update(updates, state.opt_state, params)
        return new_updates, SamState(jnp.zeros((), jnp.int32), opt_state, adv_state, None)

    def update_fn(updates, state, params=None, *, grad_fn: Callable[[Any, int], Any] | None = None, **extra_args):
        del extra_args
        state = check_state("sam", state, SamState)
        if params is None:
            raise ValueError("sam needs params: call update(updates, state, params)")
        trees.check_matching("updates", updates, "params", params)
        if opaque_mode:
            return opaque(updates, state, params, grad_fn)
        return transparent(updates, state, params)

    return GradientTransformation(init_fn, update_fn)
