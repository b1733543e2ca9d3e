"""The PyTorch libraries' low-bit Adam on the problems of benchmarks/lowbit_state.py, where they install (the ``torch``
extra): bitsandbytes' 8-bit Adam (its CPU kernels) and torchao's 8-bit and 4-bit Adam, as shipped.

- :func:`round_trips`: each library's quantize / de-quantize of a second moment (bitsandbytes'
  ``quantize_blockwise`` with its unsigned dynamic map, torchao's ``OptimState8bit`` / ``OptimState4bit``);
- :func:`final_losses`: the digits MLP trained by each library from jgd's start and batches, the kernel a
  ``(64, 256)`` tensor laid out as jgd's (``x @ w1``), so that blocks hold the same elements.

How they store the state (bitsandbytes 0.50, torchao 0.18): blocks of 256 (torchao 4-bit: 128) of the flattened
tensor, a float32 absmax per block; tensors under 4,096 elements stay float32 (torchao also those whose size is
not a multiple of the block); the first moment in the signed dynamic map, the second in the unsigned one (4-bit:
the linear map without zero). torchao rounds to the nearest code (ties up) after dividing by
``max(absmax, 1e-12)``; a second moment under half the smallest code reads back as 0. bitsandbytes' CPU quantizer
finds codes with an approximate search that is not the nearest under about 1e-5 of a block's largest (such values
read back as 1.6e-5 of it, never 0).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

try:
    import torch
except ImportError:  # the peers are optional: lowbit_state.py runs without them
    torch = None


def versions() -> dict[str, str]:
    """The installed libraries' versions: empty without torch; a library that does not import is left out."""
    if torch is None:
        return {}
    found = {"torch": torch.__version__}
    for name in ("bitsandbytes", "torchao"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            pass
    return found


def _bitsandbytes_trip(v: np.ndarray) -> np.ndarray:
    import bitsandbytes.functional as functional

    code = functional.create_dynamic_map(signed=False)
    out, state = functional.quantize_blockwise(torch.from_numpy(v.copy()), code=code, blocksize=256)
    return functional.dequantize_blockwise(out, state).numpy()


def _torchao_trip(bits: int) -> Callable[[np.ndarray], np.ndarray]:
    def trip(v: np.ndarray) -> np.ndarray:
        from torchao.optim.subclass_4bit import OptimState4bit
        from torchao.optim.subclass_8bit import OptimState8bit

        kind, block = (OptimState8bit, 256) if bits == 8 else (OptimState4bit, 128)
        state = kind.zeros(v.shape, signed=False, block_size=block)
        state.copy_(torch.from_numpy(v.copy()))
        return state.dequantize().numpy()

    return trip


def round_trips() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each installed library's round trip of a nonnegative float32 array, by row name."""
    have = versions()
    trips = {}
    if "bitsandbytes" in have:
        trips["bitsandbytes 8-bit (CPU)"] = _bitsandbytes_trip
    if "torchao" in have:
        trips["torchao 8-bit"] = _torchao_trip(8)
        trips["torchao 4-bit"] = _torchao_trip(4)
    return trips


def optimizers() -> dict[str, Callable]:
    """Each installed library's Adam at lr 1e-3, by row name; float32 ``torch.optim.Adam`` first, the reference."""
    have = versions()
    found: dict[str, Callable] = {}
    if not have:
        return found
    found["torch float32 Adam"] = lambda ps: torch.optim.Adam(ps, lr=1e-3)
    if "bitsandbytes" in have:
        import bitsandbytes as bnb

        found["bitsandbytes Adam8bit"] = lambda ps: bnb.optim.Adam8bit(ps, lr=1e-3)
    if "torchao" in have:
        from torchao.optim import Adam4bit, Adam8bit

        found["torchao Adam8bit"] = lambda ps: Adam8bit(ps, lr=1e-3)
        found["torchao Adam4bit"] = lambda ps: Adam4bit(ps, lr=1e-3)
    return found


def _train(make: Callable, start: dict, index: np.ndarray, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Adam over the batches ``index`` from ``start``: the final loss on the whole set and the largest change of
    one kernel weight in one step."""
    params = [torch.tensor(np.array(start[k]), requires_grad=True) for k in ("w1", "b1", "w2", "b2")]
    opt = make(params)

    def loss(xb, yb):
        w1, b1, w2, b2 = params
        return torch.nn.functional.cross_entropy(torch.relu(xb @ w1 + b1) @ w2 + b2, yb)

    largest = 0.0
    for batch in torch.from_numpy(index):
        before = params[0].detach().clone()
        opt.zero_grad()
        loss(x[batch], y[batch]).backward()
        opt.step()
        largest = max(largest, float((params[0].detach() - before).abs().max()))
    with torch.no_grad():
        return float(loss(x, y)), largest


def final_losses(x, y, starts: list[dict], indices: list[np.ndarray]) -> dict[str, dict]:
    """Per library: the final losses and largest one-step kernel changes of each seed, and the seconds taken.

    Args:
      x, y: the digits inputs (float32, scaled to [0, 1]) and labels.
      starts: one jgd start (``init_mlp``) per seed, as NumPy arrays.
      indices: the batches of each seed, ``(steps, batch)``.
    """
    xt, yt = torch.from_numpy(np.array(x, np.float32)), torch.from_numpy(np.array(y)).long()
    torch.set_num_threads(1)  # a batch of 32 through 64-256-10: threads only contend with JAX's
    results = {}
    for name, make in optimizers().items():
        begun = time.perf_counter()
        runs = [_train(make, start, index, xt, yt) for start, index in zip(starts, indices)]
        results[name] = {
            "losses": np.array([r[0] for r in runs]),
            "largest_step": np.array([r[1] for r in runs]),
            "seconds": time.perf_counter() - begun,
        }
    return results
