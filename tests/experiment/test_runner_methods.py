"""The runner's method table: every method builds from a minimal config and trains; schedule-free is measured at x_t."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from jgd.experiment.config.method_table import METHODS
from jgd.experiment.config.optimizers import build_optimizer
from jgd.experiment.config.reader import parse_config
from jgd.experiment.config.schema import TrainingConfig
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.models import MLP, init_variables
from jgd.experiment.train.steps import RunState, make_evaluate, make_train_step
from jgd.experiment.train.training import fit


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return Dataset("toy", x, y, x, y, x, y, 3)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_builds_from_a_minimal_config_and_steps(name):
    config = parse_config({"optimizer": {"name": name}})
    tx = build_optimizer(config.optimizer)
    model = MLP((4,), 3)
    params = init_variables(model, jax.random.key(0), 5)["params"]
    data = _data()
    step = make_train_step(model, "cross_entropy", tx)
    state = RunState(params, {}, tx.init(params))
    for _ in range(2):  # two steps: ADOPT's first only starts its second moment
        state, loss = step(state, (data.x_train, data.y_train), None, jax.random.key(1))
    assert np.isfinite(loss)
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, params)
    assert any(jax.tree.leaves(moved)), f"{name} left every parameter unchanged"
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(state.params))


@pytest.mark.parametrize("name", ["ns_coeffs", "weight_decay_mask"])
def test_arguments_given_in_code_only_are_refused(name):
    with pytest.raises(ValueError, match=rf"^optimizer\.{name} is not a hyperparameter of muon"):
        parse_config({"optimizer": {"name": "muon", name: 1.0}})


def test_schedule_free_is_measured_at_its_average():
    model = MLP((8,), 3)
    variables = init_variables(model, jax.random.key(0), 5)
    data = _data(n=40)
    state, history = fit(
        model, variables, jgd.schedule_free_adamw(0.05), data, jax.random.key(2), TrainingConfig(epochs=2, batch_size=8)
    )
    evaluate = make_evaluate(model, "cross_entropy")
    average = jgd.schedule_free_eval_params(state.opt_state, state.params)
    at_average = evaluate(average, {}, data.x_test, data.y_test)
    at_params = evaluate(state.params, {}, data.x_test, data.y_test)
    assert float(at_average[0]) != float(at_params[0])  # the two points differ, so the check below can fail
    np.testing.assert_allclose(history.test["loss"], at_average[0], rtol=1e-6)
    np.testing.assert_allclose(history.epochs[-1]["val_loss"], at_average[0], rtol=1e-6)  # val = test split here


# Each added method with a hyperparameter of its own, as a config writes it; the state must hold the value given.
YAML_METHODS = {
    "yogi": ("{name: yogi, learning_rate: 0.02, b2: 0.99}", "b2", 0.99),
    "adan": ("{name: adan, b3: 0.9, form: optax}", "b3", 0.9),
    "novograd": ("{name: novograd, b1: 0.8}", "b1", 0.8),
    "signum": ("{name: signum, beta: 0.5}", "beta", 0.5),
    "sm3": ("{name: sm3, momentum: 0.5}", "momentum", 0.5),
    "fromage": ("{name: fromage, min_norm: 1.0e-3}", "min_norm", 1e-3),
    "rprop": ("{name: rprop, eta_plus: 1.5, form: optax}", "eta_plus", 1.5),
    "noisy_sgd": ("{name: noisy_sgd, eta: 0.3, key: 3}", "eta", 0.3),
    "optimistic_gradient_descent": ("{name: optimistic_gradient_descent, alpha: 0.5}", "alpha", 0.5),
    "polyak_sgd": ("{name: polyak_sgd, max_learning_rate: 0.5, variant: sps+}", "max_learning_rate", 0.5),
}


@pytest.mark.parametrize("name", sorted(YAML_METHODS))
def test_added_methods_read_their_hyperparameters_from_yaml(name):
    import yaml

    text, key, value = YAML_METHODS[name]
    config = parse_config(yaml.safe_load(f"optimizer: {text}"))
    tx = build_optimizer(config.optimizer)
    state = tx.init({"w": jnp.ones((3, 2)), "b": jnp.ones(2)})
    np.testing.assert_allclose(jgd.hyperparams(state)[key], value, rtol=1e-6)


def test_a_misspelled_hyperparameter_of_an_added_method_names_the_field():
    with pytest.raises(ValueError, match=r"^optimizer\.beta2 is not a hyperparameter of yogi"):
        parse_config({"optimizer": {"name": "yogi", "beta2": 0.9}})
