"""Muon: momentum orthogonalised by Newton–Schulz iterations on the matrices, Adam on the other leaves."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jgd.base import GradientTransformation, chain
from jgd.blocks.scaling import scale_by_learning_rate
from jgd.leafwise import leafwise, slot_dtypes
from jgd.methods.adam import adamw
from jgd.ranges import validate
from jgd.trees import check_floating
from jgd.types import Mask, ScalarOrSchedule, StateDtype
from jgd.wrappers.partition import by_labels


def orthogonalize(x, coefficients=(3.4445, -4.775, 2.0315), steps: int = 5, eps: float = 1e-8):
    """The nearest semi-orthogonal ``U Vᵀ`` of ``x = U S Vᵀ``, approximately, over the last two axes (others batch).

    ``X_0 = x / (‖x‖_F + ε)``, ``A = X Xᵀ``, ``X_{k+1} = a X_k + (b A + c A²) X_k``, on the wide
    orientation of the matrix (transposed when it has more rows than columns).
    """
    wide = x.shape[-2] <= x.shape[-1]
    x = x if wide else jnp.swapaxes(x, -1, -2)
    x = x / (jnp.linalg.norm(x, axis=(-2, -1), keepdims=True) + eps)
    a, b, c = coefficients
    for _ in range(steps):
        gram = x @ jnp.swapaxes(x, -1, -2)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else jnp.swapaxes(x, -1, -2)


def _muon_rule(ns_coeffs, ns_steps: int, nesterov: bool, bias_correction: bool):
    """The matrices' direction, before ``-η``: ``√max(1, m / n) NS(m̃_t) + λ θ_t``."""

    def rule(g, m, p, *, t, beta, eps, weight_decay, decayed):
        m = beta * m + (1 - beta) * g
        if not bias_correction:
            m_hat = beta * m + (1 - beta) * g if nesterov else m
        elif nesterov:
            m_hat = beta * m / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
        else:
            m_hat = m / (1 - beta**t)
        u = orthogonalize(m_hat, ns_coeffs, ns_steps, eps) * jnp.sqrt(jnp.maximum(1, p.shape[-1] / p.shape[-2]))
        return (u + weight_decay * p if decayed else u), (m,)

    return rule


def muon(
    learning_rate: ScalarOrSchedule = 0.02,
    ns_coeffs: tuple[float, float, float] = (3.4445, -4.775, 2.0315),
    ns_steps: int = 5,
    beta: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    *,
    nesterov: bool = True,
    bias_correction: bool = False,
    stacked_matrices: bool = False,
    adam_b1: ScalarOrSchedule = 0.9,
    adam_b2: ScalarOrSchedule = 0.999,
    adam_eps_root: ScalarOrSchedule = 0.0,
    adam_weight_decay: ScalarOrSchedule = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Muon on 2-D leaves (n × m, the first axis the input), Adam on the others.

    ``m_t = β m_{t-1} + (1 - β) g_t``, ``m̃_t = β m_t + (1 - β) g_t`` (Nesterov; ``m_t`` without),
    ``O_t = NS₅(m̃_t)`` (``jgd.methods.muon.orthogonalize``),
    ``θ_{t+1} = θ_t - η (√max(1, m / n) O_t + λ θ_t)``.
    Jordan et al., "Muon: an optimizer for hidden layers in neural networks", 2024 (blog and code).
    ``bias_correction=True`` divides as optax does, ``m̃_t = β m_t / (1 - β^{t+1}) + (1 - β) g_t / (1 - β^t)``
    (``m_t / (1 - β^t)`` without Nesterov): only the weight of ``g_t`` against ``m_t`` changes, since
    ``NS`` first normalises. ``stacked_matrices=True`` takes leaves of three or more axes as stacks of
    matrices over their last two axes (optax: ``MuonDimensionNumbers`` on those axes); by default
    they go to Adam. The other leaves take Adam with decoupled weight decay, ``m̂`` in the same
    Nesterov or plain form: ``θ_{t+1} = θ_t - η_a (m̂_t / (√(v̂_t + ε_root) + ε) + λ_a θ_t)``.

    It is a :func:`jgd.partition` by label, as optax's: the group ``"muon"`` (the matrices: the rule above,
    slot ``mu``, then ``-η``) and the group ``"adam"`` (the others: :func:`jgd.adamw` itself, slots ``mu``
    and ``nu``), each holding state for its own leaves only. :func:`jgd.hyperparams` keys each group's
    names by its label: ``"muon/learning_rate"``, ``"muon/beta"``, ``"muon/eps"``, ``"muon/weight_decay"``,
    and Adam's own names ``"adam/learning_rate"``, ``"adam/b1"``, ``"adam/b2"``, ``"adam/eps"``,
    ``"adam/eps_root"``, ``"adam/weight_decay"`` (the arguments ``adam_b1``, ... of this call). A plain
    name sets every group that holds it: ``set_hyperparams(state, learning_rate=...)`` sets both rates
    (the one ``η`` of a call without ``adam_learning_rate``), ``eps=...`` both ε; a labelled key
    (``"muon/learning_rate"``) sets one.

    Complex params are refused (a ``ValueError`` naming the leaf): the Newton–Schulz iteration here is
    the real polynomial ``a X + b (X Xᵀ) X + c (X Xᵀ)² X``. optax's ``contrib.muon`` runs it with ``Xᴴ``
    for complex leaves; that form is not ported yet.

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 0.02 (Jordan's code).
      ns_coeffs: ``(a, b, c)`` of the Newton–Schulz quintic; (3.4445, -4.775, 2.0315) (Jordan).
      ns_steps: Newton–Schulz iterations; 5 (Jordan).
      beta: ``β``, in [0, 1); 0.95 (Jordan).
      eps: ``ε`` of the normalisation and of Adam's denominator, ≥ 0; 1e-8 (Jordan: 1e-7).
      weight_decay: ``λ`` on the matrices, ≥ 0; 0.
      weight_decay_mask: which matrices are decayed (a bool, a tree of bools or ``params -> tree of bools``).
      nesterov: whether ``m̃`` (and Adam's ``m̂``) take the Nesterov form; True (Jordan).
      bias_correction: optax's bias-corrected momentum (above); False (Jordan).
      stacked_matrices: whether leaves of ≥ 3 axes are stacks of matrices (above).
      adam_b1: Adam's ``β1``, in [0, 1); 0.9.
      adam_b2: Adam's ``β2``, in [0, 1); 0.999.
      adam_eps_root: Adam's ``ε_root``, ≥ 0; 0.
      adam_weight_decay: ``λ_a``, ≥ 0; 0.
      adam_learning_rate: ``η_a``; ``None`` for ``η``.
      state_dtype: dtype of the moments; default each param's own.

    Examples:
      Matrices take the orthogonalised momentum (its singular values pushed towards 1 by Newton–Schulz);
      the other leaves take Adam. The two groups' hyperparameters are labelled ``muon/`` and ``adam/``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.eye(3), "b": jnp.zeros(3)}
      >>> grads = {"w": jnp.diag(jnp.array([1.0, 0.1, 0.01])), "b": jnp.ones(3)}
      >>> tx = jgd.muon(learning_rate=0.1)
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print(jnp.diag(updates["w"]).round(2))
      [-0.07 -0.07 -0.07]
      >>> print(updates["b"])
      [-0.14736842 -0.14736842 -0.14736842]
      >>> print(sorted(k for k in jgd.hyperparams(state) if k.endswith("learning_rate")))
      ['adam/learning_rate', 'muon/learning_rate']

      Gradients 1, 0.1 and 0.01 along the diagonal give steps of the same size. The vector's step is
      Adam's with Nesterov momentum, ``−η (β1 (1 − β1) / (1 − β1²) + 1) ≈ −1.47 η`` at the first step.
    """
    adam_arguments: dict[str, ScalarOrSchedule | None] = {"adam_b1": adam_b1, "adam_b2": adam_b2}
    adam_arguments |= {"adam_eps_root": adam_eps_root, "adam_weight_decay": adam_weight_decay}
    adam_arguments["adam_learning_rate"] = adam_learning_rate
    for name, value in adam_arguments.items():
        if value is not None and not callable(value):
            validate(name, value)  # named as the caller wrote it, before adamw checks it by its own name
    dtypes = slot_dtypes("muon", ("mu", "nu"), state_dtype)
    rule = _muon_rule(ns_coeffs, ns_steps, nesterov, bias_correction)
    hp = {"beta": beta, "eps": eps, "weight_decay": weight_decay}
    masks = {"decayed": weight_decay_mask}
    direction = leafwise("muon", rule, hp, ("mu",), state_dtype={"mu": dtypes["mu"]}, with_params=True, masks=masks)
    others = adamw(
        learning_rate if adam_learning_rate is None else adam_learning_rate,
        adam_b1,
        adam_b2,
        eps,
        adam_eps_root,
        adam_weight_decay,
        nesterov=nesterov,
        state_dtype=dtypes,
    )

    def labels(params):
        return jax.tree.map(lambda p: "muon" if p.ndim == 2 or (stacked_matrices and p.ndim > 2) else "adam", params)

    groups = by_labels({"muon": chain(direction, scale_by_learning_rate(learning_rate)), "adam": others}, labels)
    return _real_only(groups)


def _real_only(tx: GradientTransformation) -> GradientTransformation:
    """``tx``, refusing complex leaves (a ``ValueError`` naming the path) before its groups see them: Adam,
    which would take a complex vector, is one part of muon, which takes no complex params."""

    def init_fn(params):
        check_floating("params", params, method="muon")
        return tx.init(params)

    def update_fn(updates, state, params=None, **extra_args):
        check_floating("updates", updates, method="muon")
        return tx.update(updates, state, params, **extra_args)

    return GradientTransformation(init_fn, update_fn)
