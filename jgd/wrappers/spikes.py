"""Skip steps whose loss or gradient norm is far above its recent values."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jgd.base import GradientTransformation, check_transform, with_extra_args
from jgd.hyperparams import Hyperparameters
from jgd.state import check_state
from jgd.trees import global_norm
from jgd.types import PyTree, ScalarOrSchedule

_GRAD_NORM, _LOSS = 0, 1


class SkipSpikesState(NamedTuple):
    """The state of :func:`skip_spikes`.

    Attributes:
      inner: the wrapped transform's state, unchanged by a skipped step.
      settings: the state holding ``num_std`` as data (read and set with ``jgd.hyperparams``).
      history: ``float32[2, window]``, the gradient norms (row 0) and losses (row 1) of the last accepted steps.
      recorded: ``int32[2]``, values written to each row so far (the next goes to ``recorded % window``).
      seen: steps seen.
      skipped: steps skipped.

    Examples:
      The last accepted steps' gradient norms and losses (row 0 and row 1 of ``history``), and the counts:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.skip_spikes(jgd.sgd(0.1), window=3)
      >>> state = tx.init(params)
      >>> _, state = tx.update(grads, state, params, loss=2.0)
      >>> print(state.history)
      [[1.118034 0.       0.      ]
       [2.       0.       0.      ]]
      >>> print(state.recorded, state.seen, state.skipped)
      [1 1] 1 0
      >>> print(sorted(jgd.hyperparams(state)))
      ['learning_rate', 'num_std']
    """

    inner: PyTree
    settings: PyTree
    history: jax.Array
    recorded: jax.Array
    seen: jax.Array
    skipped: jax.Array


def _is_spike(history, recorded, row, value, num_std):
    """``value - mean > num_std · std`` over a full window; non-finite values are never spikes."""
    window = history.shape[1]
    mean = jnp.mean(history[row])
    std = jnp.std(history[row])
    return (recorded[row] >= window) & jnp.isfinite(value) & (value - mean > num_std * std)


def _record(history, recorded, row, value, accept):
    """Writes a finite ``value`` of an accepted step into its row of the ring buffer."""
    accept = accept & jnp.isfinite(value)
    position = recorded[row] % history.shape[1]
    history = history.at[row, position].set(jnp.where(accept, value, history[row, position]))
    return history, recorded.at[row].add(accept.astype(recorded.dtype))


def skip_spikes(
    tx: GradientTransformation, window: int = 128, num_std: ScalarOrSchedule = 6.0
) -> GradientTransformation:
    """Runs ``tx``, except on steps whose gradient norm or loss is a spike: then zero updates, state unchanged.

    A value ``x_t`` is a spike when ``x_t - μ > num_std · σ``, with ``μ`` and
    ``σ`` the mean and (population) standard deviation of that quantity over the
    last ``window`` accepted steps (the rule of OLMo 2, Team OLMo 2024, and MaxText).
    The global gradient norm ``‖g_t‖₂`` is always watched; the loss too on the
    steps that pass it as ``update(..., loss=...)``, and a step is skipped when
    either is a spike. Nothing is skipped until a quantity's window has filled;
    a skipped step enters neither window. A skipped step leaves ``tx``'s state
    bit-identical, as if it had not happened, and ``tx``'s count does not move.

    Non-finite values are neither spikes nor recorded: wrap ``tx`` in
    ``jgd.apply_if_finite`` (``skip_spikes(apply_if_finite(tx))``) to skip those.

    Args:
      tx: the transform to run on accepted steps; it receives the extra keyword
        arguments, ``loss`` included.
      window: accepted steps the mean and deviation are taken over, an int ``>= 2``.
      num_std: standard deviations above the mean that make a spike (a float,
        an array or a schedule of the steps seen, data like any hyperparameter);
        default 6.0, OLMo 2's.

    Examples:
      Once its window has filled, a step whose gradient norm (or loss) is ``num_std`` deviations above the
      window's mean is skipped:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> tx = jgd.skip_spikes(jgd.sgd(0.1), window=4, num_std=3.0)
      >>> state = tx.init(params)
      >>> for scale in [1.0, 1.1, 0.9, 1.0]:
      ...     _, state = tx.update(scale * grads, state, params)
      ...
      >>> updates, state = tx.update(100 * grads, state, params)
      >>> print(updates, state.skipped)
      [0. 0.] 1
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates, state.skipped, state.seen)
      [-0.05  0.1 ] 1 6
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an int >= 2, got {window!r}")
    tx = with_extra_args(check_transform("tx", tx))
    settings = Hyperparameters("skip_spikes", {"num_std": num_std})

    def init_fn(params):
        zero = jnp.zeros((), jnp.int32)
        history = jnp.zeros((2, window), jnp.float32)
        return SkipSpikesState(tx.init(params), settings.init(), history, jnp.zeros(2, jnp.int32), zero, zero)

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("skip_spikes", state, SkipSpikesState)
        values, new_settings = settings.resolve(state.settings)
        num_std = jnp.asarray(values["num_std"], jnp.float32)
        norm = global_norm(updates)
        spike = _is_spike(state.history, state.recorded, _GRAD_NORM, norm, num_std)
        loss = extra_args.get("loss")
        if loss is not None:
            loss = jnp.asarray(loss, jnp.float32)
            spike = spike | _is_spike(state.history, state.recorded, _LOSS, loss, num_std)

        def skip(inner):
            return jax.tree.map(jnp.zeros_like, updates), inner

        def step(inner):
            return tx.update(updates, inner, params, **extra_args)

        new_updates, inner = jax.lax.cond(spike, skip, step, state.inner)
        history, recorded = _record(state.history, state.recorded, _GRAD_NORM, norm, ~spike)
        if loss is not None:
            history, recorded = _record(history, recorded, _LOSS, loss, ~spike)
        new_state = SkipSpikesState(
            inner,
            settings.advance(new_settings),
            history,
            recorded,
            state.seen + 1,
            state.skipped + spike.astype(jnp.int32),
        )
        return new_updates, new_state

    return GradientTransformation(init_fn, update_fn)
