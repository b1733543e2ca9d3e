"""A learning-rate sweep of Adam with jgd against optax, side by side: vmapped, and one setting at a time.

The digits MLP (64-128-128-10, ReLU), batches of 128 from the training split
(reshuffled every epoch), 300 steps per setting (``--steps``), N learning rates log-spaced
from 1e-4 to 1e-1. The training loop is shared; only the optimizer differs:

- vmapped: ``jax.vmap`` over the learning rate, put into the optimizer state
  inside the vmapped function; one jitted call trains all N.
- one-by-one, jitted run: the whole 300-step training jitted once (a
  ``lax.scan``) and called N times, each with a state holding its rate.
- one-by-one, jitted step: the train step jitted once and called from a
  Python loop, 300 dispatches per setting: the usual hand-written loop.

jgd sets the rate with ``jgd.set_hyperparams`` on an ``adam`` state; optax
sets it in the ``hyperparams`` of an ``optax.inject_hyperparams(optax.adam)``
state. Column "÷ its vmapped" is a time over the same library's vmapped time:
on one-by-one rows, how many times faster vmapping is.

Every variant's loss curves are checked against jgd one-by-one's where the
learning rate is at most 1e-2 (above that, Adam on this net is chaotic enough
to turn float32 rounding into visible differences): column "Δ loss". Compiles
are timed apart; the runs of all variants are interleaved and the median of
the repeats is reported, with the load average, since the machine may be shared.

    python benchmarks/sweep.py [--repeats 3] [--sizes 8 64] [--steps 300]    # N = 8 and 64 by default
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
from jgd.experiment.train.data import load_dataset

BATCH, WIDTHS = 128, (128, 128, 10)


class MLP(nn.Module):
    widths: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        for w in self.widths[:-1]:
            x = nn.relu(nn.Dense(w)(x))
        return nn.Dense(self.widths[-1])(x)


def batches(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` batches of ``BATCH`` digits, each epoch a fresh permutation of the training split."""
    data = load_dataset("digits")
    rng = np.random.default_rng(0)
    epochs = -(-steps * BATCH // len(data.x_train))
    order = np.concatenate([rng.permutation(len(data.x_train)) for _ in range(epochs)])[: steps * BATCH]
    return data.x_train[order].reshape(steps, BATCH, -1), data.y_train[order].reshape(steps, BATCH)


def make_step(model: nn.Module, tx, apply_updates: Callable) -> Callable:
    """``step((params, opt_state), (x, y)) -> ((params, opt_state), loss)``: one update of ``tx``."""

    def loss(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(params, x), y).mean()

    def step(carry, batch):
        params, opt_state = carry
        value, grads = jax.value_and_grad(loss)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (apply_updates(params, updates), opt_state), value

    return step


def compile_variant(kind: str, step: Callable, state_with: Callable, lrs: np.ndarray, params, xs, ys) -> Callable:
    """A function running all ``lrs`` the way ``kind`` says, returning their losses ``[N, steps]``; compiled here."""

    def train(params, opt_state, xs, ys):
        return jax.lax.scan(step, (params, opt_state), (xs, ys))[1]

    if kind == "vmapped":
        fn = jax.jit(jax.vmap(lambda lr, p, x, y: train(p, state_with(lr), x, y), (0, None, None, None)))
        fn = fn.lower(jnp.asarray(lrs), params, xs, ys).compile()
        return lambda: np.asarray(fn(jnp.asarray(lrs), params, xs, ys))
    if kind == "one-by-one, jitted run":
        fn = jax.jit(train).lower(params, state_with(float(lrs[0])), xs, ys).compile()
        return lambda: np.stack([np.asarray(fn(params, state_with(float(lr)), xs, ys)) for lr in lrs])
    # A jitted step called from a Python loop, the batch picked inside so each step is one dispatch.
    fn = jax.jit(lambda carry, xs, ys, i: step(carry, (xs[i], ys[i])))
    fn = fn.lower((params, state_with(float(lrs[0]))), xs, ys, 0).compile()

    def run(lr):
        carry, losses = (params, state_with(lr)), []
        for i in range(len(xs)):
            carry, value = fn(carry, xs, ys, i)
            losses.append(value)
        return np.asarray(jnp.stack(losses))

    return lambda: np.stack([run(float(lr)) for lr in lrs])


KINDS = ("vmapped", "one-by-one, jitted run", "one-by-one, jitted step")


def measure(n: int, repeats: int, model: nn.Module, params, xs, ys) -> dict[str, dict[str, float]]:
    """Times every library and kind on ``n`` learning rates; their runs interleaved, medians of ``repeats``."""
    lrs = np.logspace(-4, -1, n).astype(np.float32)
    jgd_tx = jgd.adam(1e-3)
    jgd_state = jgd_tx.init(params)
    optax_tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
    optax_state = optax_tx.init(params)

    def optax_with(lr):
        lr = jnp.asarray(lr, optax_state.hyperparams["learning_rate"].dtype)
        return optax_state._replace(hyperparams={**optax_state.hyperparams, "learning_rate": lr})

    libraries = {
        "jgd": (
            make_step(model, jgd_tx, jgd.apply_updates),
            lambda lr: jgd.set_hyperparams(jgd_state, learning_rate=lr),
        ),
        "optax": (make_step(model, optax_tx, optax.apply_updates), optax_with),
    }
    runs = {}
    for library, (step, state_with) in libraries.items():
        for kind in KINDS:
            started = time.perf_counter()
            call = compile_variant(kind, step, state_with, lrs, params, xs, ys)
            runs[library, kind] = {"call": call, "compile_s": time.perf_counter() - started, "losses": call()}
            runs[library, kind]["times"] = []
    for _ in range(repeats):
        for run in runs.values():
            started = time.perf_counter()
            run["call"]()
            run["times"].append(time.perf_counter() - started)
    calm = lrs <= 1e-2
    reference = runs["jgd", "one-by-one, jitted run"]["losses"][calm]
    return {
        key: {
            "compile_s": run["compile_s"],
            "time_s": float(np.median(run["times"])),
            "loss_diff": float(np.abs(run["losses"][calm] - reference).max()),
        }
        for key, run in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 64], help="the numbers N of learning rates")
    parser.add_argument("--steps", type=int, default=300, help="training steps per setting")
    args = parser.parse_args()
    xs, ys = (jnp.asarray(a) for a in batches(args.steps))
    model = MLP(WIDTHS)
    params = model.init(jax.random.key(0), xs[0])
    load = os.getloadavg()
    print(
        f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].device_kind} ({os.cpu_count()} cores), "
        f"digits MLP 64-{'-'.join(map(str, WIDTHS))}, batch {BATCH}, {args.steps} steps, Adam, "
        f"median of {args.repeats}; load average {load[0]:.1f} at the start\n"
    )
    print("| N | library | variant | time s | ms per setting | ÷ optax vmapped | ÷ its vmapped | compile s | Δ loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        r = measure(n, args.repeats, model, params, xs, ys)
        for (library, kind), m in r.items():
            t = m["time_s"]
            vs_optax, vs_own = t / r["optax", "vmapped"]["time_s"], t / r[library, "vmapped"]["time_s"]
            print(
                f"| {n} | {library} | {kind} | {t:.3f} | {1e3 * t / n:.1f} | {vs_optax:.2f} | {vs_own:.2f} | "
                f"{m['compile_s']:.2f} | {m['loss_diff']:.1e} |"
            )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
