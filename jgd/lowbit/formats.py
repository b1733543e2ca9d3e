"""The low-bit forms a slot can take (:func:`jgd.quantized`, :func:`jgd.stochastic`) and how a lifted method reads and
writes a slot in each."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jgd.lowbit import array
from jgd.lowbit.array import QuantizedArray, quantize, stochastic_bfloat16

_ROUNDINGS = ("stochastic", "nearest")
_NORMALIZATIONS = ("block", "rank1")


@dataclasses.dataclass(frozen=True)
class Quantized:
    """A slot in ``bits``-bit codes with float32 scales: made by :func:`jgd.quantized`, which documents the fields.

    Examples:
      What :func:`jgd.quantized` returns: the settings of a quantized slot, resolved:

      >>> import jgd
      >>> spec = jgd.quantized(4, normalization="rank1")
      >>> print(type(spec).__name__, spec.bits, spec.block_size, spec.rounding, spec.normalization, spec.min_size)
      Quantized 4 128 stochastic rank1 4096
    """

    bits: int
    block_size: int
    rounding: str
    min_size: int
    normalization: str


@dataclasses.dataclass(frozen=True)
class Stochastic:
    """A slot in ``dtype`` (bfloat16) written with stochastic rounding: made by :func:`jgd.stochastic`.

    Examples:
      What :func:`jgd.stochastic` returns:

      >>> import jgd
      >>> print(jgd.stochastic())
      Stochastic(dtype=dtype(bfloat16))
    """

    dtype: Any


def _positive_int(name: str, value: Any, *, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} integer, got {value!r}")
    return int(value)


def quantized(
    bits: int = 8,
    *,
    block_size: int | None = None,
    rounding: str = "stochastic",
    min_size: int = 4096,
    normalization: str = "block",
) -> Quantized:
    """A ``state_dtype`` that keeps a slot in 8 or 4 bits, block-wise quantized, tracking float32.

    ``jgd.adam(1e-3, state_dtype=jgd.quantized(8))`` quantizes every slot;
    ``state_dtype={"mu": jgd.quantized(8), "nu": jgd.quantized(4)}`` one per slot. Each step reads
    the slots back to float32, computes the update and the new slots in float32 from them, and writes
    the new slots in the slot's form again, inside the same (jitted) step.

    Storage (:class:`jgd.QuantizedArray`): the flattened slot cut into blocks of ``block_size``, one
    float32 ``s_b = max |x|`` per block and each ``x / s_b`` as the index of a code ``c_k``:
    ``x̃ = c_k s_b`` (Dettmers et al., "8-bit optimizers via block-wise quantization", ICLR 2022).
    The code follows from the slot, which each method declares signed or nonnegative:

    - a signed slot (a first moment): the signed dynamic ("tree") code, bitsandbytes'
      ``create_dynamic_map(signed=True)`` (256 values down to 5.5e-7) or, at 4 bits,
      ``create_dynamic_map(True, 3, 4)`` (0, ±0.0055, ..., ±0.8875, 1);
    - a nonnegative slot (a second moment, a running max of ``|g|``): the unsigned dynamic code
      (down to 3.25e-7) at 8 bits and the linear code ``(i + 1) / 16`` without zero at 4 bits (Li, Chen &
      Zhu, "Memory efficient optimizers with 4-bit states", NeurIPS 2023). A positive value never reads
      back as 0, which would make ``1 / √v̂`` blow up; a negative value in a slot declared nonnegative
      reads back as NaN in its block, so a wrong declaration cannot pass silently.

    At 8 bits that is 1 byte and ``4 / block_size`` of scales a parameter per slot (Adam: 2.03 bytes a
    parameter against 8), at 4 bits half a byte (Adam: 1.06). Slots of fewer than ``min_size`` elements
    stay float32 arrays in the state, as bitsandbytes keeps them (their bytes are few and their scales
    would cost most of the saving); which ones did is visible in the state.

    Rounding to the nearest code at every step lets errors build up: a second moment drifts low as
    training goes on (about -20 % after 500 Adam steps on a digits MLP), which makes steps larger than
    the learning rate says. ``rounding="stochastic"`` (default) rounds up or down with probabilities
    that make the stored value equal the float32 one in expectation, so the slots track float32; its
    random bits come from the step count, the leaf and the slot (no key to pass: the same run gives the
    same bits). ``rounding="nearest"`` rounds as torchao's 8-bit and 4-bit optimizers do (the correctly rounded
    quotient ``x / s_b``, then the nearest code, ties up), the same code index for index, with two differences
    by design: a positive value of an 8-bit nonnegative slot under half the smallest code reads back as that
    code, where torchao reads 0 and Adam then divides by ``ε`` (on the digits MLP at a learning rate of 1e-3,
    torchao's 8-bit Adam moves single weights by 0.3 to 0.5 in one step); and a block whose largest value is
    under 1e-12 is scaled by that value, where torchao scales by 1e-12. bitsandbytes' CPU quantizer uses the
    same codes and scales but an approximate search, which is not the nearest code under about 1e-5 of a
    block's largest.

    Args:
      bits: 8 or 4 bits a code (two codes a byte at 4 bits).
      block_size: elements sharing one scale, a positive integer (even at 4 bits); default 256 at 8 bits
        and 128 at 4 bits, as bitsandbytes and torchao.
      rounding: ``"stochastic"`` (default) or ``"nearest"``.
      min_size: slots with fewer elements stay float32; a non-negative integer, default 4096 (bitsandbytes'
        ``min_8bit_size``).
      normalization: ``"block"`` (default) or ``"rank1"``: for arrays of two axes or more, seen as a matrix
        ``(rows, last axis)``, scale ``x_ij`` by ``min(max_j |x_ij|, max_i |x_ij|)`` instead of per block
        (Li, Chen & Zhu §4.2, for the second moment at 4 bits); one-axis arrays keep blocks.

    Returns:
      A spec for ``state_dtype`` (alone or as the value of a slot in a mapping).

    Examples:
      Adam's moments in 8 bits: one byte a parameter and a float32 scale per block of 256 (leaves under
      ``min_size`` elements stay float32):

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = {"w": jnp.ones((64, 128)), "b": jnp.zeros(128)}
      >>> tx = jgd.adam(1e-3, state_dtype=jgd.quantized(8))
      >>> state = tx.init(params)
      >>> mu = state.slots["mu"]["w"]
      >>> print(type(mu).__name__, mu.codes.dtype, mu.codes.shape, mu.scales.shape)
      QuantizedArray uint8 (32, 256) (32,)
      >>> print(state.slots["mu"]["b"].dtype)
      float32
      >>> updates, state = tx.update({"w": jnp.full((64, 128), 0.5), "b": jnp.ones(128)}, state, params)
      >>> print(updates["w"][0, 0], jgd.dequantize(state.slots["mu"])["w"][0, 0])
      -0.001 0.050000012

      The first step is Adam's, ``−η sign(g)``; ``mu = 0.1 g = 0.05`` reads back to within the 8-bit
      code's spacing.
    """
    return _checked(bits, block_size, rounding, min_size, normalization)


def _checked(bits, block_size, rounding, min_size, normalization) -> Quantized:
    """:func:`jgd.quantized`'s arguments checked, each bad one a ``ValueError`` naming it."""
    if isinstance(bits, bool) or bits not in (4, 8):
        raise ValueError(f"bits must be 4 or 8, got {bits!r}")
    block_size = (256 if bits == 8 else 128) if block_size is None else _positive_int("block_size", block_size)
    if bits == 4 and block_size % 2:
        raise ValueError(f"block_size must be even at 4 bits (two codes a byte), got {block_size}")
    if rounding not in _ROUNDINGS:
        raise ValueError(f"rounding must be one of {_ROUNDINGS}, got {rounding!r}")
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    return Quantized(bits, block_size, rounding, _positive_int("min_size", min_size, zero=True), normalization)


def stochastic(dtype: Any = jnp.bfloat16) -> Stochastic:
    """A ``state_dtype`` that keeps a slot in bfloat16 written with stochastic rounding, tracking float32.

    ``jgd.adam(1e-3, state_dtype=jgd.stochastic(jnp.bfloat16))``, or per slot
    (``{"nu": jgd.stochastic()}``). The slot is a plain bfloat16 array, as with
    ``state_dtype=jnp.bfloat16``; only its writing differs: each new value, computed in float32, goes
    to the bfloat16 above or below it with probabilities that make it the float32 value in
    expectation. Rounding to nearest instead loses every change smaller than half a bfloat16 step
    (``2^-9`` of the value, or more): a second moment with ``β2 = 0.999`` never decays, since ``0.001 v``
    is less than that, and the moments stall; with stochastic rounding they track float32 (Zamirai et
    al., "Revisiting bfloat16 training", 2020). The random bits come from the step count, the leaf and the slot, as for
    :func:`jgd.quantized`.

    Args:
      dtype: the storage dtype; only ``jnp.bfloat16`` (float32 without its low 16 bits).

    Returns:
      A spec for ``state_dtype`` (alone or as the value of a slot in a mapping).

    Examples:
      A slot in bfloat16, written with stochastic rounding so that small changes survive in expectation:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = jnp.ones(4)
      >>> tx = jgd.adam(1e-3, state_dtype={"nu": jgd.stochastic(jnp.bfloat16)})
      >>> state = tx.init(params)
      >>> print(state.slots["nu"].dtype, state.slots["mu"].dtype)
      bfloat16 float32
      >>> updates, state = tx.update(jnp.full(4, 0.5), state, params)
      >>> print(state.slots["nu"].dtype, updates)
      bfloat16 [-0.001 -0.001 -0.001 -0.001]
    """
    try:
        ok = jnp.dtype(dtype) == jnp.bfloat16
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"dtype must be jnp.bfloat16 for stochastic rounding, got {dtype!r}")
    return Stochastic(jnp.dtype(jnp.bfloat16))


def is_spec(value: Any) -> bool:
    """Whether ``value`` is a low-bit form (:func:`jgd.quantized`, :func:`jgd.stochastic`) rather than a dtype."""
    return isinstance(value, (Quantized, Stochastic))


def is_quantized(chosen: Any) -> bool:
    """Whether a slot's ``state_dtype`` entry is :func:`jgd.quantized`."""
    return isinstance(chosen, Quantized)


def storage_dtype(chosen: Any) -> Any:
    """The plain dtype a slot's value is made in before it takes ``chosen``'s form (None: the param's)."""
    if isinstance(chosen, Stochastic):
        return chosen.dtype
    if isinstance(chosen, Quantized):
        return jnp.float32
    return chosen


def initial(where: str, value: jax.Array, chosen: Any, signed: bool) -> Any:
    """A new slot from its initial ``value``: quantized (to nearest) if ``chosen`` says so and it is large enough.

    Args:
      where: the method and leaf, for the message of a complex slot.
      value: the initial value, in :func:`storage_dtype`.
      chosen: the slot's ``state_dtype`` entry.
      signed: whether the slot may hold negative values.
    """
    if not isinstance(chosen, Quantized):
        return value
    if jnp.issubdtype(value.dtype, jnp.complexfloating):
        raise ValueError(
            f"{where}: state_dtype quantized(...) takes real slots only; this slot of a complex param is "
            "complex (quantize its real slots alone, e.g. {'nu': jgd.quantized(8)})"
        )
    if value.size < chosen.min_size:
        return value
    return quantize(value, **_settings(chosen, signed))


def _settings(chosen: Quantized, signed: bool) -> dict:
    return {
        "bits": chosen.bits,
        "signed": signed,
        "block_size": chosen.block_size,
        "rank1": chosen.normalization == "rank1",
        "rounding": chosen.rounding,
    }


def read(slot: Any, dtype: Any) -> jax.Array:
    """A slot's value in the compute ``dtype``.

    Args:
      slot: a state leaf (an array or a :class:`QuantizedArray`).
      dtype: the dtype the rule computes in.
    """
    if isinstance(slot, QuantizedArray):
        return array.dequantize(slot, dtype)
    return jnp.asarray(slot).astype(dtype)


def needs_bits(old: Any, chosen: Any) -> bool:
    """Whether writing ``old``'s new value takes random bits (stochastic rounding into a narrower form)."""
    if isinstance(old, QuantizedArray):
        return old.rounding == "stochastic"
    return isinstance(chosen, Stochastic) and jnp.result_type(old) == chosen.dtype


def write(value: jax.Array, old: Any, chosen: Any, seed: Callable[[], jax.Array]) -> Any:
    """The slot after a step: ``value`` in the form of ``old`` (its dtype, or its codes and scales).

    Args:
      value: the new value, computed in at least float32.
      old: the slot before the step, which fixes the form.
      chosen: the slot's ``state_dtype`` entry.
      seed: returns the uint32 words of :func:`jgd.lowbit.array.random_bits` for this leaf, slot and step,
        called only for stochastic rounding.
    """
    if isinstance(old, QuantizedArray):
        settings = {k: getattr(old, k) for k in ("bits", "signed", "block_size", "rank1", "rounding")}
        return quantize(value, seed=seed() if old.rounding == "stochastic" else None, **settings)
    if needs_bits(old, chosen) and not jnp.iscomplexobj(value):
        return stochastic_bfloat16(value, seed())
    return value.astype(jnp.result_type(old))


def _is_quantized(x: Any) -> bool:
    return isinstance(x, QuantizedArray)


def _one_level(node: Any) -> tuple[list, Any]:
    """``node``'s children with their keys, and its structure with them as leaves."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    return flat, treedef


def _wraps_quantized(node: Any) -> bool:
    """Whether ``node`` is a container (an NNX Variable) holding a :class:`QuantizedArray` as its ``.value``."""
    if _is_quantized(node):
        return False
    flat, _ = _one_level(node)  # a leaf is its own one child
    if len(flat) != 1 or not _is_quantized(flat[0][1]) or not flat[0][0]:
        return False
    key = flat[0][0][-1]
    return isinstance(key, jax.tree_util.GetAttrKey) and key.name == "value"


def hoist(tree: Any) -> Any:
    """``tree`` with each container around a :class:`QuantizedArray` moved inside it, around its codes and scales.

    A slot made from a tree of NNX Variables (``nnx.Optimizer`` initialises with one) keeps each Variable,
    as every slot does; NNX takes a Variable's value for an array, so a quantized slot must be a
    :class:`QuantizedArray` of Variables rather than a Variable of a :class:`QuantizedArray`.

    Args:
      tree: a slot's tree, as made from the params.
    """

    def inside(node):
        flat, treedef = _one_level(node)
        q = flat[0][1]

        def wrap(x):
            return None if x is None else treedef.unflatten([x])

        return dataclasses.replace(q, codes=wrap(q.codes), scales=wrap(q.scales), col_scales=wrap(q.col_scales))

    return jax.tree.map(lambda x: inside(x) if _wraps_quantized(x) else x, tree, is_leaf=_wraps_quantized)


def logical(tree: Any) -> Any:
    """``tree`` with each :class:`QuantizedArray` as a ``jax.ShapeDtypeStruct`` of the array it stands for,
    for checks of structure and shape against the params."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if _is_quantized(x) else x, tree, is_leaf=_is_quantized
    )


def dequantize(tree: Any) -> Any:
    """``tree`` with every :class:`jgd.QuantizedArray` read back as a float32 array; other leaves unchanged.

    For reading slots (logging, :func:`jgd.look_ahead`, schedule-free evaluation) or converting a
    quantized state to a full-precision one.

    Args:
      tree: any pytree, such as an optimizer state.

    Examples:
      Reads every quantized slot back as float32 and leaves other leaves alone:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> params = jnp.ones(4096)
      >>> tx = jgd.adam(1e-3, state_dtype=jgd.quantized(8))
      >>> _, state = tx.update(jnp.full(4096, 0.5), tx.init(params), params)
      >>> mu = jgd.dequantize(state.slots["mu"])
      >>> print(mu.dtype, mu.shape, mu[:3])
      float32 (4096,) [0.05000001 0.05000001 0.05000001]

      ``mu = (1 − β1) g = 0.05``, read back to within the code's spacing.
    """
    return jax.tree.map(lambda x: array.dequantize(x) if _is_quantized(x) else x, tree, is_leaf=_is_quantized)
