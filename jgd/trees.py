"""The trees handed to a transform: checks with errors that name the tree path, and finding states inside them."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jgd.numerics import abs_sq
from jgd.types import PyTree


def instances(tree: PyTree, cls: type) -> list:
    """Every node of ``tree`` that is a ``cls`` (a state in a chain's tuple, a wrapper's NamedTuple, ...), in order."""
    return [node for node in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, cls)) if isinstance(node, cls)]


def _paths(tree: PyTree) -> dict[str, object]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in flat}


def check_matching(name: str, tree: PyTree, ref_name: str, ref: PyTree) -> None:
    """Raises ``ValueError`` naming the first path where ``tree`` and ``ref`` differ."""
    if jax.tree.structure(tree) == jax.tree.structure(ref):
        return
    got, want = _paths(tree), _paths(ref)
    for path in want:
        if path not in got:
            raise ValueError(f"{name} has no leaf at {path or 'the root'}, which {ref_name} has")
    for path in got:
        if path not in want:
            raise ValueError(f"{name} has a leaf at {path or 'the root'} that {ref_name} does not have")
    raise ValueError(
        f"{name} and {ref_name} differ in tree structure: {jax.tree.structure(tree)} != {jax.tree.structure(ref)}"
    )


def check_shapes(name: str, tree: PyTree, ref_name: str, ref: PyTree) -> None:
    """Raises ``ValueError`` naming the first path whose leaf shapes differ (trees must match)."""
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(tree)[0], jax.tree.leaves(ref)):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} has shape {jnp.shape(a)}, "
                f"but {ref_name}{jax.tree_util.keystr(path)} has shape {jnp.shape(b)}"
            )


def check_floating(name: str, tree: PyTree, *, method: str | None = None, allow_complex: bool = False) -> None:
    """Raises ``ValueError`` naming the first leaf that is not a real floating-point array.

    With ``allow_complex``, complex floating-point leaves are accepted too; ``method`` names the
    transform in the message of a complex leaf it refuses.
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = jnp.result_type(leaf)
        if jnp.issubdtype(dtype, jnp.floating) or (allow_complex and jnp.issubdtype(dtype, jnp.complexfloating)):
            continue
        where = f"{name}{jax.tree_util.keystr(path)}"
        if method is not None and jnp.issubdtype(dtype, jnp.complexfloating):
            raise ValueError(
                f"{where} has dtype {dtype}; {method} does not take complex arrays, only real floating-point"
            )
        raise ValueError(f"{where} has dtype {dtype}; jgd transforms need real floating-point arrays")


def global_norm(tree: PyTree) -> jax.Array:
    """``√(Σ_leaves Σ |g|²)``, accumulated in at least float32.

    Args:
      tree: a tree of arrays (``jgd.types.PyTree``); an empty tree has norm 0.

    Examples:
      The norm of all leaves together:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> print(jgd.global_norm({"a": jnp.array([3.0]), "b": jnp.array([[4.0, 12.0]])}))
      13.0
    """
    leaves = [jnp.asarray(g) for g in jax.tree.leaves(tree)]
    squares = [jnp.sum(abs_sq(g.astype(jnp.promote_types(g.dtype, jnp.float32)))) for g in leaves]
    return jnp.sqrt(sum(squares, jnp.zeros((), jnp.float32)))
