"""NumPy transcriptions of the papers of ADOPT, AdEMAMix, simplified AdEMAMix, ACProp, MADGRAD, MoMo, MoMo-Adam and
Sophia.

Each reference is ``step(params, grads, t, state) -> params`` on dicts of float64 NumPy arrays, ``t`` from 1, run by
:func:`tests.modern_reference.run`; MoMo's take the loss too, ``step(params, grads, value, t, state)``. Written
from each paper's algorithm, entry by entry where it is elementwise and with plain sums where it is not.
"""

import numpy as np


def _slot(state, name, key, like, value=0.0):
    return state.setdefault(name, {}).setdefault(key, np.full_like(like, value))


def adopt(lr, b1, b2, eps):
    """Taniguchi et al. 2024, Alg. 2 with clipping c(k) = k^{1/4}: the first gradient only starts ``v``."""

    def step(params, grads, t, state):
        out = {}
        for key, p in params.items():
            g = grads[key]
            if t == 1:
                state.setdefault("v", {})[key] = np.array(g * g)
                out[key] = p.copy()
                continue
            v, m = state["v"][key], _slot(state, "m", key, p)
            k = t - 1  # the paper counts the starting gradient as step 0
            u = np.clip(g / np.maximum(np.sqrt(v), eps), -(k**0.25), k**0.25)
            m[...] = b1 * m + (1 - b1) * u
            out[key] = p - lr * m
            v[...] = b2 * v + (1 - b2) * g * g
        return out

    return step


def ademamix(lr, b1, b2, b3, alpha, eps, wd, warmup):
    """Pagliardini et al. 2024, Alg. 1 with its schedulers for α and β3 over ``warmup`` steps (0: none)."""

    def schedules(t):
        if warmup == 0:
            return alpha, b3
        a = min(t * alpha / warmup, alpha)
        ln1, ln3 = np.log(b1), np.log(b3)
        beta3 = min(np.exp(ln1 * ln3 / ((1 - t / warmup) * ln3 + (t / warmup) * ln1)), b3)
        return a, beta3

    def step(params, grads, t, state):
        a, beta3 = schedules(t)
        out = {}
        for key, p in params.items():
            g = grads[key]
            m1, m2, nu = (_slot(state, s, key, p) for s in ("m1", "m2", "nu"))
            m1[...] = b1 * m1 + (1 - b1) * g
            m2[...] = beta3 * m2 + (1 - beta3) * g
            nu[...] = b2 * nu + (1 - b2) * g * g
            direction = (m1 / (1 - b1**t) + a * m2) / (np.sqrt(nu / (1 - b2**t)) + eps)
            out[key] = p - lr * (direction + wd * p)
        return out

    return step


def simplified_ademamix(lr, b1, b2, alpha, eps, wd):
    """Morwani et al. 2025, simplified AdEMAMix: m_t = β1 m_{t-1} + g_t, Adam's corrected second moment."""

    def step(params, grads, t, state):
        out = {}
        for key, p in params.items():
            g = grads[key]
            m, nu = _slot(state, "m", key, p), _slot(state, "nu", key, p)
            m[...] = b1 * m + g
            nu[...] = b2 * nu + (1 - b2) * g * g
            out[key] = p - lr * ((m + alpha * g) / (np.sqrt(nu / (1 - b2**t)) + eps) + wd * p)
        return out

    return step


def acprop(lr, b1, b2, eps, eps_root, wd):
    """Zhuang et al. 2021, ACProp: g_t over the root of the previous centred moment s_{t-1}, corrected."""

    def step(params, grads, t, state):
        out = {}
        for key, p in params.items():
            g = grads[key]
            m, s = _slot(state, "m", key, p), _slot(state, "s", key, p)
            s_hat = np.ones_like(p) if t == 1 else s / (1 - b2 ** (t - 1))
            out[key] = p - lr * (g / (np.sqrt(s_hat) + eps) + wd * p)
            m[...] = b1 * m + (1 - b1) * g
            s[...] = b2 * s + (1 - b2) * (g - m) ** 2 + eps_root
        return out

    return step


def madgrad(lr, beta, eps, wd):
    """Defazio & Jelassi 2021, Alg. 1: λ_k = γ √(k + 1), c = 1 - β, from the first point x_0."""

    def step(params, grads, t, state):
        out = {}
        for key, p in params.items():
            g = grads[key] + wd * p
            x0 = state.setdefault("x0", {}).setdefault(key, p.copy())
            s, nu = _slot(state, "s", key, p), _slot(state, "nu", key, p)
            lam = lr * np.sqrt(t)
            s[...] = s + lam * g
            nu[...] = nu + lam * g * g
            z = x0 - s / (np.cbrt(nu) + eps)
            out[key] = (1 - beta) * z + beta * p
        return out

    return step


def _dot(a, b):
    return sum(float(np.sum(a[k] * b[k])) for k in a)


def momo(lr, beta, f_star, wd):
    """Schaipp et al. 2024, Alg. 1 (MoMo) with the averages started at the first values and the proximal decay."""

    def step(params, grads, value, t, state):
        b = 0.0 if t == 1 else beta
        d = {k: b * state.get("d", {}).get(k, 0.0) + (1 - b) * grads[k] for k in params}
        state["d"] = d
        state["f"] = b * state.get("f", 0.0) + (1 - b) * value
        state["gamma"] = b * state.get("gamma", 0.0) + (1 - b) * _dot(grads, params)
        h = (1 + lr * wd) * (state["f"] - f_star - state["gamma"]) + _dot(d, params)
        tau = min(lr, max(h, 0.0) / _dot(d, d))
        return {k: (p - tau * d[k]) / (1 + lr * wd) for k, p in params.items()}

    return step


def momo_adam(lr, b1, b2, eps, f_star, wd):
    """Schaipp et al. 2024, Alg. 2 (MoMo-Adam): averages from zero, the step in Adam's metric D_k."""

    def step(params, grads, value, t, state):
        d = {k: b1 * state.get("d", {}).get(k, 0.0) + (1 - b1) * grads[k] for k in params}
        v = {k: b2 * state.get("v", {}).get(k, 0.0) + (1 - b2) * grads[k] ** 2 for k in params}
        state["d"], state["v"] = d, v
        state["f"] = b1 * state.get("f", 0.0) + (1 - b1) * value
        state["gamma"] = b1 * state.get("gamma", 0.0) + (1 - b1) * _dot(grads, params)
        metric = {k: np.sqrt(v[k] / (1 - b2**t)) + eps for k in params}
        rho = 1 - b1**t
        h = (1 + lr * wd) * (state["f"] - rho * f_star - state["gamma"]) + _dot(d, params)
        tau = min(lr / rho, max(h, 0.0) / sum(float(np.sum(d[k] ** 2 / metric[k])) for k in params))
        return {k: (p - tau * d[k] / metric[k]) / (1 + lr * wd) for k, p in params.items()}

    return step


def sophia(lr, b1, b2, eps, wd, gamma, rho, k, hessian_diagonal):
    """Liu et al. 2024, Alg. 3: h refreshed at t = 1, k + 1, ... from ``hessian_diagonal(params)``, then used."""

    def step(params, grads, t, state):
        refresh = (t - 1) % k == 0
        estimate = hessian_diagonal(params) if refresh else None
        out = {}
        for key, p in params.items():
            m, h = _slot(state, "m", key, p), _slot(state, "h", key, p)
            m[...] = b1 * m + (1 - b1) * grads[key]
            if refresh:
                h[...] = b2 * h + (1 - b2) * estimate[key]
            p = p - lr * wd * p
            out[key] = p - lr * np.clip(m / np.maximum(gamma * h, eps), -rho, rho)
        return out

    return step
