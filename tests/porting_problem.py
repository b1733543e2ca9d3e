"""The problem every porting test runs: 50 steps on a non-quadratic objective of two tensors, in float64.

``f(w, b) = Σ log(1 + r²)``, ``r = X w + b - Y``: each optimizer takes its gradient at its own
iterates, so a difference in any step shows in the rest of the trajectory.
"""

import jax
import jax.numpy as jnp
import numpy as np

import jgd

STEPS = 50
_rng = np.random.default_rng(0)
X, Y = _rng.normal(size=(6, 3)), _rng.normal(size=(6, 2))
W0, B0 = 0.5 * _rng.normal(size=(3, 2)), np.full(2, 0.1)


def gradient(w, b, xp=np):
    r = xp.asarray(X) @ w + b - xp.asarray(Y)
    d = 2 * r / (1 + r * r)
    return [xp.asarray(X).T @ d, d.sum(0)]


def flat(w, b):
    return np.concatenate([np.ravel(w), np.ravel(b)])


def trajectories(make_txs: dict) -> dict[str, np.ndarray]:
    """Runs every ``make_txs[name]()`` (a jgd or optax transform) in one jitted program, in float64.

    Returns name -> ``(STEPS, 8)`` array of the flattened params after each step.
    """
    with jax.enable_x64(True):
        txs = {name: make() for name, make in make_txs.items()}

        def run(tx):
            params = {"w": jnp.asarray(W0), "b": jnp.asarray(B0)}

            def body(carry, _):
                params, state = carry
                g = dict(zip(("w", "b"), gradient(params["w"], params["b"], jnp)))
                updates, state = tx.update(g, state, params)
                params = jgd.apply_updates(params, updates)
                return (params, state), jnp.concatenate([params["w"].ravel(), params["b"]])

            return jax.lax.scan(body, (params, tx.init(params)), None, length=STEPS)[1]

        out = jax.jit(lambda: {name: run(tx) for name, tx in txs.items()})()
        return {name: np.asarray(v) for name, v in out.items()}


def relative_difference(got, want) -> float:
    """``max |got - want| / max |want|`` over the whole trajectory."""
    return float(np.abs(np.asarray(got) - np.asarray(want)).max() / np.abs(want).max())
