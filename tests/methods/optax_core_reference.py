"""NumPy transcriptions of the papers of optax's Yogi, Adan, SM3, Signum, Rprop, NovoGrad and Fromage.

Each reference is ``step(params, grads, t, state) -> params`` on dicts of float64 NumPy arrays, ``t`` from 1,
run by :func:`tests.modern_reference.run`. Written entry by entry or cover by cover where the paper is.
"""

import itertools

import numpy as np


def _slot(state, name, key, like, value=0.0):
    return state.setdefault(name, {}).setdefault(key, np.full_like(like, value))


def yogi(lr, b1, b2, eps, v0, bias_correction):
    def step(params, grads, t, state):  # Zaheer et al. 2018, Alg. 2
        out = {}
        for k, p in params.items():
            g, m, v = grads[k], _slot(state, "m", k, p, v0), _slot(state, "v", k, p, v0)
            m[...] = b1 * m + (1 - b1) * g
            v[...] = v - (1 - b2) * np.sign(v - g * g) * g * g
            m_hat, v_hat = (m / (1 - b1**t), v / (1 - b2**t)) if bias_correction else (m, v)
            out[k] = p - lr * m_hat / (np.sqrt(v_hat) + eps)
        return out

    return step


def adan(lr, b1, b2, b3, eps, wd):
    """Xie et al. 2022, Alg. 1 in the paper's own betas (β_i = 1 - b_i), moments corrected from zero."""
    beta1, beta2, beta3 = 1 - b1, 1 - b2, 1 - b3

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            g = grads[k]
            m, v, n = (_slot(state, s, k, p) for s in ("m", "v", "n"))
            previous = state.setdefault("g", {}).get(k, g)  # no difference at the first step
            m[...] = (1 - beta1) * m + beta1 * g
            v[...] = (1 - beta2) * v + beta2 * (g - previous)
            n[...] = (1 - beta3) * n + beta3 * (g + (1 - beta2) * (g - previous)) ** 2
            state["g"][k] = g
            rate = lr / (np.sqrt(n / (1 - (1 - beta3) ** t)) + eps)
            direction = m / (1 - (1 - beta1) ** t) + (1 - beta2) * v / (1 - (1 - beta2) ** t)
            out[k] = (p - rate * direction) / (1 + wd * lr)
        return out

    return step


def sm3(lr, momentum, eps):
    """Anil et al. 2019, SM3-II, cover by cover: the covers of a leaf are its slices along each axis."""

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            g, m = grads[k], _slot(state, "m", k, p)
            shape = p.shape or (1,)
            g = g.reshape(shape)
            mu = state.setdefault("mu", {}).setdefault(k, [np.zeros(n) for n in shape])
            nu = np.empty(shape)
            for index in itertools.product(*map(range, shape)):
                nu[index] = min(mu[axis][i] for axis, i in enumerate(index)) + g[index] ** 2
            for axis, n in enumerate(shape):
                for i in range(n):
                    mu[axis][i] = np.take(nu, i, axis=axis).max()  # max over the cover S_r
            u = np.where(nu > 0, g / np.sqrt(nu + eps), 0.0).reshape(p.shape)
            m[...] = momentum * m + (1 - momentum) * u
            out[k] = p - lr * m
        return out

    return step


def signum(lr, beta):
    def step(params, grads, t, state):  # Bernstein et al. 2018, Signum
        out = {}
        for k, p in params.items():
            m = _slot(state, "m", k, p)
            m[...] = beta * m + (1 - beta) * grads[k]
            out[k] = p - lr * np.sign(m)
        return out

    return step


def rprop(delta0, eta_minus, eta_plus, delta_min, delta_max):
    """Igel & Hüsken 2003, iRprop⁻, entry by entry."""

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            delta, previous = _slot(state, "delta", k, p, delta0), _slot(state, "g", k, p)
            g, new = grads[k].copy(), p.copy()
            for i in np.ndindex(p.shape):
                if previous[i] * g[i] > 0:
                    delta[i] = min(delta[i] * eta_plus, delta_max)
                elif previous[i] * g[i] < 0:
                    delta[i] = max(delta[i] * eta_minus, delta_min)
                    g[i] = 0.0
                new[i] = p[i] - np.sign(g[i]) * delta[i]
                previous[i] = g[i]
            out[k] = new
        return out

    return step


def novograd(lr, b1, b2, eps, wd):
    def step(params, grads, t, state):  # Ginsburg et al. 2019, Alg. 1
        out = {}
        for k, p in params.items():
            g, m = grads[k], _slot(state, "m", k, p)
            norm_sq = np.sum(g * g)
            v = norm_sq if t == 1 else b2 * state["v"][k] + (1 - b2) * norm_sq
            state.setdefault("v", {})[k] = v
            m[...] = b1 * m + g / (np.sqrt(v) + eps) + wd * p
            out[k] = p - lr * m
        return out

    return step


def fromage(lr):
    def step(params, grads, t, state):  # Bernstein et al. 2020
        out = {}
        for k, p in params.items():
            g = grads[k]
            out[k] = (p - lr * np.linalg.norm(p) / np.linalg.norm(g) * g) / np.sqrt(1 + lr**2)
        return out

    return step


def optimistic(lr, alpha, beta):
    def step(params, grads, t, state):  # Mokhtari et al. 2020, generalised OGDA, g_0 = g_1
        out = {}
        for k, p in params.items():
            g = grads[k]
            previous = state.setdefault("g", {}).get(k, g)
            out[k] = p - lr * (alpha + beta) * g + lr * beta * previous
            state["g"][k] = g
        return out

    return step


def polyak(max_lr, c, f_min, plus=False):
    """Loizou et al. 2021, SPS_max: γ = min((f - f*) / (c ‖g‖²), γ_b), here with γ_b = c · max_lr.

    ``step(params, grads, value, t, state)``: the loss ``value`` at ``params`` is the method's input too.
    """

    def step(params, grads, value, t, state):
        gap = max(value - f_min, 0.0) if plus else value - f_min
        norm_sq = sum(np.sum(g * g) for g in grads.values())
        gamma = min(gap / (c * norm_sq), c * max_lr)
        return {k: p - gamma * grads[k] for k, p in params.items()}

    return step


def noisy(lr, eta, gamma, noise):
    """Neelakantan et al. 2015: θ ← θ - lr (g + N(0, η / t^γ)), with ``noise(t)`` the step's standard draws."""

    def step(params, grads, t, state):
        xi = noise(t)
        sigma = np.sqrt(eta / t**gamma)
        return {k: p - lr * (grads[k] + sigma * xi[k]) for k, p in params.items()}

    return step
