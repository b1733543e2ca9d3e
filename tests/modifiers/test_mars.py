"""jgd.mars against the paper's MARS-AdamW, approximate form (NumPy), and its correction on hand-made gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from tests import modern_reference as ref

STEPS = 20


def mars_adamw(lr, b1, b2, eps, wd, gamma, clipped):
    """Yuan et al. 2024, MARS-AdamW with ``g_{t-1}`` the previous step's gradient (``g_0 = 0``, as their code):
    ``c = g_t + γ β1/(1-β1) (g_t - g_{t-1})``, ``c ← c/‖c‖`` if ``‖c‖ > 1`` (per tensor), then AdamW on ``c``.

    ``clipped`` collects whether each step and leaf was clipped.
    """

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            g = grads[k]
            previous = state.get(("g", k), np.zeros_like(p))
            c = g + gamma * b1 / (1 - b1) * (g - previous)
            norm = np.sqrt(np.sum(c * c))
            clipped.append(norm > 1)
            if norm > 1:
                c = c / norm
            out[k] = p - lr * (ref.adam_direction(state, k, c, t, b1, b2, eps) + wd * p)
            state[("g", k)] = g
        return out

    return step


# The paper's γ and betas (no leaf's corrected gradient reaches norm 1 on this problem), and a γ that clips.
@pytest.mark.parametrize("gamma, clips", [(0.025, False), (2.0, True)], ids=["paper", "clipping"])
def test_matches_the_papers_mars_adamw(x64, gamma, clips):
    lr, b1, b2, eps, wd = 3e-3, 0.95, 0.99, 1e-8, 0.1
    clipped = []
    want = ref.run(mars_adamw(lr, b1, b2, eps, wd, gamma, clipped), STEPS)
    got = ref.trajectory(jgd.mars(jgd.adamw(lr, b1, b2, eps, weight_decay=wd), gamma, b1), STEPS)
    assert any(clipped) == clips
    assert ref.max_relative_difference(got, want) <= 1e-10


def test_the_correction_and_the_clipping_on_hand_made_gradients():
    tx = jgd.mars(jgd.sgd(1.0), mars_gamma=0.1, mars_b1=0.5)  # γ β1/(1-β1) = 0.1
    state = tx.init(jnp.zeros(2))
    first, state = tx.update(jnp.asarray([0.3, 0.4]), state)  # c = 1.1 g (g_0 = 0), ‖c‖ = 0.55
    np.testing.assert_allclose(first, -1.1 * np.asarray([0.3, 0.4]), rtol=1e-6)
    second, state = tx.update(jnp.asarray([3.0, 4.0]), state)  # c = g + 0.1 (g - g_1) = (3.27, 4.36)
    np.testing.assert_allclose(second, -np.asarray([0.6, 0.8]), rtol=1e-6)
    np.testing.assert_array_equal(state.correction.slots["previous_grad"], [3.0, 4.0])


def test_its_settings_are_data_and_checked():
    state = jgd.mars(jgd.adam(0.1)).init(jnp.ones(2))
    assert {k: round(float(v), 6) for k, v in jgd.hyperparams(state).items() if k.startswith("mars")} == {
        "mars_gamma": 0.025,
        "mars_b1": 0.95,
    }
    with pytest.raises(ValueError, match="mars_b1 must be in \\[0, 1\\)"):
        jgd.mars(jgd.adam(0.1), mars_b1=1.0)
    with pytest.raises(ValueError, match="mars_gamma must be >= 0"):
        jgd.mars(jgd.adam(0.1), mars_gamma=-0.1)
    with pytest.raises(ValueError, match="state_dtype for slot 'previous_grad'"):
        jgd.mars(jgd.adam(0.1), state_dtype=jnp.int8)


def test_jax_grad_through_a_zero_gradient_is_finite():
    def step(scale):
        tx = jgd.mars(jgd.sgd(0.1))
        g = {"zero": scale * jnp.zeros(2), "one": scale * jnp.ones(2)}
        updates, _ = tx.update(g, tx.init(g))
        return sum(jnp.sum(u) for u in updates.values())

    assert np.isfinite(jax.grad(step)(1.0))
