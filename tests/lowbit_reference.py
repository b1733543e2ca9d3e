"""NumPy references for tests/lowbit/test_lowbit.py: bitsandbytes' code table and a block-wise round trip."""

import numpy as np


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes' ``functional.create_dynamic_map`` (0.45 to 0.50), transcribed from torch to NumPy."""
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(
            2 ** (i + non_sign_bits - max_exponent_bits) + 1
            if signed
            else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1
        )
        boundaries = np.linspace(0.1, 1, fraction_items, dtype=np.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    if additional_items > 0:
        boundaries = np.linspace(0.1, 1, additional_items + 1, dtype=np.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2**total_bits
    data += [0] * (256 - len(data))
    data.sort()
    return np.asarray(data, np.float32)


def reference(x, code, block, *, signed, stochastic_scale=False):
    """NumPy block-wise round trip to the nearest code (ties down), with bitsandbytes' absmax scale (or the
    range-fitting scale of stochastic rounding); returns the values read back and each element's scale."""
    flat = np.pad(x.ravel(), (0, -x.size % block)).reshape(-1, block).astype(np.float32)
    scale = np.abs(flat).max(1)
    if stochastic_scale and signed:
        scale = np.maximum(flat.max(1), -flat.min(1) / -code[0])
    scale = scale.astype(np.float32)[:, None]
    y = flat / np.where(scale > 0, scale, 1)
    index = np.abs(y[..., None] - code).argmin(-1)
    if not signed and code[0] == 0:
        index = np.where(y > 0, np.maximum(index, 1), index)
    read = (code[index] * scale).ravel()[: x.size].reshape(x.shape)
    return read, np.broadcast_to(scale, flat.shape).ravel()[: x.size].reshape(x.shape)


def gap_around(values, code):
    """The distance between the codes around each normalised value."""
    hi = np.clip(np.searchsorted(code, values, side="right"), 1, len(code) - 1)
    return code[hi] - code[hi - 1]
