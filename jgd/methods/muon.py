"""Muon: momentum orthogonalised by Newton–Schulz iterations on the matrices, Adam on the other leaves."""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from jgd import masks
from jgd.base import GradientTransformation, chain
from jgd.blocks.scaling import scale_by_learning_rate
from jgd.leafwise import leafwise, slot_dtypes
from jgd.methods.adam import adamw
from jgd.methods.muon_matrices import Matrix, muon_adam_mask, muon_dimension_numbers, resolve
from jgd.methods.newton_schulz import Iteration, iteration, orthogonalize
from jgd.ranges import validate
from jgd.trees import check_floating
from jgd.types import Mask, PyTree, ScalarOrSchedule, StateDtype
from jgd.wrappers.partition import by_labels

__all__ = ["muon", "orthogonalize"]

# NorMuon's second moment of the update, one per output neuron: the matrix form's rows averaged.
_NEURON_SLOT = {"nu": lambda p, dtype: jnp.zeros(p.shape[:-2] + p.shape[-1:], dtype)}


def _momentum(g, m, t, beta, nesterov: bool, bias_correction: bool):
    """``m_t`` and the ``m̃_t`` Newton–Schulz orthogonalises (Nesterov, bias-corrected as asked)."""
    m = beta * m + (1 - beta) * g
    if not bias_correction:
        return m, (beta * m + (1 - beta) * g if nesterov else m)
    if nesterov:
        return m, beta * m / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
    return m, m / (1 - beta**t)


def _muon_rule(ns: Iteration, nesterov: bool, bias_correction: bool, normuon: bool):
    """The matrices' direction, before ``-η``, on each leaf's matrix form ``(*batch, fan_in, fan_out)``."""

    def rule(g, m, *rest, t, beta, eps, weight_decay, decayed, consistent_rms=None, normuon_b2=None, normuon_eps=None):
        *neurons, p = rest
        m, m_hat = _momentum(g, m, t, beta, nesterov, bias_correction)
        o = orthogonalize(m_hat, ns.coefficients, len(ns.coefficients), eps, ns.norm_scale)
        fan_in, fan_out = p.shape[-2], p.shape[-1]
        if normuon:  # Li et al.: each neuron's (output column's) second moment, then the RMS set to ρ
            v = normuon_b2 * neurons[0] + (1 - normuon_b2) * jnp.mean(o * o, axis=-2)
            o = o / (jnp.sqrt(v)[..., None, :] + normuon_eps)
            norm = jnp.linalg.norm(o, axis=(-2, -1), keepdims=True)
            u = o * (consistent_rms * math.sqrt(fan_in * fan_out) / jnp.maximum(norm, jnp.finfo(o.dtype).tiny))
            slots = (m, v)
        else:
            if consistent_rms is None:  # Jordan: √max(1, fan_out / fan_in)
                u = o * math.sqrt(max(1.0, fan_out / fan_in))
            else:  # Moonlight: ρ √max(fan_in, fan_out), the RMS of an orthogonal matrix's update made ρ
                u = o * (consistent_rms * math.sqrt(max(fan_in, fan_out)))
            slots = (m,)
        return (u + weight_decay * p if decayed else u), slots

    return rule


def muon(
    learning_rate: ScalarOrSchedule = 0.02,
    ns_coeffs="standard",
    ns_steps: int | None = None,
    beta: ScalarOrSchedule = 0.95,
    eps: ScalarOrSchedule = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    *,
    nesterov: bool = True,
    bias_correction: bool = False,
    muon_weight_dimension_numbers=None,
    flatten_conv: bool = False,
    stacked_matrices: bool = False,
    adam_mask: Mask = muon_adam_mask,
    consistent_rms: ScalarOrSchedule | None = None,
    normuon: bool = False,
    normuon_b2: ScalarOrSchedule = 0.95,
    normuon_eps: ScalarOrSchedule = 1e-8,
    adam_b1: ScalarOrSchedule = 0.9,
    adam_b2: ScalarOrSchedule = 0.999,
    adam_eps_root: ScalarOrSchedule = 0.0,
    adam_weight_decay: ScalarOrSchedule = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    state_dtype: StateDtype = None,
) -> GradientTransformation:
    """Muon on the hidden matrices (conv kernels flattened, stacks of matrices), Adam on the other leaves.

    On each matrix, held as ``(fan_in, fan_out)`` (its reduction axes then its output axes,
    :class:`jgd.MuonDimensionNumbers`; leading batch axes each a matrix of their own):
    ``m_t = β m_{t-1} + (1 - β) g_t``, ``m̃_t = β m_t + (1 - β) g_t`` (Nesterov; ``m_t`` without),
    ``O_t = NS(m̃_t)``: ``X_0 = m̃_t / (‖m̃_t‖_F + ε)``, ``X_{k+1} = a_k X_k + (b_k A + c_k A²) X_k`` with
    ``A = X_k X_kᵀ`` (``jgd.methods.newton_schulz.orthogonalize``), and
    ``θ_{t+1} = θ_t - η (s O_t + λ θ_t)``, ``s = √max(1, fan_out / fan_in)``.
    Jordan et al., "Muon: an optimizer for hidden layers in neural networks", 2024 (blog and code).

    - ``consistent_rms=ρ`` (optax's name): ``s = ρ √max(fan_in, fan_out)``, so the update's RMS is ``ρ``
      whatever the shape, as AdamW's is about 0.2 (Liu et al., "Muon is scalable for LLM training",
      arXiv:2502.16982, 2025: ``W_t = W_{t-1} - η (0.2 O_t √max(A, B) + λ W_{t-1})``).
    - ``normuon=True``: Li et al., "NorMuon: making Muon more efficient and scalable", arXiv:2510.05491,
      2025: a second moment per output neuron, ``v_t = β₂ v_{t-1} + (1 - β₂) mean_rows(O_t ⊙ O_t)``
      (``v_t`` has ``fan_out`` entries), ``Ô_t = O_t / (√v_t + ε_n)`` (each column by its own), and the
      step ``θ_{t+1} = θ_t - η (ρ √(fan_in fan_out) Ô_t / ‖Ô_t‖_F + λ θ_t)``, whose update has RMS ``ρ``
      (``consistent_rms``, 0.2 as in the paper when None). The paper's momentum is plain:
      ``nesterov=False`` gives its equations exactly.
    - ``ns_coeffs``: the standard quintic ``(3.4445, -4.775, 2.0315)`` (Jordan) at every step; a sequence
      of ``(a, b, c)``, one per step (shape ``(steps, 3)``, as optax); ``"dion"`` (optax's preset); or
      ``"polar_express"``: Amsel et al., "The Polar Express: optimal matrix sign methods and their
      application to the Muon algorithm", arXiv:2505.16932, 2025, Algorithm 1: each step's quintic is
      the best approximation of 1 on the interval the earlier steps leave, with the paper's safety
      factor (``X_0 = m̃_t / (1.01 ‖m̃_t‖_F + ε)``; ε here is ``eps``, the paper's 10⁻⁷).
    - Weight decay is decoupled and scaled by ``η`` as in optax, PyTorch and Moonlight
      (``-η λ θ_t``; Loshchilov and Hutter decouple it from ``η``'s schedule multiplier only).

    Which leaves are matrices. ``muon_weight_dimension_numbers`` (optax's name): a tree of
    :class:`jgd.MuonDimensionNumbers` or ``None`` (a prefix of the params), one spec for every leaf, or a
    function ``params -> such a tree``; ``None`` sends a leaf to Adam. When it is None, the rule is
    :func:`jgd.muon_dimension_numbers` with ``flatten_conv`` and ``stacked_matrices``: 2-D leaves are
    matrices, leaves of three or more axes conv kernels ``(*spatial, in, out)`` flattened to
    ``(spatial·in) × out`` (``flatten_conv``, as Jordan's CIFAR-10 code flattens each filter: rows in
    another order, the same orthogonalised update) or stacks of matrices (``stacked_matrices``), else
    Adam's. Then ``adam_mask`` sends the leaves it selects to Adam whatever their spec: by default
    :func:`jgd.muon_adam_mask`, the embeddings and the output layer, as the Muon and Moonlight recipes
    route them (optax sends every 2-D leaf to Muon: ``adam_mask=False`` is optax's routing).

    It is a :func:`jgd.partition` by label, as optax's: the group ``"muon"`` (the matrices: the rule above,
    slot ``mu`` (and ``nu``, NorMuon's, one per neuron), then ``-η``) and the group ``"adam"`` (the others:
    :func:`jgd.adamw` itself with ``eps``, slots ``mu`` and ``nu``, ``m̂`` in the same Nesterov or plain
    form). A matrix's slots are held in its matrix form (a conv kernel's ``mu`` is ``(H·W·I, O)``), and
    ``weight_decay_mask``, applied within the group, sees the matrix forms. :func:`jgd.hyperparams` keys
    each group's names by its label: ``"muon/learning_rate"``, ``"muon/beta"``, ``"muon/eps"``,
    ``"muon/weight_decay"`` (``"muon/consistent_rms"``, ``"muon/normuon_b2"``, ``"muon/normuon_eps"``
    when used), ``"adam/learning_rate"``, ``"adam/b1"``, ``"adam/b2"``, ``"adam/eps"``,
    ``"adam/eps_root"``, ``"adam/weight_decay"`` (the arguments ``adam_b1``, ...). A plain name sets every
    group that holds it (``learning_rate=...`` both rates, ``eps=...`` both ε); a labelled key one.

    Differs from optax's ``contrib.muon``: the default ``adam_mask`` (above), ``bias_correction=False``
    (Jordan's; ``True`` is optax's, which only reweights ``g_t`` against ``m_t``, NS normalising first),
    and optax's ``adaptive`` and ``preconditioning`` options and complex leaves are not ported (complex
    params are a ``ValueError`` naming the leaf).

    Args:
      learning_rate: ``η``, a float, an array or a schedule; 0.02 (Jordan's code).
      ns_coeffs: a name (``"standard"``, ``"dion"``, ``"polar_express"``), one ``(a, b, c)`` or one per step;
        ``"standard"``. A plain Python argument: the table fixes the number of matrix products.
      ns_steps: the number of Newton–Schulz steps, a Python int; None: 5 for a triple and Polar Express
        (whose last row repeats beyond its 8), one per row of a table (fewer takes the first rows).
      beta: ``β``, in [0, 1); 0.95 (Jordan).
      eps: ``ε`` of the normalisation and of Adam's denominator, ≥ 0; 1e-8 (Jordan: 1e-7).
      weight_decay: ``λ`` on the matrices, ≥ 0; 0.
      weight_decay_mask: which matrices are decayed (a bool, a tree of bools or ``params -> tree of bools``).
      nesterov: whether ``m̃`` (and Adam's ``m̂``) take the Nesterov form; True (Jordan).
      bias_correction: optax's bias-corrected momentum, ``m̃_t = β m_t / (1 - β^{t+1}) + (1 - β) g_t / (1 - β^t)``
        (``m_t / (1 - β^t)`` without Nesterov); False (Jordan).
      muon_weight_dimension_numbers: the matrices' axes (above); None for :func:`jgd.muon_dimension_numbers`.
      flatten_conv: with the default dimension numbers, leaves of ≥ 3 axes are conv kernels; False.
      stacked_matrices: with the default dimension numbers, leaves of ≥ 3 axes are stacks of matrices; False.
      adam_mask: the leaves sent to Adam whatever their dimension numbers (a bool, a tree of bools or a
        function of the params); :func:`jgd.muon_adam_mask`.
      consistent_rms: ``ρ`` > 0, a float, an array or a schedule, or None for Jordan's ``s``; None (0.2
        with ``normuon``). 0.2 is Moonlight's.
      normuon: whether the update is NorMuon's (above), a Python bool; False.
      normuon_b2: NorMuon's ``β₂``, in [0, 1); 0.95 (the paper's).
      normuon_eps: NorMuon's ``ε_n``, ≥ 0; 1e-8.
      adam_b1: Adam's ``β1``, in [0, 1); 0.9.
      adam_b2: Adam's ``β2``, in [0, 1); 0.999.
      adam_eps_root: Adam's ``ε_root``, ≥ 0; 0.
      adam_weight_decay: Adam's ``λ_a``, ≥ 0; 0.
      adam_learning_rate: Adam's ``η_a``; ``None`` for ``η``.
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

      A small Linen CNN: with ``flatten_conv`` the conv kernel is Muon's, the last Dense layer (the
      classifier head) and the biases Adam's; Polar Express coefficients and NorMuon's update:

      >>> params = {"Conv_0": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.zeros(4)},
      ...           "Dense_0": {"kernel": jnp.ones((4, 10)), "bias": jnp.zeros(10)}}
      >>> tx = jgd.muon(flatten_conv=True, ns_coeffs="polar_express", normuon=True)
      >>> state = tx.init(params)
      >>> print(state.members)
      (('muon', ('Conv_0/kernel',)), ('adam', ('Conv_0/bias', 'Dense_0/bias', 'Dense_0/kernel')))
      >>> print(state.groups["muon"][0].slots["nu"]["Conv_0"]["kernel"].shape)
      (4,)
    """
    _validate_arguments(locals())
    ns = iteration(ns_coeffs, ns_steps)
    if not isinstance(normuon, bool):
        raise ValueError(f"normuon must be a Python bool, got {normuon!r}")
    if muon_weight_dimension_numbers is not None and (flatten_conv or stacked_matrices):
        raise ValueError(
            "flatten_conv and stacked_matrices shape the default muon_weight_dimension_numbers: "
            "give them or the dimension numbers, not both"
        )
    dtypes = slot_dtypes("muon", ("mu", "nu"), state_dtype)
    hp = {"beta": beta, "eps": eps, "weight_decay": weight_decay}
    if normuon:
        hp |= {"consistent_rms": 0.2 if consistent_rms is None else consistent_rms}
        hp |= {"normuon_b2": normuon_b2, "normuon_eps": normuon_eps}
    elif consistent_rms is not None:
        hp["consistent_rms"] = consistent_rms
    slots = ("mu", "nu") if normuon else ("mu",)
    direction = leafwise(
        "muon",
        _muon_rule(ns, nesterov, bias_correction, normuon),
        hp,
        slots,
        state_dtype={s: dtypes[s] for s in slots},
        with_params=True,
        masks={"decayed": weight_decay_mask},
        slot_init=_NEURON_SLOT if normuon else None,
        real_slots=("nu",) if normuon else (),
        nonnegative_slots=("nu",) if normuon else (),
    )
    rate = learning_rate if adam_learning_rate is None else adam_learning_rate
    others = adamw(rate, adam_b1, adam_b2, eps, adam_eps_root, adam_weight_decay, nesterov=nesterov, state_dtype=dtypes)
    groups = {"muon": chain(direction, scale_by_learning_rate(learning_rate)), "adam": others}
    if muon_weight_dimension_numbers is None:
        muon_weight_dimension_numbers = partial(
            muon_dimension_numbers, flatten_conv=flatten_conv, stacked_matrices=stacked_matrices
        )
    return _routed(groups, muon_weight_dimension_numbers, adam_mask)


def _validate_arguments(arguments: dict) -> None:
    """Each Adam argument named as the caller wrote it (before adamw checks it by its own name), and NorMuon's."""
    names = ("adam_b1", "adam_b2", "adam_eps_root", "adam_weight_decay", "adam_learning_rate", "consistent_rms")
    for name in (*names, "normuon_b2", "normuon_eps"):
        value = arguments[name]
        if value is not None and not callable(value):
            validate(name, value)
    masks.check_mask("adam_mask", arguments["adam_mask"])


def _routed(groups: dict, dimension_numbers, adam_mask: Mask) -> GradientTransformation:
    """``by_labels(groups)`` on the leaves in their matrix forms: ``"muon"`` for those with dimension
    numbers that ``adam_mask`` leaves, ``"adam"`` for the rest. Complex leaves are refused (a ``ValueError``
    naming the path) before the groups see them: Adam, which would take a complex vector, is one part of
    muon, which takes no complex params."""

    def forms(tree: PyTree) -> list[Matrix | None]:
        matrices = resolve("muon_weight_dimension_numbers", dimension_numbers, tree)
        to_adam = masks.leaf_flags("adam_mask", adam_mask, tree)
        return [None if adam else form for (_, form), adam in zip(matrices, to_adam)]

    def reshaped(tree: PyTree, held: list[Matrix | None], forward: bool) -> PyTree:
        leaves, treedef = jax.tree.flatten(tree)
        moved = [x if f is None else (f.canonical(x) if forward else f.restore(x)) for x, f in zip(leaves, held)]
        return treedef.unflatten(moved)

    def grouped(tree: PyTree, held: list[Matrix | None]) -> GradientTransformation:
        labels = jax.tree.structure(tree).unflatten(["adam" if f is None else "muon" for f in held])
        return by_labels(groups, labels, labelled=True)

    def init_fn(params):
        check_floating("params", params, method="muon")
        held = forms(params)
        return grouped(params, held).init(reshaped(params, held, True))

    def update_fn(updates, state, params=None, **extra_args):
        check_floating("updates", updates, method="muon")
        held = forms(updates if params is None else params)
        inner_params = None if params is None else reshaped(params, held, True)
        out, state = grouped(updates, held).update(reshaped(updates, held, True), state, inner_params, **extra_args)
        return reshaped(out, held, False), state

    return GradientTransformation(init_fn, update_fn)
