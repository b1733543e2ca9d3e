"""jgd.cautious against the paper's C-AdamW (NumPy), and its mask on hand-made updates, real and complex."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from tests import modern_reference as ref

STEPS = 20


def c_adamw(lr, b1, b2, eps, wd, cautious_eps, dropped):
    """Liang et al. 2024: Adam's direction ``u``, ``φ = 1[u g > 0]``, ``θ ← θ - η u φ / (mean φ + ε) - η λ θ``.

    ``dropped`` collects the number of entries the mask removes at each step and leaf.
    """

    def step(params, grads, t, state):
        out = {}
        for k, p in params.items():
            g = grads[k]
            u = ref.adam_direction(state, k, g, t, b1, b2, eps)  # the direction: θ moves by -η u
            phi = (u * g > 0).astype(np.float64)
            dropped.append(int(phi.size - phi.sum()))
            out[k] = p - lr * u * phi / (phi.mean() + cautious_eps) - lr * wd * p
        return out

    return step


def test_matches_the_papers_c_adamw(x64):
    # ε far from its default, so that where it enters (mean(φ) + ε) shows
    lr, b1, b2, eps, wd, cautious_eps = 0.02, 0.9, 0.99, 1e-8, 0.1, 0.5
    dropped = []
    want = ref.run(c_adamw(lr, b1, b2, eps, wd, cautious_eps, dropped), STEPS)
    tx = jgd.chain(jgd.cautious(jgd.adam(lr, b1, b2, eps), cautious_eps), jgd.weight_decay(lr * wd))
    got = ref.trajectory(tx, STEPS)
    assert sum(dropped) > 0  # the mask removes entries on this run, so the test sees it
    assert ref.max_relative_difference(got, want) <= 1e-10


def _fixed(factor):
    """A stateless transform whose update is ``factor ⊙ g`` (a hand-made direction)."""
    return jgd.GradientTransformation(lambda params: (), lambda g, state, params=None: (factor * g, state))


def test_keeps_the_entries_that_lower_the_loss_rescaled_by_the_fraction_kept():
    g = jnp.asarray([1.0, -2.0, 3.0, 0.5])
    factor = jnp.asarray([-0.1, 0.2, -0.3, 0.0])  # descent, ascent, descent, no step
    tx = jgd.cautious(_fixed(factor), cautious_eps=0.0)
    updates, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(updates, np.asarray([-0.1, 0.0, -0.9, 0.0]) / 0.5, rtol=1e-6)


def test_an_update_that_climbs_everywhere_becomes_zero():
    g = {"w": jnp.asarray([[1.0, -2.0], [3.0, 4.0]])}
    for eps in (0.0, 1e-8):
        tx = jgd.cautious(jgd.scale(0.5), cautious_eps=eps)  # u = g/2: uphill in every entry
        updates, _ = tx.update(g, tx.init(g))
        np.testing.assert_array_equal(updates["w"], 0.0)


def test_complex_leaves_keep_the_entries_with_negative_real_part_of_conj_g_times_u():
    g = jnp.asarray([1 + 1j, 2 - 1j, -1 + 0.5j], jnp.complex64)
    factor = jnp.asarray([-1 + 3j, 1 - 4j, -0.5 - 2j], jnp.complex64)  # Re(ḡ u) = |g|² Re(factor)
    tx = jgd.cautious(_fixed(factor), cautious_eps=0.0)
    updates, _ = tx.update(g, tx.init(g))
    kept = np.asarray([1.0, 0.0, 1.0])
    np.testing.assert_allclose(updates, np.asarray(factor * g) * kept / kept.mean(), rtol=1e-6)
    assert updates.dtype == jnp.complex64


def test_cautious_eps_is_data_and_checked():
    state = jgd.cautious(jgd.sgd(0.1)).init(jnp.ones(2))
    assert float(jgd.hyperparams(state)["cautious_eps"]) == pytest.approx(1e-8)
    assert float(jgd.hyperparams(jgd.set_hyperparams(state, cautious_eps=0.5))["cautious_eps"]) == 0.5
    with pytest.raises(ValueError, match="cautious_eps must be >= 0"):
        jgd.cautious(jgd.sgd(0.1), cautious_eps=-1.0)
    with pytest.raises(ValueError, match="cautious_eps must be >= 0"):
        jgd.set_hyperparams(state, cautious_eps=-1.0)


def test_jax_grad_through_steps_where_nothing_is_kept_is_finite():
    def final(scale):
        tx = jgd.cautious(jgd.scale(scale), cautious_eps=0.0)
        g = jnp.asarray([1.0, 2.0])
        updates, _ = tx.update(g, tx.init(g))
        return jnp.sum(updates)

    assert np.isfinite(jax.grad(final)(0.5))
