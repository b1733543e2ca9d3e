"""One optimizer step (update + apply_updates, jitted, buffers donated): jgd against optax, side by side.

For every method and tree it prints ms/step, GB/s (bytes an ideal single pass
moves: params, grads and slots read, params and slots written), the fraction of
a streaming ``a*x + b`` measured in the same run, compile time, and the ratio
jgd / optax. Steps are interleaved (jgd, optax, jgd, ...) and the median is taken.
The ``flat`` columns run jgd on the same params raveled into one vector
(``jax.flatten_util.ravel_pytree``), the layout for trees of many small leaves.

    python benchmarks/update_step.py                  # everything (about 15 min on 2 cores)
    python benchmarks/update_step.py --methods adam --trees leaves_3000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
from jax.flatten_util import ravel_pytree

import jgd

# (jgd, optax, slots): the same method with agreeing conventions.
METHODS = {
    "sgd": (lambda: jgd.sgd(1e-3), lambda: optax.sgd(1e-3), 0),
    "momentum": (lambda: jgd.momentum(1e-3, 0.9), lambda: optax.sgd(1e-3, momentum=0.9), 1),
    "nesterov": (lambda: jgd.nesterov(1e-3, 0.9), lambda: optax.sgd(1e-3, momentum=0.9, nesterov=True), 1),
    "adagrad": (
        lambda: jgd.adagrad(1e-3, eps=0.0, eps_root=1e-7, initial_accumulator=0.1),
        lambda: optax.adagrad(1e-3),
        1,
    ),
    "adadelta": (lambda: jgd.adadelta(1.0, rho=0.9), lambda: optax.adadelta(1.0), 2),
    "rmsprop": (lambda: jgd.rmsprop(1e-3, eps=0.0, eps_root=1e-8), lambda: optax.rmsprop(1e-3), 1),
    "adam": (lambda: jgd.adam(1e-3), lambda: optax.adam(1e-3), 2),
    "adamax": (lambda: jgd.adamax(1e-3), lambda: optax.adamax(1e-3), 2),
    "nadam": (lambda: jgd.nadam(1e-3, momentum_decay=None), lambda: optax.nadam(1e-3), 2),
    # The methods large runs use (slots: param-sized arrays; adafactor's factored statistics count as 0).
    "adamw": (lambda: jgd.adamw(1e-3, weight_decay=1e-4), lambda: optax.adamw(1e-3, weight_decay=1e-4), 2),
    "lion": (lambda: jgd.lion(1e-4, weight_decay=1e-3), lambda: optax.lion(1e-4, weight_decay=1e-3), 1),
    "radam": (lambda: jgd.radam(1e-3), lambda: optax.radam(1e-3), 2),
    "adabelief": (lambda: jgd.adabelief(1e-3), lambda: optax.adabelief(1e-3), 2),
    "lamb": (lambda: jgd.lamb(1e-3), lambda: optax.lamb(1e-3), 2),
    "lars": (lambda: jgd.lars(1e-3, form="optax"), lambda: optax.lars(1e-3), 1),
    "adafactor": (lambda: jgd.adafactor(1e-3), lambda: optax.adafactor(1e-3), 0),
    "schedule_free_adamw": (
        lambda: jgd.schedule_free_adamw(1e-3),
        lambda: optax.contrib.schedule_free_adamw(1e-3),
        2,
    ),
    "muon": (lambda: jgd.muon(0.02, bias_correction=True), lambda: optax.contrib.muon(0.02), 2),
}


def resnet18_shapes() -> list[tuple[int, ...]]:
    """Trainable leaves of a ResNet-18 (convolutions, batch-norm scale and bias, classifier): 11.7M."""
    shapes = [(7, 7, 3, 64), (64,), (64,)]
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        for block in range(2):
            shapes += [(3, 3, cin, cout), (cout,), (cout,), (3, 3, cout, cout), (cout,), (cout,)]
            if block == 0 and (stride != 1 or cin != cout):
                shapes += [(1, 1, cin, cout), (cout,), (cout,)]
            cin = cout
    return [*shapes, (512, 1000), (1000,)]


TREES = {
    "one_16M_leaf": lambda: [(1 << 24,)],
    "resnet18_like": resnet18_shapes,
    "leaves_300": lambda: [(3500,)] * 300,
    "leaves_1000": lambda: [(3500,)] * 1000,
    "leaves_3000": lambda: [(3500,)] * 3000,
}


def make_tree(shapes, seed):
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return {f"p{i:04d}": jax.random.normal(k, s, jnp.float32) * 0.01 for i, (k, s) in enumerate(zip(keys, shapes))}


def compiled_step(tx, params, grads):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jgd.apply_updates(params, updates), state

    state = tx.init(params)
    start = time.perf_counter()
    fn = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    return fn, state, time.perf_counter() - start


def time_interleaved(runs: dict[str, dict], repeats: int) -> None:
    """Calls each run's step in turn ``repeats`` times, appending to its ``times``: each sees the same machine."""
    for _ in range(repeats):
        for run in runs.values():
            params, state, grads = run["args"]
            start = time.perf_counter()
            run["args"][:2] = jax.block_until_ready(run["fn"](params, state, grads))
            run["times"].append(time.perf_counter() - start)


def stream_run() -> dict:
    """y = a*x + b over 16M float32 (8 bytes an element moved), the roofline of a memory-bound step,
    timed in the same loop as the steps so that it sees the same machine."""
    x = jnp.ones(1 << 24, jnp.float32)
    fn = (
        jax.jit(lambda x, unused, also_unused: (1.0001 * x + 0.5, None), donate_argnums=0)
        .lower(x, None, None)
        .compile()
    )
    for _ in range(3):  # the first calls fault pages in
        x, _ = jax.block_until_ready(fn(x, None, None))
    return {"fn": fn, "args": [x, None, None], "times": [], "bytes": 8 * x.size}


def measure(tree_name, method, repeats, flat):
    shapes = TREES[tree_name]()
    make_jgd, make_optax, slots = METHODS[method]
    contenders = {"jgd": make_jgd(), "optax": make_optax()}
    if flat:
        contenders["jgd_flat"] = make_jgd()
    runs = {}
    for name, tx in contenders.items():
        params, grads = make_tree(shapes, 0), make_tree(shapes, 1)
        if name == "jgd_flat":
            params, grads = ravel_pytree(params)[0], ravel_pytree(grads)[0]
        fn, state, compile_s = compiled_step(tx, params, grads)
        params, state = jax.block_until_ready(fn(params, state, grads))  # warm-up
        runs[name] = {"fn": fn, "args": [params, state, grads], "compile_s": compile_s, "times": []}
    runs["stream"] = stream_run()
    time_interleaved(runs, repeats)
    n = sum(int(np.prod(s)) for s in shapes)
    moved = (12 + 8 * slots) * n  # params read and written, grads read, each slot read and written
    stream = runs.pop("stream")
    out = {"leaves": len(shapes), "params": n, "stream_gbps": stream["bytes"] / np.median(stream["times"]) / 1e9}
    for name, r in runs.items():
        seconds = np.median(r["times"])
        out[name] = {"ms": 1e3 * seconds, "gbps": moved / seconds / 1e9, "compile_s": r["compile_s"]}
    return out


MEMORY_VARIANTS = {
    "jgd adam": (lambda: jgd.adam(1e-3), 128),
    "jgd adam, state_dtype=bfloat16": (lambda: jgd.adam(1e-3, state_dtype=jnp.bfloat16), 64),
    "optax adam": (lambda: optax.adam(1e-3), 128),
}


def memory_table() -> list[dict[str, float]]:
    """Adam on one 16M float32 leaf: the state's bytes, the step's scratch and aliased (donated) buffers as
    XLA plans them, and every live array after 20 steps (params, grads and state, if nothing is copied)."""
    print("\n| Adam, one 16M float32 leaf | state MB (expected) | step scratch MB | donated in place MB | live MB |")
    print("|---|---|---|---|---|")
    rows = []
    for variant, (make, expected) in MEMORY_VARIANTS.items():
        params, grads = make_tree([(1 << 24,)], 0), make_tree([(1 << 24,)], 1)
        fn, state, _ = compiled_step(make(), params, grads)
        for _ in range(20):
            params, state = jax.block_until_ready(fn(params, state, grads))
        plan = fn.memory_analysis()
        row = {
            "variant": variant,
            "state_mb": sum(x.nbytes for x in jax.tree.leaves(state) if x.ndim > 0) / 2**20,
            "scratch_mb": plan.temp_size_in_bytes / 2**20,
            "donated_mb": plan.alias_size_in_bytes / 2**20,
            "live_mb": sum(a.nbytes for a in jax.live_arrays()) / 2**20,
        }
        print(
            f"| {variant} | {row['state_mb']:.0f} ({expected}) | {row['scratch_mb']:.0f} | {row['donated_mb']:.0f} "
            f"| {row['live_mb']:.0f} |"
        )
        rows.append(row)
        del params, state, grads, fn
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--trees", nargs="*", default=list(TREES), choices=list(TREES))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-flat", action="store_true", help="skip the raveled-params column")
    parser.add_argument("--json", default="update_step.json", help="where to write the results")
    args = parser.parse_args()

    platform = jax.devices()[0].platform
    print(f"jax {jax.__version__}, optax {optax.__version__}, {platform}; % stream: of a*x+b timed in the same loop\n")
    header = (
        "| tree | leaves | method | jgd ms | optax ms | jgd/optax | jgd GB/s (% stream) | optax GB/s "
        "| jgd compile s | optax compile s | compile ratio |"
    )
    flat_header = " flat ms | flat/optax | flat compile s |"
    print(header + ("" if args.no_flat else flat_header))
    print("|" + "---|" * (header.count("|") - 1 + (0 if args.no_flat else 3)))
    results = {"rows": []}
    for tree in args.trees:
        for method in args.methods:
            r = measure(tree, method, args.repeats, not args.no_flat)
            j, o = r["jgd"], r["optax"]
            row = (
                f"| {tree} | {r['leaves']} | {method} | {j['ms']:.2f} | {o['ms']:.2f} | {j['ms'] / o['ms']:.2f} "
                f"| {j['gbps']:.1f} ({100 * j['gbps'] / r['stream_gbps']:.0f}%) | {o['gbps']:.1f} "
                f"| {j['compile_s']:.2f} "
                f"| {o['compile_s']:.2f} | {j['compile_s'] / o['compile_s']:.2f} |"
            )
            if "jgd_flat" in r:
                f = r["jgd_flat"]
                row += f" {f['ms']:.2f} | {f['ms'] / o['ms']:.2f} | {f['compile_s']:.2f} |"
            print(row, flush=True)
            results["rows"].append({"tree": tree, "method": method, **r})
    results["memory"] = memory_table()
    with open(args.json, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
