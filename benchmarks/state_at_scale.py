"""Adam's state at scale on 8 host devices: bytes each device holds and step time, jgd beside optax.

Params and grads are replicated (data parallel); the state is placed by
``jgd.state_sharding`` (the same shardings for both libraries):

- ``replicated``: every device holds all of the moments;
- ``zero1``: the moments split over the 8 devices (``shard_over="data"``);
- ``offload``: the moments in pinned host memory between steps (``jgd.offload``; for optax
  the same moves written around its update), brought to the device inside the step;
- ``zero1+offload``: both.

A step is ``update + apply_updates``, jitted with the placement as ``out_shardings`` and params and
state donated; jgd and optax steps are interleaved and the median taken. On the CPU backend
host and device memory are the same RAM, so offload's copies are cheap memcpys (or none) and
its benefit, free device memory, only shows on an accelerator.

    python benchmarks/state_at_scale.py                        # ResNet-18-like tree, 20 repeats
    python benchmarks/state_at_scale.py --tree small --repeats 5 --placements replicated zero1
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from step_cases import make_tree, resnet18_shapes, time_interleaved

import jgd

TREES = {"resnet18_like": resnet18_shapes, "small": lambda: [(256, 512), (512,), (512, 128), (128,)]}
# placement -> (shard_over, offloaded)
PLACEMENTS = {
    "replicated": (None, False),
    "zero1": ("data", False),
    "offload": (None, True),
    "zero1+offload": ("data", True),
}


def offload_optax(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """optax's Adam with ``mu`` and ``nu`` moved as :func:`jgd.offload` moves jgd's slots."""

    def move(state, space):
        def put(s):
            if isinstance(s, optax.ScaleByAdamState):
                return s._replace(mu=jax.device_put(s.mu, space), nu=jax.device_put(s.nu, space))
            return s

        return jax.tree.map(put, state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))

    def update_fn(updates, state, params=None):
        updates, state = tx.update(updates, move(state, jax.memory.Space.Device), params)
        return updates, move(state, jax.memory.Space.Host)

    return optax.GradientTransformation(lambda p: move(tx.init(p), jax.memory.Space.Host), update_fn)


def contenders(offloaded: bool) -> dict:
    if offloaded:
        return {"jgd": jgd.offload(jgd.adam(1e-3), slots=("mu", "nu")), "optax": offload_optax(optax.adam(1e-3))}
    return {"jgd": jgd.adam(1e-3), "optax": optax.adam(1e-3)}


def held_mb(state) -> dict[str, float]:
    """The most any device holds of ``state``, in device and in host memory, MB."""
    held = {}
    for leaf in jax.tree.leaves(state):
        kind = "host" if leaf.sharding.memory_kind == "pinned_host" else "device"
        for shard in leaf.addressable_shards:
            held[(kind, shard.device)] = held.get((kind, shard.device), 0) + shard.data.nbytes
    return {kind: max((v for (k, _), v in held.items() if k == kind), default=0) / 2**20 for kind in ("device", "host")}


def prepare(tx, params, grads, replicated, shard_over):
    shardings = jgd.state_sharding(tx, params, replicated, shard_over=shard_over)

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jgd.apply_updates(params, updates), state

    state = jax.jit(tx.init, out_shardings=shardings)(params)
    start = time.perf_counter()
    fn = jax.jit(step, out_shardings=(replicated, shardings), donate_argnums=(0, 1))
    fn = fn.lower(params, state, grads).compile()
    compile_s = time.perf_counter() - start
    params, state = jax.block_until_ready(fn(params, state, grads))  # warm-up
    return {"fn": fn, "args": [params, state, grads], "compile_s": compile_s, "times": []}


def measure(tree: str, placement: str, repeats: int) -> dict:
    mesh = Mesh(np.array(jax.devices()), ("data",))
    replicated = NamedSharding(mesh, P())
    shard_over, offloaded = PLACEMENTS[placement]
    shapes = TREES[tree]()
    runs = {}
    for name, tx in contenders(offloaded).items():
        params = jax.device_put(make_tree(shapes, 0), replicated)
        grads = jax.device_put(make_tree(shapes, 1), replicated)
        runs[name] = prepare(tx, params, grads, replicated, shard_over)
    time_interleaved(runs, repeats)
    out = {"params": sum(int(np.prod(s)) for s in shapes)}
    for name, run in runs.items():
        seconds = float(np.median(run["times"]))
        out[name] = {"ms": 1e3 * seconds, "compile_s": run["compile_s"], **held_mb(run["args"][1])}
    first, second = (jax.tree.leaves(runs[k]["args"][0]) for k in ("jgd", "optax"))
    out["max_param_diff"] = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(first, second))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", default="resnet18_like", choices=list(TREES))
    parser.add_argument("--placements", nargs="*", default=list(PLACEMENTS), choices=list(PLACEMENTS))
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default=None, help="where to write the results")
    args = parser.parse_args()

    print(f"jax {jax.__version__}, optax {optax.__version__}, {len(jax.devices())} {jax.devices()[0].platform} devices")
    print("state MB: the most one device holds, in device memory / in pinned host memory\n")
    print(
        "| tree | placement | jgd state MB dev / host | optax state MB dev / host | jgd/optax bytes "
        "| jgd ms | optax ms | jgd/optax time | jgd compile s | optax compile s | max param diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for placement in args.placements:
        r = measure(args.tree, placement, args.repeats)
        j, o = r["jgd"], r["optax"]
        ratio = (j["device"] + j["host"]) / (o["device"] + o["host"])
        print(
            f"| {args.tree} | {placement} | {j['device']:.2f} / {j['host']:.2f} | {o['device']:.2f} / {o['host']:.2f} "
            f"| {ratio:.3f} | {j['ms']:.1f} | {o['ms']:.1f} | {j['ms'] / o['ms']:.2f} | {j['compile_s']:.2f} "
            f"| {o['compile_s']:.2f} | {r['max_param_diff']:.1e} |",
            flush=True,
        )
        rows.append({"tree": args.tree, "placement": placement, **r})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
