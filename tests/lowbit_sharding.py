"""Quantized slots on 8 host devices: codes and scales split over their blocks with the param, or over the data
axis (ZeRO-1), and the run the same as on one device.

Started by tests/lowbit/test_lowbit.py in a fresh process, since the device count is fixed when JAX starts; exits
non-zero (an assertion) if a check fails.
"""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import jgd

rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(32, 64)), jnp.float32)
Y = jnp.asarray(rng.normal(size=(32, 256)), jnp.float32)
PARAMS = {"w": jnp.asarray(rng.normal(size=(64, 256)) * 0.1, jnp.float32), "b": jnp.zeros(256, jnp.float32)}
TX = jgd.adam(0.01, state_dtype={"mu": jgd.quantized(8), "nu": jgd.quantized(4, normalization="rank1", min_size=0)})


def loss(params):
    return jnp.mean((X @ params["w"] + params["b"] - Y) ** 2)


def train(params, shardings=None):
    def step(params, state):
        updates, state = TX.update(jax.grad(loss)(params), state, params)
        return jgd.apply_updates(params, updates), state

    state = jax.jit(TX.init, out_shardings=shardings)(params)
    step = jax.jit(step, out_shardings=None if shardings is None else (None, shardings))
    for _ in range(5):
        params, state = step(params, state)
    return params, state


mesh = Mesh(np.array(jax.devices()), ("data",))
want = train(PARAMS)
for spec, shard_over in ((P("data", None), None), (P(), "data")):
    shardings = jgd.state_sharding(TX, PARAMS, {"w": spec, "b": P()}, mesh=mesh, shard_over=shard_over)
    params, state = train(PARAMS, shardings)
    mu, nu = state.slots["mu"]["w"], state.slots["nu"]["w"]
    assert mu.codes.sharding.spec == P("data", None) and mu.scales.sharding.spec == P("data"), mu.codes.sharding
    assert {s.data.shape for s in mu.codes.addressable_shards} == {(8, 256)}  # 64 blocks of 256, 8 a device
    assert nu.codes.sharding.spec == P("data", None) and nu.col_scales.sharding.spec == P()
    for got, ref in zip(jax.tree.leaves((params, state)), jax.tree.leaves(want)):
        got, ref = np.asarray(got), np.asarray(ref)
        # A sum split over devices may round a last bit otherwise and flip a code, which the next steps carry.
        if got.dtype == np.uint8:
            assert np.mean(got != ref) < 1e-3
        else:
            assert np.linalg.norm(got - ref) <= 1e-4 * np.linalg.norm(ref)
print("ok")
