"""BFGS, L-BFGS and minimize: against scipy and optax, their safeguards, pytrees, jit and vmap."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
import pytest
import scipy.optimize
from sklearn.datasets import load_breast_cancer

import jgd
from jgd.second_order.quasi_newton import _two_loop

TOL = 1e-6


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def random_quadratic(n, condition, seed):
    """``½ (x - c)ᵀ A (x - c)`` with A's eigenvalues spread log-evenly over [1, condition]."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.logspace(0, np.log10(condition), n)) @ q.T
    a, c = (a + a.T) / 2, rng.normal(size=n)  # NumPy: traced in the precision of x
    return lambda x: 0.5 * (x - c) @ (a @ (x - c))


@functools.cache
def breast_cancer():
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    return np.hstack([x, np.ones((len(x), 1))]), y.astype(float)


def logistic_regression(w):
    """Summed log-loss plus ``½‖w‖²`` (scikit-learn's objective with C = 1, intercept penalized too)."""
    x, y = (jnp.asarray(a) for a in breast_cancer())
    z = x @ w
    return jnp.sum(jnp.logaddexp(0.0, z) - y * z) + 0.5 * w @ w


QUADRATIC = random_quadratic(50, 1e4, seed=0)
PROBLEMS = {
    "rosenbrock-2": (rosenbrock, lambda: np.array([-1.2, 1.0])),
    "rosenbrock-100": (rosenbrock, lambda: np.tile([-1.2, 1.0], 50)),
    "quadratic-cond-1e4": (QUADRATIC, lambda: np.zeros(50)),
    "logistic-breast-cancer": (logistic_regression, lambda: np.zeros(31)),
}


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize(("method", "scipy_method"), [("lbfgs", "L-BFGS-B"), ("bfgs", "BFGS")])
def test_converges_to_scipy_solution_in_comparable_iterations(x64, problem, method, scipy_method):
    fun, start = PROBLEMS[problem]
    value_and_grad = jax.jit(jax.value_and_grad(fun))
    # L-BFGS-B would stop on a small relative decrease of f: ftol=0 leaves only the gradient test.
    options = {"gtol": TOL, "ftol": 0.0} if scipy_method == "L-BFGS-B" else {"gtol": TOL, "norm": 2}
    reference = scipy.optimize.minimize(
        lambda x: tuple(np.asarray(v) for v in value_and_grad(x)),
        start(),
        jac=True,
        method=scipy_method,
        options={**options, "maxiter": 10_000},
    )
    result = jgd.minimize(fun, jnp.asarray(start()), method, maxiter=10_000, tol=TOL)
    assert bool(result.success)
    assert float(result.grad_norm) < TOL
    np.testing.assert_allclose(result.grad_norm, jnp.linalg.norm(jax.grad(fun)(result.x)), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(result.fun, fun(result.x), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(result.x, reference.x, atol=1e-5, rtol=0)
    assert int(result.nit) <= 1.5 * reference.nit
    assert int(result.nfev) >= int(result.nit) + 1


@pytest.mark.slow
def test_lbfgs_on_rosenbrock_1000_against_scipy(x64):
    value_and_grad = jax.jit(jax.value_and_grad(rosenbrock))
    x0 = np.tile([-1.2, 1.0], 500)
    reference = scipy.optimize.minimize(
        lambda x: tuple(np.asarray(v) for v in value_and_grad(x)),
        x0,
        jac=True,
        method="L-BFGS-B",
        options={"gtol": TOL, "ftol": 0.0, "maxiter": 20_000},
    )
    result = jgd.minimize(rosenbrock, jnp.asarray(x0), "lbfgs", maxiter=20_000, tol=TOL)
    assert bool(result.success)
    np.testing.assert_allclose(result.x, reference.x, atol=1e-5, rtol=0)
    assert int(result.nit) <= 1.5 * reference.nit


@pytest.mark.parametrize("n", [5, 10, 20])
def test_bfgs_ends_in_n_plus_2_iterations_on_a_quadratic(x64, n):
    # With exact line searches the Broyden class, BFGS included, minimizes a strongly convex quadratic
    # in at most n steps (Nocedal & Wright, 2nd ed., §6.3). The zoom's interpolation is exact on a
    # quadratic, so a tight curvature condition makes it an exact line search; the +2 is for rounding.
    tx = jgd.bfgs(jgd.zoom_linesearch(c2=0.01))
    rng = np.random.default_rng(n)
    matrices, centers = [], []
    for condition in (10.0, 1e3):
        for _ in range(3):
            q, _ = np.linalg.qr(rng.normal(size=(n, n)))
            matrices.append(q @ np.diag(np.logspace(0, np.log10(condition), n)) @ q.T)
            centers.append(rng.normal(size=n))

    def solve(a, c):
        return jgd.minimize(lambda x: 0.5 * (x - c) @ (a @ (x - c)), jnp.zeros(n), tx, tol=TOL)

    results = jax.vmap(solve)(jnp.asarray(matrices), jnp.asarray(centers))
    assert bool(jnp.all(results.success))
    assert int(jnp.max(results.nit)) <= n + 2


def optax_zoom_as_jgd():
    """optax's lbfgs with the line-search settings of jgd's zoom: Armijo without its approximate
    (Hager-Zhang) variant, no stop on a short interval, 20 evaluations, a first trial of 1."""
    linesearch = optax.scale_by_zoom_linesearch(
        max_linesearch_steps=20, initial_guess_strategy="one", approx_dec_rtol=None, stepsize_precision=0.0
    )
    return optax.lbfgs(memory_size=10, linesearch=linesearch)


def trajectory(tx, fun, x0, steps):
    value_and_grad = jax.value_and_grad(fun)

    @jax.jit
    def step(x, state):
        value, grad = value_and_grad(x)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(x, updates), state

    xs, state = [x0], tx.init(x0)
    for _ in range(steps):
        x, state = step(xs[-1], state)
        xs.append(x)
    return np.array(xs)


@pytest.mark.parametrize(
    ("fun", "x0", "steps"),
    [(rosenbrock, [-1.2, 1.0], 40), (logistic_regression, [0.0] * 31, 25)],
    ids=["rosenbrock-2", "logistic-breast-cancer"],
)
def test_lbfgs_iterates_match_optax(x64, fun, x0, steps):
    x0 = jnp.asarray(x0)
    ours = trajectory(jgd.lbfgs(), fun, x0, steps)
    theirs = trajectory(optax_zoom_as_jgd(), fun, x0, steps)
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)


def test_minimize_matches_optax_lbfgs_on_rosenbrock_100(x64):
    opt = optax_zoom_as_jgd()
    value_and_grad = optax.value_and_grad_from_state(rosenbrock)

    @jax.jit
    def run(x0):
        def step(carry):
            x, state = carry
            value, grad = value_and_grad(x, state=state)
            updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=rosenbrock)
            return optax.apply_updates(x, updates), state

        def going(carry):
            count = otu.tree_get(carry[1], "count")
            return (count == 0) | ((count < 5000) & (otu.tree_norm(otu.tree_get(carry[1], "grad")) > TOL))

        return jax.lax.while_loop(going, step, (x0, opt.init(x0)))

    x0 = jnp.tile(jnp.array([-1.2, 1.0]), 50)
    x, state = run(x0)
    result = jgd.minimize(rosenbrock, x0, "lbfgs", maxiter=5000, tol=TOL)
    np.testing.assert_allclose(result.x, x, atol=1e-6, rtol=0)
    # The iterates agree to rounding, which 100-D Rosenbrock amplifies midway: the counts differ a little.
    assert abs(int(result.nit) - int(otu.tree_get(state, "count"))) <= 0.02 * int(result.nit)


@pytest.mark.slow
def test_minimize_accepts_optax_lbfgs_as_method(x64):
    x0 = jnp.zeros(31)
    ours = jgd.minimize(logistic_regression, x0, "lbfgs")
    theirs = jgd.minimize(logistic_regression, x0, optax_zoom_as_jgd())
    np.testing.assert_allclose(ours.x, theirs.x, atol=1e-6, rtol=0)
    assert int(ours.nit) == int(theirs.nit)
    assert bool(theirs.success)


@pytest.mark.parametrize("method", ["lbfgs", "bfgs"])
def test_vmap_over_16_starts_equals_loop(x64, method):
    starts = jnp.asarray(np.random.default_rng(1).uniform(-2, 2, size=(16, 2)))
    batch = jax.vmap(lambda x0: jgd.minimize(rosenbrock, x0, method))(starts)
    for i, x0 in enumerate(starts):
        single = jgd.minimize(rosenbrock, x0, method)
        np.testing.assert_allclose(batch.x[i], single.x, atol=1e-8, rtol=0)
        np.testing.assert_allclose(batch.fun[i], single.fun, atol=1e-14, rtol=1e-6)
        assert int(batch.nit[i]) == int(single.nit)
        assert int(batch.nfev[i]) == int(single.nfev)
        assert bool(batch.success[i])


@pytest.mark.parametrize("method", ["lbfgs", pytest.param("bfgs", marks=pytest.mark.slow)])
def test_jit_equals_no_jit(x64, method):
    fun = random_quadratic(3, 30.0, seed=3)
    with jax.disable_jit():
        eager = jgd.minimize(fun, jnp.zeros(3), method)
    compiled = jgd.minimize(fun, jnp.zeros(3), method)
    for got, want in zip(eager, compiled):
        np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), atol=1e-12, rtol=1e-10)
    assert bool(compiled.success) and int(compiled.nit) > 3


@pytest.mark.slow
def test_update_jit_equals_no_jit(x64):
    tx, x0 = jgd.lbfgs(memory_size=3), jnp.array([-1.2, 1.0])
    with jax.disable_jit():
        eager = trajectory(tx, rosenbrock, x0, 6)
    np.testing.assert_allclose(eager, trajectory(tx, rosenbrock, x0, 6), atol=1e-12, rtol=0)


def test_minimize_on_a_pytree_equals_flat(x64):
    def tree_fun(p):
        return rosenbrock(jnp.concatenate([p["a"], p["b"].ravel()]))

    x0 = np.tile([-1.2, 1.0], 4)
    tree = jgd.minimize(tree_fun, {"a": jnp.asarray(x0[:2]), "b": jnp.asarray(x0[2:]).reshape(2, 3)})
    flat = jgd.minimize(rosenbrock, jnp.asarray(x0))
    assert tree.x["b"].shape == (2, 3)
    np.testing.assert_allclose(jnp.concatenate([tree.x["a"], tree.x["b"].ravel()]), flat.x, atol=1e-12)
    assert int(tree.nit) == int(flat.nit)


def test_pytree_with_mixed_dtypes_keeps_them():
    def fun(p):
        return jnp.sum((p["w"].astype(jnp.float32) - 1.0) ** 2) + jnp.sum((p["b"] + 2.0) ** 2)

    params = {"w": jnp.zeros(3, jnp.bfloat16), "b": jnp.zeros(2, jnp.float32)}
    tx = jgd.lbfgs()
    state = tx.init(params)
    value, grad = jax.value_and_grad(fun)(params)
    updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    assert updates["w"].dtype == jnp.bfloat16 and updates["b"].dtype == jnp.float32
    assert state.grad["w"].dtype == jnp.bfloat16
    assert float(fun(jgd.apply_updates(params, updates))) < float(value)


@pytest.mark.parametrize("make", [jgd.bfgs, jgd.lbfgs])
def test_zero_gradient_at_the_optimum_gives_no_nan(make):
    def fun(x):
        return jnp.sum((x - 1.0) ** 2)

    tx, x = make(), jnp.ones(3)
    state = tx.init(x)
    value, grad = jax.value_and_grad(fun)(x)
    updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=fun)
    np.testing.assert_array_equal(updates, jnp.zeros(3))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(state))
    assert int(state.memory.pair_count) == 0

    result = jgd.minimize(fun, x, make())
    assert int(result.nit) == 0 and bool(result.success) and int(result.nfev) == 1


@pytest.mark.parametrize("make", [jgd.bfgs, jgd.lbfgs])
def test_negative_curvature_pair_is_skipped(x64, make):
    # On the concave part of cos, an Armijo step gives sᵀy < 0: the update must be skipped.
    def fun(x):
        return jnp.sum(jnp.cos(x))

    tx = make(linesearch=jgd.backtracking_linesearch())
    x = jnp.array([0.3, -0.2])
    state = tx.init(x)
    value, grad = jax.value_and_grad(fun)(x)
    updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=fun)
    s, y = updates, state.grad - grad
    assert float(s @ y) < 0
    assert int(state.memory.pair_count) == 0
    assert float(fun(x + updates)) < float(value)
    fresh = make().init(x).memory
    for got, want in zip(state.memory, fresh):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("make", [jgd.bfgs, jgd.lbfgs])
def test_non_descent_updates_fall_back_to_steepest_descent(x64, make):
    # Updates pointing uphill (as an upstream transform might produce) give d = -H u with ∇fᵀd > 0.
    tx, x = make(), jnp.array([-1.2, 1.0])
    value, grad = jax.value_and_grad(rosenbrock)(x)
    updates, state = tx.update(-grad, tx.init(x), x, value=value, grad=grad, value_fn=rosenbrock)
    assert float(grad @ updates) < 0
    np.testing.assert_allclose(updates / jnp.linalg.norm(updates), -grad / jnp.linalg.norm(grad), rtol=1e-12)
    assert float(state.value) < float(value) and bool(state.linesearch_ok)


def history(tx, fun, x, count):
    """The points, gradients and states of ``count`` updates, starting with the initial ones."""

    @jax.jit
    def step(x, value, grad, state):
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=fun)
        return x + updates, state.value, state.grad, state

    value, grad = jax.value_and_grad(fun)(x)
    out = [(x, grad, tx.init(x))]
    for _ in range(count):
        x, value, grad, state = step(x, value, grad, out[-1][2])
        out.append((x, grad, state))
    return out


def test_two_loop_equals_the_explicit_inverse(x64):
    # N&W eq. 7.19: H = (V_{k-1}ᵀ ⋯ V_{k-m}ᵀ) γI (V_{k-m} ⋯ V_{k-1}) + ..., built by the recursion
    # H ← Vᵀ H V + ρ s sᵀ from the oldest stored pair to the newest; V = I - ρ y sᵀ.
    m, n = 4, 6
    points = history(jgd.lbfgs(memory_size=m), random_quadratic(n, 100.0, seed=2), jnp.zeros(n), 9)
    _, grad, state = points[-1]
    memory = state.memory
    assert int(memory.pair_count) == 9
    # The newest pair sits in slot 8 % m; γ and ρ come from the pairs (eq. 7.20).
    s, y = points[-1][0] - points[-2][0], points[-1][1] - points[-2][1]
    np.testing.assert_allclose(memory.s[8 % m], s, rtol=1e-12)
    np.testing.assert_allclose(memory.gamma, (s @ y) / (y @ y), rtol=1e-12)
    np.testing.assert_allclose(memory.rho, 1 / jnp.sum(memory.s * memory.y, axis=1), rtol=1e-12)
    h = float(memory.gamma) * np.eye(n)
    for i in range(int(memory.pair_count) - m, int(memory.pair_count)):
        s, y, rho = (np.asarray(a[i % m]) for a in (memory.s, memory.y, memory.rho))
        v = np.eye(n) - rho * np.outer(y, s)
        h = v.T @ h @ v + rho * np.outer(s, s)
    np.testing.assert_allclose(_two_loop(memory, grad), h @ np.asarray(grad), rtol=1e-10)


@pytest.mark.parametrize("initial_scaling", [False, True])
def test_bfgs_update_formula_and_secant_equation(x64, initial_scaling):
    fun = random_quadratic(5, 50.0, seed=5)
    tx = jgd.bfgs(initial_scaling=initial_scaling)
    points = history(tx, fun, jnp.zeros(5), 5)
    (x0, g0, _), (x1, g1, state) = points[:2]
    s, y = x1 - x0, g1 - g0
    rho = 1 / (s @ y)
    h0 = (s @ y) / (y @ y) * np.eye(5) if initial_scaling else np.eye(5)
    v = np.eye(5) - rho * np.outer(y, s)
    np.testing.assert_allclose(state.memory.inverse_hessian, v.T @ h0 @ v + rho * np.outer(s, s), rtol=1e-10)
    # The secant equation H_{k+1} y_k = s_k holds after every update.
    for (x, grad, _), (x_next, grad_next, state) in itertools.pairwise(points[1:]):
        np.testing.assert_allclose(state.memory.inverse_hessian @ (grad_next - grad), x_next - x, rtol=1e-8)


def test_hyperparameters_live_in_the_state(x64):
    tx = jgd.lbfgs(linesearch=jgd.zoom_linesearch(c1=1e-3, c2=0.8))
    x = jnp.array([-1.2, 1.0])
    state = tx.init(x)
    assert {k: float(v) for k, v in jgd.hyperparams(state).items()} == {"c1": 1e-3, "c2": 0.8}

    @jax.jit
    def step(x, state):
        value, grad = jax.value_and_grad(rosenbrock)(x)
        return tx.update(grad, state, x, value=value, grad=grad, value_fn=rosenbrock)

    loose, _ = step(x, state)
    tight, _ = step(x, jgd.set_hyperparams(state, c2=0.01))
    assert step._cache_size() == 1  # changing c2 did not recompile
    assert not np.allclose(loose, tight)
    with pytest.raises(ValueError, match="c3"):
        jgd.set_hyperparams(state, c3=0.1)


def test_scheduled_hyperparameter(x64):
    # c2 tightens from 0.9 to 0.1 over the first steps; the state reports the value its last step used,
    # c2(2) after 3 steps (counted from 0), as every jgd transform and optax's inject_hyperparams do.
    tx = jgd.lbfgs(linesearch=jgd.zoom_linesearch(c1=1e-4, c2=lambda t: jnp.maximum(0.1, 0.9 - 0.2 * t)))
    *_, state = history(tx, rosenbrock, jnp.array([-1.2, 1.0]), 3)[-1]
    np.testing.assert_allclose(jgd.hyperparams(state)["c2"], 0.5)
    result = jgd.minimize(rosenbrock, jnp.array([-1.2, 1.0]), tx)
    assert bool(result.success)


def test_vmap_over_c1_through_the_constructor(x64):
    def run(c1):
        tx = jgd.lbfgs(linesearch=jgd.backtracking_linesearch(c1=c1))
        return jgd.minimize(rosenbrock, jnp.array([-1.2, 1.0]), tx, maxiter=200).nit

    c1s = jnp.array([1e-4, 0.3])
    single = jax.jit(run)  # c1 traced here too: one compilation for both values
    np.testing.assert_array_equal(jax.vmap(run)(c1s), [single(c) for c in c1s])


def test_first_order_transform_in_minimize(x64):
    fun = random_quadratic(3, 4.0, seed=6)
    result = jgd.minimize(fun, jnp.zeros(3), jgd.sgd(0.2), maxiter=2000, tol=1e-8)
    assert bool(result.success)
    assert int(result.nfev) == int(result.nit) + 1
    assert jgd.minimize(fun, jnp.zeros(3), jgd.adam(0.05), maxiter=5000, tol=1e-6).success


def test_lbfgs_inside_a_chain(x64):
    tx = jgd.chain(jgd.lbfgs())
    result = jgd.minimize(rosenbrock, jnp.array([-1.2, 1.0]), tx)
    assert bool(result.success)
    np.testing.assert_allclose(result.x, jgd.minimize(rosenbrock, jnp.array([-1.2, 1.0])).x, atol=1e-12)


@pytest.mark.parametrize("wrap", [lambda tx: tx, jgd.chain], ids=["alone", "in-chain"])
def test_python_loop_with_value_and_grad_from_state_equals_minimize(x64, wrap):
    """The README's loop: a donated, jitted step called from Python, f and ∇f read from the state."""
    tx, fun = wrap(jgd.lbfgs()), jgd.value_and_grad_from_state(rosenbrock)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(x, state):
        value, grad = fun(x, state)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=rosenbrock)
        return jgd.apply_updates(x, updates), state

    x = jnp.array([-1.2, 1.0, -1.2, 1.0])
    expected = jgd.minimize(rosenbrock, x, maxiter=20)
    state = tx.init(x)
    for _ in range(20):
        x, state = step(x, state)
    np.testing.assert_allclose(x, expected.x, rtol=1e-12)
    value, grad = fun(x, state)
    np.testing.assert_allclose(value, rosenbrock(x), rtol=1e-14)
    np.testing.assert_allclose(grad, jax.grad(rosenbrock)(x), rtol=1e-12)


def test_value_and_grad_from_state_needs_a_quasi_newton_state():
    fun = jgd.value_and_grad_from_state(rosenbrock)
    x = jnp.array([-1.2, 1.0])
    with pytest.raises(ValueError, match="QuasiNewtonState"):
        fun(x, jgd.adam(0.1).init(x))


def test_maxiter_and_tol_are_data(x64):
    x0 = jnp.array([-1.2, 1.0])
    short = jgd.minimize(rosenbrock, x0, maxiter=5)
    assert int(short.nit) == 5 and not bool(short.success)
    loose = jgd.minimize(rosenbrock, x0, tol=1e-2)
    assert bool(loose.success) and float(loose.grad_norm) <= 1e-2
    results = jax.vmap(lambda tol: jgd.minimize(rosenbrock, x0, tol=tol))(jnp.array([1e-2, 1e-8]))
    assert int(results.nit[0]) < int(results.nit[1])


def test_float32_minimize():
    result = jgd.minimize(rosenbrock, jnp.array([-1.2, 1.0], jnp.float32), tol=1e-3)
    assert result.x.dtype == jnp.float32
    assert bool(result.success)
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-2)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: jgd.lbfgs(memory_size=0), "memory_size"),
        (lambda: jgd.lbfgs(memory_size=-2), "memory_size"),
        (lambda: jgd.lbfgs(memory_size=2.5), "memory_size"),
        (lambda: jgd.lbfgs(memory_size=True), "memory_size"),
        (lambda: jgd.bfgs(linesearch="zoom"), "linesearch"),
        (lambda: jgd.minimize(rosenbrock, jnp.zeros(2), "newton"), "method"),
        (lambda: jgd.minimize(rosenbrock, jnp.zeros(2), 3), "method"),
        (lambda: jgd.minimize(rosenbrock, jnp.zeros(2), maxiter=0), "maxiter"),
        (lambda: jgd.minimize(rosenbrock, jnp.zeros(2), maxiter=10.0), "maxiter"),
        (lambda: jgd.minimize(rosenbrock, jnp.zeros(2), maxiter=True), "maxiter"),
        (lambda: jgd.minimize(rosenbrock, jnp.zeros(2), tol=-1.0), "tol"),
        (lambda: jgd.minimize(rosenbrock, jnp.zeros(2, jnp.int32)), "x0"),
    ],
)
def test_bad_input_raises(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("make", [jgd.bfgs, jgd.lbfgs])
def test_update_needs_the_objective_and_params(make):
    tx, x = make(), jnp.ones(2)
    state = tx.init(x)
    with pytest.raises(ValueError, match="value_fn"):
        tx.update(x, state, x)
    with pytest.raises(ValueError, match="params"):
        tx.update(x, state, value_fn=rosenbrock)


def test_full_batch_flax_linen_training_with_lbfgs():
    import flax.linen as nn
    from sklearn.datasets import load_digits

    inputs, labels = load_digits(return_X_y=True)
    inputs, labels = jnp.asarray(inputs[:600] / 16.0, jnp.float32), jnp.asarray(labels[:600])

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(10)(nn.tanh(nn.Dense(32)(x)))

    model = MLP()
    params = model.init(jax.random.key(0), inputs[:1])

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, inputs), labels).mean()

    tx = jgd.lbfgs()

    @jax.jit
    def step(params, state):
        value, grad = jax.value_and_grad(loss)(params)
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return jgd.apply_updates(params, updates), state

    initial, state = float(loss(params)), tx.init(params)
    for _ in range(25):
        params, state = step(params, state)
    accuracy = float(jnp.mean(model.apply(params, inputs).argmax(-1) == labels))
    assert float(loss(params)) < 0.02 * initial
    assert accuracy > 0.98
    assert bool(state.linesearch_ok)


@pytest.mark.slow
def test_flax_nnx_optimizer_with_lbfgs():
    from flax import nnx
    from sklearn.datasets import load_iris

    inputs, labels = load_iris(return_X_y=True)
    inputs = jnp.asarray((inputs - inputs.mean(0)) / inputs.std(0), jnp.float32)
    labels = jnp.asarray(labels)
    model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, jgd.lbfgs(), wrt=nnx.Param)

    def loss(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(inputs), labels).mean()

    @nnx.jit
    def step(model, optimizer):
        graphdef, _, rest = nnx.split(model, nnx.Param, ...)
        value, grad = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grad, value=value, grad=grad, value_fn=lambda p: loss(nnx.merge(graphdef, p, rest)))

    initial = float(loss(model))
    for _ in range(30):
        step(model, optimizer)
    assert float(loss(model)) < 0.2 * initial


def test_minimize_says_why_it_stopped():
    done = jgd.minimize(rosenbrock, jnp.array([-1.2, 1.0]), tol=1e-3)
    assert int(done.status) == 0 and done.message.startswith("converged")
    short = jgd.minimize(rosenbrock, jnp.array([-1.2, 1.0]), maxiter=3, tol=1e-3)
    assert int(short.status) == 1 and "maxiter" in short.message and not bool(short.success)
    blown = jgd.minimize(lambda x: jnp.sum(x**2) * jnp.inf, jnp.ones(2), jgd.sgd(0.1))
    assert int(blown.status) == 2 and "not finite" in blown.message
    batch = jax.vmap(lambda n: jgd.minimize(rosenbrock, jnp.array([-1.2, 1.0]), maxiter=n, tol=1e-3))(
        jnp.asarray([3, 500])
    )
    assert [m.split(":")[0] for m in batch.message] == ["stopped after maxiter iterations", "converged"]


@pytest.mark.parametrize("scale_init_precond", [True, False])
def test_lbfgs_with_a_learning_rate_and_no_line_search_equals_optax(x64, scale_init_precond):
    # A convex quadratic: every curvature pair is accepted, so jgd's guards never differ from optax.
    matrix = jnp.asarray(np.diag(np.linspace(1.0, 4.0, 5)) + 0.1, jnp.float64)

    def fun(x):
        return 0.5 * x @ matrix @ x + jnp.sum(x)

    mine = jgd.lbfgs(3, jgd.unit_step(), learning_rate=0.2, scale_init_precond=scale_init_precond)
    theirs = optax.lbfgs(learning_rate=0.2, memory_size=3, scale_init_precond=scale_init_precond, linesearch=None)

    def path(tx):
        def step(carry, _):
            x, state = carry
            value, grad = jax.value_and_grad(fun)(x)
            updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=fun)
            return (x + updates, state), x + updates

        x = jnp.linspace(-1.0, 1.0, 5)
        return jax.lax.scan(step, (x, tx.init(x)), None, length=15)[1]

    xs = {name: np.asarray(jax.jit(path, static_argnums=0)(tx)) for name, tx in (("jgd", mine), ("optax", theirs))}
    np.testing.assert_allclose(xs["jgd"], xs["optax"], rtol=1e-12, atol=1e-14)
    assert np.abs(xs["jgd"][-1] - xs["jgd"][0]).max() > 1e-2
