"""Shampoo and SOAP written from their papers in NumPy float64, one leaf at a time, with full matrices.

Blocks are written as the papers' block-diagonal approximation of a full factor: ``L_i`` masked to its diagonal
blocks (no padding, no stacked blocks), so the stacking and padding of jgd.preconditioners.blocks are checked
against a form that has neither.
"""

import numpy as np


def mode(x, axis, m):
    """``x ×_axis M``: ``M`` applied to every fibre of ``x`` along ``axis``."""
    return np.moveaxis(np.tensordot(m, x, axes=(1, axis)), 0, axis)


def unfold_gram(g, axis):
    """``unfold_axis(G) unfold_axis(G)ᵀ``."""
    flat = np.moveaxis(g, axis, 0).reshape(g.shape[axis], -1)
    return flat @ flat.T


def block_mask(n, block):
    """1 on the diagonal ``block × block`` blocks of an ``n × n`` matrix (the last one shorter), 0 elsewhere."""
    index = np.arange(n) // (block or n)
    return (index[:, None] == index[None, :]).astype(float)


def axes_of(shape, block_size, max_dim, precondition_1d):
    if len(shape) == 0 or (len(shape) == 1 and not precondition_1d):
        return []
    return [i for i, n in enumerate(shape) if (block_size is not None and n > block_size) or n <= max_dim]


def shampoo_run(
    params,
    grads,
    *,
    lr,
    b2=1.0,
    matrix_eps=1e-6,
    momentum=0.0,
    weight_decay=0.0,
    eps=1e-8,
    graft=None,
    start=1,
    every=1,
    block_size=None,
    max_dim=10000,
    precondition_1d=True,
):
    """Gupta et al. 2018 Alg. 2 (with Anil et al. 2020's EMA, graft, delayed start, blocks): the params after each
    step, for ``grads[t]`` given at step ``t + 1``."""
    params = {k: np.array(v, np.float64) for k, v in params.items()}
    state = {k: {"L": {}, "P": {}, "nu": np.zeros_like(v), "mu": np.zeros_like(v)} for k, v in params.items()}
    history = []
    for t, step_grads in enumerate(grads, start=1):
        for k, p in params.items():
            s, g = state[k], np.asarray(step_grads[k], np.float64) + weight_decay * params[k]
            new = 1.0 if b2 == 1 else 1 - b2
            if graft == "adam":
                s["nu"] = b2 * s["nu"] + new * g * g
                direction = g / (np.sqrt(s["nu"]) + eps)
            else:
                direction = g
            axes = axes_of(p.shape, block_size, max_dim, precondition_1d)
            for i in axes:
                mask = block_mask(p.shape[i], block_size)
                s["L"][i] = b2 * s["L"].get(i, 0) + new * mask * unfold_gram(g, i)
                if t >= start and (t - start) % every == 0:
                    w, v = np.linalg.eigh(s["L"][i])
                    s["P"][i] = (v * (np.maximum(w, 0) + matrix_eps) ** (-1 / (2 * p.ndim))) @ v.T
            if axes and t >= start:
                u = g
                for i in axes:
                    u = mode(u, i, s["P"][i])
                if graft is not None:
                    u = u * np.linalg.norm(direction) / np.linalg.norm(u)
                direction = u
            s["mu"] = momentum * s["mu"] + direction
            params[k] = p - lr * s["mu"]
        history.append({k: v.copy() for k, v in params.items()})
    return history


def _rotate(x, axes, q, back=False):
    for i in axes:
        x = mode(x, i, q[i] if back else q[i].T)
    return x


def _soap_refresh(s, axes, first):
    """The eigenbases (first call) or one power iteration and QR, with V permuted (Vyas et al. 2024, Alg. 4)."""
    for i in axes:
        if first:
            s["Q"][i] = np.linalg.eigh(s["L"][i])[1][:, ::-1]
            continue
        lq = s["L"][i] @ s["Q"][i]
        order = np.argsort(-np.sum(s["Q"][i] * lq, axis=0), kind="stable")
        s["v"] = np.take(s["v"], order, axis=i)
        s["Q"][i] = np.linalg.qr(lq[:, order])[0]


def soap_run(
    params,
    grads,
    *,
    lr,
    b1=0.95,
    b2=0.95,
    eps=1e-8,
    weight_decay=0.01,
    shampoo_beta=None,
    frequency=10,
    block_size=None,
    max_dim=10000,
    precondition_1d=False,
):
    """Vyas et al. 2024 Alg. 3, as the authors' code runs it: the params after each call."""
    beta = b2 if shampoo_beta is None else shampoo_beta
    params = {k: np.array(v, np.float64) for k, v in params.items()}
    state = {k: {"L": {}, "Q": {}, "m": np.zeros_like(v), "v": np.zeros_like(v)} for k, v in params.items()}
    history = []
    for t, step_grads in enumerate(grads, start=1):
        for key, p in params.items():
            s, g = state[key], np.asarray(step_grads[key], np.float64)
            axes = axes_of(p.shape, block_size, max_dim, precondition_1d)
            if t > 1:
                k = t - 1
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * _rotate(g, axes, s["Q"]) ** 2
                u = _rotate(_rotate(s["m"], axes, s["Q"]) / (np.sqrt(s["v"]) + eps), axes, s["Q"], back=True)
                p = p - lr * np.sqrt(1 - b2**k) / (1 - b1**k) * u
                params[key] = p * (1 - lr * weight_decay)
            for i in axes:
                mask = block_mask(p.shape[i], block_size)
                s["L"][i] = beta * s["L"].get(i, 0) + (1 - beta) * mask * unfold_gram(g, i)
            if t == 1 or (t - 1) % frequency == 0:
                _soap_refresh(s, axes, first=t == 1)
        history.append({k: v.copy() for k, v in params.items()})
    return history
