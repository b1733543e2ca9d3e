"""Host offload on one accelerator: device memory held between steps, step time, and bit equality.

Adam on a tree of ``--millions`` million float32 params, with its moments on the device and with
``jgd.offload(adam, slots=("mu", "nu"))``; the same step (update + apply_updates, params and state
donated) for both. Device bytes in use are read from ``device.memory_stats()`` between steps.

    python benchmarks/offload_device.py --millions 200 --repeats 10
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import jgd


def run(tx, shapes, repeats):
    keys = jax.random.split(jax.random.key(0), len(shapes))
    params = {f"p{i}": jax.random.normal(k, s, jnp.float32) * 0.01 for i, (k, s) in enumerate(zip(keys, shapes))}
    grads = jax.tree.map(lambda p: p * 0.5 + 0.01, params)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jgd.apply_updates(params, updates), state

    state = jax.jit(tx.init)(params)
    fn = jax.jit(step, donate_argnums=(0, 1))
    params, state = jax.block_until_ready(fn(params, state, grads))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        params, state = jax.block_until_ready(fn(params, state, grads))
        times.append(time.perf_counter() - start)
    stats = jax.devices()[0].memory_stats() or {}
    kinds = sorted({leaf.sharding.memory_kind for leaf in jax.tree.leaves(state.slots)})
    result = {"ms": 1e3 * float(np.median(times)), "device_mb": stats.get("bytes_in_use", 0) / 2**20, "kinds": kinds}
    return result, jax.device_get((params, state))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--millions", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    shapes = [(1 << 20,)] * args.millions
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {args.millions}M float32 params")
    on_device, want = run(jgd.adam(1e-3), shapes, args.repeats)
    offloaded, got = run(jgd.offload(jgd.adam(1e-3), slots=("mu", "nu")), shapes, args.repeats)
    same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)))
    print("| slots | memory kind | device MB in use between steps | ms / step |")
    print("|---|---|---|---|")
    for name, r in (("on device", on_device), ("offloaded", offloaded)):
        print(f"| {name} | {', '.join(r['kinds'])} | {r['device_mb']:.0f} | {r['ms']:.2f} |")
    print(f"offloaded run equals on-device run bit for bit: {same}")


if __name__ == "__main__":
    main()
