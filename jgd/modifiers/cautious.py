"""Cautious masking: keep only the entries of a step that lower the loss to first order."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jgd import trees
from jgd.base import GradientTransformation, check_transform, with_extra_args
from jgd.hyperparams import Hyperparameters
from jgd.numerics import real_dtype
from jgd.state import TransformState, check_state
from jgd.types import PyTree, ScalarOrSchedule


class CautiousState(NamedTuple):
    """The state of :func:`cautious`.

    Attributes:
      inner: the wrapped transform's state.
      settings: the state holding ``cautious_eps`` as data (read and set with ``jgd.hyperparams``).

    Examples:
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> state = jgd.cautious(jgd.adam(0.1), cautious_eps=1e-6).init(jnp.zeros(3))
      >>> print(type(state.inner).__name__, jgd.hyperparams(state)["cautious_eps"])
      TransformState 1e-06
    """

    inner: PyTree
    settings: TransformState


def _caution(u: jax.Array, g: jax.Array, eps: jax.Array) -> jax.Array:
    """``u ⊙ φ / (mean(φ) + ε)`` with ``φ = 1[Re(ḡ u) < 0]``, in at least float32, in ``u``'s dtype."""
    dtype = jnp.promote_types(jnp.result_type(u), jnp.float32)
    u32, g32 = jnp.asarray(u, dtype), jnp.asarray(g, dtype)
    # jgd's update is what is added to the params, so a step that lowers the loss has Re(ḡ u) < 0.
    kept = (jnp.real(jnp.conj(g32) * u32) < 0).astype(real_dtype(dtype))
    denominator = jnp.mean(kept) + eps.astype(kept.dtype)
    # With ε = 0 and nothing kept the step is zero, not 0/0.
    denominator = jnp.where(denominator > 0, denominator, 1)
    return (u32 * (kept / denominator)).astype(jnp.result_type(u))


def cautious(tx: GradientTransformation, cautious_eps: ScalarOrSchedule = 1e-8) -> GradientTransformation:
    """Runs ``tx`` and keeps its update only where the update and the gradient disagree in sign, rescaled.

    With ``u_t`` the update of ``tx`` (what is added to the params, ``u_t = -η_t d_t``) and ``g_t``
    the gradient, each leaf's update becomes

        ``φ_t = 1[u_t ⊙ g_t < 0]``,  ``ũ_t = u_t ⊙ φ_t / (mean(φ_t) + ε)``,

    so an entry moves only where the step lowers the loss to first order, and the mean over the
    leaf (the fraction of entries kept) rescales the survivors to the leaf's size. Liang, Chen, Liu
    & Liu, "Cautious optimizers: improving training with one line of code", 2024, Algorithm 1
    (``m = (u * g > 0); p -= lr * u * m / (m.mean() + eps)``, with their ``u`` the direction ``d``).
    For complex leaves the test is ``Re(ḡ u) < 0``, the first-order change of a real loss.

    The mask covers the whole update of ``tx``: a decoupled weight decay inside it (``jgd.adamw``) is
    masked too. The paper's C-AdamW decays outside the mask:
    ``jgd.chain(jgd.cautious(jgd.adam(η)), jgd.weight_decay(η λ))``.

    Args:
      tx: the transform whose update is masked (a gradient transformation, jgd's or optax's); it
        receives the extra keyword arguments.
      cautious_eps: ``ε ≥ 0`` in the rescaling, a float, an array or a schedule; data like any
        hyperparameter, read and set as ``cautious_eps``. Default 1e-8.

    Examples:
      Lion with ``β1 = 0`` steps by ``-η sign(g)``: where the gradient is 0 the step is 0, which lowers
      nothing, so the mask drops it and the two kept entries are doubled (half the leaf kept):

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, 2.0, 3.0, 4.0]), jnp.array([1.0, -1.0, 0.0, 0.0])
      >>> tx = jgd.cautious(jgd.lion(0.1, b1=0.0))
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates)
      [-0.2  0.2 -0.  -0. ]
    """
    tx = with_extra_args(check_transform("tx", tx))
    settings = Hyperparameters("cautious", {"cautious_eps": cautious_eps})

    def init_fn(params):
        trees.check_floating("params", params, allow_complex=True)
        return CautiousState(tx.init(params), settings.init())

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("cautious", state, CautiousState)
        values, new_settings = settings.resolve(state.settings)
        inner_updates, inner = tx.update(updates, state.inner, params, **extra_args)
        trees.check_matching("the updates of tx", inner_updates, "the gradients", updates)
        eps = jnp.asarray(values["cautious_eps"])
        masked = jax.tree.map(lambda u, g: _caution(u, g, eps), inner_updates, updates)
        return masked, CautiousState(inner, settings.advance(new_settings))

    return GradientTransformation(init_fn, update_fn)
