"""One optimizer step (update + apply_updates, params and state donated): jgd against optax, timed two ways.

- per call: the jitted step called from Python and waited on, as a training loop calls it (dispatch and
  synchronisation included);
- in jit: K steps under ``lax.fori_loop`` in one compiled function, time / K: the step alone. Each step's
  gradients are scaled by ``1 + 1e-7 i`` so that XLA cannot hoist work out of the loop.

For every tree and method it prints the bytes a parameter that XLA's cost analysis counts for the compiled
step (``bytes accessed``, what tests/core/test_bytes_gate.py holds) beside the ideal, ``12 + 8 × slots`` for
float32 (params read and written, grads read, each slot read and written), and the times with the percentage
of a stream kernel: ``y ← y - a·x`` (SGD's arithmetic, 12 bytes an element) over as many float32 as the tree
has params, timed the same two ways in the same loop, so that % stream = (ideal bytes / step time) / (stream
bytes / stream time). jgd, optax and the stream are called in turn (interleaved, the order reversed every
repeat, every array copied to a fresh buffer every two repeats), the medians of the repeats taken; jgd/optax
is the median of the repeats' ratios. ``--noise`` adds jgd timed against a second jgd: the ratio that noise
alone gives. ``--profile DIR`` also writes a ``jax.profiler`` trace of a few steps of each library and
the table of the kernels they ran, per step (DIR/kernels.md).

    python benchmarks/update_step.py              # sgd, momentum, nesterov, adam, adamw, lion; three trees
    python benchmarks/update_step.py --methods all --trees leaves_3000 --json out.json
    python benchmarks/update_step.py --methods adam lion --trees one_leaf --leaf-size 1048576 --profile traces
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from kernel_profile import kernel_table, profile_step
from step_cases import DEFAULT_METHODS, DEFAULT_TREES, METHODS, TREES, make_tree, time_interleaved

import jgd


def step_of(tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jgd.apply_updates(params, updates), state

    return step


def looped(step, k: int):
    """``k`` steps under ``lax.fori_loop``, step i's gradients scaled by ``1 + 1e-7 i`` (nothing loop-invariant)."""

    def run(params, state, grads):
        def body(i, carry):
            scale = 1 + 1e-7 * i.astype(jnp.float32)
            return step(*carry, jax.tree.map(lambda g: g * scale.astype(g.dtype), grads))

        return jax.lax.fori_loop(0, k, body, (params, state))

    return run


def stream_step(y, unused, x):
    """``y - a·x``: 12 bytes an element, SGD's step without the optimizer around it."""
    return y - 1e-3 * x, unused


def _compile(fn, args):
    start = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=(0, 1)).lower(*args).compile()
    return compiled, time.perf_counter() - start


def compiled_step(tx, params, grads):
    """The per-call step of ``tx``, its initial state and the compile time."""
    state = tx.init(params)
    fn, seconds = _compile(step_of(tx), (params, state, grads))
    return fn, state, seconds


def contender(step, args: list, k: int) -> dict:
    """The per-call and in-jit runs of ``step`` on ``args`` (one list, shared: each feeds the other), warmed up."""
    call, call_s = _compile(step, args)
    loop, loop_s = _compile(looped(step, k), args)
    args[:2] = jax.block_until_ready(call(*args))  # the first calls fault pages in
    args[:2] = jax.block_until_ready(loop(*args))
    return {
        "call": {"fn": call, "args": args, "times": []},
        "jit": {"fn": loop, "args": args, "times": []},
        "bytes": call.cost_analysis()["bytes accessed"],
        "loop_bytes": loop.cost_analysis()["bytes accessed"],  # XLA counts a loop's body once
        "compile_s": call_s,
        "loop_compile_s": loop_s,
    }


def contenders(tree: str, method: str, args) -> tuple[dict, int]:
    shapes = TREES[tree](args.leaf_size)
    make_jgd, make_optax, _ = METHODS[method]
    txs = {"jgd": make_jgd(), "optax": make_optax()}
    if args.flat:
        txs["jgd_flat"] = make_jgd()
    if args.noise:
        txs["jgd_again"] = make_jgd()
    runs = {}
    for name, tx in txs.items():
        params, grads = make_tree(shapes, 0), make_tree(shapes, 1)
        if name == "jgd_flat":
            params, grads = ravel_pytree(params)[0], ravel_pytree(grads)[0]
        runs[name] = contender(step_of(tx), [params, tx.init(params), grads], args.loop_steps)
    n = sum(int(np.prod(s)) for s in shapes)
    x = jax.random.normal(jax.random.key(2), (n,), jnp.float32)
    runs["stream"] = contender(stream_step, [jnp.zeros(n, jnp.float32), None, x], args.loop_steps)
    return runs, n


def fresh_buffers(runs: dict, reverse: bool) -> None:
    """Copies every contender's params, state and grads into new buffers, in turn: a contender whose pages
    happen to be slow (or fast) for the whole run would otherwise bias every one of its repeats."""
    for r in list(runs.values())[:: -1 if reverse else 1]:
        args = r["call"]["args"]  # shared with r["jit"]
        args[:] = [jax.block_until_ready(jax.tree.map(jnp.copy, a)) for a in args]


def measure(tree: str, method: str, args) -> dict:
    """Times jgd, optax (and jgd flat) and the stream per call and in jit, interleaved, fresh buffers every
    two repeats; medians in ms."""
    runs, n = contenders(tree, method, args)
    timed = {f"{name} {mode}": r[mode] for name, r in runs.items() for mode in ("call", "jit")}
    for pair in range(0, args.repeats, 2):
        time_interleaved(timed, min(2, args.repeats - pair))  # forward, then reversed
        fresh_buffers(runs, reverse=pair % 4 == 2)
    ideal = 12 + 8 * METHODS[method][2]
    out = {"tree": tree, "method": method, "leaves": len(TREES[tree](args.leaf_size)), "params": n, "ideal": ideal}
    stream = runs["stream"]
    for name, r in runs.items():
        # jgd's times over the other's, repeat by repeat (neighbours in time), then the median: drift cancels.
        out.setdefault("jgd_over", {})[name] = {
            mode: float(np.median(np.array(runs["jgd"][mode]["times"]) / np.array(r[mode]["times"])))
            for mode in ("call", "jit")
        }
        call_ms = 1e3 * np.median(r["call"]["times"])
        jit_ms = 1e3 * np.median(r["jit"]["times"]) / args.loop_steps
        out[name] = {"bytes_per_param": r["bytes"] / n, "loop_bytes_per_param": r["loop_bytes"] / n}
        out[name].update(call_ms=call_ms, jit_ms=jit_ms, compile_s=r["compile_s"], loop_compile_s=r["loop_compile_s"])
        for mode in ("call", "jit"):  # (ideal / 12) × t_stream / t_step
            ratio = np.median(stream[mode]["times"]) / np.median(r[mode]["times"])
            out[name][f"{mode}_pct_stream"] = 100 * ideal / 12 * ratio
    out["stream"]["gbps"] = {mode: 12 * n / out["stream"][f"{mode}_ms"] / 1e6 for mode in ("call", "jit")}
    if args.profile:
        out["profile"] = profile(tree, method, runs, args.profile)
    return out


def profile(tree: str, method: str, runs: dict, folder: str) -> dict:
    """Traces a few per-call steps of each library; appends their kernel tables to ``folder``/kernels.md."""
    tables = {}
    with open(pathlib.Path(folder) / "kernels.md", "a") as fh:
        for name in ("jgd", "optax"):
            call = runs[name]["call"]
            rows = profile_step(call["fn"], call["args"], f"{folder}/traces/{tree}_{method}_{name}")
            tables[name] = rows
            fh.write(f"\n### {tree}, {method}, {name}: kernels of one step\n\n{kernel_table(rows)}\n")
    return tables


HEADER = (
    "| tree | params (leaves) | method | B/param jgd | B/param optax | ideal "
    "| per call ms jgd | optax | jgd/optax | % stream jgd | optax "
    "| in jit ms jgd | optax | jgd/optax | % stream jgd | optax |"
)


def row(r: dict) -> str:
    j, o = r["jgd"], r["optax"]
    cells = [r["tree"], f"{r['params'] / 1e6:.2f}M ({r['leaves']})", r["method"]]
    cells += [f"{j['bytes_per_param']:.1f}", f"{o['bytes_per_param']:.1f}", str(r["ideal"])]
    for mode in ("call", "jit"):
        cells += [f"{j[mode + '_ms']:.3f}", f"{o[mode + '_ms']:.3f}", f"{r['jgd_over']['optax'][mode]:.2f}"]
        cells += [f"{j[mode + '_pct_stream']:.0f}%", f"{o[mode + '_pct_stream']:.0f}%"]
    if "jgd_flat" in r:
        f = r["jgd_flat"]
        cells += [f"{f['call_ms']:.3f}", f"{f['jit_ms']:.3f}", f"{f['jit_ms'] / o['jit_ms']:.2f}"]
    if "jgd_again" in r:
        cells += [f"{r['jgd_over']['jgd_again'][mode]:.2f}" for mode in ("call", "jit")]
    return "| " + " | ".join(cells) + " |"


MEMORY_VARIANTS = {
    "jgd adam": (lambda: jgd.adam(1e-3), 8),
    "jgd adam, state_dtype=bfloat16": (lambda: jgd.adam(1e-3, state_dtype=jnp.bfloat16), 4),
    "optax adam": (lambda: optax.adam(1e-3), 8),
}


def memory_table(size: int) -> list[dict[str, float]]:
    """Adam on one float32 leaf of ``size``: the state's bytes, the step's scratch and aliased (donated) buffers
    as XLA plans them, and every live array after 20 steps (params, grads and state, if nothing is copied)."""
    print(f"\n| Adam, one float32 leaf of {size} | state MB (expected) | step scratch MB ", end="")
    print("| donated in place MB | live MB |")
    print("|---|---|---|---|---|")
    rows = []
    for variant, (make, bytes_per_param) in MEMORY_VARIANTS.items():
        params, grads = make_tree([(size,)], 0), make_tree([(size,)], 1)
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
            f"| {variant} | {row['state_mb']:.1f} ({bytes_per_param * size / 2**20:.1f}) | {row['scratch_mb']:.1f} "
            f"| {row['donated_mb']:.1f} | {row['live_mb']:.1f} |"
        )
        rows.append(row)
        del params, state, grads, fn
    return rows


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=DEFAULT_METHODS, choices=[*METHODS, "all"])
    parser.add_argument("--trees", nargs="*", default=DEFAULT_TREES, choices=list(TREES))
    parser.add_argument("--leaf-size", type=int, default=1 << 24, help="params of the one_leaf tree (16M)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--loop-steps", type=int, default=10, help="K, the steps of one in-jit call")
    parser.add_argument("--flat", action="store_true", help="add jgd on the params raveled into one vector")
    parser.add_argument("--noise", action="store_true", help="add jgd timed against itself: the noise floor")
    parser.add_argument("--no-memory", action="store_true", help="skip Adam's memory table")
    parser.add_argument("--profile", metavar="DIR", help="write traces and the kernels of each step to DIR")
    parser.add_argument("--json", default="update_step.json", help="where to write the results")
    args = parser.parse_args()
    args.methods = list(METHODS) if "all" in args.methods else args.methods
    return args


def main() -> None:
    args = parse_args()
    if args.profile:
        pathlib.Path(args.profile).mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    print(
        f"jax {jax.__version__}, optax {optax.__version__}, {device.platform} ({device.device_kind}); "
        f"median of {args.repeats}, in jit {args.loop_steps} steps a call; B/param: XLA's bytes accessed\n"
    )
    header = HEADER + (" flat call ms | flat jit ms | flat/optax in jit |" if args.flat else "")
    header += " jgd/jgd per call | jgd/jgd in jit |" if args.noise else ""
    print(header)
    print("|" + "---|" * header.count(" |"))
    results = {"device": device.device_kind, "loop_steps": args.loop_steps, "rows": []}
    for tree in args.trees:
        for method in args.methods:
            r = measure(tree, method, args)
            print(row(r), flush=True)
            results["rows"].append(r)
    if not args.no_memory:
        results["memory"] = memory_table(args.leaf_size)
    with open(args.json, "w") as fh:
        json.dump(results, fh, indent=1, default=float)


if __name__ == "__main__":
    main()
