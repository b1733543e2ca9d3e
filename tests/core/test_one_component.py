"""One hyperparameter component: the same life cycle, ranges, names, labels and errors for every transform."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jgd
from jgd.leafwise import leafwise

PARAMS = {"b": jnp.zeros(3), "w": jnp.ones((2, 3))}
GRADS = {"b": jnp.full(3, 0.5), "w": jnp.full((2, 3), -0.25)}


def schedule(step):
    return 0.1 / (1.0 + step)


def _quadratic(x):
    return jnp.sum(x * x)


def _run(tx, steps, params=PARAMS, **extra):
    state = tx.init(params)
    for _ in range(steps):
        grads = jax.tree.map(lambda p: 2 * p + 0.5, params)
        updates, state = tx.update(grads, state, params, **extra)
        params = jgd.apply_updates(params, updates)
    return state


@pytest.mark.parametrize(
    "make, params, extra",
    [
        (lambda s: jgd.adam(s), PARAMS, {}),
        (lambda s: jgd.lbfgs(learning_rate=s), jnp.ones(3), {"value_fn": _quadratic}),
        (lambda s: jgd.skip_spikes(jgd.sgd(0.1), num_std=s), PARAMS, {}),
    ],
    ids=["adam", "lbfgs", "skip_spikes"],
)
def test_a_scheduled_name_reports_the_value_the_last_step_used(make, params, extra):
    tx = make(schedule)
    key = "num_std" if "skip" in str(make.__code__.co_names) else "learning_rate"
    assert float(jgd.hyperparams(tx.init(params))[key]) == pytest.approx(schedule(0))  # what step 1 will use
    state = _run(tx, 3, params, **extra)
    assert float(jgd.hyperparams(state)[key]) == pytest.approx(schedule(2))  # what step 3 used


def test_the_convention_is_optax_inject_hyperparams():
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=schedule)
    state = injected.init(PARAMS)
    for _ in range(3):
        _, state = injected.update(GRADS, state, PARAMS)
    ours = _run(jgd.adam(schedule), 3)
    assert float(jgd.hyperparams(ours)["learning_rate"]) == pytest.approx(float(state.hyperparams["learning_rate"]))


def test_set_hyperparams_checks_the_range_of_the_transform_that_made_the_state():
    state = jgd.schedule_free_sgd(b1=0.9).init(PARAMS)
    with pytest.raises(ValueError, match=r"b1 must be in \(0, 1\)"):
        jgd.set_hyperparams(state, b1=0.0)
    with pytest.raises(ValueError, match=r"b1 must be in \(0, 1\)"):
        jgd.schedule_free_sgd(b1=0.0)
    jgd.set_hyperparams(jgd.adam().init(PARAMS), b1=0.0)  # Adam's b1 may be 0: the narrowing is schedule-free's
    with pytest.raises(ValueError, match="threshold must be > 4"):
        jgd.radam(threshold=1.0)
    with pytest.raises(ValueError, match="threshold must be > 4"):
        jgd.set_hyperparams(jgd.radam().init(PARAMS), threshold=4.0)


def test_set_hyperparams_refuses_a_value_of_another_shape():
    state = jgd.adam(0.1).init(PARAMS)
    with pytest.raises(ValueError, match=r"learning_rate holds an array of shape \(\); .* got shape \(3,\)"):
        jgd.set_hyperparams(state, learning_rate=jnp.ones(3))
    swept = jax.vmap(lambda lr: jgd.adam(lr).init(PARAMS))(jnp.array([0.1, 0.2]))
    both = jgd.set_hyperparams(swept, learning_rate=0.3)  # a scalar sets every member of a sweep
    np.testing.assert_allclose(jgd.hyperparams(both)["learning_rate"], [0.3, 0.3])
    each = jgd.set_hyperparams(swept, learning_rate=jnp.array([0.5, 0.6]))
    np.testing.assert_allclose(jgd.hyperparams(each)["learning_rate"], [0.5, 0.6])


def test_an_update_given_another_transforms_state_names_both():
    with pytest.raises(TypeError, match=r"adam.update needs the state adam.init makes .* got dict"):
        jgd.adam(0.1).update(GRADS, {"x": 1}, PARAMS)
    with pytest.raises(TypeError, match=r"adam.update needs .* got the state of sgd"):
        jgd.adam(0.1).update(GRADS, jgd.sgd(0.1).init(PARAMS), PARAMS)
    with pytest.raises(TypeError, match=r"accumulate.update needs .* got the state of sgd"):
        jgd.accumulate(jgd.sgd(0.1), 2).update(GRADS, jgd.sgd(0.1).init(PARAMS), PARAMS)


@pytest.mark.parametrize(
    "tx",
    [
        jgd.lars(0.1),
        jgd.rmsprop(0.1, momentum=0.9),
        jgd.sgd(0.1, momentum=0.9),
        jgd.momentum(0.1, 0.9, form="ema"),
        jgd.momentum(0.1, 0.9, form="trace"),
        jgd.nesterov(0.1, 0.9),
    ],
    ids=["lars", "rmsprop_momentum", "sgd_trace", "momentum_ema", "momentum_trace", "nesterov"],
)
def test_look_ahead_refuses_every_state_but_velocity_form_momentum(tx):
    with pytest.raises(ValueError, match="look_ahead needs the state of momentum"):
        jgd.look_ahead(PARAMS, tx.init(PARAMS))


def test_look_ahead_and_schedule_free_eval_find_their_own_state_in_a_chain():
    state = jgd.chain(jgd.clip_by_global_norm(1.0), jgd.momentum(0.1, 0.5)).init(PARAMS)
    state = jgd.set_hyperparams(state, momentum=0.5)
    assert jax.tree.structure(jgd.look_ahead(PARAMS, state)) == jax.tree.structure(PARAMS)
    with pytest.raises(ValueError, match="schedule_free_eval_params needs the state of schedule_free_sgd"):
        jgd.schedule_free_eval_params(jgd.adam().init(PARAMS), PARAMS)
    state = jgd.chain(jgd.named("sf", jgd.schedule_free_sgd(0.1))).init(PARAMS)
    np.testing.assert_allclose(jgd.schedule_free_eval_params(state, PARAMS)["w"], PARAMS["w"])


def test_a_wrappers_own_setting_shares_no_name_with_a_method():
    state = jgd.skip_spikes(jgd.radam(threshold=5.0), num_std=6.0).init(PARAMS)
    state = jgd.set_hyperparams(state, threshold=7.0)
    values = jgd.hyperparams(state)
    assert float(values["threshold"]) == 7.0 and float(values["num_std"]) == 6.0


@pytest.mark.parametrize(
    "make",
    [
        lambda mask: jgd.adamw(0.1, weight_decay=0.5, mask=mask),
        lambda mask: jgd.lion(0.1, weight_decay=0.5, mask=mask),
        lambda mask: jgd.lamb(0.1, weight_decay=0.5, mask=mask),
    ],
    ids=["adamw", "lion", "lamb"],
)
def test_every_mask_argument_means_the_same(make):
    params = {"b": jnp.zeros(3), "w": jnp.arange(6.0).reshape(2, 3) - 2}  # uneven: LAMB's norm keeps no direction

    def step(mask):
        return make(mask).update(GRADS, make(mask).init(params), params)[0]

    every, none = step(True), step(False)
    for leaf in ("b", "w"):
        np.testing.assert_array_equal(step(None)[leaf], every[leaf])
    assert not np.allclose(every["w"], none["w"])  # the decay moves w
    by_tree, by_function = step({"b": False, "w": True}), step(lambda p: {"b": False, "w": True})
    for chosen in (by_tree, by_function):
        np.testing.assert_array_equal(chosen["w"], every["w"])
        np.testing.assert_array_equal(chosen["b"], none["b"])


def test_a_label_always_shows_and_adding_a_member_renames_nothing():
    one = jgd.hyperparams(jgd.named("enc", jgd.adam(0.1)).init(PARAMS))
    assert set(one) == {"enc/learning_rate", "enc/b1", "enc/b2", "enc/eps", "enc/eps_root"}
    two = jgd.hyperparams(jgd.chain(jgd.named("enc", jgd.adam(0.1)), jgd.named("dec", jgd.sgd(0.2))).init(PARAMS))
    assert set(one) <= set(two) and "dec/learning_rate" in two
    plain = jgd.hyperparams(jgd.chain(jgd.adam(0.1), jgd.sgd(0.2)).init(PARAMS))
    assert {"0/learning_rate", "1/learning_rate", "b1"} <= set(plain)  # positions only where names collide
    nested = jgd.hyperparams(jgd.named("enc", jgd.chain(jgd.adam(0.1), jgd.sgd(0.2))).init(PARAMS))
    assert {"enc/0/learning_rate", "enc/1/learning_rate", "enc/b1"} <= set(nested)


def test_a_rule_must_declare_what_it_uses():
    with pytest.raises(ValueError, match=r"must name each keyword argument it uses, not take \*\*kwargs"):
        leafwise("mine", lambda g, *, t, **_: (g, ()), {"learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"takes \['rate'\], which are neither hyperparameters"):
        leafwise("mine", lambda g, *, rate: (g, ()), {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="takes 2 positional arguments"):
        leafwise("mine", lambda g, m, *, learning_rate: (g, ()), {"learning_rate": 0.1})

    seen = []

    def rule(g, *, learning_rate):  # only what it declares reaches it: no t, no other hyperparameter
        seen.append(learning_rate)
        return -learning_rate * g, ()

    tx = leafwise("mine", rule, {"learning_rate": 0.1, "momentum": 0.5})
    tx.update(GRADS, tx.init(PARAMS))
    assert len(seen) == 2


def test_mistakes_are_named_where_they_are_made():
    with pytest.raises(TypeError, match=r"tx must be a gradient transformation; got the function adam: call it"):
        jgd.accumulate(jgd.adam, 4)
    with pytest.raises(TypeError, match="tx must be a gradient transformation"):
        jgd.skip_spikes(jgd.sgd)
    with pytest.raises(TypeError, match="inner must be a gradient transformation"):
        jgd.apply_if_finite(jgd.sgd)
    for dtype in (jnp.int32, jnp.bool_, "not a dtype"):
        with pytest.raises(ValueError, match="dtype must be a floating dtype"):
            jgd.accumulate(jgd.sgd(0.1), 2, dtype=dtype)
    with pytest.raises(TypeError, match="offload moves the slots of jgd transforms"):
        jgd.offload(optax.adam(1e-3))
    with pytest.raises(ValueError, match="holds no jgd slots"):
        jgd.offload(jgd.chain(optax.adam(1e-3))).init(PARAMS)


def test_a_key_hyperparams_shows_sets_that_value_and_a_plain_name_sets_every_member():
    state = jgd.chain(jgd.adam(0.1), jgd.named("enc", jgd.sgd(0.2)), jgd.named("dec", jgd.sgd(0.3))).init(PARAMS)
    assert {"learning_rate", "enc/learning_rate", "dec/learning_rate"} <= set(jgd.hyperparams(state))
    values = jgd.hyperparams(jgd.set_hyperparams(state, learning_rate=0.5))  # the key shown: Adam's alone
    np.testing.assert_allclose([values["learning_rate"], values["enc/learning_rate"]], [0.5, 0.2])
    state = jgd.chain(jgd.named("enc", jgd.sgd(0.2)), jgd.named("dec", jgd.sgd(0.3))).init(PARAMS)
    values = jgd.hyperparams(jgd.set_hyperparams(state, learning_rate=0.5))  # no such key: every member
    np.testing.assert_allclose([values["enc/learning_rate"], values["dec/learning_rate"]], [0.5, 0.5])
