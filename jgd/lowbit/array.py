"""A slot in 8 or 4 bits: codes into a code table and one float32 scale per block (or per row and column).

Quantizing ``x`` block by block (Dettmers et al., "8-bit optimizers via block-wise quantization",
ICLR 2022): the flattened array is cut into blocks of ``block_size`` elements (the last one padded),
``s_b = max_{i∈b} |x_i|`` is kept in float32 (with stochastic rounding of a signed slot, the smallest scale
whose code range holds the block: :func:`_extent`) and each ``x_i / s_b ∈ [-1, 1]`` is stored as the
index of a code ``c_k`` (:mod:`jgd.lowbit.codes`); reading back gives ``x̃_i = c_{k_i} s_b``. With rank-1
normalisation (Li, Chen & Zhu, "Memory efficient optimizers with 4-bit states", NeurIPS 2023, §4.2) an
array of two axes or more, seen as a matrix ``(rows, last axis)``, keeps ``r_i = max_j |x_ij|`` and
``c_j = max_i |x_ij|`` and scales ``x_ij`` by ``min(r_i, c_j)``; arrays of one axis keep blocks.

Rounding picks, between the codes ``c_lo ≤ y ≤ c_hi`` around ``y = x / s``, ``c_hi`` with probability
``(y - c_lo) / (c_hi - c_lo)`` (stochastic, so ``E[x̃] = x`` inside the code's range) or the nearer one.
The random bits (:func:`random_bits`) are a hash of each element's index moved on by a golden-ratio step
each write: the same seed gives the same bits.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp

from jgd.lowbit.codes import finder


@dataclasses.dataclass(frozen=True)
class QuantizedArray:
    """An array stored as ``bits``-bit codes and float32 scales; a pytree whose leaves are those arrays.

    Attributes:
      codes: uint8, ``(blocks, block_size)`` (``block_size / 2`` at 4 bits: two codes a byte, the first in
        the low half), or ``(rows, last axis)`` with rank-1 normalisation (the last axis halved, rounded up).
      scales: float32, each block's scale ``(blocks,)``, or each row's ``(rows,)`` with rank-1 normalisation.
      col_scales: float32 ``(last axis,)`` with rank-1 normalisation, else None.
      shape: the shape of the array it stands for (static, like the rest below).
      bits: 8 or 4.
      signed: whether the code holds negative values.
      block_size: elements per block.
      rank1: whether row and column scales are used.
      rounding: ``"stochastic"`` or ``"nearest"``, for the next time the slot is written.

    Examples:
      A quantized slot is a pytree of its codes and scales, which ``jax.jit``, ``eval_shape`` and
      checkpoints take as arrays:

      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jgd
      >>> state = jgd.adam(1e-3, state_dtype=jgd.quantized(4)).init(jnp.ones(4096))
      >>> nu = state.slots["nu"]
      >>> print(nu.bits, nu.signed, nu.block_size, nu.shape)
      4 False 128 (4096,)
      >>> print([leaf.shape for leaf in jax.tree.leaves(nu)])
      [(32, 64), (32,)]

      At 4 bits the blocks hold 128 codes and two codes share a byte: 4096 codes in 32 blocks take 32 × 64
      bytes, and a float32 scale each. A second moment takes the unsigned code.
    """

    codes: jax.Array
    scales: jax.Array
    col_scales: jax.Array | None
    shape: tuple[int, ...]
    bits: int
    signed: bool
    block_size: int
    rank1: bool
    rounding: str

    @property
    def dtype(self):
        """The dtype it reads back as (float32)."""
        return jnp.dtype(jnp.float32)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes held: codes and scales."""
        return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(self))


jax.tree_util.register_dataclass(
    QuantizedArray,
    data_fields=["codes", "scales", "col_scales"],
    meta_fields=["shape", "bits", "signed", "block_size", "rank1", "rounding"],
)


def _lowbias32(x: jax.Array) -> jax.Array:
    """A 32-bit integer hash with good avalanche (C. Wellons' ``lowbias32``), for uint32 ``x``."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def random_bits(seed: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform uint32 bits of ``shape``: ``h_i + s`` (mod 2^32), ``h_i`` a hash of element ``i``'s index.

    ``seed`` is three uint32 words: two pick the hash ``h``, fixed for a slot of a leaf, and ``s`` moves
    the bits on, by ``φ 2^32`` a step (``φ = (√5 - 1) / 2``). Each element's bits are then uniform at every
    step (``h_i`` is), and along the steps they follow a golden-ratio sequence, which spreads them more
    evenly than independent draws: a value written again and again is rounded up and down in closer to
    the right proportion, so the error an exponential moving average of roundings keeps is smaller
    (measured on Adam's moments of a digits MLP: 7.3 % → 6.2 % for an 8-bit second moment, 3.3 % → 2.1 % in
    bfloat16). A hash costs an elementwise pass where a random-number generator costs several.

    Args:
      seed: three uint32 words ``(k0, k1, s)``.
      shape: the shape of the bits.
    """
    counter = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    return _lowbias32(_lowbias32(counter * jnp.uint32(0x9E3779B9) + seed[0]) ^ seed[1]) + seed[2]


def _round_to_code(y: jax.Array, bits: int, signed: bool, noise: jax.Array | None) -> jax.Array:
    """The code index of each ``y ∈ [-1, 1]`` (int32): stochastic with uint32 ``noise``, else the nearest."""
    found = finder(bits, signed)
    code, lut = jnp.asarray(found.code), jnp.asarray(found.lut)
    last = len(found.code) - 2
    magnitude = (jax.lax.bitcast_convert_type(jnp.abs(y), jnp.uint32) >> found.shift).astype(jnp.int32)
    magnitude = jnp.clip(magnitude - found.low, 0, found.magnitudes - 1)
    lo = lut[jnp.where(y < 0, found.magnitudes - 1 - magnitude, found.magnitudes + magnitude)]
    lo = jnp.minimum(lo + (y >= code[lo + 1]).astype(jnp.int32), last)  # the one code a bucket may hold
    below, above = code[lo], code[lo + 1]
    if noise is None:  # torchao's test, ties up: the same index for every float32 y
        up = y - below >= (above - below) * 0.5
    else:  # up with probability (y - c_lo) / (c_hi - c_lo), from 24 of the bits
        up = (noise >> 8).astype(jnp.float32) * 2.0**-24 < (y - below) / (above - below)
    index = lo + up.astype(jnp.int32)
    if not signed and found.code[0] == 0:  # a nonnegative slot never reads back as 0 where it is not
        index = jnp.where(y > 0, jnp.maximum(index, 1), index)
    return index


def _pack(index: jax.Array, bits: int) -> jax.Array:
    """Codes as uint8, two a byte at 4 bits along the last axis (padded to even)."""
    index = index.astype(jnp.uint8)
    if bits == 8:
        return index
    if index.shape[-1] % 2:
        index = jnp.pad(index, [(0, 0)] * (index.ndim - 1) + [(0, 1)])
    return index[..., 0::2] | (index[..., 1::2] << 4)


def _unpack(codes: jax.Array, bits: int, length: int) -> jax.Array:
    """The code indices (int32) from :func:`_pack`'s bytes, ``length`` along the last axis."""
    if bits == 4:
        codes = jnp.stack([codes & 15, codes >> 4], axis=-1).reshape(*codes.shape[:-1], -1)[..., :length]
    return codes.astype(jnp.int32)


def _scaled(x, scale, signed, bits, noise, exact=False):
    """Code indices of ``x / scale`` (a zero scale: a block of zeros).

    ``exact``: ``scale`` is one value per row of ``x`` (shape ``(rows, 1)``), and ``x / scale`` is the correctly
    rounded float32 quotient, as bitsandbytes and torchao compute it. XLA rewrites a division by a broadcast as a
    product with the reciprocal, which is one ulp off in about a quarter of the elements and, near the middle
    of two codes, picks the other one; dividing by the scale gathered to each element keeps the quotient (and
    costs no more on a CPU).
    """
    safe = jnp.where(scale > 0, scale, 1.0)
    if exact:
        safe = safe[:, 0][jax.lax.broadcasted_iota(jnp.int32, x.shape, 0)]
    return _round_to_code(x / safe, bits, signed, noise)


def _unsigned_guard(x: jax.Array, scale: jax.Array, axis: int, signed: bool) -> jax.Array:
    """``scale``, NaN where a slot declared nonnegative holds a negative value: a wrong sign never passes silently."""
    if signed:
        return scale
    return jnp.where(jnp.any(x < 0, axis=axis), jnp.nan, scale)


def _extent(x: jax.Array, axis: int, bits: int, signed: bool, fit: bool) -> jax.Array:
    """The scale along ``axis``: ``max |x|`` (bitsandbytes, torchao), or with ``fit`` the smallest scale whose
    code range holds every ``x``. The signed codes end at 1 above but at -0.993 (8 bits) or -0.8875 (4 bits)
    below: scaled by ``max |x|``, a block's most negative value would be clipped, by 11 % at 4 bits, at every
    write, a bias that compounds through a moving average."""
    if not (signed and fit):
        return jnp.max(jnp.abs(x), axis=axis)
    lowest = -float(finder(bits, True).code[0])
    return jnp.maximum(jnp.max(x, axis=axis), -jnp.min(x, axis=axis) / lowest)


def quantize(
    x: jax.Array,
    *,
    bits: int,
    signed: bool,
    block_size: int,
    rank1: bool = False,
    rounding: str = "stochastic",
    seed: jax.Array | None = None,
) -> QuantizedArray:
    """``x`` in ``bits``-bit codes and float32 scales (module docstring).

    Args:
      x: a real floating-point array (computed in float32).
      bits: 8 or 4.
      signed: whether ``x`` may be negative; an unsigned array with a negative value reads back as NaN
        in that block (row).
      block_size: elements per block (even at 4 bits).
      rank1: row and column scales for arrays of two axes or more (one-axis arrays keep blocks).
      rounding: ``"stochastic"`` (with ``seed``) or ``"nearest"``; recorded for the next write.
      seed: three uint32 words for stochastic rounding (:func:`random_bits`); None rounds to nearest this time.
    """
    x = jnp.asarray(x).astype(jnp.float32)
    meta = partial(QuantizedArray, shape=x.shape, bits=bits, signed=signed, block_size=block_size, rounding=rounding)
    fit = rounding == "stochastic"

    def noise(shape):
        return random_bits(seed, shape) if fit and seed is not None else None

    if rank1 and x.ndim >= 2:
        matrix = x.reshape(-1, x.shape[-1])
        rows, cols = _extent(matrix, 1, bits, signed, fit), _extent(matrix, 0, bits, signed, fit)
        index = _scaled(matrix, jnp.minimum(rows[:, None], cols[None, :]), signed, bits, noise(matrix.shape))
        rows = _unsigned_guard(matrix, rows, 1, signed)
        return meta(_pack(index, bits), rows, cols, rank1=True)
    blocks = -(-x.size // block_size)
    flat = jnp.pad(x.reshape(-1), (0, blocks * block_size - x.size)).reshape(blocks, block_size)
    scales = _extent(flat, 1, bits, signed, fit)
    index = _scaled(flat, scales[:, None], signed, bits, noise(flat.shape), exact=not fit)
    scales = _unsigned_guard(flat, scales, 1, signed)
    return meta(_pack(index, bits), scales, None, rank1=False)


def dequantize(q: QuantizedArray, dtype=jnp.float32) -> jax.Array:
    """The array ``q`` stands for: each code times its scale, in ``dtype``.

    Args:
      q: a :class:`QuantizedArray`.
      dtype: the dtype to return; float32 by default (the codes and scales are exact in it).
    """
    code = jnp.asarray(finder(q.bits, q.signed).code)
    if q.rank1 and q.col_scales is not None:  # rank-1 arrays always hold column scales
        index = _unpack(q.codes, q.bits, q.shape[-1])
        values = code[index] * jnp.minimum(q.scales[:, None], q.col_scales[None, :])
        return values.reshape(q.shape).astype(dtype)
    index = _unpack(q.codes, q.bits, q.block_size)
    values = (code[index] * q.scales[:, None]).reshape(-1)[: q.size]
    return values.reshape(q.shape).astype(dtype)


def stochastic_bfloat16(x: jax.Array, seed: jax.Array) -> jax.Array:
    """``x`` rounded to bfloat16 up or down with probability given by the distance: ``E[result] = x``.

    bfloat16 is float32 without its low 16 bits: adding 16 random bits below them before cutting
    them off rounds the magnitude up with probability (cut-off bits) / 2^16.

    Args:
      x: a real floating-point array (through float32).
      seed: three uint32 words (:func:`random_bits`).
    """
    x = jnp.asarray(x).astype(jnp.float32)
    raw = jax.lax.bitcast_convert_type(x, jnp.uint32)
    rounded = (raw + (random_bits(seed, x.shape) >> 16)) & jnp.uint32(0xFFFF0000)
    out = jax.lax.bitcast_convert_type(rounded, jnp.float32)
    return jnp.where(jnp.isnan(x), x, out).astype(jnp.bfloat16)
