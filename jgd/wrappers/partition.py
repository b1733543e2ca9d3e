"""Parameter groups: a transform, a learning-rate multiplier or nothing at all, chosen by the parameter's path."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jgd import masks
from jgd.base import GradientTransformation, with_extra_args
from jgd.leafwise import leafwise
from jgd.types import PyTree, ScalarOrSchedule

DEFAULT = "default"


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PartitionState:
    """groups: each group's state, keyed by the group's name (a plain dict, so its
    hyperparameters are labelled by that name). members: static, each group's
    name with the paths of its leaves, in the order of the rules.
    """

    groups: dict[str, PyTree]
    members: tuple[tuple[str, tuple[str, ...]], ...] = dataclasses.field(metadata={"static": True})


def freeze() -> GradientTransformation:
    """Zero updates and no state: the leaves it is given never change and cost no optimizer memory."""

    def init_fn(params):
        del params
        return ()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jnp.zeros_like, updates), state

    return GradientTransformation(init_fn, update_fn)


def _is_transform(x) -> bool:
    return callable(getattr(x, "init", None)) and callable(getattr(x, "update", None))


def _multiplier(value: ScalarOrSchedule) -> GradientTransformation:
    """``u = m · u``: the updates of the default transform, scaled for one group."""

    def rule(g, *, t, multiplier):
        return multiplier * g, ()

    return leafwise("partition", rule, {"multiplier": value})


def _subtree(treedef, leaves: list, chosen: set[int]) -> PyTree:
    """The tree with ``None`` at the leaves not ``chosen`` (an empty subtree to every transform)."""
    return jax.tree.unflatten(treedef, [leaf if i in chosen else None for i, leaf in enumerate(leaves)])


def _run(tx, name, chosen, treedef, updates, params, state, extra_args):
    """Runs ``tx`` on the ``chosen`` leaves of ``updates``, writing its updates into the list ``updates``."""
    sub_params = None if params is None else _subtree(treedef, params, chosen)
    new_updates, new_state = tx.update(_subtree(treedef, updates, chosen), state[name], sub_params, **extra_args)
    for i, leaf in enumerate(treedef.flatten_up_to(new_updates)):
        if i in chosen:
            updates[i] = leaf
    return new_state


def partition(
    rules: Mapping[str, tuple[str, GradientTransformation | ScalarOrSchedule]],
    default: GradientTransformation | None = None,
) -> GradientTransformation:
    """Runs each group of parameters, chosen by a regular expression on its path, through its own transform.

    ``rules`` maps each group's name to ``(pattern, target)``. A leaf belongs to
    the first group (in the mapping's order) whose pattern fully matches its
    path, written either ``/``-joined (``"encoder/layers/0/kernel"``, see
    :mod:`jgd.masks`) or as ``jax.tree_util.keystr`` shows it
    (``"['encoder']['layers'][0]['kernel']"``); the forms cannot be confused, since
    only the second has brackets. Leaves no pattern matches go to ``default``
    (group ``"default"``); without a default they are a ``ValueError`` naming the path.

    A target is one of:

    - a gradient transformation, run on the group's leaves alone, with its own state;
    - :func:`freeze`: zero updates and no state (no memory) for those leaves;
    - a learning-rate multiplier ``m`` (a float, an array or a schedule): the
      group is stepped by the *default* transform, which holds its state, and its
      updates are scaled by ``m``. The group's rate then follows the default
      learning rate (and its schedule) at a fixed ratio; ``m`` is data, read and
      set as ``"<group>/multiplier"``. For updates linear in the learning rate
      (every method here; decoupled weight decay chained after it scales too,
      as in PyTorch's parameter groups) this is the default with ``m·η``.

    The state is a :class:`PartitionState` whose ``groups`` is the plain dict
    ``{name: group state}``, so ``jgd.hyperparams`` labels a group's
    hyperparameters by its name (``"encoder/learning_rate"``).

    Args:
      rules: ``{name: (pattern, target)}``; names are non-empty strings without ``/``.
      default: the target of the leaves no rule matches (a transform or :func:`freeze`).
    """
    groups, multipliers, patterns = _check_rules(rules, default)

    def assign(tree) -> tuple[jax.tree_util.PyTreeDef, dict[str, set[int]], tuple]:
        keyed, treedef = jax.tree_util.tree_flatten_with_path(tree)
        chosen = {name: set() for name in patterns}
        for i, (path, _) in enumerate(keyed):
            forms = (masks.path_name(path), jax.tree_util.keystr(path))
            name = next((n for n, p in patterns.items() if any(p.fullmatch(f) for f in forms)), None)
            if name is None:
                raise ValueError(f"no partition rule matches the parameter {forms[0]!r} and there is no default")
            chosen[name].add(i)
        names = [masks.path_name(path) for path, _ in keyed]
        members = tuple((n, tuple(names[i] for i in sorted(chosen[n]))) for n in patterns)
        stepped = {n: set(c) for n, c in chosen.items() if n in groups}
        for n in multipliers:
            stepped[DEFAULT] |= chosen[n]
        return treedef, {**stepped, **{n: chosen[n] for n in multipliers}}, members

    def init_fn(params):
        treedef, chosen, members = assign(params)
        for name, paths in members:
            if not paths and name != DEFAULT:
                raise ValueError(f"partition rule {name!r} ({patterns[name].pattern!r}) matches no parameter")
        leaves = treedef.flatten_up_to(params)
        states = {n: tx.init(_subtree(treedef, leaves, chosen[n])) for n, tx in {**groups, **multipliers}.items()}
        return PartitionState(states, members)

    def update_fn(updates, state, params=None, **extra_args):
        treedef, chosen, members = assign(updates)
        out = treedef.flatten_up_to(updates)
        param_leaves = None if params is None else treedef.flatten_up_to(params)
        new_states = {}
        for name, tx in {**groups, **multipliers}.items():  # multipliers scale the default's updates
            new_states[name] = _run(tx, name, chosen[name], treedef, out, param_leaves, state.groups, extra_args)
        return treedef.unflatten(out), PartitionState(new_states, members)

    return GradientTransformation(init_fn, update_fn)


def _check_rules(rules, default):
    """Splits the rules into transforms and multipliers, and compiles the patterns, checking each."""
    if not isinstance(rules, Mapping):
        raise TypeError(f"rules must be a mapping {{name: (pattern, target)}}, got {type(rules).__name__}")
    groups, multipliers, patterns = {}, {}, {}
    for name, rule in rules.items():
        if not isinstance(name, str) or not name or "/" in name or (name == DEFAULT and default is not None):
            raise ValueError(f"partition group name {name!r} must be a non-empty string without '/', not {DEFAULT!r}")
        if not (isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str)):
            raise ValueError(f"partition rule {name!r} must be (pattern, target), got {rule!r}")
        pattern, target = rule
        try:
            patterns[name] = re.compile(pattern)
        except re.error as error:
            raise ValueError(f"partition rule {name!r} has an invalid pattern {pattern!r}: {error}") from None
        if _is_transform(target):
            groups[name] = with_extra_args(target)
        else:
            if default is None:
                raise ValueError(f"partition rule {name!r} is a learning-rate multiplier, which needs a default")
            multipliers[name] = _multiplier(target)
    if default is not None:
        if not _is_transform(default):
            raise ValueError(f"default must be a gradient transformation, got {default!r}")
        groups[DEFAULT] = with_extra_args(default)
        patterns[DEFAULT] = re.compile(".*", re.DOTALL)
    return groups, multipliers, patterns


def masked(tx: GradientTransformation, mask: PyTree) -> GradientTransformation:
    """Runs ``tx`` on the leaves where ``mask`` is ``True``; the other updates pass through unchanged.

    ``mask`` is a tree of booleans shaped like the params, or a function
    ``params -> mask`` such as :func:`jgd.masks.decayed`. The state is ``tx``'s
    state on the masked leaves (``None`` elsewhere, so they cost nothing).

    Args:
      tx: the gradient transformation to run on the masked leaves (jgd's or optax's).
      mask: a tree of bools with one leaf per param leaf (``jgd.types.PyTree``), or a function
        ``params -> such a tree``.
    """
    tx = with_extra_args(tx)

    def chosen(tree):
        flags = jax.tree.leaves(mask(tree) if callable(mask) else mask)
        treedef = jax.tree.structure(tree)
        if len(flags) != treedef.num_leaves:
            raise ValueError(f"mask has {len(flags)} leaves, but the params have {treedef.num_leaves}")
        return treedef, {i for i, flag in enumerate(flags) if flag}

    def init_fn(params):
        treedef, picked = chosen(params)
        return tx.init(_subtree(treedef, treedef.flatten_up_to(params), picked))

    def update_fn(updates, state, params=None, **extra_args):
        treedef, picked = chosen(updates)
        out = treedef.flatten_up_to(updates)
        param_leaves = None if params is None else treedef.flatten_up_to(params)
        new_state = _run(tx, 0, picked, treedef, out, param_leaves, {0: state}, extra_args)
        return treedef.unflatten(out), new_state

    return GradientTransformation(init_fn, update_fn)
