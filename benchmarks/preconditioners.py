"""Methods against AdamW on three small problems: steps to AdamW's loss, time per step, state bytes per parameter.

Each method of ``METHODS`` (AdamW first, the baseline) is tuned on each problem by one vmapped sweep: the
learning rates of ``GRID`` train as one ``jax.vmap``-ed, jitted ``lax.scan`` over the same steps budget and the
same batches (jgd's hyperparameters are data, so ``make(lr)`` builds the transform from a traced rate). The
rate with the lowest loss over the last fifth of the budget wins. The target loss is the one tuned AdamW
reaches at 80% of the budget; each method's figure is the first step at which its tuned run is at or under it
(measured every ``eval_every`` steps), as a ratio to AdamW's, or "not reached".

The problems:

- ``least_squares``: a 64×64 weight fitted to ``y = x W*`` from fresh batches of 128 every step; ``x = z D Q``
  with ``z`` standard normal, ``D`` log-spaced so the input covariance has condition number 1e3, and ``Q`` a
  random rotation, so no per-coordinate scaling removes it. The loss is the exact excess risk
  ``½ tr((W - W*)ᵀ Σ (W - W*))``.
- ``digits_mlp``: the MLP of configs/compare_digits.yaml (64-128-10, ReLU) on scikit-learn's digits, batches
  of 32; the loss is the cross-entropy on the whole training split.
- ``digits_conv``: a 3×3 convolution of 8 channels, 2×2 average pooling, a 3×3 convolution of 16, and a dense
  layer, on the same digits as 8×8 images, batches of 64.

The time of a step is that of a jitted scan over ``TIMED_PERIODS`` periods of ``PERIOD`` steps (the
preconditioners refresh every ``PERIOD`` steps), divided by its steps; the methods are timed in turn, repeated,
and the median is reported over AdamW's. State bytes per parameter count every leaf of
``jax.eval_shape(tx.init, params)``.

    python benchmarks/preconditioners.py            # a few minutes on 2 CPU cores
    python benchmarks/preconditioners.py --quick    # a smoke run, under a minute
    python benchmarks/preconditioners.py --problems least_squares --methods adamw soap
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_problems import PROBLEMS, Problem

import jgd
from jgd.experiment.config.optimizers import state_bytes_per_param

# Steps between two refreshes of a preconditioner; a timed call runs TIMED_PERIODS of them, so that a step of a
# small problem is not lost in the call's overhead.
PERIOD = 10
TIMED_PERIODS = 5

# The methods, AdamW first: a jgd factory of the learning rate, with any fixed arguments. Adding a method is a line.
METHODS: dict[str, Callable[[jax.Array], jgd.GradientTransformation]] = {
    "adamw": lambda lr: jgd.adamw(lr),
    "adam": lambda lr: jgd.adam(lr),
    "lion": lambda lr: jgd.lion(lr),
    "muon": lambda lr: jgd.muon(lr),
    # Non-diagonal preconditioners. Shampoo grafted onto Adam's step size, the form usually benchmarked: ungrafted
    # (its default), its best rate of the --quick grid left the least-squares loss at 2.8 after 100 steps.
    "shampoo": lambda lr: jgd.shampoo(lr, precondition_every=PERIOD, graft="adam"),
    "soap": lambda lr: jgd.soap(lr, precondition_frequency=PERIOD),
    # Kron fits its factors with a probability a step: 1 / PERIOD fits every PERIOD-th step (a deterministic counter).
    "kron": lambda lr: jgd.kron(lr, preconditioner_update_probability=1 / PERIOD),
}

# The other first-order methods of configs/compare_digits_frontier.yaml, with their default arguments: run them with
# --methods (e.g. --methods yogi adopt prodigy --problems least_squares). MoMo, MoMo-Adam and Sophia are left out:
# their updates take the loss (value=, obj_fn=), which this benchmark's steps do not pass.
FRONTIER: dict[str, Callable[[jax.Array], jgd.GradientTransformation]] = {
    name: (lambda lr, name=name: getattr(jgd, name)(lr))
    for name in (
        "yogi", "adan", "novograd", "lamb", "radam", "adabelief", "schedule_free_adamw", "adafactor", "adopt",
        "ademamix", "simplified_ademamix", "madgrad", "acprop", "prodigy", "dadapt_adamw", "dog", "dowg", "cocob",
    )
}  # fmt: skip

# Learning rates every method is swept over: half decades from 1e-5 to 1 (--quick: whole decades from 1e-4).
GRID = tuple(10.0 ** np.arange(-5.0, 0.25, 0.5))
QUICK_GRID = tuple(10.0 ** np.arange(-4.0, 0.5, 1.0))


def available(names: list[str] | None = None) -> dict[str, Callable[[jax.Array], jgd.GradientTransformation]]:
    """The methods named (of ``METHODS`` and ``FRONTIER``; default all of ``METHODS``), AdamW first."""
    every = {**METHODS, **FRONTIER}
    chosen = {n: every[n] for n in (names or list(METHODS))}
    chosen = {"adamw": METHODS["adamw"], **chosen}
    return chosen


def _curves(problem: Problem, make: Callable, rates: np.ndarray, steps: int, eval_every: int) -> np.ndarray:
    """The loss every ``eval_every`` steps (and at step 0) of each learning rate: ``[rates, steps // eval_every + 1]``.

    All the rates train as one vmapped, jitted program on the same batches.
    """

    def train(lr, params):
        tx = make(lr)

        def step(carry, t):
            params, state = carry
            grads = jax.grad(problem.loss)(params, problem.batch(t))
            updates, state = tx.update(grads, state, params)
            return (jgd.apply_updates(params, updates), state), None

        def block(carry, k):
            carry, _ = jax.lax.scan(step, carry, k * eval_every + jnp.arange(eval_every))
            return carry, problem.eval_loss(carry[0])

        _, losses = jax.lax.scan(block, (params, tx.init(params)), jnp.arange(steps // eval_every))
        return jnp.concatenate([problem.eval_loss(params)[None], losses])

    # The initial params are an argument, not a constant, so the compiler does not fold the first measurement.
    curves = np.asarray(jax.jit(jax.vmap(train, in_axes=(0, None)))(jnp.asarray(rates, jnp.float32), problem.init))
    return np.where(np.isfinite(curves), curves, np.inf)


def tune(problem: Problem, make: Callable, rates: np.ndarray, steps: int, eval_every: int) -> tuple[float, np.ndarray]:
    """The learning rate of ``rates`` whose loss over the last fifth of the budget is lowest, and its curve."""
    curves = _curves(problem, make, rates, steps, eval_every)
    tail = max(1, curves.shape[1] // 5)
    score = curves[:, -tail:].mean(axis=1)
    best = int(np.argmin(np.where(np.isfinite(score), score, np.inf)))
    return float(rates[best]), curves[best]


def steps_to(curve: np.ndarray, target: float, eval_every: int) -> int | None:
    """The first measured step at which ``curve`` is at or under ``target`` (``None`` if never)."""
    reached = np.flatnonzero(curve <= target)
    return None if reached.size == 0 else int(reached[0]) * eval_every


def _period(problem: Problem, tx: jgd.GradientTransformation) -> Callable:
    """``run(params, state, start)``: ``TIMED_PERIODS × PERIOD`` steps of ``tx`` from step ``start``, jitted."""

    def step(carry, t):
        params, state = carry
        grads = jax.grad(problem.loss)(params, problem.batch(t))
        updates, state = tx.update(grads, state, params)
        return (jgd.apply_updates(params, updates), state), None

    steps = TIMED_PERIODS * PERIOD
    return jax.jit(lambda params, state, start: jax.lax.scan(step, (params, state), start + jnp.arange(steps))[0])


def step_seconds(problem: Problem, transforms: dict[str, jgd.GradientTransformation], repeats: int) -> dict:
    """Median seconds of one step of each transform: a jitted scan of whole periods over its steps, interleaved."""
    runs = {}
    for name, tx in transforms.items():
        run = _period(problem, tx)
        runs[name] = (run, jax.block_until_ready(run(problem.init, tx.init(problem.init), 0)))  # compiles
    times: dict[str, list[float]] = {name: [] for name in transforms}
    for r in range(repeats):
        for name, (run, carry) in runs.items():
            started = time.perf_counter()
            jax.block_until_ready(run(*carry, (r + 1) * TIMED_PERIODS * PERIOD))
            times[name].append((time.perf_counter() - started) / (TIMED_PERIODS * PERIOD))
    return {name: float(np.median(t)) for name, t in times.items()}


def _ratio(value: float | None, baseline: float | None) -> str:
    return "not reached" if value is None or not baseline else f"{value / baseline:.2f}"


def report(problem: Problem, methods: dict, rates: np.ndarray, steps: int, eval_every: int, repeats: int) -> str:
    """The Markdown table of one problem: every method tuned, measured against tuned AdamW."""
    tuned = {name: tune(problem, make, rates, steps, eval_every) for name, make in methods.items()}
    adamw_curve = tuned["adamw"][1]
    target = float(adamw_curve[int(0.8 * steps) // eval_every])
    reached = {name: steps_to(curve, target, eval_every) for name, (_, curve) in tuned.items()}
    transforms = {name: methods[name](jnp.float32(lr)) for name, (lr, _) in tuned.items()}
    seconds = step_seconds(problem, transforms, repeats)
    lines = [
        f"### {problem.name}: {problem.description}",
        "",
        f"{steps} steps, loss measured every {eval_every}; target {target:.4g} (tuned AdamW at 80% of the budget); "
        f"learning rates {rates[0]:.0e} … {rates[-1]:.0e}",
        "",
        "| method | learning rate | final loss | steps to target | ÷ AdamW | step time ÷ AdamW | state bytes/param |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (lr, curve) in tuned.items():
        state_bytes = state_bytes_per_param(transforms[name], problem.init)
        lines.append(
            f"| {name} | {lr:.1e} | {curve[-1]:.4g} | {reached[name] if reached[name] is not None else 'not reached'} "
            f"| {_ratio(reached[name], reached['adamw'])} | {seconds[name] / seconds['adamw']:.2f} "
            f"| {state_bytes:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: short budgets, a coarse grid")
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", choices=[*METHODS, *FRONTIER], default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (default 15, --quick 3)")
    args = parser.parse_args(argv)
    methods = available(args.methods)
    rates = np.asarray(QUICK_GRID if args.quick else GRID)
    repeats = args.repeats or (3 if args.quick else 15)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, load average {os.getloadavg()[0]:.1f}")
    for name in args.problems:
        started = time.perf_counter()
        problem = PROBLEMS[name]()
        steps, eval_every = problem.quick_budget if args.quick else problem.budget
        print()
        print(report(problem, methods, rates, steps, eval_every, repeats))
        print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
