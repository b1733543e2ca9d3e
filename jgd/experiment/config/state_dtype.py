"""The YAML spelling of a method's ``state_dtype``: a dtype name, a low-bit form, or one of these per slot.

.. code-block:: yaml

    state_dtype: bfloat16                                      # every slot a plain bfloat16 array
    state_dtype: {quantized: {bits: 8}}                        # jgd.quantized(bits=8); {quantized: {}} its defaults
    state_dtype: {stochastic: bfloat16}                        # jgd.stochastic(jnp.bfloat16)
    state_dtype: {mu: {quantized: {bits: 8}}, nu: bfloat16}    # per slot; a slot not named keeps its param's dtype

A config holds the spelling itself, written one way (:func:`read_state_dtype`: ``f4`` becomes ``float32``, a
quantized form keeps ``bits`` and the arguments that differ from their defaults), so it echoes back as read;
:func:`state_dtype_value` makes of it what the method takes. Which slots a method has is checked with the
method (:func:`jgd.experiment.config.optimizers.check_optimizer`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

import jgd
from jgd.experiment.config.field_readers import check_keys, join, mapping
from jgd.types import Quantized, SlotDtype, StateDtype, Stochastic

# The low-bit forms, by their YAML key.
FORMS = ("quantized", "stochastic")
# The arguments a {quantized: ...} form may give: jgd.quantized's, all optional; and those that are integers.
_QUANTIZED_KEYS = tuple(inspect.signature(jgd.quantized).parameters)
_INTEGER_KEYS = ("bits", "block_size", "min_size")
_EXPECTED = "a floating dtype name (float32, bfloat16, float16), {quantized: {bits: 8, ...}} or {stochastic: bfloat16}"


def per_slot(spelling: Any) -> bool:
    """Whether a read ``state_dtype`` gives one form per slot (a mapping keyed by slot names).

    Args:
      spelling: a value :func:`read_state_dtype` returned.
    """
    return isinstance(spelling, Mapping) and not set(spelling) & set(FORMS)


def _dtype(value: Any, path: str) -> Any:
    """The floating dtype ``value`` names."""
    try:
        dtype = jnp.dtype(value) if isinstance(value, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{path} must be {_EXPECTED}, got {value!r}")
    if dtype.itemsize == 8 and not jax.config.read("jax_enable_x64"):  # JAX would store float32 and say nothing
        raise ValueError(f"{path} {value!r} needs 64-bit floats, which this run has off (jax_enable_x64)")
    return dtype


def _quantized(value: Any, path: str) -> Quantized:
    arguments = mapping(value, path)
    check_keys(arguments, _QUANTIZED_KEYS, path)
    for key in _INTEGER_KEYS:
        # jgd.quantized checks the ranges; it would take YAML's 8.0 for bits 8.
        given = arguments.get(key)
        if given is not None and (isinstance(given, bool) or not isinstance(given, int)):
            raise ValueError(f"{join(path, key)} must be an integer, got {given!r}")
    try:
        return jgd.quantized(**arguments)
    except ValueError as e:
        # jgd.quantized's messages start with the argument's name: make that the field's full path.
        message = str(e)
        raise ValueError(f"{path}.{message}" if message.split(" ")[0] in arguments else f"{path}: {message}") from None


def _stochastic(value: Any, path: str) -> Stochastic:
    dtype = jnp.dtype(jnp.bfloat16) if value is None else _dtype(value, path)
    if dtype != jnp.bfloat16:
        raise ValueError(f"{path} must be bfloat16, the one dtype stochastic rounding writes, got {value!r}")
    return jgd.stochastic(dtype)


def _slot_value(value: Any, path: str) -> SlotDtype:
    """One form: a dtype name, ``{quantized: {...}}`` or ``{stochastic: NAME}``; None keeps the param's dtype."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return _dtype(value, path)
    if len(value) != 1 or next(iter(value)) not in FORMS:
        raise ValueError(f"{path} must be {_EXPECTED}, got {dict(value)!r}")
    ((kind, arguments),) = value.items()
    return (_quantized if kind == "quantized" else _stochastic)(arguments, join(path, kind))


def state_dtype_value(value: Any, path: str) -> StateDtype:
    """What a method's ``state_dtype`` receives for a YAML ``state_dtype``; errors name the field ``path``.

    Args:
      value: the YAML value: None, a form (a dtype name, ``{quantized: {...}}``, ``{stochastic: NAME}``), or a
        mapping from slot name to a form.
      path: the field's dotted path, for the messages.
    """
    if per_slot(value):
        return {str(slot): _slot_value(form, join(path, str(slot))) for slot, form in value.items()}
    return _slot_value(value, path)


def _spelling(form: SlotDtype) -> Any:
    """One form in YAML: a dtype's name, or the low-bit form's key with its arguments."""
    if form is None:
        return None
    if isinstance(form, Stochastic):
        return {"stochastic": jnp.dtype(form.dtype).name}
    if isinstance(form, Quantized):
        defaults = jgd.quantized(form.bits)
        changed = {f.name: getattr(form, f.name) for f in dataclasses.fields(form) if f.name != "bits"}
        return {"quantized": {"bits": form.bits, **{k: v for k, v in changed.items() if v != getattr(defaults, k)}}}
    return jnp.dtype(form).name


def read_state_dtype(value: Any, path: str) -> Any:
    """A YAML ``state_dtype`` checked and spelled one way: the value a config holds and writes back.

    Args:
      value: the YAML value, as :func:`state_dtype_value` takes it.
      path: the field's dotted path, for the messages.
    """
    read = state_dtype_value(value, path)
    if isinstance(read, Mapping):
        return {slot: _spelling(form) for slot, form in read.items()}
    return _spelling(read)
