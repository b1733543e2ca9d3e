"""A learning-rate sweep of Adam with jgd against optax, side by side: vmapped, and one setting at a time.

The digits MLP (64-128-128-10, ReLU), batches of 128 from the training split
(reshuffled every epoch), 300 steps per setting, N learning rates log-spaced
from 1e-4 to 1e-1. The training loop is shared; only the optimizer differs:

- jgd vmapped: ``jax.vmap`` over the learning rate, put into the state with
  ``jgd.set_hyperparams`` inside the vmapped function: one jitted call.
- jgd one-by-one: one jitted training, compiled once, called N times with
  states made by ``jgd.set_hyperparams``.
- optax vmapped / one-by-one: the same with ``optax.inject_hyperparams(optax.adam)``,
  the learning rate set in its state's ``hyperparams``.

Every variant's loss curves are checked against jgd one-by-one's where the
learning rate is at most 1e-2 (above that, Adam on this net is chaotic enough
to turn float32 rounding into visible differences): column "Δ loss". Compiles
are timed apart; the runs of all variants are interleaved and the median of
the repeats is reported, with the load average, since the machine may be shared.

    python benchmarks/sweep.py [--repeats 5] [--sizes 8 64]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jgd
from jgd.data import load_dataset

STEPS, BATCH, WIDTHS = 300, 128, (128, 128, 10)


class MLP(nn.Module):
    widths: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        for w in self.widths[:-1]:
            x = nn.relu(nn.Dense(w)(x))
        return nn.Dense(self.widths[-1])(x)


def batches() -> tuple[np.ndarray, np.ndarray]:
    """``STEPS`` batches of ``BATCH`` digits, each epoch a fresh permutation of the training split."""
    data = load_dataset("digits")
    rng = np.random.default_rng(0)
    epochs = -(-STEPS * BATCH // len(data.x_train))
    order = np.concatenate([rng.permutation(len(data.x_train)) for _ in range(epochs)])[: STEPS * BATCH]
    return data.x_train[order].reshape(STEPS, BATCH, -1), data.y_train[order].reshape(STEPS, BATCH)


def make_train(model: nn.Module, tx, apply_updates: Callable) -> Callable:
    """``train(params, opt_state, xs, ys) -> losses``: ``STEPS`` steps of ``tx``, one ``lax.scan``."""

    def loss(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()

    def train(params, opt_state, xs, ys):
        def step(carry, batch):
            params, opt_state = carry
            value, grads = jax.value_and_grad(loss)(params, *batch)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (apply_updates(params, updates), opt_state), value

        return jax.lax.scan(step, (params, opt_state), (xs, ys))[1]

    return train


def variants(model: nn.Module, params) -> dict[str, tuple[Callable, Callable, bool]]:
    """name -> (train, state with a given learning rate, vmapped?)."""
    jgd_tx = jgd.adam(1e-3)
    jgd_state = jgd_tx.init(params)
    optax_tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    optax_state = optax_tx.init(params)

    def jgd_with(lr):
        return jgd.set_hyperparams(jgd_state, learning_rate=lr)

    def optax_with(lr):
        lr = jnp.asarray(lr, optax_state.hyperparams["learning_rate"].dtype)
        return optax_state._replace(hyperparams={**optax_state.hyperparams, "learning_rate": lr})

    jgd_train = make_train(model, jgd_tx, jgd.apply_updates)
    optax_train = make_train(model, optax_tx, optax.apply_updates)
    return {
        "jgd vmapped": (jgd_train, jgd_with, True),
        "jgd one-by-one": (jgd_train, jgd_with, False),
        "optax vmapped": (optax_train, optax_with, True),
        "optax one-by-one": (optax_train, optax_with, False),
    }


def measure(n: int, repeats: int, model: nn.Module, params, xs, ys) -> dict[str, dict[str, float]]:
    lrs = np.logspace(-4, -1, n).astype(np.float32)
    runs = {}
    for name, (train, state_with, vmapped) in variants(model, params).items():
        started = time.perf_counter()
        if vmapped:
            fn = jax.jit(jax.vmap(lambda lr, p, x, y, t=train, s=state_with: t(p, s(lr), x, y), (0, None, None, None)))
            fn = fn.lower(jnp.asarray(lrs), params, xs, ys).compile()

            def call(fn=fn):
                return np.asarray(fn(jnp.asarray(lrs), params, xs, ys))
        else:
            fn = jax.jit(train).lower(params, state_with(float(lrs[0])), xs, ys).compile()

            def call(fn=fn, state_with=state_with):
                return np.stack([np.asarray(fn(params, state_with(float(lr)), xs, ys)) for lr in lrs])

        runs[name] = {"call": call, "compile_s": time.perf_counter() - started, "times": [], "losses": call()}
    for _ in range(repeats):
        for run in runs.values():
            started = time.perf_counter()
            run["call"]()
            run["times"].append(time.perf_counter() - started)
    calm = lrs <= 1e-2
    reference = runs["jgd one-by-one"]["losses"][calm]
    return {
        name: {
            "compile_s": run["compile_s"],
            "time_s": float(np.median(run["times"])),
            "loss_diff": float(np.abs(run["losses"][calm] - reference).max()),
        }
        for name, run in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 64])
    args = parser.parse_args()
    xs, ys = (jnp.asarray(a) for a in batches())
    model = MLP(WIDTHS)
    params = model.init(jax.random.key(0), xs[0])
    load = os.getloadavg()
    print(
        f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].device_kind} ({os.cpu_count()} cores), "
        f"digits MLP 64-{'-'.join(map(str, WIDTHS))}, batch {BATCH}, {STEPS} steps, Adam, "
        f"median of {args.repeats}; load average {load[0]:.1f} at the start\n"
    )
    print("| N | variant | time s | ms per setting | vs optax vmapped | one-by-one / vmapped | compile s | Δ loss |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        r = measure(n, args.repeats, model, params, xs, ys)
        for name, m in r.items():
            library = name.split()[0]
            ratio = m["time_s"] / r["optax vmapped"]["time_s"]
            speedup = r[f"{library} one-by-one"]["time_s"] / r[f"{library} vmapped"]["time_s"]
            print(
                f"| {n} | {name} | {m['time_s']:.3f} | {1e3 * m['time_s'] / n:.1f} | {ratio:.2f} | "
                f"{f'{speedup:.2f}×' if 'vmapped' in name else '-'} | {m['compile_s']:.2f} | "
                f"{m['loss_diff']:.1e} |"
            )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
