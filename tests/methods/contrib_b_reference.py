"""NumPy transcriptions of the papers of optax.contrib's Prodigy, D-Adaptation AdamW, DoG, DoWG, COCOB, Mechanic,
GaLore and SAM.

Each reference is ``step(params, grads, t, state) -> params`` on dicts of float64 NumPy arrays, ``t`` from 1,
run by :func:`tests.modern_reference.run`. Sums, norms and inner products are over every leaf together.
"""

import numpy as np


def _slot(state, name, key, like, value=0.0):
    return state.setdefault(name, {}).setdefault(key, np.full_like(like, value))


def _dot(a, b):
    return sum(float(np.sum(a[k] * b[k])) for k in a)


def prodigy(lr, b1, b2, eps, d0, coef, wd):
    """Mishchenko & Defazio 2024, the Adam version of their algorithm with decoupled weight decay; β3 = √β2."""
    b3 = np.sqrt(b2)

    def step(params, grads, t, state):
        d, r = state.get("d", d0), state.get("r", 0.0)
        x0 = state.setdefault("x0", {k: p.copy() for k, p in params.items()})
        r = b3 * r + lr * d**2 * _dot(grads, {k: x0[k] - p for k, p in params.items()})
        out, s_norm = {}, 0.0
        for k, p in params.items():
            g, m, v, s = grads[k], _slot(state, "m", k, p), _slot(state, "v", k, p), _slot(state, "s", k, p)
            m[...] = b1 * m + (1 - b1) * d * g
            v[...] = b2 * v + (1 - b2) * d**2 * g * g
            s[...] = b3 * s + lr * d**2 * g
            s_norm += np.abs(s).sum()
            out[k] = p - lr * d * (m / (np.sqrt(v) + d * eps) + wd * p)
        state["d"], state["r"] = max(d, coef * r / s_norm), r
        return out

    return step


def dadapt_adamw(lr, b1, b2, eps, d0, wd):
    """Defazio & Mishchenko 2023, Adam with D-Adaptation (λ_k = γ_k d_k), decoupled weight decay."""
    root = np.sqrt(b2)

    def step(params, grads, t, state):
        d, r = state.get("d", d0), state.get("r", 0.0)
        step_size = lr * d
        weighted = {k: _slot(state, "s", k, p) / (np.sqrt(_slot(state, "v", k, p)) + eps) for k, p in params.items()}
        r = root * r + (1 - root) * step_size * _dot(grads, weighted)
        out, s_norm = {}, 0.0
        for k, p in params.items():
            g, m, v, s = grads[k], _slot(state, "m", k, p), state["v"][k], state["s"][k]
            m[...] = b1 * m + (1 - b1) * step_size * g
            v[...] = b2 * v + (1 - b2) * g * g
            s[...] = root * s + (1 - root) * step_size * g
            s_norm += np.abs(s).sum()
            out[k] = p - m / (np.sqrt(v) + eps) - step_size * wd * p
        state["d"], state["r"] = max(d, r / ((1 - root) * s_norm)), r
        return out

    return step


def dog(lr, r_eps):
    """Ivgi et al. 2023, Alg. 1: η_t = r̄_t / √(Σ‖g‖²); ``r_eps(x0)`` gives r_ε."""

    def step(params, grads, t, state):
        x0 = state.setdefault("x0", {k: p.copy() for k, p in params.items()})
        distance = np.sqrt(sum(np.sum((p - x0[k]) ** 2) for k, p in params.items()))
        state["r"] = max(state.get("r", r_eps(x0)), distance)
        state["G"] = state.get("G", 0.0) + _dot(grads, grads)
        eta = state["r"] / np.sqrt(state["G"])
        return {k: p - lr * eta * grads[k] for k, p in params.items()}

    return step


def dowg(lr, r_eps_sq):
    """Khaled et al. 2023, Alg. 1: v_t = v_{t-1} + r̄_t² ‖g_t‖², η_t = r̄_t² / √v_t."""

    def step(params, grads, t, state):
        x0 = state.setdefault("x0", {k: p.copy() for k, p in params.items()})
        distance = np.sqrt(sum(np.sum((p - x0[k]) ** 2) for k, p in params.items()))
        state["r"] = max(state.get("r", np.sqrt(r_eps_sq)), distance)
        state["v"] = state.get("v", 0.0) + state["r"] ** 2 * _dot(grads, grads)
        eta = state["r"] ** 2 / np.sqrt(state["v"])
        return {k: p - lr * eta * grads[k] for k, p in params.items()}

    return step


def cocob(alpha, eps):
    """Orabona & Tommasi 2017, Alg. 2 (COCOB-Backprop), entry by entry, in the negative gradient g̃ = -g."""

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            w1 = state.setdefault("w1", {}).setdefault(k, p.copy())
            big_l, big_g = _slot(state, "L", k, p, eps), _slot(state, "G", k, p)
            reward, theta = _slot(state, "reward", k, p), _slot(state, "theta", k, p)
            new = np.empty_like(p)
            for i in np.ndindex(p.shape):
                g = -grads[k][i]
                big_l[i] = max(big_l[i], abs(g))
                big_g[i] += abs(g)
                reward[i] = max(reward[i] + (p[i] - w1[i]) * g, 0.0)
                theta[i] += g
                bet = theta[i] / (big_l[i] * max(big_g[i] + big_l[i], alpha * big_l[i]))
                new[i] = w1[i] + bet * (big_l[i] + reward[i])
            out[k] = new
        return out

    return step


def mechanic(base, lam, eps, s_init, n):
    """Cutkosky et al. 2023, Alg. 1 with ``Δ`` the sum of the base's steps and ``h`` clipped by the previous
    ``m`` (the authors' code); ``base(grads, t, state) -> steps`` is the base method in NumPy."""
    betas = np.asarray([1 - 0.1**i for i in range(1, n + 1)])

    def step(params, grads, t, state):
        x_ref = state.setdefault("x_ref", {k: p.copy() for k, p in params.items()})
        delta = state.setdefault("delta", {k: np.zeros_like(p) for k, p in params.items()})
        s = state.setdefault("s", np.full(n, s_init))
        m, v, r = (state.setdefault(name, np.zeros(n)) for name in ("m", "v", "r"))
        steps = base(grads, t, state.setdefault("base", {}))
        scale = np.sqrt(_dot(grads, grads)) / (np.sqrt(_dot(params, params)) + eps)
        decayed = {k: g + lam * s.sum() * scale * params[k] for k, g in grads.items()}
        h = -_dot(delta, decayed)  # the steps so far, against the decayed gradient
        clipped = np.clip(h, -m, m)
        state["m"] = m = np.maximum(betas * m, abs(h) + eps)
        state["v"] = v = betas**2 * v + h * h
        state["r"] = r = betas * r + clipped * s
        state["s"] = s = (s_init / n * m + np.maximum(r, 0)) / (np.sqrt(v) + eps)
        for k in delta:
            delta[k] = delta[k] + steps[k]
        return {k: x_ref[k] + s.sum() * delta[k] for k in params}

    return step


def sgd_steps(lr):
    """``-η g``: a base method for :func:`mechanic`."""
    return lambda grads, t, state: {k: -lr * g for k, g in grads.items()}


def galore(lr, rank, scale, b1, b2, eps):
    """Zhao et al. 2024, Alg. 2 (Adam with GaLore), the projection made once (at t = 1): P = U[:, :r] for
    m ≤ n and V[:, :r] (the transpose's) for m > n; the other leaves step with Adam itself."""

    def adam(state, key, x, t):
        m, v = _slot(state, "m", key, x), _slot(state, "v", key, x)
        m[...] = b1 * m + (1 - b1) * x
        v[...] = b2 * v + (1 - b2) * x * x
        return (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            g = grads[k]
            if g.ndim != 2:
                out[k] = p - lr * adam(state, k, g, t)
                continue
            rows, cols = g.shape
            if k not in state.setdefault("P", {}):
                u, _, vh = np.linalg.svd(g, full_matrices=False)
                state["P"][k] = u[:, :rank] if rows <= cols else vh[:rank].T
            projector = state["P"][k]
            if rows <= cols:
                out[k] = p - lr * scale * projector @ adam(state, k, projector.T @ g, t)
            else:
                out[k] = p - lr * scale * adam(state, k, g @ projector, t) @ projector.T
        return out

    return step


def sam(lr, rho):
    """Foret et al. 2021, Alg. 1, one call per gradient: odd calls climb to ``w + ρ g / ‖g‖``, even calls
    step ``w ← w - η g`` from the ``w`` they climbed from, with the gradient taken at the climbed point."""

    def step(params, grads, t, state):
        if t % 2 == 1:
            state["w"] = {k: p.copy() for k, p in params.items()}
            norm = np.sqrt(_dot(grads, grads))
            return {k: p + rho * grads[k] / norm for k, p in params.items()}
        return {k: w - lr * grads[k] for k, w in state["w"].items()}

    return step
