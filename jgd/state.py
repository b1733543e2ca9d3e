"""The state every jgd transform keeps, and the record of which transform made it."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax

from jgd.ranges import Range
from jgd.types import PyTree


@dataclasses.dataclass(frozen=True)
class Origin:
    """Which transform made a state, and the ranges it narrowed: static, so it costs no array and no recompile.

    name: the transform's public name (``"adam"``, ``"skip_spikes"``).
    narrowed: ``(name, Range)`` pairs for the hyperparameters whose range the transform narrowed.
    """

    name: str
    narrowed: tuple[tuple[str, Range], ...] = ()


# A node with no children: jit, vmap, tree.map, checkpoints and nnx.Optimizer carry it in the tree's structure.
jax.tree_util.register_pytree_node(Origin, lambda origin: ((), origin), lambda origin, _: origin)


class TransformState(NamedTuple):
    """The state of every jgd transform.

    Attributes:
      count: updates applied so far (int32).
      hyperparams: current values of the constant hyperparameters (settable).
      scheduled: the values the last update used for the hyperparameters that follow a schedule
        (in a fresh state, the values the first update will use).
      slots: per-parameter accumulators, each a tree shaped like the params.
      carry: per-step scalars a method carries besides the count.
      transform_constants: the constants of the transform that last updated (or made)
        this state, which tell whether the transform has been changed since (see ``jgd.hyperparams``,
        the module, and :doc:`/hyperparameters`).
      origin: which transform made the state (``jgd.state.Origin``, static: its name and the ranges it
        narrowed).

    Examples:
      Every method's state: the step count, its hyperparameters as arrays, and its per-parameter slots:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params, grads = jnp.array([1.0, -2.0]), jnp.array([0.5, -1.0])
      >>> state = jgd.adam(learning_rate=0.1).init(params)
      >>> print(state.count, sorted(state.hyperparams), sorted(state.slots))
      0 ['b1', 'b2', 'eps', 'eps_root', 'learning_rate'] ['mu', 'nu']
      >>> _, state = jgd.adam(learning_rate=0.1).update(grads, state, params)
      >>> print(state.count, state.hyperparams["learning_rate"], state.origin.name)
      1 0.1 adam

      A scheduled value sits in ``scheduled``: the value the last update used, here ``0.1 · 0.5`` at the
      second step:

      >>> tx = jgd.sgd(jgd.schedules.exponential(0.1, 0.5, 1))
      >>> state = tx.init(params)
      >>> for _ in range(2):
      ...     _, state = tx.update(grads, state, params)
      ...
      >>> print(sorted(state.hyperparams), state.scheduled["learning_rate"])
      [] 0.05
    """

    # The step count keeps optax's name, which shadows ``tuple.count`` as optax's states do: not a method here.
    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, jax.Array]
    scheduled: dict[str, jax.Array]
    slots: dict[str, PyTree]
    carry: dict[str, jax.Array]
    transform_constants: dict[str, jax.Array]
    origin: Origin = Origin("")


def is_state(node: Any) -> bool:
    """Whether ``node`` is a jgd transform's own state."""
    return isinstance(node, TransformState)


def states_with_paths(tree: PyTree) -> list[tuple[tuple, TransformState]]:
    """Every :class:`TransformState` inside ``tree`` with its key path, in the order ``jax.tree`` meets them."""
    flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_state)[0]
    return [(path, node) for path, node in flat if is_state(node)]


def transform_states(tree: PyTree) -> list[TransformState]:
    """Every :class:`TransformState` inside ``tree`` (a chain's tuple, a wrapper's NamedTuple, ...), in order."""
    return [node for _, node in states_with_paths(tree)]


def made_by(caller: str, tree: PyTree, names: tuple[str, ...]) -> TransformState:
    """The first state in ``tree`` that one of the transforms ``names`` made; else a ``ValueError`` naming them.

    Args:
      caller: the public function that needs the state, for the message.
      tree: an optimizer state, or any tree holding one.
      names: the public names of the transforms whose state ``caller`` reads.
    """
    found = transform_states(tree)
    for state in found:
        if state.origin.name in names:
            return state
    got = sorted({s.origin.name for s in found}) or "no jgd transform state"
    raise ValueError(f"{caller} needs the state of {' or '.join(names)}; this state holds {got}")


def check_state(owner: str, state: Any, kind: type[Any] = TransformState) -> Any:
    """Returns ``state`` if ``owner`` made it; else a ``TypeError`` that names both (a state of another transform).

    Args:
      owner: the public name of the transform whose ``update`` was given ``state``.
      state: what that ``update`` was given.
      kind: the class of the states ``owner`` makes; a :class:`TransformState` must also record ``owner``.
    """
    if isinstance(state, kind) and (kind is not TransformState or state.origin.name == owner):
        return state
    got = f"the state of {state.origin.name}" if isinstance(state, TransformState) else type(state).__name__
    raise TypeError(f"{owner}.update needs the state {owner}.init makes (a {kind.__name__}), got {got}")
