"""A whole Flax MLP train step (loss, grad, optimizer update, apply) with jgd against optax, side by side.

Two models: the digits MLP (64-512-512-10, 6 leaves) and a deep narrow MLP
(100 hidden layers of 64 units, 202 leaves). For the deep one, ``jgd flat``
keeps the parameters raveled into one vector (``jax.flatten_util.ravel_pytree``)
and unravels them inside the loss, so the optimizer sees one leaf.
Steps are interleaved and the median of the repeats is reported.

    python benchmarks/train_step.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import jgd
from jgd.experiment.train.models import MLP, init_variables

METHODS = {
    "sgd": (lambda: jgd.sgd(1e-2), lambda: optax.sgd(1e-2)),
    "momentum": (lambda: jgd.momentum(1e-2, 0.9), lambda: optax.sgd(1e-2, momentum=0.9)),
    "rmsprop": (lambda: jgd.rmsprop(1e-3, eps=0.0, eps_root=1e-8), lambda: optax.rmsprop(1e-3)),
    "adadelta": (lambda: jgd.adadelta(1.0, rho=0.9), lambda: optax.adadelta(1.0)),
    "adam": (lambda: jgd.adam(1e-3), lambda: optax.adam(1e-3)),
}


def make_step(model, tx, flat_unravel=None):
    def loss(params, x, y):
        if flat_unravel is not None:
            params = flat_unravel(params)
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()

    def step(params, state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, state = tx.update(grads, state, params)
        return jgd.apply_updates(params, updates), state, value

    return jax.jit(step, donate_argnums=(0, 1))


def measure(widths, method, repeats, flat):
    model = MLP(widths[:-1], widths[-1])
    x = jax.random.normal(jax.random.key(0), (128, 64))
    y = jax.random.randint(jax.random.key(1), (128,), 0, widths[-1])
    params = init_variables(model, jax.random.key(2), 64)
    make_jgd, make_optax = METHODS[method]
    contenders = {"jgd": (make_jgd(), None), "optax": (make_optax(), None)}
    if flat:
        contenders["jgd_flat"] = (make_jgd(), ravel_pytree(params)[1])
    runs = {}
    for name, (tx, unravel) in contenders.items():
        p = ravel_pytree(params)[0] if unravel else jax.tree.map(jnp.copy, params)
        state = tx.init(p)
        start = time.perf_counter()
        fn = make_step(model, tx, unravel).lower(p, state, x, y).compile()
        compile_s = time.perf_counter() - start
        p, state, _ = jax.block_until_ready(fn(p, state, x, y))
        runs[name] = {"fn": fn, "args": [p, state], "compile_s": compile_s, "times": []}
    for _ in range(repeats):
        for run in runs.values():
            start = time.perf_counter()
            p, state, _ = jax.block_until_ready(run["fn"](*run["args"], x, y))
            run["times"].append(time.perf_counter() - start)
            run["args"] = [p, state]
    return {name: (1e3 * np.median(r["times"]), r["compile_s"]) for name, r in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    models = {"digits MLP 64-512-512-10": (512, 512, 10), "deep MLP 100x64": (64,) * 100 + (10,)}
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, batch 128\n")
    print("| model | method | jgd ms | optax ms | jgd/optax | jgd compile s | optax compile s | flat ms | flat/optax |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model_name, widths in models.items():
        flat = model_name.startswith("deep")
        for method in METHODS:
            r = measure(widths, method, args.repeats, flat)
            (j, jc), (o, oc) = r["jgd"], r["optax"]
            tail = f"{r['jgd_flat'][0]:.2f} | {r['jgd_flat'][0] / o:.2f}" if flat else "- | -"
            print(f"| {model_name} | {method} | {j:.2f} | {o:.2f} | {j / o:.2f} | {jc:.2f} | {oc:.2f} | {tail} |")


if __name__ == "__main__":
    main()
