"""The code tables of low-bit optimizer state: each a sorted set of values in [-1, 1] that a block's
absmax scales.

- Signed dynamic ("tree") code, Dettmers, "8-bit approximations for parallelism in deep learning",
  ICLR 2016, as bitsandbytes' ``create_dynamic_map(signed=True)`` (8 bits) and
  ``create_dynamic_map(True, 3, 4)`` (4 bits): 0, 1, and for each exponent ``e`` a linear run of
  fractions ``±10^(e - E + 1) (0.1 + 0.9 (k + ½) / n_e)``, ``k < n_e``, ``n_e = 2^(e + B - E)``,
  ``e = 0 .. E - 1`` (``B`` bits besides the sign, ``E`` exponent bits).
- Unsigned dynamic code (``create_dynamic_map(signed=False)``): the same with ``n_e = 2^(e + B - E + 1)``,
  the sign bit spent on one more fraction bit.
- Linear code without zero, ``(i + 1) / 2^bits`` (Li, Chen & Zhu, "Memory efficient optimizers with 4-bit
  states", NeurIPS 2023): for a second moment at 4 bits, so that no nonzero value reads back as 0.
"""

from __future__ import annotations

import functools

import numpy as np


def dynamic_code(signed: bool, max_exponent_bits: int, total_bits: int) -> np.ndarray:
    """The distinct values of bitsandbytes' ``create_dynamic_map(signed, max_exponent_bits, total_bits)``, sorted.

    Args:
      signed: whether the code holds negative values (one bit is the sign).
      max_exponent_bits: ``E``, the number of decades below 1 the code spans.
      total_bits: the bits of one code (4 or 8).
    """
    bits = total_bits - 1  # bitsandbytes keeps one bit aside in both forms; unsigned spends it on the fraction
    values = [0.0, 1.0]
    runs = [(e, 2 ** (e + bits - max_exponent_bits + (0 if signed else 1))) for e in range(max_exponent_bits)]
    extra = 2 ** (bits - max_exponent_bits) - 1  # the runs when all exponent bits are zero (none for B = E)
    if extra > 0:
        runs.append((max_exponent_bits - 1, extra))
    for e, n in runs:
        fractions = 0.1 + 0.9 * (np.arange(n) + 0.5) / n
        decade = 10.0 ** (e - max_exponent_bits + 1) * fractions
        values += list(decade) + (list(-decade) if signed else [])
    return np.unique(np.asarray(values, np.float32))


def linear_code(bits: int) -> np.ndarray:
    """``(i + 1) / 2^bits`` for ``i < 2^bits``: a linear code whose smallest value is not 0.

    Args:
      bits: the bits of one code.
    """
    return ((np.arange(2**bits) + 1) / 2**bits).astype(np.float32)


@functools.cache
def table(bits: int, signed: bool) -> np.ndarray:
    """The code of a slot: signed dynamic (8 or 4 bits), unsigned dynamic (8 bits) or linear without zero (4 bits).

    Args:
      bits: 8 or 4.
      signed: whether the slot may hold negative values.
    """
    if signed:
        return dynamic_code(True, 7, 8) if bits == 8 else dynamic_code(True, 3, 4)
    return dynamic_code(False, 7, 8) if bits == 8 else linear_code(4)


class Finder:
    """Finds, for values in [-1, 1], the code just below each, with a few gathers instead of a binary search.

    The float32 bits of ``|y|`` (exponent and the top ``M`` bits of the mantissa) pick a bucket; the
    buckets are fine enough that at most one code lies inside each, so the code below ``y`` is the
    bucket's lower code or the next one up. Values below ``2^-24`` share the lowest bucket (every code
    but 0 is larger). A binary search over 256 codes costs ten times more on a CPU.
    """

    def __init__(self, code: np.ndarray):
        self.code = code
        for mantissa_bits in range(2, 16):
            lut, inside = self._buckets(mantissa_bits)
            if inside <= 1:
                break
        self.lut, self.mantissa_bits = lut, mantissa_bits

    def _buckets(self, mantissa_bits: int) -> tuple[np.ndarray, int]:
        """The lower code of each bucket and the most codes any bucket holds inside it."""
        shift = 23 - mantissa_bits
        self.shift = shift
        self.low = int(np.float32(2.0**-24).view(np.uint32) >> shift)
        self.magnitudes = int(np.float32(1.0).view(np.uint32) >> shift) - self.low + 1
        starts = (np.arange(self.magnitudes, dtype=np.uint32) + self.low) << shift
        lower = starts.view(np.float32).astype(np.float64)
        lower[0] = 0.0
        upper = (starts + (1 << shift)).view(np.float32).astype(np.float64)
        # Buckets in the order of y: negative magnitudes reversed, then the positive ones.
        ends_low = np.concatenate([-upper[::-1], lower])
        ends_high = np.concatenate([-lower[::-1], upper])
        code = self.code.astype(np.float64)
        below = np.searchsorted(code, ends_low, side="right") - 1
        inside = np.searchsorted(code, ends_high, side="left") - (below + 1)
        return np.clip(below, 0, len(code) - 2).astype(np.int32), int(inside.max())


@functools.cache
def finder(bits: int, signed: bool) -> Finder:
    """The :class:`Finder` of :func:`table` ``(bits, signed)``.

    Args:
      bits: 8 or 4.
      signed: whether the slot may hold negative values.
    """
    return Finder(table(bits, signed))
