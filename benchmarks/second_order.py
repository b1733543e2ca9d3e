"""Second-order methods side by side: jgd.minimize, optax's lbfgs and scipy on Rosenbrock.

Prints one markdown table: wall time to converge (median of repeats, compile reported apart),
iterations and function evaluations, on 2-D, 100-D and 1000-D Rosenbrock from
``(-1.2, 1, -1.2, 1, ...)`` with gradient tolerance 1e-6, in float64. Columns:

- ``jgd lbfgs`` / ``jgd bfgs``: ``jgd.minimize(f, x0, method)``, one jitted ``lax.while_loop``;
- ``optax lbfgs``: ``optax.lbfgs()`` stepped in a jitted ``lax.while_loop`` as in optax's docs,
  reusing the line search's value and gradient (``optax.value_and_grad_from_state``);
- ``jgd lbfgs, Python loop``: a jitted ``jgd.lbfgs`` step (donated buffers, ``f`` and ``∇f`` from
  ``jgd.value_and_grad_from_state``) called from Python each iteration;
- ``scipy L-BFGS-B``: ``scipy.optimize.minimize`` with NumPy's ``rosen``/``rosen_der``,
  ``gtol=1e-6`` and ``ftol=0`` so that it too stops on the gradient.

jgd and optax stop when ``‖∇f‖₂ ≤ 1e-6``; scipy when ``max|∇f| ≤ 1e-6`` (a looser test).
Run: ``python benchmarks/second_order.py [--dims 2 100 1000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import functools
import os

# L-BFGS-B's vector operations are too small to gain from BLAS threads, and idle OpenBLAS threads
# spinning against XLA's thread pool slowed single scipy runs up to 100× on a 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import optax.tree_utils as otu  # noqa: E402
import scipy.optimize  # noqa: E402

import jgd  # noqa: E402

TOL = 1e-6
MAXITER = 20_000


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def start(n: int) -> np.ndarray:
    return np.tile([-1.2, 1.0], n // 2)


def timed(fn, repeats: int, budget: float = 2.0) -> tuple[float, float, object]:
    """(first call, median of the later calls, last output) in seconds; the first call compiles.

    Short runs are repeated more (up to ``budget`` seconds in all), since a median of a few
    millisecond-long runs is at the mercy of other work on the machine.
    """
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    while len(times) < repeats or (sum(times) < budget and len(times) < 200):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), out


def jgd_minimize(n: int, method: str, repeats: int) -> dict:
    x0 = jnp.asarray(start(n))
    first, run, r = timed(lambda: jgd.minimize(rosenbrock, x0, method, maxiter=MAXITER, tol=TOL), repeats)
    assert bool(r.success), f"jgd {method} did not converge on {n}-D"
    return {"time": run, "compile": first - run, "nit": int(r.nit), "nfev": int(r.nfev)}


def optax_lbfgs(n: int, repeats: int) -> dict:
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(rosenbrock)

    @jax.jit
    def run(x0):
        def step(carry):
            x, state, nfev = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=rosenbrock)
            nfev = nfev + otu.tree_get(state, "info").num_linesearch_steps
            return optax.apply_updates(x, updates), state, nfev

        def going(carry):
            _, state, _ = carry
            count = otu.tree_get(state, "count")
            return (count == 0) | ((count < MAXITER) & (otu.tree_norm(otu.tree_get(state, "grad")) > TOL))

        return jax.lax.while_loop(going, step, (x0, opt.init(x0), 1))

    x0 = jnp.asarray(start(n))
    first, t, (x, state, nfev) = timed(lambda: run(x0), repeats)
    grad_norm = float(otu.tree_norm(jax.grad(rosenbrock)(x)))
    assert grad_norm <= TOL, f"optax lbfgs did not converge on {n}-D: {grad_norm}"
    return {"time": t, "compile": first - t, "nit": int(otu.tree_get(state, "count")), "nfev": int(nfev)}


def jgd_python_loop(n: int, repeats: int) -> dict:
    tx = jgd.lbfgs()
    value_and_grad = jgd.value_and_grad_from_state(rosenbrock)

    # The loop of the README: a jitted step with donated buffers, f and ∇f taken from the state.
    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(x, state):
        value, grad = value_and_grad(x, state)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=rosenbrock)
        return jgd.apply_updates(x, updates), state, jnp.linalg.norm(state.grad)

    def run():
        x = jnp.asarray(start(n))
        state = tx.init(x)
        nit, grad_norm = 0, np.inf
        while grad_norm > TOL and nit < MAXITER:
            x, state, norm = step(x, state)
            nit, grad_norm = nit + 1, float(norm)
        return nit, int(state.nfev) + 1, grad_norm  # + the evaluation before the first step

    first, t, (nit, nfev, grad_norm) = timed(run, repeats)
    assert grad_norm <= TOL
    return {"time": t, "compile": first - t, "nit": nit, "nfev": nfev}


def scipy_lbfgsb(n: int, repeats: int) -> dict:
    def fun(x):
        return scipy.optimize.rosen(x), scipy.optimize.rosen_der(x)

    options = {"gtol": TOL, "ftol": 0.0, "maxiter": MAXITER}
    _, t, r = timed(
        lambda: scipy.optimize.minimize(fun, start(n), jac=True, method="L-BFGS-B", options=options), repeats
    )
    return {"time": t, "compile": 0.0, "nit": r.nit, "nfev": r.nfev}


def fmt(cell: dict | None) -> str:
    if cell is None:
        return "—"
    return f"{cell['time'] * 1e3:.2f} ms / {cell['nit']:,} it / {cell['nfev']:,} ev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 100, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bfgs-max-dim", type=int, default=1000, help="largest dimension run with dense BFGS")
    args = parser.parse_args()

    header = [
        "n",
        "jgd lbfgs",
        "jgd bfgs",
        "optax lbfgs (jit while_loop)",
        "jgd lbfgs, Python loop",
        "scipy L-BFGS-B",
        "jgd/optax",
        "jgd/scipy",
        "Python loop/scipy",
        "compile jgd / optax",
    ]
    print(
        f"jax {jax.__version__}, optax {optax.__version__}, scipy {scipy.__version__}, {jax.devices()[0].platform}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
    )
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n in args.dims:
        repeats = args.repeats if n < 1000 else max(1, args.repeats // 2)  # scipy needs seconds at 1000-D
        ours = jgd_minimize(n, "lbfgs", repeats)
        dense = jgd_minimize(n, "bfgs", repeats) if n <= args.bfgs_max_dim else None
        ref = optax_lbfgs(n, repeats)
        loop = jgd_python_loop(n, repeats)
        sp = scipy_lbfgsb(n, repeats)
        row = [
            str(n),
            fmt(ours),
            fmt(dense),
            fmt(ref),
            fmt(loop),
            fmt(sp),
            f"{ours['time'] / ref['time']:.2f}×",
            f"{ours['time'] / sp['time']:.2f}×",
            f"{loop['time'] / sp['time']:.2f}×",
            f"{ours['compile']:.2f} s / {ref['compile']:.2f} s",
        ]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
