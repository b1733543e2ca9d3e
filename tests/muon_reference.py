"""Muon's papers in NumPy, on float64 dicts of matrices: Polar Express, Moonlight's RMS matching, NorMuon.

Each reference is ``step(params, grads, t, state) -> params`` (as tests/modern_reference.py's), ``t`` from 1;
kernels are jgd's ``(fan_in, fan_out)``, the papers' ``W`` (``out × in``) their transpose.
"""

import jax
import jax.numpy as jnp
import numpy as np

_rng = np.random.default_rng(7)
X = _rng.normal(size=(8, 4))
Y = _rng.normal(size=(8, 3))
# A small network of matrices only (tall, square and wide), so the papers' forms are the whole step.
MATRICES = {"w1": _rng.normal(size=(4, 6)) * 0.5, "w2": _rng.normal(size=(6, 6)) * 0.4, "w3": _rng.normal(size=(6, 3))}
# A conv kernel (H, W, I, O), a stack of two matrices, a head and a bias: dimension numbers of every kind.
LAYERS = {
    "conv": _rng.normal(size=(3, 3, 2, 4)) * 0.3,
    "stack": _rng.normal(size=(2, 4, 4)) * 0.4,
    "head": _rng.normal(size=(4, 3)) * 0.5,
    "bias": _rng.normal(size=(4,)) * 0.1,
}
_PATCHES = _rng.normal(size=(8, 3, 3, 2))


def matrices_loss(p):
    h = jnp.tanh(jnp.asarray(X) @ p["w1"])
    h = jnp.tanh(h @ p["w2"]) @ p["w3"]
    return jnp.mean(jnp.log1p((h - jnp.asarray(Y)) ** 2))


def layers_loss(p):
    h = jnp.tanh(jnp.einsum("nhwi,hwio->no", jnp.asarray(_PATCHES), p["conv"]) + p["bias"])
    h = jnp.tanh(h @ p["stack"][0]) @ p["stack"][1]
    return jnp.mean(jnp.log1p((h @ p["head"] - jnp.asarray(Y)) ** 2)) + 0.01 * sum(jnp.sum(x * x) for x in p.values())


def trajectory(tx, params, loss, steps):
    """The float64 iterates of ``tx`` on ``loss`` from ``params``; the step is jitted once."""

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return jax.tree.map(lambda p, u: p + u, params, updates), state

    params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
    state, out = tx.init(params), [params]
    for _ in range(steps):
        params, state = step(params, state)
        out.append(params)
    return [{k: np.asarray(v) for k, v in p.items()} for p in out]


def run(step, params, loss, steps):
    """The iterates of a NumPy reference ``step`` on ``loss``, the gradient taken by JAX in float64."""
    grad = jax.jit(jax.grad(loss))
    params, state = {k: np.array(v, np.float64) for k, v in params.items()}, {}
    out = [params]
    for t in range(1, steps + 1):
        g = {k: np.asarray(v) for k, v in grad({k: jnp.asarray(v) for k, v in params.items()}).items()}
        params = step(params, g, t, state)
        out.append(params)
    return out


def newton_schulz(m, rows, eps, norm_scale=1.0):
    """``X_0 = M / (s ‖M‖_F + ε)``, ``X ← a X + b X Xᵀ X + c (X Xᵀ)² X`` per row, on the wide orientation."""
    x = m if m.shape[0] <= m.shape[1] else m.T
    x = x / (norm_scale * np.linalg.norm(x) + eps)
    for a, b, c in rows:
        gram = x @ x.T
        x = a * x + b * gram @ x + c * gram @ gram @ x
    return x if m.shape[0] <= m.shape[1] else x.T


def optimal_quintic(lo, hi):
    """Amsel et al. 2025: the odd quintic best approximating 1 on [ℓ, u] in L∞, by Remez (it equioscillates at
    ℓ, q, r, u, with q and r its stationary points); the fixed (15x - 10x³ + 3x⁵)/8 once ℓ ≈ u."""
    if lo / hi >= 1 - 5e-6:
        return 15 / 8 / hi, -10 / 8 / hi**3, 3 / 8 / hi**5
    q, r = (3 * lo + 1) / 4, (lo + 3) / 4
    error, previous = np.inf, None
    while previous is None or abs(previous - error) > 1e-15:
        previous = error
        points = np.array([lo, q, r, hi])
        system = np.stack([points, points**3, points**5, [1, -1, 1, -1]], axis=1)
        a, b, c, error = np.linalg.solve(system, np.ones(4))
        q, r = np.sqrt((-3 * b + np.array([-1, 1]) * np.sqrt(9 * b * b - 20 * a * c)) / (10 * c))
    return a, b, c


def polar_express_coefficients(steps, lo=1e-3, cushion=0.02407327424182761):
    """The paper's composition from σ ∈ [ℓ, 1]: each step's optimal quintic on max(ℓ, cushion·u), rescaled so
    ``p(ℓ)`` and ``p(u)`` sit symmetrically about 1, then ``[ℓ, u] ← [p(ℓ), 2 - p(ℓ)]``."""
    hi, rows = 1.0, []
    for _ in range(steps):
        a, b, c = optimal_quintic(max(lo, cushion * hi), hi)
        rescale = 2 / (a * lo + b * lo**3 + c * lo**5 + a * hi + b * hi**3 + c * hi**5)
        a, b, c = a * rescale, b * rescale, c * rescale
        rows.append((a, b, c))
        lo = a * lo + b * lo**3 + c * lo**5
        hi = 2 - lo
    return rows


def with_safety(rows, factor=1.01):
    """Algorithm 1's safety factor, ``p(x / 1.01)``."""
    return [(a / factor, b / factor**3, c / factor**5) for a, b, c in rows]


def polar_express_muon(lr, beta, eps, steps=5):
    """Jordan's Muon (Nesterov momentum, √max(1, fan_out / fan_in)) with Algorithm 1's polar factor."""
    rows = with_safety(polar_express_coefficients(steps))

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            m = state.setdefault(k, np.zeros_like(p))
            m[...] = beta * m + (1 - beta) * grads[k]
            o = newton_schulz(beta * m + (1 - beta) * grads[k], rows, eps, norm_scale=1.01)
            out[k] = p - lr * np.sqrt(max(1, p.shape[1] / p.shape[0])) * o
        return out

    return step


def moonlight(lr, mu, weight_decay, rho=0.2):
    """Liu et al. 2025, Algorithm 1: ``M_t = μ M_{t-1} + G_t``, ``O_t = NS(M_t)``,
    ``W_t = W_{t-1} - η (ρ O_t √max(A, B) + λ W_{t-1})`` (the sum momentum is the EMA's times 1 / (1 - μ))."""
    rows = [(3.4445, -4.775, 2.0315)] * 5

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            m = state.setdefault(k, np.zeros_like(p))
            m[...] = mu * m + grads[k]
            o = newton_schulz(m, rows, 0.0)
            out[k] = p - lr * (rho * o * np.sqrt(max(p.shape)) + weight_decay * p)
        return out

    return step


def normuon(lr, b1, b2, eps, weight_decay, rho=0.2):
    """Li et al. 2025, Algorithm 1 on ``W`` (``out × in``, a row per neuron):
    ``M_t = β1 M_{t-1} + (1 - β1) G_t``, ``O_t = NS(M_t)``, ``v_t = β2 v_{t-1} + (1 - β2) mean_cols(O_t ⊙ O_t)``,
    ``Ô_t = O_t / (√V_t + ε)``, ``η̂ = ρ η √(mn) / ‖Ô_t‖_F``, ``W_t = W_{t-1} - η λ W_{t-1} - η̂ Ô_t``."""
    rows = [(3.4445, -4.775, 2.0315)] * 5

    def step(params, grads, t, state):
        out = {}
        for k, kernel in params.items():
            w, g = kernel.T, grads[k].T
            m = state.setdefault(("m", k), np.zeros_like(w))
            v = state.setdefault(("v", k), np.zeros(w.shape[0]))
            m[...] = b1 * m + (1 - b1) * g
            o = newton_schulz(m, rows, 1e-8)
            v[...] = b2 * v + (1 - b2) * np.mean(o * o, axis=1)
            o_hat = o / (np.sqrt(v)[:, None] + eps)
            rate = rho * lr * np.sqrt(w.size) / np.linalg.norm(o_hat)
            out[k] = (w - lr * weight_decay * w - rate * o_hat).T
        return out

    return step
