"""Config files: the shipped configs parse, every bad field is a ValueError naming it, overrides apply."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jgd
from jgd.experiment.config.optimizers import build_optimizer, sweepable
from jgd.experiment.config.reader import apply_overrides, load_config, parse_config
from jgd.experiment.config.schema import OptimizerConfig
from jgd.experiment.config.writer import to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SEED_METHODS = ["SGD", "Momentum", "Nesterov", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdaMax", "Nadam", "L-BFGS"]


def test_compare_digits_runs_every_method_of_the_seeds():
    config = load_config(CONFIGS / "compare_digits.yaml")
    assert [m.label for m in config.methods] == SEED_METHODS
    lbfgs = config.methods[-1]
    assert lbfgs.optimizer.name == "lbfgs" and lbfgs.batch_size is None
    assert all(m.batch_size == config.training.batch_size for m in config.methods[:-1])
    assert config.data.name == "digits"


def test_train_digits_parses():
    config = load_config(CONFIGS / "train_digits.yaml")
    assert config.optimizer is not None and config.training.early_stopping is not None
    assert config.optimizer.hyperparams["learning_rate"]["schedule"] == "cosine"


@pytest.mark.parametrize("name", ["compare_digits.yaml", "compare_digits_lowbit.yaml", "train_digits.yaml"])
def test_round_trip(name):
    config = load_config(CONFIGS / name)
    assert parse_config(to_dict(config)) == config


def test_defaults():
    config = parse_config({"optimizer": {"name": "sgd"}})
    assert config.data.name == "digits" and config.model.hidden == (128,) and config.training.epochs == 30
    assert config.methods == () and config.output_dir is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"trainig": {}}, r"^trainig is not a known field; expected one of: seed, data"),
        ({"model": {"width": 3}}, r"^model\.width is not a known field"),
        ({"data": {"name": "digits", "shuffle": True}}, r"^data\.shuffle is not a known field"),
        ({"training": {"early_stopping": {"patience": 2, "delta": 1}}}, r"^training\.early_stopping\.delta is not"),
        ({"output": {"folder": "x"}}, r"^output\.folder is not a known field"),
        ({"optimizer": {"name": "adam", "lr": 0.1}}, r"^optimizer\.lr is not a hyperparameter of adam"),
        ({"optimizer": {"name": "adam", "learning_rate": -0.1}}, r"^optimizer\.learning_rate must be >= 0"),
        ({"optimizer": {"name": "momentum", "momentum": 1.5}}, r"^optimizer\.momentum must be in \[0, 1\)"),
        ({"optimizer": {"name": "adam", "learning_rate": "fast"}}, r"^optimizer\.learning_rate must be a number"),
        ({"optimizer": {"learning_rate": 0.1}}, r"^optimizer\.name is required"),
        ({"optimizer": {"name": "adahessian"}}, r"^optimizer\.name must be one of sgd, momentum"),
        ({"optimizer": {"name": "optax.nothing"}}, r"^optimizer\.name 'optax\.nothing' is not an optax optimizer"),
        ({"optimizer": {"name": "sgd", "l2": -1}}, r"^optimizer\.l2 must be >= 0"),
        ({"optimizer": {"name": "sgd", "max_norm": 0}}, r"^optimizer\.max_norm must be > 0"),
        ({"optimizer": {"name": "optax.lbfgs", "l2": 0.1}}, r"^optimizer\.l2 cannot be used with optax\.lbfgs"),
        (
            {"optimizer": {"name": "sgd", "learning_rate": {"schedule": "cosine", "init_value": 0.1}}},
            r"^optimizer\.learning_rate\.decay_steps is required by the cosine schedule",
        ),
        (
            {"optimizer": {"name": "sgd", "learning_rate": {"schedule": "cosine", "init_value": 1, "decay_steps": 0}}},
            r"^optimizer\.learning_rate\.decay_steps must be a positive integer",
        ),
        (
            {"optimizer": {"name": "sgd", "learning_rate": {"schedule": "wavy"}}},
            r"^optimizer\.learning_rate\.schedule must be one of constant",
        ),
        ({"training": {"batch_size": 0}}, r"^training\.batch_size must be an integer >= 1 or 'full'"),
        ({"training": {"epochs": True}}, r"^training\.epochs must be an integer >= 1"),
        ({"training": {"loss": "hinge"}}, r"^training\.loss must be one of cross_entropy, mse, mae"),
        ({"model": {"hidden": [8, 0]}}, r"^model\.hidden\[1\] must be an integer >= 1"),
        ({"model": {"hidden": 8}}, r"^model\.hidden must be a list"),
        ({"model": {"activation": "swish"}}, r"^model\.activation must be one of relu, leaky_relu, elu"),
        ({"model": {"dropout": 1.0}}, r"^model\.dropout must be < 1"),
        ({"data": {"name": "mnist"}}, r"^data\.path is required for mnist"),
        ({"data": {"validation_fraction": 0}}, r"^data\.validation_fraction must be > 0"),
        ({"seed": -1}, r"^seed must be an integer >= 0"),
        ({"methods": []}, r"^methods must be a non-empty list"),
        ({"methods": [{"optimizer": {"name": "sgd"}, "epochs": 3}]}, r"^methods\[0\]\.epochs is not a known field"),
        (
            {"methods": [{"optimizer": {"name": "sgd"}}, {"optimizer": {"name": "adam", "learning_rate": -1}}]},
            r"^methods\[1\]\.optimizer\.learning_rate must be >= 0",
        ),
        (
            {"methods": [{"optimizer": {"name": "sgd"}}, {"optimizer": {"name": "sgd"}}]},
            r"^methods\[1\]\.label 'sgd' repeats the label of methods\[0\]",
        ),
        ("just text", r"^the config must be a mapping"),
    ],
)
def test_bad_fields_are_named(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def test_yaml_number_spellings():
    # PyYAML reads 1e-3 as a string; it is still a number here.
    config = parse_config({"optimizer": {"name": "adam", "learning_rate": "1e-3"}})
    assert config.optimizer.hyperparams["learning_rate"] == 1e-3
    schedule = {
        "schedule": "exponential",
        "init_value": 0.1,
        "decay_rate": 0.5,
        "transition_steps": 4,
        "staircase": True,
    }
    assert parse_config({"optimizer": {"name": "sgd", "learning_rate": schedule}}).optimizer.hyperparams == {
        "learning_rate": schedule
    }
    config = parse_config({"optimizer": {"name": "momentum", "form": "ema"}, "training": {"batch_size": "full"}})
    assert config.optimizer.hyperparams["form"] == "ema" and config.training.batch_size is None


def test_overrides():
    raw = {"optimizer": {"name": "sgd"}, "methods": [{"optimizer": {"name": "sgd"}}]}
    apply_overrides(
        raw,
        [
            "optimizer.learning_rate=0.5",
            "model.hidden=[4, 4]",
            "methods.0.label=first",
            "training.batch_size=full",
        ],
    )
    config = parse_config(raw)
    assert config.optimizer.hyperparams["learning_rate"] == 0.5
    assert config.model.hidden == (4, 4) and config.training.batch_size is None
    assert config.methods[0].label == "first"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("epochs", "must look like key=value"),
        ("methods.3.label=x", "not an index"),
        ("seed.x=1", "seed is not a mapping"),
    ],
)
def test_bad_overrides(item, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides({"seed": 0, "methods": [{}]}, [item])


def test_unknown_override_key_is_named_by_validation(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optimizer: {name: sgd}\n")
    with pytest.raises(ValueError, match=r"^optimizer\.learnin_rate is not a hyperparameter of sgd"):
        load_config(path, ["optimizer.learnin_rate=0.1"])


def test_file_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config file not found: .*missing\.yaml"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("optimizer: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_penalties_act_on_kernels_only():
    tx = build_optimizer(OptimizerConfig("sgd", {"learning_rate": 1.0}, l2=0.5, l1=0.25))
    params = {"kernel": jnp.full((2, 3), 2.0), "bias": jnp.full((3,), 2.0)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -(2 * 0.5 * 2.0 + 0.25))
    np.testing.assert_allclose(updates["bias"], 0.0)


def test_built_chain_order_and_schedule():
    config = parse_config(
        {
            "optimizer": {
                "name": "sgd",
                "learning_rate": {"schedule": "step", "init_value": 1.0, "factor": 0.5, "every": 1},
                "clip_value": 0.1,
                "max_norm": 10.0,
            }
        }
    )
    tx = build_optimizer(config.optimizer)
    params = {"w": jnp.ones((2, 2))}
    state = tx.init(params)
    grads = {"w": jnp.full((2, 2), 5.0)}
    first, state = tx.update(grads, state, params)
    second, state = tx.update(grads, state, params)
    np.testing.assert_allclose(first["w"], -0.1, rtol=1e-6)  # clipped to 0.1, rate 1
    np.testing.assert_allclose(second["w"], -0.05, rtol=1e-6)  # rate halved after one step
    # Chain order: clip_by_value (0.1), then the method, then max_norm (10).
    hp = jgd.hyperparams(state)
    np.testing.assert_allclose((hp["0/max_value"], hp["2/max_value"]), (0.1, 10.0), rtol=1e-6)


def test_a_name_several_parts_of_a_method_hold_is_one_sweepable_name():
    names = sweepable(parse_config({"optimizer": {"name": "muon"}}).optimizer)
    assert "eps" in names and "muon/eps" not in names and "adam/eps" not in names
