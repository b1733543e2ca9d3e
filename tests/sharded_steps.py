"""Runs methods on 8 host devices, data-parallel or fully sharded, against one device.

Started by tests/wrappers/test_sharding.py in a fresh process, since the device count is
fixed when JAX starts, with one argument ``<id>:<layout>`` per run: a row of tests/cases.py
and ``data-parallel`` or ``fully-sharded``. Prints one line per run and exits non-zero on
a mismatch.
"""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jgd
from tests.cases import CASES, transform_states

rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(64, 16)), jnp.float32)
Y = jnp.asarray(rng.normal(size=(64, 4)), jnp.float32)
PARAMS = {
    "w1": jnp.asarray(rng.normal(size=(16, 32)) * 0.3, jnp.float32),
    "b1": jnp.zeros(32, jnp.float32),
    "w2": jnp.asarray(rng.normal(size=(32, 4)) * 0.3, jnp.float32),
    "b2": jnp.zeros(4, jnp.float32),
}


def loss(params, x, y):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)


def train(tx, params, x, y, steps=10):
    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params, x, y), state, params)
        return jgd.apply_updates(params, updates), state

    state = tx.init(params)
    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def slots(state):
    return [s.slots for s in transform_states(state) if s.slots]


def main():
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ("data", "model"))
    batch = NamedSharding(mesh, P("data", None))
    replicated = NamedSharding(mesh, P())
    model_specs = {"w1": P(None, "model"), "b1": P("model"), "w2": P("model", None), "b2": P()}
    failures = 0
    all_layouts = {
        "data-parallel": {k: replicated for k in PARAMS},
        "fully-sharded": {k: NamedSharding(mesh, spec) for k, spec in model_specs.items()},
    }
    jobs = {}  # row id -> the layouts asked for it, each argument being "<id>:<layout>"
    for job in sys.argv[1:]:
        name, layout = job.split(":")
        jobs.setdefault(name, []).append(layout)
    for name, wanted in jobs.items():
        make = CASES[name].make
        want, _ = train(make(), PARAMS, X, Y)
        x, y = jax.device_put(X, batch), jax.device_put(Y, batch)  # the batch is split over "data" in both layouts
        for layout in wanted:
            shardings = all_layouts[layout]
            params = {k: jax.device_put(v, shardings[k]) for k, v in PARAMS.items()}
            first_state = make().init(params)
            got, state = train(make(), params, x, y)
            error = max(float(np.abs(np.asarray(got[k]) - np.asarray(want[k])).max()) for k in PARAMS)
            leaves = [
                (tree[k], k)
                for s in slots(first_state) + slots(state)
                for tree in s.values()
                for k in PARAMS
                if tree[k] is not None  # a partition's group holds no slot for the others' leaves
            ]
            # Adafactor's row and column statistics (and placeholders of shape (1,)) are not shaped like their
            # params: they cannot take the params' sharding, so they are counted apart and left to XLA.
            placed = all(
                x.sharding.is_equivalent_to(shardings[k], x.ndim) for x, k in leaves if x.shape == PARAMS[k].shape
            )
            placed = placed and all(  # the accumulation buffer too
                s.gradient_sum[k].sharding.is_equivalent_to(shardings[k], PARAMS[k].ndim)
                for s in jgd.trees.instances(state, jgd.AccumulateState)
                for k in PARAMS
            )
            others = sum(x.shape != PARAMS[k].shape for x, k in leaves) // 2
            failures += not (error <= 1e-6 and placed)
            kept = placed if any(slots(state)) else "no slots"
            note = f", {others} slots of other shapes" if others else ""
            print(f"{name} {layout}: max error {error:.2e}{note}, state sharded like params: {kept}", flush=True)
    raise SystemExit(failures)


if __name__ == "__main__":
    main()
