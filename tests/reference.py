"""Plain NumPy references, each written from its seed equation, and a non-quadratic test objective.

Each reference runs ``steps`` updates from ``x0`` (a flat float64 vector)
given ``grad(x)``, and returns the iterates, shape ``(steps + 1, n)``.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jgd

_rng = np.random.default_rng(0)
X = _rng.normal(size=(16, 4))
Y = _rng.normal(size=(16, 3))
W0 = _rng.normal(size=(4, 3)) * 0.5
B0 = _rng.normal(size=(3,)) * 0.5


def loss(params):
    """A robust (Cauchy) regression loss plus a small l2 term: smooth and not quadratic."""
    r = jnp.asarray(X, params["w"].dtype) @ params["w"] + params["b"] - jnp.asarray(Y, params["w"].dtype)
    return jnp.mean(jnp.sum(jnp.log1p(r * r), axis=1)) + 0.05 * (jnp.sum(params["w"] ** 2) + jnp.sum(params["b"] ** 2))


def flat_grad(x):
    """The gradient of :func:`loss` in NumPy, on the flat vector ``[w.ravel(), b]``."""
    w, b = x[:12].reshape(4, 3), x[12:]
    r = X @ w + b - Y
    d = 2 * r / (1 + r * r) / X.shape[0]
    return np.concatenate([(X.T @ d + 0.1 * w).ravel(), d.sum(axis=0) + 0.1 * b])


def init_params(dtype=jnp.float32):
    return {"w": jnp.asarray(W0, dtype), "b": jnp.asarray(B0, dtype)}


def flatten(params):
    return np.concatenate([np.asarray(params["w"], np.float64).ravel(), np.asarray(params["b"], np.float64)])


X0 = flatten({"w": W0, "b": B0})


def run(step, steps, x0=X0, grad=flat_grad):
    """Iterates ``x, state = step(x, g, t, state)`` with ``t`` from 1; returns all iterates."""
    xs, x, state = [x0], x0.copy(), {}
    for t in range(1, steps + 1):
        x, state = step(x, grad(x), t, state)
        xs.append(x)
    return np.stack(xs)


def zeros(state, *names, like):
    for n in names:
        state.setdefault(n, np.zeros_like(like))
    return state


def sgd(lr):
    def step(x, g, t, s):  # θ ← θ - η ∇J(θ)
        return x - lr * g, s

    return step


def momentum_velocity(lr, gamma):
    def step(x, g, t, s):  # v = γv + ηg; θ ← θ - v
        zeros(s, "v", like=x)
        s["v"] = gamma * s["v"] + lr * g
        return x - s["v"], s

    return step


def momentum_ema(lr, beta):
    def step(x, g, t, s):  # v = βv + (1-β)g; θ ← θ - ηv
        zeros(s, "v", like=x)
        s["v"] = beta * s["v"] + (1 - beta) * g
        return x - lr * s["v"], s

    return step


def nesterov_literal(lr, gamma, steps, x0=X0, grad=flat_grad):
    """Seed 000: v = γv + η∇J(θ - γv); θ ← θ - v. Returns the look-ahead points θ - γv."""
    x, v, points = x0.copy(), np.zeros_like(x0), [x0.copy()]
    for _ in range(steps):
        v = gamma * v + lr * grad(x - gamma * v)
        x = x - v
        points.append(x - gamma * v)
    return np.stack(points)


def adagrad(lr, eps=0.0, eps_root=0.0, g0=0.0):
    def step(x, g, t, s):  # G = G0 + Σg²; θ ← θ - η g / (√(G + ε_root) + ε)
        zeros(s, "G", like=x)
        s["G"] = s["G"] + g * g
        return x - lr * g / (np.sqrt(g0 + s["G"] + eps_root) + eps), s

    return step


def adadelta(lr, rho, eps):
    def step(x, g, t, s):  # Zeiler 2012, Algorithm 1
        zeros(s, "Eg", "Edx", like=x)
        s["Eg"] = rho * s["Eg"] + (1 - rho) * g * g
        dx = -np.sqrt(s["Edx"] + eps) / np.sqrt(s["Eg"] + eps) * g
        s["Edx"] = rho * s["Edx"] + (1 - rho) * dx * dx
        return x + lr * dx, s

    return step


def rmsprop(lr, decay, eps=0.0, eps_root=0.0, centered=False, mom=None, nesterov=False):
    def step(x, g, t, s):  # E[g²] = ρE[g²] + (1-ρ)g²; θ ← θ - η g / √(E[g²] (- E[g]²) + ε)
        zeros(s, "Eg2", "Eg", "v", like=x)
        s["Eg2"] = decay * s["Eg2"] + (1 - decay) * g * g
        s["Eg"] = decay * s["Eg"] + (1 - decay) * g
        var = s["Eg2"] - s["Eg"] ** 2 if centered else s["Eg2"]
        d = lr * g / (np.sqrt(var + eps_root) + eps)
        if mom is None:
            return x - d, s
        s["v"] = mom * s["v"] + d
        return x - (mom * s["v"] + d if nesterov else s["v"]), s

    return step


def adam(lr, b1, b2, eps=0.0, eps_root=0.0, nesterov=False):
    def step(x, g, t, s):  # Kingma & Ba, Algorithm 1; Nesterov: Dozat 2016 with a constant β1
        zeros(s, "m", "v", like=x)
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        if nesterov:
            m_hat = b1 * s["m"] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        return x - lr * m_hat / (np.sqrt(v_hat + eps_root) + eps), s

    return step


def adamax(lr, b1, b2, eps=0.0):
    def step(x, g, t, s):  # u = max(β2 u, |g|); θ ← θ - η/(1-β1^t) · m / (u + ε)
        zeros(s, "m", "u", like=x)
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["u"] = np.maximum(b2 * s["u"], np.abs(g))
        return x - lr / (1 - b1**t) * s["m"] / (s["u"] + eps), s

    return step


def nadam_seed(lr, b1, b2, eps_root):
    def step(x, g, t, s):  # θ ← θ - η/√(v̂ + ε) (β1 m̂_t + (1-β1) g_t / (1-β1^t))
        zeros(s, "m", "v", like=x)
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        return x - lr / np.sqrt(v_hat + eps_root) * (b1 * m_hat + (1 - b1) * g / (1 - b1**t)), s

    return step


def nadam_dozat(lr, b1, b2, eps, psi):
    def mu(t):
        return b1 * (1 - 0.5 * 0.96 ** (t * psi))

    def step(x, g, t, s):  # Dozat 2016, Algorithm 2
        zeros(s, "m", "n", like=x)
        prod = s.get("prod", 1.0) * mu(t)
        s["prod"] = prod
        g_hat = g / (1 - prod)
        s["m"] = mu(t) * s["m"] + (1 - mu(t)) * g
        m_hat = s["m"] / (1 - prod * mu(t + 1))
        s["n"] = b2 * s["n"] + (1 - b2) * g * g
        n_hat = s["n"] / (1 - b2**t)
        m_bar = (1 - mu(t)) * g_hat + mu(t + 1) * m_hat
        return x - lr * m_bar / (np.sqrt(n_hat) + eps), s

    return step


def trajectory(tx, steps, dtype=jnp.float32, params=None):
    """Runs a jgd (or optax) transform on :func:`loss`; returns the flat iterates."""
    params = init_params(dtype) if params is None else params
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss)(params)
        updates, state = tx.update(grads, state, params)
        return jgd.apply_updates(params, updates), state

    xs = [flatten(params)]
    for _ in range(steps):
        params, state = step(params, state)
        xs.append(flatten(params))
    return np.stack(xs)
