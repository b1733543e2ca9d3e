"""PSGD-Kron in NumPy, float64, written from Li's equations (TNNLS 2018, ICLR 2019) with psgd-jax's schedule.

The random probes and balance draws are given to each step (``probes``, ``balance``), so the reference uses
the same draws as the implementation under test; nothing else is shared with jgd's code.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def mode(x: np.ndarray, m: np.ndarray, axis: int) -> np.ndarray:
    """``x ×_axis m``: ``m`` (a matrix, or a vector for a diagonal matrix) times ``x``'s axis ``axis``."""
    if m.ndim < 2:
        shape = [1] * x.ndim
        if x.ndim:
            shape[axis] = -1
        return x * m.reshape(shape)
    return np.moveaxis(np.tensordot(m, x, axes=([1], [axis])), 0, axis)


def unfold_gram(x: np.ndarray, axis: int, full: bool) -> np.ndarray:
    """``X_(axis) X_(axis)ᵀ`` (``full``) or its diagonal."""
    if x.ndim == 0:
        return x * x
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return rows @ rows.T if full else (rows**2).sum(axis=1)


def lower_bound(s: np.ndarray) -> float:
    """Li's lower bound of ‖S‖₂ for a symmetric S: ‖S x̂‖, x̂ ∝ S r, r the row of largest norm."""
    top = np.abs(s).max()
    if top == 0:
        return 0.0
    s = s / top
    r = s[np.argmax((s**2).sum(axis=1))]
    x = s @ r
    return float(top * np.linalg.norm(s @ (x / np.linalg.norm(x))))


class Kron:
    """The state and step of PSGD-Kron for a list of float64 arrays."""

    def __init__(self, params, *, learning_rate, b1, weight_decay, probability, preconditioner_lr, damping,
                 max_size_triangular=8192, min_ndim_triangular=2, init_scale=1.0):  # fmt: skip
        self.lr, self.b1, self.wd, self.probability = learning_rate, b1, weight_decay, probability
        self.mu_p, self.damping = preconditioner_lr, damping
        self.mu = [np.zeros_like(p) for p in params]
        self.q = []
        for p in params:
            if p.ndim == 0:
                self.q.append([np.asarray(init_scale, np.float64)])
                continue
            full = [n > 1 and n <= max_size_triangular and p.ndim >= min_ndim_triangular for n in p.shape]
            root = init_scale ** (1 / p.ndim)
            self.q.append([root * (np.eye(n) if f else np.ones(n)) for n, f in zip(p.shape, full)])
        self.t, self.counter = 0, 0

    def fits_now(self) -> bool:
        """The deterministic counter: a fit when the steps since the last reach 1/p."""
        self.counter += 1
        p = self.probability(self.t) if callable(self.probability) else self.probability
        if self.counter >= 1 / p:
            self.counter = 0
            return True
        return False

    def fit(self, qs, h, v):
        a, b = h, v
        for i, q in enumerate(qs):
            a = mode(a, q, i)
            # B = V ×_i Q_i⁻ᵀ, by a triangular solve.
            b = mode(b, scipy.linalg.solve_triangular(q, np.eye(len(q))).T if q.ndim == 2 else 1 / q, i)
        new = []
        for i, q in enumerate(qs):
            aa, bb = unfold_gram(a, i, q.ndim == 2), unfold_gram(b, i, q.ndim == 2)
            tiny = np.finfo(np.float64).tiny
            if q.ndim == 2:
                new.append(q - self.mu_p * np.triu(aa - bb) / (lower_bound(aa + bb) + tiny) @ q)
            else:
                new.append(q - self.mu_p * (aa - bb) * q / (np.abs(aa + bb).max() + tiny))
        return new

    def step(self, grads, params, probes, balance):
        """One update: the list of updates; ``probes`` one normal array per leaf, ``balance`` a bool."""
        fit = self.fits_now()
        self.t += 1
        out = []
        for k, (g, p) in enumerate(zip(grads, params)):
            self.mu[k] = self.b1 * self.mu[k] + (1 - self.b1) * g
            m = self.mu[k] / (1 - self.b1**self.t)
            if fit:
                if balance and len(self.q[k]) > 1:
                    norms = np.array([np.abs(q).max() for q in self.q[k]])
                    mean = np.prod(norms) ** (1 / len(norms))
                    self.q[k] = [q * mean / n for q, n in zip(self.q[k], norms)]
                h = m + self.damping * np.abs(m).mean() * probes[k]
                self.q[k] = self.fit(self.q[k], h, probes[k])
            u = m
            for i, q in enumerate(self.q[k]):
                u = mode(mode(u, q, i), q.T, i)
            u = u / max(1.0, np.sqrt((u**2).mean()) / 1.1)
            out.append(-self.lr * (u + self.wd * p))
        return out
