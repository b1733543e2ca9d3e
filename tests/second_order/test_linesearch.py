"""Line searches: the conditions they promise, their bounds and fallbacks, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jgd


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def log_barrier(x):
    """Defined for x > 0 only (NaN outside), minimum at x = 1."""
    return jnp.sum(x - jnp.log(x))


def search(ls, f, x, d, step=1.0, **hyperparams):
    value, grad = jax.value_and_grad(f)(x)
    return ls.search(jax.value_and_grad(f), x, value, grad, d, step, **{**ls.hyperparams, **hyperparams})


def assert_strong_wolfe(f, x, d, result, c1, c2):
    value, grad = jax.value_and_grad(f)(x)
    new_value, new_grad = jax.value_and_grad(f)(x + result.step * d)
    assert bool(result.success)
    assert float(result.step) > 0
    assert new_value <= value + c1 * result.step * (grad @ d)
    assert abs(new_grad @ d) <= c2 * abs(grad @ d)
    # The value and gradient handed back are those at the accepted point (up to rounding, jit vs eager).
    np.testing.assert_allclose(result.value, new_value, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(result.grad, new_grad, rtol=0, atol=1e-10 * float(jnp.linalg.norm(new_grad)))


@pytest.mark.parametrize(
    ("step", "evaluations"),
    [(1e-6, (2, 20)), (1e-4, (1, 1)), (1.0, (2, 20)), (100.0, (2, 20))],
    ids=["bracketing", "accepted", "zoom", "far-zoom"],
)
def test_zoom_meets_strong_wolfe_on_rosenbrock(x64, step, evaluations):
    x = jnp.array([-1.2, 1.0])
    d = -jax.grad(rosenbrock)(x)
    result = search(jgd.zoom_linesearch(), rosenbrock, x, d, step)
    assert_strong_wolfe(rosenbrock, x, d, result, 1e-4, 0.9)
    assert evaluations[0] <= int(result.nfev) <= evaluations[1]


@jax.jit
def zoom_on_rosenbrock(x, d, step, c2):
    # c2 and the first step are traced: one compilation serves every example, and they may be data.
    value, grad = jax.value_and_grad(rosenbrock)(x)
    search = jgd.zoom_linesearch(max_steps=40).search
    return search(jax.value_and_grad(rosenbrock), x, value, grad, d, step, c1=1e-4, c2=c2)


@settings(max_examples=25, deadline=None)
@given(
    start=st.lists(st.floats(-2, 2), min_size=4, max_size=4),
    log_step=st.floats(-5, 4),
    c2=st.floats(0.05, 0.95),
)
def test_zoom_meets_strong_wolfe_property(start, log_step, c2):
    with jax.enable_x64(True):
        x = jnp.asarray(start)
        d = -jax.grad(rosenbrock)(x)
        if float(jnp.linalg.norm(d)) < 1e-8:
            return
        result = zoom_on_rosenbrock(x, d, jnp.asarray(10.0**log_step), jnp.asarray(c2))
        assert_strong_wolfe(rosenbrock, x, d, result, 1e-4, c2)


def test_zoom_accepts_newton_step_with_one_evaluation(x64):
    a = jnp.array([[3.0, 1.0], [1.0, 2.0]])

    def quadratic(x):
        return 0.5 * x @ a @ x

    x = jnp.array([1.0, -2.0])
    newton = -jnp.linalg.solve(a, a @ x)
    result = search(jgd.zoom_linesearch(), quadratic, x, newton)
    assert int(result.nfev) == 1
    assert float(result.step) == 1.0


def test_zoom_interpolation_is_exact_on_a_quadratic(x64):
    # Overshooting 4× the exact minimizer: the quadratic interpolation lands on it.
    def quadratic(x):
        return 0.5 * jnp.sum(x**2)

    x = jnp.array([1.0, 2.0])
    result = search(jgd.zoom_linesearch(c1=1e-8, c2=1e-6), quadratic, x, -x, 4.0)
    np.testing.assert_allclose(result.step, 1.0, rtol=1e-12)
    assert int(result.nfev) == 2


@pytest.mark.parametrize(
    "ls", [jgd.zoom_linesearch(max_steps=7), jgd.backtracking_linesearch(max_steps=7)], ids=["zoom", "backtracking"]
)
def test_ascent_direction_falls_back_to_no_step(x64, ls):
    x = jnp.array([-1.2, 1.0])
    value, grad = jax.value_and_grad(rosenbrock)(x)
    result = search(ls, rosenbrock, x, grad)  # uphill: no step decreases f
    assert not bool(result.success)
    assert float(result.step) == 0.0
    assert int(result.nfev) == 7
    assert float(result.value) == float(value)
    np.testing.assert_array_equal(result.grad, grad)


def test_zoom_out_of_steps_keeps_the_best_decrease(x64):
    # One evaluation at a tiny step: sufficient decrease but not the curvature condition.
    x = jnp.array([-1.2, 1.0])
    d = -jax.grad(rosenbrock)(x)
    result = search(jgd.zoom_linesearch(max_steps=1), rosenbrock, x, d, 1e-6)
    assert not bool(result.success)
    assert float(result.step) == 1e-6
    assert float(result.value) < float(rosenbrock(x))


@pytest.mark.parametrize("ls", [jgd.zoom_linesearch(), jgd.backtracking_linesearch()], ids=["zoom", "backtracking"])
def test_steps_out_of_the_domain_are_shortened(x64, ls):
    x = jnp.array([2.0, 3.0])
    d = -jax.grad(log_barrier)(x)
    result = search(ls, log_barrier, x, d, 100.0)  # x + 100 d is far outside x > 0
    assert bool(result.success)
    assert np.all(np.isfinite(np.asarray(result.grad)))
    assert float(result.value) < float(log_barrier(x))


def test_backtracking_takes_the_first_armijo_step(x64):
    x = jnp.array([-1.2, 1.0])
    value, grad = jax.value_and_grad(rosenbrock)(x)
    d = -grad
    result = search(jgd.backtracking_linesearch(c1=1e-4, shrink=0.5), rosenbrock, x, d, 1.0)
    k = int(result.nfev) - 1
    assert float(result.step) == 0.5**k
    assert rosenbrock(x + result.step * d) <= value + 1e-4 * result.step * (grad @ d)
    previous = 2 * result.step
    assert rosenbrock(x + previous * d) > value + 1e-4 * previous * (grad @ d)
    np.testing.assert_allclose(result.grad, jax.grad(rosenbrock)(x + result.step * d))


def test_float32_search():
    x = jnp.array([-1.2, 1.0], jnp.float32)
    d = -jax.grad(rosenbrock)(x)
    for ls in (jgd.zoom_linesearch(), jgd.backtracking_linesearch()):
        result = search(ls, rosenbrock, x, d, 1.0)
        assert result.step.dtype == jnp.float32 and result.grad.dtype == jnp.float32
        assert bool(result.success)


def test_vmap_over_points_and_c1_equals_loop(x64):
    ls = jgd.zoom_linesearch()
    points = jnp.asarray(np.random.default_rng(0).uniform(-2, 2, size=(8, 2)))
    c1s = jnp.linspace(1e-4, 0.4, 8)

    def one(x, c1):
        d = -jax.grad(rosenbrock)(x)
        return search(ls, rosenbrock, x, d, 1.0, c1=c1)

    batch = jax.jit(jax.vmap(one))(points, c1s)
    single_jit = jax.jit(one)
    for i in range(8):
        single = single_jit(points[i], c1s[i])
        for got, want in zip(batch, single):
            np.testing.assert_allclose(got[i], want, rtol=1e-12)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: jgd.zoom_linesearch(c1=0.0), "c1"),
        (lambda: jgd.zoom_linesearch(c1=1.0), "c1"),
        (lambda: jgd.zoom_linesearch(c2=1.5), "c2"),
        (lambda: jgd.zoom_linesearch(c1=0.5, c2=0.4), "c1"),
        (lambda: jgd.zoom_linesearch(c2=jnp.ones(3) * 0.5), "c2"),
        (lambda: jgd.zoom_linesearch(max_steps=0), "max_steps"),
        (lambda: jgd.zoom_linesearch(max_steps=2.5), "max_steps"),
        (lambda: jgd.backtracking_linesearch(c1=-1.0), "c1"),
        (lambda: jgd.backtracking_linesearch(shrink=1.0), "shrink"),
        (lambda: jgd.backtracking_linesearch(shrink=0.0), "shrink"),
        (lambda: jgd.backtracking_linesearch(max_steps=True), "max_steps"),
    ],
)
def test_invalid_hyperparameters_raise(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_traced_hyperparameters_are_accepted():
    jax.jit(lambda c1: jgd.zoom_linesearch(c1=c1, c2=0.5).hyperparams["c1"])(0.7)  # not checked when traced
