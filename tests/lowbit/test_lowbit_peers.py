"""Low-bit state against the PyTorch libraries, where they install (the ``torch`` extra): the code tables against
bitsandbytes' ``create_dynamic_map``, ``rounding="nearest"`` against torchao's quantizer index for index and against
bitsandbytes' CPU quantizer, and an 8-bit and a 4-bit Adam trajectory against torchao's.

``rounding="nearest"`` departs from torchao's arithmetic in two places, by design, which the tests below name:

- a positive value of a nonnegative 8-bit slot under half the smallest positive code (``y < 1.625e-7`` of its
  block's largest) reads back as that code in jgd and as 0 in torchao. Adam then divides by ``√0 + ε``: on the
  digits MLP torchao's 8-bit Adam moves single weights by up to 0.5 in one step at a learning rate of 1e-3
  (benchmarks/lowbit_state.py);
- torchao divides a block by ``max(absmax, 1e-12)``, jgd (and bitsandbytes) by ``absmax``: the two differ for a
  block whose largest value is under 1e-12 (a second moment of tiny gradients), which torchao reads back coarser.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jgd  # noqa: E402
from jgd.lowbit import array  # noqa: E402
from jgd.lowbit.codes import table  # noqa: E402

quantize = jax.jit(array.quantize, static_argnames=("bits", "signed", "block_size", "rank1", "rounding"))


def _bitsandbytes():
    return pytest.importorskip("bitsandbytes.functional", reason="bitsandbytes is in the torch extra")


def _torchao(bits):
    pytest.importorskip("torchao", reason="torchao is in the torch extra")
    if bits == 8:
        from torchao.optim import subclass_8bit as module
    else:
        from torchao.optim import subclass_4bit as module
    return module


@pytest.mark.parametrize(("signed", "exponent_bits", "bits"), [(True, 7, 8), (False, 7, 8), (True, 3, 4)])
def test_code_tables_are_create_dynamic_map_to_two_float32_ulps(signed, exponent_bits, bits):
    """bitsandbytes builds the map from ``torch.linspace`` in float32, whose last bit depends on torch's CPU kernel
    (vector width, fused multiply-adds); jgd rounds the defining values ``10^e (0.1 + 0.9 (k + ½) / n)`` once. The
    two agree to two units in the last place (72 of the 256 signed values differ by one, 100 unsigned by one or
    two, with torch 2.13 on an AVX-512 CPU), which moves a decision only for a value within two ulps of a
    midpoint between two codes (the tests below feed each quantizer its own table, and jgd's)."""
    theirs = np.unique(_bitsandbytes().create_dynamic_map(signed, exponent_bits, bits).numpy())
    ours = table(bits, signed)
    assert len(theirs) == len(ours) == 2**bits
    np.testing.assert_array_max_ulp(ours, theirs, maxulp=2)
    assert ours[0] == theirs[0] and ours[-1] == theirs[-1] == 1.0
    if not signed:
        assert ours[0] == 0.0


def test_the_4_bit_unsigned_code_is_torchaos_exactly():
    ours = table(4, False)
    np.testing.assert_array_equal(np.asarray(_torchao(4).get_qmap_unsigned(), np.float32), ours)


def _ties(code: np.ndarray) -> np.ndarray:
    """Blocks scaled by 1 that hold every code, every midpoint between two codes and the float32 values either side of
    each midpoint: where the two quantizers' tie rule and division must agree to the last bit."""
    code = code.astype(np.float32)
    mid = ((code[:-1].astype(np.float64) + code[1:]) / 2).astype(np.float32)
    values = np.concatenate([code, mid, np.nextafter(mid, np.float32(2)), np.nextafter(mid, np.float32(-2))])
    return values[(values >= code[0]) & (values <= 1)]


def _tensor(bits: int, signed: bool, block: int) -> np.ndarray:
    """Heavy-tailed values (Student-t, squared for a nonnegative slot) and, after them, the ties of :func:`_ties`,
    padded to whole blocks each holding a 1 (its scale)."""
    rng = np.random.default_rng(7)
    heavy = rng.standard_t(2, size=1 << 18).astype(np.float32)
    heavy = heavy if signed else heavy**2
    ties = _ties(table(bits, signed))
    per = block - 1
    ties = np.pad(ties, (0, -len(ties) % per), constant_values=0.5).reshape(-1, per)
    ties = np.concatenate([np.ones((len(ties), 1), np.float32), ties], axis=1)
    return np.concatenate([heavy, ties.ravel()]).astype(np.float32)


def _theirs(x: np.ndarray, bits: int, signed: bool, block: int, qmap=None):
    """torchao's code indices and scales of ``x`` (its own table unless ``qmap``)."""
    module = _torchao(bits)
    from torchao.optim import quant_utils

    if qmap is None:
        qmap = module.get_qmap_signed() if signed else module.get_qmap_unsigned()
    qmap = torch.tensor(qmap, dtype=torch.float32)
    scaled, scale = quant_utils.scale_tensor(torch.from_numpy(x.copy()), block)
    find = quant_utils.quantize_8bit_with_qmap if bits == 8 else quant_utils.quantize_4bit_with_qmap
    return find(scaled, qmap).numpy().astype(np.int64), scale.numpy()


def _ours(x: np.ndarray, bits: int, signed: bool, block: int):
    q = quantize(jnp.asarray(x), bits=bits, signed=signed, block_size=block, rounding="nearest")
    return np.asarray(array._unpack(q.codes, bits, block)).ravel()[: x.size], np.asarray(q.scales)


@pytest.mark.parametrize(("bits", "block"), [(8, 256), (4, 128), (8, 64)])
@pytest.mark.parametrize("signed", [True, False])
def test_nearest_is_torchaos_quantizer_index_for_index(bits, block, signed):
    """Given jgd's table, torchao's ``quantize_{8,4}bit_with_qmap`` (an exact quotient ``x / absmax``, ties up) gives
    the same scales and, element by element, the same code index, ties and their float32 neighbours included. The
    one exception: a positive value of an 8-bit nonnegative slot that torchao reads as 0 (module docstring), which
    jgd reads as the smallest positive code."""
    x = _tensor(bits, signed, block)
    ours, our_scales = _ours(x, bits, signed, block)
    assert np.min(our_scales) > 1e-12  # torchao's floor on the scale does not apply here
    theirs, scales = _theirs(x, bits, signed, block, table(bits, signed))
    np.testing.assert_array_equal(our_scales, scales)
    read_as_zero = (theirs == 0) & (x > 0) & (table(bits, signed)[0] == 0)
    np.testing.assert_array_equal(ours[~read_as_zero], theirs[~read_as_zero])
    assert np.all(ours[read_as_zero] == 1)
    y = x / np.repeat(scales, block)[: x.size]
    assert np.all(y[read_as_zero] < table(bits, signed)[1] / 2)
    if bits == 8 and not signed:
        assert read_as_zero.any(), "the heavy-tailed data should reach under the smallest code"


@pytest.mark.parametrize(("bits", "block"), [(8, 256), (4, 128)])
@pytest.mark.parametrize("signed", [True, False])
def test_with_its_own_table_torchao_differs_only_within_two_ulps_of_a_midpoint(bits, block, signed):
    """With torchao's table (two ulps from jgd's), an index differs only for a value within two ulps of the middle
    of two codes of either table, besides the values torchao reads as 0."""
    module = _torchao(bits)
    x = _tensor(bits, signed, block)
    ours, _ = _ours(x, bits, signed, block)
    theirs, scales = _theirs(x, bits, signed, block)
    y = x / np.repeat(scales, block)[: x.size]
    near = np.zeros(x.size, bool)
    for code in (table(bits, signed), np.asarray(module.get_qmap_signed() if signed else module.get_qmap_unsigned())):
        code = np.sort(code.astype(np.float64))
        mid = (code[:-1] + code[1:]) / 2
        at = np.clip(np.searchsorted(mid, y), 1, len(mid) - 1)
        gap = np.minimum(np.abs(y - mid[at - 1]), np.abs(y - mid[at]))
        near |= gap <= 2 * np.spacing(np.abs(y).astype(np.float32)).astype(np.float64)
    read_as_zero = (theirs == 0) & (x > 0) & (table(bits, signed)[0] == 0)
    differ = (ours != theirs) & ~read_as_zero
    assert np.all(near[differ])


@pytest.mark.parametrize("signed", [True, False])
def test_nearest_is_never_farther_than_bitsandbytes_cpu_quantizer(signed):
    """bitsandbytes' CPU ``quantize_blockwise`` finds codes with an approximate search: under about 1e-5 of a
    block's largest it does not return the nearest code (every value there reads back as 1.6e-5 or 2.1e-5), and
    around 0.1 % of larger values take the other neighbour. jgd's round trip is never farther from ``x``."""
    functional = _bitsandbytes()
    x = _tensor(8, signed, 256)
    out, state = functional.quantize_blockwise(
        torch.from_numpy(x.copy()), code=functional.create_dynamic_map(signed=signed), blocksize=256
    )
    theirs = functional.dequantize_blockwise(out, state).numpy()
    q = quantize(jnp.asarray(x), bits=8, signed=signed, block_size=256, rounding="nearest")
    ours = np.asarray(array.dequantize(q))
    np.testing.assert_array_equal(np.asarray(q.scales), state.absmax.numpy())
    # Slack: the two tables differ by up to two ulps, and so do the values read back through the same index.
    slack = 4 * np.spacing(np.maximum(np.abs(x), np.abs(theirs)))
    assert np.all(np.abs(ours - x) <= np.abs(theirs - x) + slack)


# Betas whose 1 - β is exact in float32: jgd keeps them as float32 data and computes 1 - β there, torchao in
# Python floats, which for β2 = 0.999 differ by 1.3e-5 relative; enough to move a code now and then.
BETAS = (0.875, 1 - 2**-10)


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


def _start():
    """64-256-10 MLP: the 64 x 256 kernel (16,384 elements) is quantized by both libraries, the rest stays float32."""
    rng = np.random.default_rng(0)
    return {
        "w1": (rng.normal(size=(64, 256)) * np.sqrt(2 / 64)).astype(np.float32),
        "b1": np.zeros(256, np.float32),
        "w2": (rng.normal(size=(256, 10)) * np.sqrt(1 / 256)).astype(np.float32),
        "b2": np.zeros(10, np.float32),
    }


def _loss(p, x, y):
    logits = jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))


def _as_jgd(monkeypatch, bits):
    """torchao with the two departures of the module docstring made jgd's way, and run eagerly: torchao compiles
    the same function with inductor, a minute of compilation on a CPU."""
    module = _torchao(bits)
    from torchao.optim import quant_utils

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)

    def scale_tensor(x, block_size):
        blocks = x.view(-1, block_size)
        scale = blocks.abs().amax(-1)
        return (blocks / torch.where(scale > 0, scale, 1).view(-1, 1)).view(x.shape), scale

    def never_zero(x, qmap):
        codes = quant_utils.quantize_8bit_with_qmap(x, qmap)
        return torch.where((qmap[0] == 0) & (x > 0) & (codes == 0), 1, codes).to(torch.uint8)

    monkeypatch.setattr(module, "scale_tensor", scale_tensor)
    if bits == 8:
        monkeypatch.setattr(module, "quantize_8bit_with_qmap", never_zero)


def _codes(state, bits):
    codes = state.codes.numpy().ravel()
    return codes if bits == 8 else np.stack([codes >> 4, codes & 15], -1).ravel()  # torchao: high half first


@pytest.mark.parametrize("bits", [8, 4])
def test_an_adam_trajectory_follows_torchaos(monkeypatch, bits):
    """30 steps on digits from the same start and batches, torchao made jgd's way in its two departures (module
    docstring). The codes of both slots of the quantized kernel agree at every step but for a few (at most 8 of
    16,384), and the params stay within 1e-4 of torchao's (float32 Adam, the two libraries: 1e-7; torchao's 8-bit
    Adam as shipped, which reads some second moments as 0: 1.5 after 11 steps). A float32 rounding of the moments
    (torch's ``lerp`` against ``β m + (1 - β) g``) moves a code now and then. Measured: 8 bits, one code differs
    at 3 of the 60 slot-steps, params 2.1e-5 apart; 4 bits, equal codes, params 6e-8 apart."""
    _as_jgd(monkeypatch, bits)
    from torchao.optim import Adam4bit, Adam8bit

    x, y = _digits()
    start = _start()
    theirs = [torch.tensor(start[k], requires_grad=True) for k in start]
    opt = (Adam8bit if bits == 8 else Adam4bit)(theirs, lr=1e-3, betas=BETAS)
    tx = jgd.adam(1e-3, b1=BETAS[0], b2=BETAS[1], state_dtype=jgd.quantized(bits, rounding="nearest"))
    params = jax.tree.map(jnp.asarray, start)
    state = tx.init(params)

    @jax.jit
    def step(params, state, xb, yb):
        updates, state = tx.update(jax.grad(_loss)(params, xb, yb), state, params)
        return jgd.apply_updates(params, updates), state

    order = np.random.default_rng(0).permutation(len(x))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    differ = []
    for k in range(30):
        batch = order[32 * k : 32 * (k + 1)]
        opt.zero_grad()
        w1, b1, w2, b2 = theirs
        torch.nn.functional.cross_entropy(torch.relu(xt[batch] @ w1 + b1) @ w2 + b2, yt[batch]).backward()
        opt.step()
        params, state = step(params, state, x[batch], y[batch])
        for ours_slot, their_slot in (("mu", "exp_avg"), ("nu", "exp_avg_sq")):
            leaf = state.slots[ours_slot]["w1"]
            ours = np.asarray(array._unpack(leaf.codes, bits, leaf.block_size)).ravel()
            differ.append(int(np.sum(ours != _codes(opt.state[theirs[0]][their_slot], bits))))
    apart = max(float(np.max(np.abs(np.asarray(params[k]) - t.detach().numpy()))) for k, t in zip(start, theirs))
    assert max(differ) <= 8, differ
    assert apart < 1e-4
