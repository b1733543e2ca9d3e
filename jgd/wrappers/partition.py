"""Parameter groups: each leaf's transform, learning-rate multiplier or freezing, chosen by its path or by a
tree of labels; and :func:`masked` and :func:`freeze`, on a mask.

Labels and masks may be trees that are a *prefix* of the params (``{"enc": False, "head": True}``
covers every leaf under ``enc`` and ``head``), as in optax. They are matched to the leaves by path
(:mod:`jgd.masks`), not by node type, so a plain dict applies to an ``nnx.State`` or a ``FrozenDict``,
and an NNX Variable's ``.value`` is no part of a path: what ``jgd.masks.paths(nnx.state(model, nnx.Param))``
shows is what rules and masks see, inside ``nnx.Optimizer`` as with plain arrays.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import cast

import jax
import jax.numpy as jnp

from jgd import masks
from jgd.base import GradientTransformation, Label, check_transform, with_extra_args
from jgd.leafwise import leafwise
from jgd.state import check_state
from jgd.types import Mask, PyTree, ScalarOrSchedule

DEFAULT = "default"
Labels = PyTree | Callable[[PyTree], PyTree]
"""A tree of group labels (strings) that is a prefix of the params, or a function ``params -> such a tree``."""


@dataclasses.dataclass(frozen=True)
class PartitionState:
    """The state of :func:`partition`.

    Attributes:
      groups: each group's state, keyed by the group's name. A name the user wrote is a
        ``jgd.base.Label``, so :func:`jgd.hyperparams` keys the group's hyperparameters by it
        (``"encoder/learning_rate"``, ``"head/multiplier"``).
      members: static, each group's name with the paths of its leaves, the same at init and update (so
        ``lax.cond`` can choose between states).

    Examples:
      Each group's state under the group's name, and the leaves each group holds:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"body": jnp.ones(2), "head": jnp.ones(2)}
      >>> state = jgd.partition({"head": ("head", jgd.sgd(0.1))}, default=jgd.adam(0.01)).init(params)
      >>> print(sorted(state.groups))
      ['default', 'head']
      >>> print(state.members)
      (('head', ('head',)), ('default', ('body',)))
      >>> print(sorted(state.groups["default"].slots))
      ['mu', 'nu']
    """

    groups: dict[str, PyTree]
    members: tuple[tuple[str, tuple[str, ...]], ...]


# The fields named, not read from field metadata: JAX reads that only from 0.4.36 on.
jax.tree_util.register_dataclass(PartitionState, data_fields=["groups"], meta_fields=["members"])


def _is_transform(x) -> bool:
    return callable(getattr(x, "init", None)) and callable(getattr(x, "update", None))


def _is_none(x) -> bool:
    return x is None


def _subtree(treedef, leaves: list, chosen: set[int]) -> PyTree:
    """The tree with ``None`` at the leaves not ``chosen`` (an empty subtree to every transform)."""
    return jax.tree.unflatten(treedef, [leaf if i in chosen else None for i, leaf in enumerate(leaves)])


def _run(tx, chosen, treedef, out: list, param_leaves, state, extra_args):
    """Runs ``tx`` on the ``chosen`` leaves of the updates ``out``, writing its updates into ``out``."""
    if not chosen:  # nothing to step; and where the tree is one leaf, its empty subtree is None, not a tree
        return state
    sub_params = None if param_leaves is None else _subtree(treedef, param_leaves, chosen)
    new_updates, new_state = tx.update(_subtree(treedef, out, chosen), state, sub_params, **extra_args)
    for i, leaf in enumerate(treedef.flatten_up_to(new_updates)):
        if i in chosen:
            out[i] = leaf
    return new_state


def _zero_updates() -> GradientTransformation:
    def init_fn(params):
        del params
        return ()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(jnp.zeros_like, updates), state

    return GradientTransformation(init_fn, update_fn)


def freeze(mask: Mask = None) -> GradientTransformation:
    """Zero updates for the leaves ``mask`` selects, and no state: they never change and cost no optimizer memory.

    ``freeze()`` freezes every leaf it is given: the target of a frozen :func:`partition` group.
    ``freeze(mask)`` is optax's ``freeze(mask)``: the other leaves' updates pass through unchanged.

    Args:
      mask: which leaves to freeze: None or True every leaf, False none, a tree of bools that is a
        prefix of the params (``{"encoder": True}`` freezes the whole encoder), or a function
        ``params -> such a tree``.

    Examples:
      Zero updates and no state for the frozen leaves; the others pass through:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"encoder": jnp.ones(2), "head": jnp.ones(2)}
      >>> grads = {"encoder": jnp.array([0.5, 0.5]), "head": jnp.array([0.5, 0.5])}
      >>> tx = jgd.chain(jgd.freeze({"encoder": True, "head": False}), jgd.sgd(0.1))
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates["encoder"], updates["head"])
      [-0. -0.] [-0.05 -0.05]
    """
    if mask is None or mask is True:
        return _zero_updates()
    return masked(_zero_updates(), mask)


def masked(tx: GradientTransformation, mask: Mask) -> GradientTransformation:
    """Runs ``tx`` on the leaves ``mask`` selects; the other updates pass through unchanged (``optax.masked``).

    The state is ``tx``'s state on the selected leaves, with ``None`` at the others, so they cost nothing.
    A function ``mask`` is called with the params at init and with the updates at update, as optax does.

    Args:
      tx: the gradient transformation to run on the selected leaves (jgd's or optax's).
      mask: None or True every leaf, False none, a tree of bools that is a prefix of the params
        (``{"encoder": False, "head": True}`` selects the whole head), or a function ``params -> such a
        tree`` such as :func:`jgd.masks.decayed`.

    Examples:
      Runs a transform on the leaves the mask selects and passes the others through; here the clipping
      applies to the head only:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> grads = {"body": jnp.array([3.0, 4.0]), "head": jnp.array([3.0, 4.0])}
      >>> tx = jgd.masked(jgd.clip_by_norm(1.0), {"body": False, "head": True})
      >>> updates, state = tx.update(grads, tx.init(grads))
      >>> print(updates["body"], updates["head"])
      [3. 4.] [0.6 0.8]
    """
    tx = with_extra_args(check_transform("tx", tx))
    masks.check_mask("mask", mask)

    def picked(tree) -> set[int]:
        return {i for i, flag in enumerate(masks.leaf_flags("mask", mask, tree)) if flag}

    def init_fn(params):
        leaves, treedef = jax.tree.flatten(params)
        return tx.init(_subtree(treedef, leaves, picked(params)))

    def update_fn(updates, state, params=None, **extra_args):
        out, treedef = jax.tree.flatten(updates)
        param_leaves = None if params is None else treedef.flatten_up_to(params)
        new_state = _run(tx, picked(updates), treedef, out, param_leaves, state, extra_args)
        return treedef.unflatten(out), new_state

    return GradientTransformation(init_fn, update_fn)


Select = Callable[[PyTree], tuple[dict[str, set[int]], tuple]]


def _grouped(transforms: dict[str, GradientTransformation], select: Select, key: type) -> GradientTransformation:
    """Runs each of ``transforms``, in order, on the leaves ``select(tree)`` gives it; states keyed by ``key(name)``."""

    def init_fn(params):
        leaves, treedef = jax.tree.flatten(params)
        chosen, members = select(params)
        groups = {key(name): tx.init(_subtree(treedef, leaves, chosen[name])) for name, tx in transforms.items()}
        return PartitionState(groups, members)

    def update_fn(updates, state, params=None, **extra_args):
        state = check_state("partition", state, PartitionState)
        out, treedef = jax.tree.flatten(updates)
        chosen, members = select(updates)
        if members != state.members:
            raise ValueError(_members_differ(state.members, members))
        param_leaves = None if params is None else treedef.flatten_up_to(params)
        groups = {}
        for name, tx in transforms.items():  # in order: a multiplier scales the updates its default made
            groups[key(name)] = _run(tx, chosen[name], treedef, out, param_leaves, state.groups[name], extra_args)
        return treedef.unflatten(out), PartitionState(groups, members)

    return GradientTransformation(init_fn, update_fn)


def _members_differ(made: tuple, given: tuple) -> str:
    """Names the first group whose leaves differ between the state and the updates."""
    made_by, given_by = dict(made), dict(given)
    name = next(n for n in {**made_by, **given_by} if made_by.get(n) != given_by.get(n))
    return (
        f"this partition state was made for other parameters: its group {name!r} holds {made_by.get(name)}, "
        f"the updates give it {given_by.get(name)}"
    )


def _check_name(name, reserved: str | None = None) -> None:
    if not isinstance(name, str) or not name or "/" in name or name == reserved:
        also = f", not {reserved!r}" if reserved else ""
        raise ValueError(f"partition group name {name!r} must be a non-empty string without '/'{also}")


def partition(
    groups: Mapping[str, tuple[str, GradientTransformation | ScalarOrSchedule] | GradientTransformation],
    param_labels: Labels | None = None,
    *,
    default: GradientTransformation | None = None,
) -> GradientTransformation:
    """Runs each group of parameters through its own transform; groups by regular expressions or by labels.

    **By path**, ``partition(rules, default=None)``: ``rules`` maps each group's name to
    ``(pattern, target)``. A leaf belongs to the first group (in the mapping's order) whose pattern
    fully matches its path, written either ``/``-joined (``"encoder/layers/0/kernel"``, see
    :mod:`jgd.masks`) or as ``jax.tree_util.keystr`` shows it (``"['encoder']['layers'][0]['kernel']"``);
    the forms cannot be confused, since only the second has brackets. Leaves no pattern matches go to
    ``default`` (group ``"default"``); without a default they are a ``ValueError`` naming the path, and
    so is a pattern that matches no leaf. A target is one of:

    - a gradient transformation, run on the group's leaves alone, with its own state;
    - :func:`freeze` ``()``: zero updates and no state (no memory) for those leaves;
    - a learning-rate multiplier ``m`` (a float, an array or a schedule): the group is stepped by the
      *default* transform, which holds its state, and its updates are scaled by ``m``. The group's rate
      then follows the default learning rate (and its schedule) at a fixed ratio; ``m`` is data, read
      and set as ``"<group>/multiplier"``. For updates linear in the learning rate (every method here;
      decoupled weight decay chained after it scales too, as in PyTorch's parameter groups) this is the
      default with ``m·η``.

    **By label**, ``partition(transforms, param_labels)``, optax's ``partition`` and the same call:
    ``transforms`` maps each label to a transform, and ``param_labels`` gives each leaf its label: a tree
    of labels that is the params' tree or a prefix of it (``{"encoder": "frozen", "head": "adam"}``), or
    a function ``params -> such a tree`` (called with the params at init, the updates at update, as optax
    does). A label with no leaves is allowed; a leaf whose label names no transform is a ``ValueError``.
    ::

        jgd.partition({"adam": jgd.adam(1e-3), "frozen": jgd.freeze()}, {"encoder": "frozen", "head": "adam"})

    The state is a :class:`PartitionState` whose ``groups`` maps each name to its group's state, keyed by
    ``jgd.base.Label``, so ``jgd.hyperparams`` labels a group's hyperparameters by its name
    (``"encoder/learning_rate"``), even where there is one group.

    Args:
      groups: ``{name: (pattern, target)}`` (by path) or ``{label: transform}`` (by label, with
        ``param_labels``); names are non-empty strings without ``/``; transforms jgd's or optax's.
      param_labels: for the by-label form, a tree of labels that is a prefix of the params, or a function
        ``params -> such a tree``; None for the by-path form.
      default: by path only: the target of the leaves no rule matches (a transform or :func:`freeze` ``()``).

    Examples:
      Groups by regular expressions on the leaves' paths: Adam for the body, ten times smaller steps for
      the head, nothing (and no state) for the embedding; each group's hyperparameters are keyed by its
      name. The gradients here are ones:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"embed": jnp.ones(3), "body": {"kernel": jnp.ones(2)}, "head": {"kernel": jnp.ones(2)}}
      >>> grads = params
      >>> tx = jgd.partition(
      ...     {"frozen": ("embed", jgd.freeze()), "head": ("head/.*", 0.1)},
      ...     default=jgd.adam(0.01),
      ... )
      >>> state = tx.init(params)
      >>> updates, state = tx.update(grads, state, params)
      >>> print(updates["embed"], updates["body"]["kernel"], updates["head"]["kernel"])
      [0. 0. 0.] [-0.01 -0.01] [-0.001 -0.001]
      >>> print(sorted(jgd.hyperparams(state)))
      ['default/b1', 'default/b2', 'default/eps', 'default/eps_root', 'default/learning_rate', 'head/multiplier']

      optax's form, a transform per label and a tree of labels (a prefix of the params):

      >>> labels = {"embed": "sgd", "body": "adam", "head": "adam"}
      >>> tx = jgd.partition({"adam": jgd.adam(0.01), "sgd": jgd.sgd(0.1)}, labels)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> print(updates["embed"], updates["head"]["kernel"])
      [-0.1 -0.1 -0.1] [-0.01 -0.01]
    """
    if not isinstance(groups, Mapping):
        raise TypeError(f"groups must be a mapping {{name: (pattern, target)}} or {{label: transform}}, got {groups!r}")
    if param_labels is None:
        return _by_rules(groups, default)
    if _is_transform(param_labels):
        raise TypeError("param_labels is a transform: the by-path form takes it as partition(rules, default=...)")
    if default is not None:
        raise TypeError("default is for partition's by-path form; with param_labels every leaf has its label")
    return by_labels(cast(Mapping[str, GradientTransformation], groups), param_labels)


def by_labels(
    transforms: Mapping[str, GradientTransformation], param_labels: Labels, *, labelled: bool = True
) -> GradientTransformation:
    """:func:`partition`'s by-label form; ``labelled=False`` keys the groups by plain strings.

    A method built of groups (:func:`jgd.muon`) chose its labels itself: unlabelled, its
    hyperparameters keep the method's own names.

    Args:
      transforms: ``{label: transform}``, labels non-empty strings without ``/``.
      param_labels: a tree of labels that is a prefix of the params, or a function ``params -> such a tree``.
      labelled: whether the group states are keyed by ``jgd.base.Label`` (a name the user wrote).
    """
    for name, tx in transforms.items():
        _check_name(name)
        if isinstance(tx, tuple) and len(tx) == 2 and isinstance(tx[0], str):
            raise TypeError(f"partition group {name!r} is a (pattern, target) rule: rules take no param_labels")
    transforms = {n: with_extra_args(check_transform(f"partition group {n!r}", tx)) for n, tx in transforms.items()}

    def select(tree):
        labels = param_labels(tree) if callable(param_labels) else param_labels
        labelled_leaves = masks.broadcast("param_labels", labels, tree)
        chosen = {name: set() for name in transforms}
        for i, (path, label) in enumerate(labelled_leaves):
            if not isinstance(label, str) or label not in chosen:
                raise ValueError(
                    f"param_labels gives the parameter {path!r} the label {label!r}, "
                    f"which names no transform; the transforms are {list(transforms)}"
                )
            chosen[label].add(i)
        members = tuple((n, tuple(labelled_leaves[i][0] for i in sorted(c))) for n, c in chosen.items())
        return chosen, members

    return _grouped(transforms, select, Label if labelled else str)


def _by_rules(rules: Mapping, default) -> GradientTransformation:
    groups, multipliers, patterns = _check_rules(rules, default)

    def select(tree):
        keyed = jax.tree_util.tree_flatten_with_path(tree)[0]
        chosen = {name: set() for name in patterns}
        names = [masks.path_name(path) for path, _ in keyed]
        for i, (path, _) in enumerate(keyed):
            forms = (names[i], masks.bracket_name(path))
            name = next((n for n, p in patterns.items() if any(p.fullmatch(f) for f in forms)), None)
            if name is None:
                raise ValueError(f"no partition rule matches the parameter {forms[0]!r} and there is no default")
            chosen[name].add(i)
        for name, picked in chosen.items():
            if not picked and name != DEFAULT:
                raise ValueError(f"partition rule {name!r} ({patterns[name].pattern!r}) matches no parameter")
        members = tuple((n, tuple(names[i] for i in sorted(chosen[n]))) for n in patterns)
        stepped = {n: set(c) for n, c in chosen.items() if n in groups}
        for n in multipliers:
            stepped[DEFAULT] |= chosen[n]
        return {**stepped, **{n: chosen[n] for n in multipliers}}, members

    return _grouped({**groups, **multipliers}, select, Label)


def _is_schedule(fn: Callable) -> bool:
    """Whether ``fn`` maps a step to a value, rather than being a transform's factory passed uncalled."""
    try:
        value = fn(jnp.zeros((), jnp.int32))
    except TypeError:  # takes no step: a factory such as jgd.freeze
        return False
    return not _is_transform(value)


def _check_rules(rules: Mapping, default):
    """Splits the rules into transforms and multipliers, and compiles the patterns, checking each."""
    groups, multipliers, patterns = {}, {}, {}
    for name, rule in rules.items():
        _check_name(name, DEFAULT if default is not None else None)
        if _is_transform(rule):
            raise TypeError(
                f"partition group {name!r} is a transform: give param_labels (partition(transforms, param_labels)), "
                "or write the rule as (pattern, transform)"
            )
        if not (isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str)):
            raise ValueError(f"partition rule {name!r} must be (pattern, target), got {rule!r}")
        pattern, target = rule
        try:
            patterns[name] = re.compile(pattern)
        except re.error as error:
            raise ValueError(f"partition rule {name!r} has an invalid pattern {pattern!r}: {error}") from None
        if callable(target) and not _is_transform(target) and not _is_schedule(target):
            check_transform(f"partition group {name!r}", target)  # raises: a factory passed uncalled
        if _is_transform(target):
            groups[name] = with_extra_args(target)
        elif default is None:
            raise ValueError(f"partition rule {name!r} is a learning-rate multiplier, which needs a default")
        else:
            multipliers[name] = leafwise("partition", _scale_by_multiplier, {"multiplier": target})
    if default is not None:
        groups[DEFAULT] = with_extra_args(check_transform("default", default))
        patterns[DEFAULT] = re.compile(".*", re.DOTALL)
    return groups, multipliers, patterns


def _scale_by_multiplier(g, *, multiplier):
    """``u = m · u``: the updates of the default transform, scaled for one group."""
    return multiplier * g, ()
