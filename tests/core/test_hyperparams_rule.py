"""Whose hyperparameter value wins: the one set most recently, through the transform or through set_hyperparams."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd

PARAMS = {"w": jnp.ones(3), "b": jnp.zeros(2)}
GRADS = {"w": jnp.full(3, 2.0), "b": jnp.ones(2)}


def _sgd_step(tx, state):
    updates, state = jax.jit(tx.update)(GRADS, state, PARAMS)
    return float(updates["b"][0]), state


def test_a_transform_with_other_constants_steps_with_them():
    state = jgd.sgd(0.1).init(PARAMS)
    step, state = _sgd_step(jgd.sgd(0.5), state)
    assert step == pytest.approx(-0.5)
    np.testing.assert_allclose(jgd.hyperparams(state)["learning_rate"], 0.5)


def test_set_hyperparams_wins_until_the_transform_changes():
    tx = jgd.sgd(0.1)
    state = jgd.set_hyperparams(tx.init(PARAMS), learning_rate=0.3)
    for _ in range(2):
        step, state = _sgd_step(tx, state)
        assert step == pytest.approx(-0.3)
    step, state = _sgd_step(jgd.sgd(0.7), state)  # the user changed the transform since: it wins
    assert step == pytest.approx(-0.7)
    step, state = _sgd_step(jgd.sgd(0.7), state)
    assert step == pytest.approx(-0.7)


def test_a_constant_and_a_schedule_swap_either_way():
    state = jgd.sgd(0.1).init(PARAMS)
    step, state = _sgd_step(jgd.sgd(jgd.schedules.exponential(1.0, 0.5, 1)), state)
    assert step == pytest.approx(-1.0)  # the schedule at count 0
    step, state = _sgd_step(jgd.sgd(jgd.schedules.exponential(1.0, 0.5, 1)), state)
    assert step == pytest.approx(-0.5)
    step, state = _sgd_step(jgd.sgd(0.2), state)  # back to a constant, which can then be set
    assert step == pytest.approx(-0.2)
    state = jgd.set_hyperparams(state, learning_rate=0.05)
    step, state = _sgd_step(jgd.sgd(0.2), state)
    assert step == pytest.approx(-0.05)


def test_the_rule_holds_for_every_hyperparameter_of_adam():
    new = jgd.adam(0.01, b1=0.5, b2=0.9, eps=1e-3)
    _, state = new.update(GRADS, jgd.adam(0.01).init(PARAMS), PARAMS)
    hp = jgd.hyperparams(state)
    np.testing.assert_allclose([hp["b1"], hp["b2"], hp["eps"]], [0.5, 0.9, 1e-3], rtol=1e-6)
    want, _ = new.update(GRADS, new.init(PARAMS), PARAMS)
    got, _ = new.update(GRADS, jgd.adam(0.01).init(PARAMS), PARAMS)
    jax.tree.map(np.testing.assert_array_equal, got, want)


def test_the_rule_holds_under_vmap_with_traced_constants():
    lrs = jnp.asarray([0.1, 0.2, 0.4])

    def run(lr):  # a state made by sgd(0.05), stepped by sgd(lr): lr applies
        updates, _ = jgd.sgd(lr).update(GRADS, jgd.sgd(0.05).init(PARAMS), PARAMS)
        return updates["b"][0]

    np.testing.assert_allclose(jax.vmap(run)(lrs), -lrs, rtol=1e-6)


def test_quasi_newton_follows_the_rule_for_its_line_search():
    x = jnp.asarray([1.0, 2.0])
    state = jgd.lbfgs(linesearch=jgd.zoom_linesearch(c1=1e-4, c2=0.9)).init(x)
    tx = jgd.lbfgs(linesearch=jgd.zoom_linesearch(c1=1e-3, c2=0.5))
    _, state = tx.update(x, state, x, value_fn=lambda v: jnp.sum(v**2))
    np.testing.assert_allclose([jgd.hyperparams(state)["c1"], jgd.hyperparams(state)["c2"]], [1e-3, 0.5], rtol=1e-6)


def test_set_hyperparams_checks_c1_below_c2_like_the_constructor():
    with pytest.raises(ValueError, match="c1 must be smaller than c2"):
        jgd.zoom_linesearch(c1=0.95, c2=0.9)
    state = jgd.lbfgs().init(jnp.ones(2))
    with pytest.raises(ValueError, match="c1 must be in"):
        jgd.set_hyperparams(state, c1=2.0)
    with pytest.raises(ValueError, match="c1 must be smaller than c2"):
        jgd.set_hyperparams(state, c1=0.95)


def test_labels_read_and_set_one_member_of_a_chain():
    tx = jgd.chain(jgd.named("encoder", jgd.sgd(0.1)), jgd.named("decoder", jgd.adam(0.01)))
    state = tx.init(PARAMS)
    hp = jgd.hyperparams(state)
    assert {"encoder/learning_rate", "decoder/learning_rate", "decoder/b1"} <= set(hp)  # a label always shows
    state = jgd.set_hyperparams(state, {"decoder/learning_rate": 0.5})
    hp = jgd.hyperparams(state)
    np.testing.assert_allclose([hp["encoder/learning_rate"], hp["decoder/learning_rate"]], [0.1, 0.5])
    state = jgd.set_hyperparams(state, learning_rate=0.2)  # a plain name sets every member that has it
    hp = jgd.hyperparams(state)
    np.testing.assert_allclose([hp["encoder/learning_rate"], hp["decoder/learning_rate"]], [0.2, 0.2])
    with pytest.raises(ValueError, match="unknown hyperparameter 'middle/learning_rate'"):
        jgd.set_hyperparams(state, {"middle/learning_rate": 0.1})
    with pytest.raises(ValueError, match="label"):
        jgd.named("a/b", jgd.sgd())


def test_reading_a_state_without_a_jgd_transform_is_an_error():
    with pytest.raises(ValueError, match="holds no jgd transform state"):
        jgd.hyperparams({"count": jnp.zeros(()), "mu": jnp.zeros(3)})  # e.g. restored without a target
    with pytest.raises(ValueError, match="holds no jgd transform state"):
        jgd.set_hyperparams((), learning_rate=0.1)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: jgd.adam("1e-3"), "learning_rate must be a number"),
        (lambda: jgd.sgd(b"1"), "learning_rate must be a number"),
        (lambda: jgd.momentum(momentum=None), "momentum must be a number"),
        (lambda: jgd.adam(b1=True), "b1 must be a number"),
    ],
)
def test_values_that_are_not_numbers_name_the_parameter(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("make", [jgd.sgd, jgd.momentum, jgd.adam, jgd.rmsprop, lambda: jgd.clip_by_norm(1.0)])
def test_grads_of_another_shape_name_the_tree_path(make):
    tx = make()
    state = tx.init(PARAMS)
    bad = {"w": jnp.ones((3, 1)), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"\['w'\] has shape \(3, 1\)"):
        tx.update(bad, state, PARAMS)
