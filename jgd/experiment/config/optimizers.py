"""Building the gradient transformation an :class:`~jgd.experiment.config.schema.OptimizerConfig` describes.

The chain is ``l1, l2, clipping → method → max_norm``: penalties come first so
the method (and its preconditioner) sees their gradient, as when Keras adds
them to the loss; max-norm projects the weights the step produces.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp

import jgd
from jgd.experiment.config.field_readers import join
from jgd.experiment.config.method_table import LINE_SEARCH, SCHEDULES, check_arguments, hyperparam_value, method_factory
from jgd.experiment.config.schema import OptimizerConfig
from jgd.experiment.config.state_dtype import per_slot, state_dtype_value

# The blocks around the method, by config field, in chain order.
PENALTIES = {"l1": jgd.l1_penalty, "l2": jgd.l2_penalty}
CLIPPING = {"clip_value": jgd.clip_by_value, "clip_norm": jgd.clip_by_norm, "clip_global_norm": jgd.clip_by_global_norm}
BLOCKS = (*PENALTIES, *CLIPPING, "max_norm")


def _kernels(params: Any) -> Any:
    # Penalties act on the weight matrices only, like Keras' kernel_regularizer.
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def _prefixed(path: str, error: Exception, names: Any) -> str:
    # jgd's own messages start with the parameter's name; make that the field's full path.
    message = str(error)
    return f"{path}.{message}" if message.split(" ")[0] in names else f"{path}: {message}"


def build_method(config: OptimizerConfig, path: str = "optimizer") -> jgd.GradientTransformation:
    """The method alone, without its blocks; errors name the field under ``path``."""
    hyperparams = {}
    for key, value in config.hyperparams.items():
        try:
            hyperparams[key] = hyperparam_value(value)
        except ValueError as e:
            raise ValueError(_prefixed(join(path, key), e, value)) from None
    if config.state_dtype is not None:
        hyperparams["state_dtype"] = state_dtype_value(config.state_dtype, f"{path}.state_dtype")
    try:
        return method_factory(config.name, f"{path}.name")(**hyperparams)
    except (TypeError, ValueError) as e:
        raise ValueError(_prefixed(path, e, hyperparams)) from None


def build_optimizer(config: OptimizerConfig, path: str = "optimizer") -> jgd.GradientTransformation:
    """The transform ``config`` describes: ``l1, l2, clipping → method → max_norm``. Errors name fields under ``path``.

    Values may be traced (a sweep builds the transform inside ``jax.vmap``).
    """
    parts = []
    for key, penalty in PENALTIES.items():
        # A concrete zero leaves the penalty out; a traced rate (a sweep) keeps it.
        if isinstance(getattr(config, key), jax.Array) or getattr(config, key):
            parts.append(jgd.masked(penalty(getattr(config, key)), _kernels))
    parts += [clip(getattr(config, key)) for key, clip in CLIPPING.items() if getattr(config, key) is not None]
    parts.append(build_method(config, path))
    if config.max_norm is not None:
        parts.append(jgd.max_norm(config.max_norm))
    return parts[0] if len(parts) == 1 else jgd.chain(*parts)


def _method_slots(config: OptimizerConfig) -> list[str]:
    """The slot names of the method ``config`` builds (without its ``state_dtype``), in their order in the state."""
    method = build_method(replace(config, state_dtype=None))
    # A matrix and a vector: a method with a group per kind of leaf (muon) shows the slots of both.
    probe = {name: jax.ShapeDtypeStruct(shape, jnp.float32) for name, shape in (("matrix", (2, 2)), ("vector", (2,)))}
    states = instances(jax.eval_shape(method.init, probe), jgd.TransformState)
    return list(dict.fromkeys(slot for state in states for slot in state.slots))


def _check_state_dtype(config: OptimizerConfig, path: str) -> None:
    """Checks that the method takes a ``state_dtype``, has slots, and has every slot a per-slot mapping names."""
    where = f"{path}.state_dtype"
    if "state_dtype" not in inspect.signature(method_factory(config.name, f"{path}.name")).parameters:
        raise ValueError(f"{where} cannot be used with {config.name}: it takes no state_dtype")
    slots = _method_slots(config)
    if not slots:
        raise ValueError(f"{where} cannot be used with {config.name} as configured: its state has no slots")
    for slot in config.state_dtype if per_slot(config.state_dtype) else ():
        if slot not in slots:
            raise ValueError(
                f"{join(where, slot)} is neither a slot of {config.name} ({', '.join(slots)}) nor a low-bit form "
                "(quantized, stochastic)"
            )


def check_optimizer(config: OptimizerConfig, path: str) -> None:
    """Checks a read optimizer section: its method's arguments, its state's form, the blocks it allows, and that it
    builds."""
    check_arguments(method_factory(config.name, f"{path}.name"), config.hyperparams, path, config.name)
    if config.state_dtype is not None:
        _check_state_dtype(config, path)
    if config.name in LINE_SEARCH:
        for key in (*PENALTIES, *CLIPPING):
            if getattr(config, key):
                raise ValueError(
                    f"{path}.{key} cannot be used with {config.name}: its line search evaluates the plain loss"
                )
    build_optimizer(config, path)


def with_values(optimizer: OptimizerConfig, values: Mapping[str, Any]) -> OptimizerConfig:
    """``optimizer`` with the hyperparameters named in ``values`` replaced, concrete or traced.

    A name is a keyword of the method (``learning_rate``), a block (``l2``,
    ``clip_global_norm``, ...) or ``name.parameter`` for a parameter of the
    schedule the method's ``name`` follows (``learning_rate.init_value``).
    """
    hyperparams, blocks = dict(optimizer.hyperparams), {}
    for name, value in values.items():
        head, _, key = name.partition(".")
        if head in BLOCKS:
            blocks[head] = value
        elif key:
            hyperparams[head] = {**hyperparams[head], key: value}
        else:
            hyperparams[head] = value
    return replace(optimizer, hyperparams=hyperparams, **blocks)


def _traces(build: Any) -> bool:
    # Whether `build(value)` accepts a traced scalar: an integer or flag argument does not.
    try:
        jax.eval_shape(build, jax.ShapeDtypeStruct((), jnp.result_type(float)))
    except TypeError:
        return False
    return True


def instances(tree: Any, cls: type) -> list:
    """Every node of ``tree`` that is a ``cls`` (a state in a chain's tuple, a wrapper's NamedTuple, ...), in order.

    Args:
      tree: any pytree, such as an optimizer state.
      cls: the node type to find, such as :class:`jgd.TransformState`.
    """
    return [node for node in jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, cls)) if isinstance(node, cls)]


def state_bytes_per_param(tx: jgd.GradientTransformation, params: Any) -> float:
    """The bytes of ``tx``'s state for ``params`` over the number of parameters, read with ``jax.eval_shape``.

    Every leaf of the state counts: the slots (a quantized slot's uint8 codes and float32 scales, as stored), the
    step counts and the hyperparameters.

    Args:
      tx: a gradient transformation, jgd's or optax's.
      params: the parameters it optimizes: a pytree of arrays or of ``jax.ShapeDtypeStruct``.
    """
    state = jax.eval_shape(tx.init, params)
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))
    return state_bytes / sum(leaf.size for leaf in jax.tree.leaves(params))


def optimizer_hyperparams(state: Any) -> dict[str, jax.Array]:
    """``jgd.hyperparams(state)``, or ``{}`` for the state of an optax method alone, which holds none.

    Args:
      state: an optimizer state, jgd's or optax's.
    """
    return jgd.hyperparams(state) if instances(state, jgd.TransformState) else {}


def sweepable(optimizer: OptimizerConfig) -> list[str]:
    """The names a sweep of ``optimizer`` may vary: the method's arguments its state holds, and the blocks.

    A sweep passes each value to the method's constructor by name, so a key the state shows under a
    group's label is the argument that sets it: ``"adam/b1"`` is muon's ``adam_b1`` where the method has
    that argument, else the plain name; a name that several groups hold (muon's ``eps``, keyed
    ``"muon/eps"`` and ``"adam/eps"``) is one sweepable name.
    """
    method = build_method(optimizer)
    state = jax.eval_shape(method.init, {"w": jax.ShapeDtypeStruct((1,), jnp.result_type(float))})
    arguments = inspect.signature(method_factory(optimizer.name, "optimizer.name")).parameters
    names: dict[str, None] = {}
    for key in optimizer_hyperparams(state):
        group, _, name = key.rpartition("/")
        argument = f"{group.rpartition('/')[-1]}_{name}"
        names[argument if group and argument in arguments else name] = None
    return [*names, *BLOCKS]


def sweepable_schedule_parameters(spec: Mapping[str, Any]) -> list[str]:
    """The parameters of the schedule ``spec`` (``{schedule: kind, ...}``) that may be traced, so swept."""
    schedule, arguments = SCHEDULES[spec["schedule"]], {k: v for k, v in spec.items() if k != "schedule"}
    return [
        name
        for name in inspect.signature(schedule).parameters
        if _traces(lambda value, name=name: schedule(**{**arguments, name: value})(jnp.int32(0)))
    ]
