"""A small tree (matrices, a stack of matrices, a vector, a scalar), its loss, and NumPy references from the papers.

Each reference is ``step(params, grads, t, state) -> params`` on dicts of float64 NumPy arrays, ``t`` from 1.
"""

import jax
import jax.numpy as jnp
import numpy as np

_rng = np.random.default_rng(1)
X = _rng.normal(size=(8, 4))
Y = _rng.normal(size=(8, 2))
PARAMS = {
    "w": _rng.normal(size=(4, 6)) * 0.5,
    "stack": _rng.normal(size=(2, 6, 6)) * 0.3,
    "b": _rng.normal(size=(6,)) * 0.1,
    "v": _rng.normal(size=(6, 2)) * 0.5,
    "s": np.asarray(1.3),
}


def loss(p):
    h = jnp.tanh(jnp.asarray(X, p["w"].dtype) @ p["w"] + p["b"])
    h = jnp.tanh(h @ p["stack"][0]) @ p["stack"][1]
    r = p["s"] * (h @ p["v"]) - jnp.asarray(Y, p["w"].dtype)
    return jnp.mean(jnp.log1p(r * r)) + 0.01 * sum(jnp.sum(x * x) for x in jax.tree.leaves(p))


def init(dtype=jnp.float64):
    return {k: jnp.asarray(v, dtype) for k, v in PARAMS.items()}


def trajectory(tx, steps, dtype=jnp.float64, eval_fn=None):
    """The iterates of ``tx`` on :func:`loss` as a list of dicts of float64 arrays; the step is jitted once.

    With ``eval_fn(state, params)``, also the list of the points it gives.
    """

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, updates), state

    params = init(dtype)
    state = tx.init(params)
    out, evaluated = [params], [params]
    for _ in range(steps):
        params, state = step(params, state)
        out.append(params)
        if eval_fn:
            evaluated.append(eval_fn(state, params))
    as_numpy = [{k: np.asarray(v, np.float64) for k, v in p.items()} for p in out]
    return (
        (as_numpy, [{k: np.asarray(v, np.float64) for k, v in p.items()} for p in evaluated]) if eval_fn else as_numpy
    )


def run(step, steps):
    """Iterates a NumPy reference step on :func:`loss`, the gradient taken by JAX in float64."""
    grad = _GRAD
    params, state, out = {k: v.copy() for k, v in PARAMS.items()}, {}, []
    out.append(params)
    for t in range(1, steps + 1):
        g = {k: np.asarray(v) for k, v in grad({k: jnp.asarray(v) for k, v in params.items()}).items()}
        params = step(params, g, t, state)
        out.append(params)
    return out


_GRAD = jax.jit(jax.grad(loss))


def max_relative_difference(got, want):
    """max over steps and leaves of ``|got - want| / max(|want|)`` per leaf."""
    return max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-300)) for a, b in zip(got, want) for k in a)


def _slot(state, name, key, like):
    return state.setdefault(name, {}).setdefault(key, np.zeros_like(like))


def radam(lr, b1, b2, eps, threshold):
    rho_inf = 2 / (1 - b2) - 1

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            g, m, v = grads[k], _slot(state, "m", k, p), _slot(state, "v", k, p)
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            m_hat = m / (1 - b1**t)
            rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
            if rho >= threshold:  # variance tractable: rectified adaptive step
                r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                out[k] = p - lr * r * m_hat / (np.sqrt(v / (1 - b2**t)) + eps)
            else:
                out[k] = p - lr * m_hat
        return out

    return step


def adabelief(lr, b1, b2, eps):
    def step(params, grads, t, state):  # Zhuang et al. Alg. 2, one ε in s_t and one outside the root
        out = {}
        for k, p in params.items():
            g, m, s = grads[k], _slot(state, "m", k, p), _slot(state, "s", k, p)
            m[...] = b1 * m + (1 - b1) * g
            s[...] = b2 * s + (1 - b2) * (g - m) ** 2 + eps
            out[k] = p - lr * (m / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + eps)
        return out

    return step


def lion(lr, b1, b2, wd, decayed):
    def step(params, grads, t, state):  # Chen et al. Program 1
        out = {}
        for k, p in params.items():
            g, m = grads[k], _slot(state, "m", k, p)
            update = np.sign(b1 * m + (1 - b1) * g) + (wd * p if decayed(k) else 0)
            m[...] = b2 * m + (1 - b2) * g
            out[k] = p - lr * update
        return out

    return step


def lamb(lr, b1, b2, eps, wd, decayed):
    def step(params, grads, t, state):  # You et al. 2020 Alg. 2, φ = identity
        out = {}
        for k, p in params.items():
            g, m, v = grads[k], _slot(state, "m", k, p), _slot(state, "v", k, p)
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            r = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + (wd * p if decayed(k) else 0)
            out[k] = p - lr * np.linalg.norm(p) / np.linalg.norm(r) * r
        return out

    return step


def lars(lr, wd, trust, mom, decayed):
    def step(params, grads, t, state):  # You et al. 2017 Alg. 1
        out = {}
        for k, p in params.items():
            g, v = grads[k], _slot(state, "v", k, p)
            beta = wd if decayed(k) else 0.0
            local = trust * np.linalg.norm(p) / (np.linalg.norm(g) + beta * np.linalg.norm(p))
            v[...] = mom * v + lr * local * (g + beta * p)
            out[k] = p - v
        return out

    return step


def adafactor(lr, c, eps1, eps2, d, min_dim):
    """Shazeer & Stern 2018, Alg. 4/5 with sums, factoring the last two axes of a leaf when both are ≥ ``min_dim``."""

    def rms(x):
        return np.sqrt(np.mean(x * x))

    def step(params, grads, t, state):
        beta = 1 - t**-c
        rho = lr if lr is not None else min(1e-2, 1 / np.sqrt(t))
        out = {}
        for k, p in params.items():
            g2 = grads[k] ** 2 + eps1
            if p.ndim >= 2 and min(p.shape[-2:]) >= min_dim:
                r = _slot(state, "R", k, g2.sum(-1))
                col = _slot(state, "C", k, g2.sum(-2))
                r[...] = beta * r + (1 - beta) * g2.sum(-1)  # R_t = β̂ R + (1-β̂)(G² + ε1) 1_m
                col[...] = beta * col + (1 - beta) * g2.sum(-2)  # C_t = β̂ C + (1-β̂) 1_n^T (G² + ε1)
                v_hat = r[..., :, None] * col[..., None, :] / r.sum(-1)[..., None, None]
            else:
                v = _slot(state, "V", k, p)
                v[...] = beta * v + (1 - beta) * g2
                v_hat = v
            u = grads[k] / np.sqrt(v_hat)
            u = u / max(1.0, rms(u) / d)
            out[k] = p - max(eps2, rms(p)) * rho * u
        return out

    return step


def schedule_free_sgd(lr, warmup, b1):
    """Defazio et al. 2024, Alg. 1 with SGD: y = (1-β1) z + β1 x, z -= γ_t ∇f(y), x = (1-c) x + c z."""

    def step(params, grads, t, state):
        gamma = lr * min(1.0, t / warmup)
        state["max"] = max(state.get("max", 0.0), gamma)
        state["sum"] = state.get("sum", 0.0) + state["max"] ** 2
        c = state["max"] ** 2 / state["sum"]
        out = {}
        for k, y in params.items():
            z = state.setdefault("z", {}).setdefault(k, y.copy())
            x = state.setdefault("x", {}).setdefault(k, y.copy())
            z[...] = z - gamma * grads[k]
            x[...] = (1 - c) * x + c * z
            out[k] = (1 - b1) * z + b1 * x
        return out

    return step


def muon(lr, beta, eps, adam_b1, adam_b2):
    """Jordan et al. 2024: Nesterov momentum without bias correction, five Newton–Schulz steps, √max(1, m/n).

    Adam (Nesterov m̂, as the transform pairs it) on the leaves that are not 2-D.
    """
    a, b, c = 3.4445, -4.775, 2.0315

    def newton_schulz(g):
        x = g if g.shape[0] <= g.shape[1] else g.T
        x = x / (np.linalg.norm(x) + eps)
        for _ in range(5):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x if g.shape[0] <= g.shape[1] else x.T

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            g, m = grads[k], _slot(state, "m", k, p)
            if p.ndim == 2:
                m[...] = beta * m + (1 - beta) * g
                out[k] = p - lr * np.sqrt(max(1, p.shape[1] / p.shape[0])) * newton_schulz(beta * m + (1 - beta) * g)
                continue
            v = _slot(state, "v", k, p)
            m[...] = adam_b1 * m + (1 - adam_b1) * g
            v[...] = adam_b2 * v + (1 - adam_b2) * g * g
            m_hat = adam_b1 * m / (1 - adam_b1 ** (t + 1)) + (1 - adam_b1) * g / (1 - adam_b1**t)
            out[k] = p - lr * m_hat / (np.sqrt(v / (1 - adam_b2**t)) + eps)
        return out

    return step


def adam_direction(state: dict, key, g, t, b1, b2, eps):
    """Kingma & Ba's bias-corrected ``m̂_t / (√v̂_t + ε)`` for the leaf ``key``, its moments kept in ``state``."""
    m = state.setdefault(("m", key), np.zeros_like(g))
    v = state.setdefault(("v", key), np.zeros_like(g))
    m[...] = b1 * m + (1 - b1) * g
    v[...] = b2 * v + (1 - b2) * g * g
    return (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
