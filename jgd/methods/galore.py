"""GaLore: a method run on each matrix's gradient projected onto its top singular vectors, stepped back in full."""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jgd import decompositions, trees
from jgd import masks as masks_lib
from jgd.base import GradientTransformation, chain, check_transform, with_extra_args
from jgd.blocks.scaling import scale as scale_by
from jgd.hyperparams import Hyperparameters
from jgd.methods.adam import adam
from jgd.state import TransformState, check_state
from jgd.types import Mask, PyTree, ScalarOrSchedule


class GaloreState(NamedTuple):
    """The state of :func:`galore`.

    Attributes:
      settings: the state holding ``learning_rate``, ``scale`` and ``weight_decay`` as data and the projectors
        (slot ``projector``: ``m × r`` or ``n × r`` per projected matrix, ``0 × 0`` for the other leaves).
      base_optimizer_state: the base method's state, shaped like the projected gradients.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> state = jgd.galore(0.1, rank=2).init({"w": jnp.zeros((4, 6)), "b": jnp.zeros(6)})
      >>> print(state.settings.slots["projector"]["w"].shape, state.settings.slots["projector"]["b"].shape)
      (4, 2) (0, 0)
    """

    settings: TransformState
    base_optimizer_state: PyTree


class _Matrix(NamedTuple):
    """How one leaf is read as a matrix: the transpose to its ``(reduction, output)`` axes and the sizes."""

    transpose: tuple[int, ...]
    rows: int
    cols: int
    left: bool  # project the rows (P is rows × r) rather than the columns

    def flat(self, x):
        return jnp.transpose(x, self.transpose).reshape(self.rows, self.cols)

    def back(self, x, shape):
        moved = tuple(shape[a] for a in self.transpose)
        return jnp.transpose(x.reshape(moved), tuple(sorted(range(len(shape)), key=self.transpose.__getitem__)))


def _axes(axis, ndim) -> tuple[int, ...]:
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def _matrix(p, spec, form) -> _Matrix | None:
    """``spec`` (None, or ``(reduction_axis, output_axis)``) for ``p`` as a :class:`_Matrix`; None: not projected."""
    if spec is None:
        return None
    shape = jnp.shape(p)
    reduction, output = _axes(spec[0], len(shape)), _axes(spec[1], len(shape))
    if len(shape) < 2 or sorted(reduction + output) != list(range(len(shape))):
        raise ValueError(f"galore: axes {spec} must split the {len(shape)} axes of a leaf of shape {shape} in two")
    rows, cols = math.prod(shape[a] for a in reduction), math.prod(shape[a] for a in output)
    # The paper keeps the r directions of the shorter side (Alg. 2, m ≤ n); optax's those of the longer one.
    left = rows <= cols if form == "paper" else rows >= cols
    return _Matrix(reduction + output, rows, cols, left)


def _projector(g2, matrix, rank, form):
    """The top ``r`` singular vectors of ``g2`` on the projected side (optax: from a float32 SVD)."""
    dtype = jnp.float32 if form == "optax" else g2.dtype
    u, _, vh = decompositions.svd(g2.astype(dtype))
    r = min(rank, matrix.rows, matrix.cols)
    return (u[:, :r] if matrix.left else vh[:r, :].T).astype(g2.dtype)


def _is_pair(spec) -> bool:
    """Whether ``spec`` is one ``(reduction_axis, output_axis)`` pair, each an int or a sequence of ints."""
    axis = lambda a: isinstance(a, int) or (isinstance(a, tuple | list) and all(isinstance(i, int) for i in a))  # noqa: E731
    return isinstance(spec, tuple) and len(spec) == 2 and all(axis(a) for a in spec)


def _specs(weight_dimension_numbers, params) -> list:
    """One ``(reduction_axis, output_axis)`` or None per leaf of ``params``, in leaf order."""
    found, leaves = weight_dimension_numbers, jax.tree.leaves(params)
    if found is None:
        return [(0, 1) if jnp.ndim(p) == 2 else None for p in leaves]
    if callable(found):
        found = found(params)
    if _is_pair(found):
        return [tuple(found) if jnp.ndim(p) >= 2 else None for p in leaves]
    return [None if s is None else tuple(s) for s in jax.tree.structure(params).flatten_up_to(found)]


def galore(
    learning_rate: ScalarOrSchedule,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: ScalarOrSchedule = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    weight_dimension_numbers: Any = None,
    *,
    form: Literal["paper", "optax"] = "paper",
) -> GradientTransformation:
    """GaLore: the base method steps on each matrix's gradient projected to rank ``r``; the step is projected back.

    For a matrix gradient ``G_t`` (``m × n``): every ``T`` steps (``t = 1, T + 1, …``) ``U, S, V = SVD(G_t)``
    and ``P = U[:, :r]`` (``m ≤ n``; ``P = V[:, :r]`` for ``m > n``, the transpose's); ``R_t = Pᵀ G_t``
    (``G_t P``), ``N_t = ρ(R_t)`` the base method's direction on it, ``G̃_t = α P N_t`` (``α N_t Pᵀ``);
    other leaves take ``G̃_t = ρ(G_t)``. Then ``θ_{t+1} = θ_t - η (G̃_t + λ θ_t)``.
    Zhao, Zhang, Chen, Wang, Anandkumar & Tian, "GaLore: memory-efficient LLM training by gradient low-rank
    projection", ICML 2024, Alg. 2 (``ρ`` = Adam's direction by default); ``λ`` is decoupled weight decay,
    as optax's. ``rank``, ``update_proj_gap`` (``T``) and the axes are Python values, fixed when the
    transform is built; ``learning_rate``, ``scale`` and ``weight_decay`` are data.

    ``form="optax"`` is optax's ``contrib.galore``: it keeps the directions of the longer side (``P = U`` for
    ``m ≥ n``, ``V`` otherwise; the same for a square matrix) and takes the SVD in float32; jgd's default
    takes it in the leaf's precision (at least float32).

    ``base_optimizer`` is a direction (positive along the gradient, as optax's ``scale_by_adam``), run on the
    projected gradients without params; None is Adam's ``m̂ / (√v̂ + ε)`` (``jgd.adam(1.0)``, negated).

    Args:
      learning_rate: ``η``, a float, an array or a schedule, ≥ 0.
      rank: ``r``, a Python int ≥ 1 (at most ``min(m, n)`` is kept); 128 as optax.
      update_proj_gap: ``T``, a Python int ≥ 1; 200 (paper, optax).
      scale: ``α``, any real, a float, an array or a schedule; 1 as optax (the paper's runs 0.25).
      base_optimizer: the direction ``ρ`` (jgd's or optax's), or None for Adam's.
      weight_decay: ``λ``, ≥ 0; 0.
      mask: which leaves decay (``jgd.types.Mask``); None every leaf.
      weight_dimension_numbers: which axes of a leaf form the matrix's rows and columns: None (the 2-D leaves,
        rows then columns), one ``(reduction_axis, output_axis)`` pair for every leaf of 2 or more axes (optax's
        ``GaLoreDimensionNumbers`` is one), a tree of pairs and None, or a function of the params giving one.
      form: ``"paper"`` (default) or ``"optax"``.

    Examples:
      The gradient ``a bᵀ`` (``2 × 3``) has rank 1: ``P = a / ‖a‖``, Adam's first step on ``R = Pᵀ G`` is
      ``-η sign(R)``, and the step in full is ``-η P sign(R)``, whatever the sign the SVD gives ``P``:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.ones((2, 3))}
      >>> grads = {"w": jnp.outer(jnp.array([1.0, -2.0]), jnp.array([0.5, 1.0, -1.0]))}
      >>> tx = jgd.galore(0.1, rank=1)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates["w"].round(4))
      [[-0.0447 -0.0447  0.0447]
       [ 0.0894  0.0894 -0.0894]]
    """
    for name, value in (("rank", rank), ("update_proj_gap", update_proj_gap)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if form not in ("paper", "optax"):
        raise ValueError(f"form must be one of ('paper', 'optax'), got {form!r}")
    base = chain(adam(1.0), scale_by(-1.0)) if base_optimizer is None else base_optimizer
    base = with_extra_args(check_transform("base_optimizer", base))
    masks_lib.check_mask("mask", mask)
    hp = {"learning_rate": learning_rate, "scale": scale, "weight_decay": weight_decay}
    component = Hyperparameters("galore", hp)

    def matrices(tree):
        return [_matrix(p, s, form) for p, s in zip(jax.tree.leaves(tree), _specs(weight_dimension_numbers, tree))]

    def init_fn(params):
        trees.check_floating("params", params, method="galore")
        treedef = jax.tree.structure(params)
        shapes = [_shapes(p, matrix, rank) for p, matrix in zip(jax.tree.leaves(params), matrices(params))]
        projectors = [jnp.zeros(shape, jnp.result_type(p)) for p, (shape, _) in zip(jax.tree.leaves(params), shapes)]
        # zeros_like keeps an unprojected leaf's sharding for the base method's state.
        proxies = [
            jnp.zeros_like(p) if matrix is None else jnp.zeros(shape, jnp.result_type(p))
            for p, matrix, (_, shape) in zip(jax.tree.leaves(params), matrices(params), shapes)
        ]
        settings = component.init(slots={"projector": treedef.unflatten(projectors)})
        return GaloreState(settings, base.init(treedef.unflatten(proxies)))

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("galore", state, GaloreState)
        if params is None:
            raise ValueError("galore needs params: call update(updates, state, params)")
        values, settings = component.resolve(state.settings)
        trees.check_floating("updates", updates, method="galore")
        trees.check_matching("updates", updates, "params", params)
        leaves, treedef = jax.tree.flatten(updates)
        refresh = settings.count % update_proj_gap == 0
        projectors = treedef.flatten_up_to(settings.slots["projector"])
        found = matrices(updates)
        pairs = [
            (g, projector) if matrix is None else _project(g, projector, matrix, refresh, rank, form)
            for g, projector, matrix in zip(leaves, projectors, found)
        ]
        low, new_projectors = [g for g, _ in pairs], [projector for _, projector in pairs]
        directions, base_state = base.update(treedef.unflatten(low), state.base_optimizer_state, None, **extra_args)
        flags = masks_lib.leaf_flags("mask", mask, params)
        out = [
            _full_step(n, p, g, P, matrix, values, decayed)
            for n, p, g, P, matrix, decayed in zip(
                jax.tree.leaves(directions), jax.tree.leaves(params), leaves, new_projectors, found, flags
            )
        ]
        settings = component.advance(settings, slots={"projector": treedef.unflatten(new_projectors)})
        return treedef.unflatten(out), GaloreState(settings, base_state)

    return GradientTransformation(init_fn, update_fn)


def _shapes(p, matrix: _Matrix | None, rank: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The shapes of one leaf's projector and of its projected gradient (``0 × 0`` and its own where unprojected)."""
    if matrix is None:
        return (0, 0), jnp.shape(p)
    r = min(rank, matrix.rows, matrix.cols)
    if matrix.left:
        return (matrix.rows, r), (r, matrix.cols)
    return (matrix.cols, r), (matrix.rows, r)


def _project(g, projector, matrix: _Matrix, refresh, rank: int, form: str):
    """One matrix's projected gradient ``Pᵀ G`` (or ``G P``) and its projector, refreshed where ``refresh``;
    both in the gradient's dtype, computed in at least float32."""
    g2 = matrix.flat(jnp.asarray(g).astype(jnp.promote_types(jnp.result_type(g), jnp.float32)))
    projector = jax.lax.cond(
        refresh, lambda x: _projector(x, matrix, rank, form), lambda x: projector.astype(x.dtype), g2
    )
    dtype = jnp.result_type(g)
    return (projector.T @ g2 if matrix.left else g2 @ projector).astype(dtype), projector.astype(dtype)


def _full_step(direction, p, g, projector, matrix: _Matrix | None, values, decayed: bool) -> jax.Array:
    """``-η (α P N + λ θ)`` (``α N Pᵀ``, or ``N`` unprojected) on one leaf, in at least float32, in g's dtype."""
    dtype = jnp.promote_types(jnp.result_type(g), jnp.float32)
    n = jnp.asarray(direction).astype(dtype)
    real = jnp.finfo(dtype).dtype
    step = n
    if matrix is not None:  # α scales the projected leaves alone, as the other leaves' step is the method's own
        projector = projector.astype(dtype)
        step = values["scale"].astype(real) * matrix.back(
            projector @ n if matrix.left else n @ projector.T, jnp.shape(g)
        )
    if decayed:
        step = step + values["weight_decay"].astype(real) * jnp.asarray(p).astype(dtype)
    return (-values["learning_rate"].astype(real) * step).astype(jnp.result_type(g))
