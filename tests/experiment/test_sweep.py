"""Sweeps: every vmapped setting equals its own training run, diverging settings are isolated, chunks and meshes
change nothing, and `jgd sweep` writes its files or fails in one line."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import jgd
from jgd.experiment import cli
from jgd.experiment.config.optimizers import build_optimizer, with_values
from jgd.experiment.config.reader import load_config, parse_config
from jgd.experiment.config.schema import TrainingConfig
from jgd.experiment.config.writer import to_dict
from jgd.experiment.sweep.engine import SweepResult, sweep
from jgd.experiment.sweep.from_config import config_settings, run_sweep
from jgd.experiment.sweep.results import best, over_seeds, rows
from jgd.experiment.sweep.settings import cross, grid, log_uniform, random_search, uniform
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.models import MLP, init_variables
from jgd.experiment.train.training import fit

ORDER = jax.random.key(7)


def _task(n=90, dtype=np.float32):
    """Three classes that two features decide, with some label noise so that training keeps moving."""
    rng = np.random.default_rng(0)

    def split(m):
        x = rng.normal(size=(m, 6)).astype(dtype)
        y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
        flip = rng.random(m) < 0.1
        y[flip] = rng.integers(0, 3, flip.sum())
        return x, y

    return Dataset("toy", *split(n), *split(30), *split(30), 3)


def _alone(model, tx, data, seed, epochs, batch_size):
    """The setting trained on its own by `training.fit`, from the weights `jgd train` draws with this seed."""
    variables = init_variables(model, jax.random.split(jax.random.key(seed))[0], data.num_features)
    return fit(model, variables, tx, data, ORDER, TrainingConfig(epochs=epochs, batch_size=batch_size))


def _assert_matches_alone(result, i, state, history, atol):
    for got, want in zip(jax.tree.leaves(result.params), jax.tree.leaves(state.params)):
        np.testing.assert_allclose(got[i], want, rtol=0, atol=atol)
    for row in history.epochs:
        for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(result.curves[key][i, row["epoch"]], row[key], rtol=0, atol=atol)
    np.testing.assert_allclose(result.test["loss"][i], history.test["loss"], rtol=0, atol=atol)
    np.testing.assert_allclose(result.test["accuracy"][i], history.test["accuracy"], rtol=0, atol=atol)


def _assert_same(a, b, atol=0.0):
    for x, y in zip(jax.tree.leaves((a.params, a.curves, a.test)), jax.tree.leaves((b.params, b.curves, b.test))):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)


# --- settings tables -----------------------------------------------------------------------------


def test_grid_cross_and_random_search():
    table = grid(learning_rate=[0.1, 0.2, 0.3], seed=[0, 1])
    assert table["learning_rate"].tolist() == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]
    assert table["seed"].tolist() == [0, 1, 0, 1, 0, 1]
    crossed = cross({"a": [1, 2]}, {"b": [3, 4], "c": [5, 6]})
    assert list(zip(crossed["a"], crossed["b"], crossed["c"])) == [(1, 3, 5), (1, 4, 6), (2, 3, 5), (2, 4, 6)]
    with pytest.raises(ValueError, match="share a column"):
        cross({"a": [1]}, {"a": [2]})
    with pytest.raises(ValueError, match="at least one setting"):
        grid(learning_rate=[])
    with pytest.raises(ValueError, match="differ in length"):
        cross({"a": [1, 2], "b": [1]})

    space = {"learning_rate": log_uniform(1e-4, 1.0), "b1": uniform(0.8, 0.95), "eps": [1e-8, 1e-6]}
    drawn = random_search(500, 3, **space)
    assert all(len(v) == 500 for v in drawn.values())
    assert 1e-4 <= drawn["learning_rate"].min() < 1e-3 and 0.1 < drawn["learning_rate"].max() < 1.0
    assert 0.8 <= drawn["b1"].min() and drawn["b1"].max() < 0.95
    assert set(drawn["eps"].tolist()) == {1e-8, 1e-6}
    again, other = random_search(500, 3, **space), random_search(500, 4, **space)
    assert all(np.array_equal(drawn[k], again[k]) for k in space)
    assert not np.array_equal(drawn["b1"], other["b1"])


# --- every setting equals its own run --------------------------------------------------------------


def test_every_setting_equals_training_it_alone():
    data, model = _task(), MLP([16], 3, dropout=0.2)
    settings = {"learning_rate": [1e-3, 3e-2, 1e-2, 3e-3], "b1": [0.8, 0.9, 0.95, 0.8], "seed": [0, 0, 1, 1]}
    result = sweep(jgd.adam, settings, model, data, epochs=3, order_key=ORDER, batch_size=20)
    assert result.params["Dense_0"]["kernel"].shape == (4, 6, 16)
    assert not result.diverged.any()
    for i in range(4):
        tx = jgd.adam(float(settings["learning_rate"][i]), float(settings["b1"][i]))
        state, history = _alone(model, tx, data, int(settings["seed"][i]), 3, 20)
        _assert_matches_alone(result, i, state, history, atol=1e-6)
    # The seeds gave different initial weights, the same for every setting that shares one.
    first = result.curves["train_loss"][:, 0]
    assert first[0] == first[1] != first[2] == first[3]


class _Float64MLP(nn.Module):
    """An MLP kept in float64, to take float32 rounding out of the comparison."""

    @nn.compact
    def __call__(self, x, train=False, mask=None):
        return nn.Dense(3, param_dtype=jnp.float64)(nn.relu(nn.Dense(16, param_dtype=jnp.float64)(x)))


def test_aggressive_settings_equal_their_own_runs_in_float64(x64):
    # In float32, vmapped and single runs differ by rounding (batched and plain matmuls sum in different
    # orders), and large Adam steps amplify it: at learning rate 0.1 a few epochs take the 1e-7 of one step
    # to about 1e-5. Adam also turns rounding in gradients that are zero in exact arithmetic (batch norm's
    # shift directions) into steps of order η. In float64 the same aggressive grid agrees far below 1e-6:
    # the sweep does the same arithmetic as a single run, only its rounding differs.
    data, model = _task(dtype=np.float64), _Float64MLP()
    settings = grid(learning_rate=[0.1, 0.3], seed=[0])
    result = sweep(jgd.adam, settings, model, data, epochs=4, order_key=ORDER, batch_size=16)
    assert result.settings["learning_rate"].dtype == np.float64
    assert result.params["Dense_0"]["kernel"].dtype == np.float64
    for i in range(2):
        state, history = _alone(model, jgd.adam(float(settings["learning_rate"][i])), data, 0, 4, 16)
        _assert_matches_alone(result, i, state, history, atol=1e-9)


def _config(**sweep_section):
    method = {
        "name": "momentum",
        "learning_rate": {"schedule": "exponential", "init_value": 0.1, "decay_rate": 0.5, "transition_steps": 4},
        "clip_global_norm": 1.0,
        "l2": 1e-3,
    }
    return parse_config(
        {
            "seed": 1,
            "training": {"epochs": 3, "batch_size": 32},
            "methods": [{"label": "scheduled momentum", "optimizer": method}],
            "sweep": sweep_section,
        }
    )


def test_config_sweep_of_schedule_clip_and_penalty_equals_each_run_alone():
    # Schedule parameters, clipping thresholds and penalties are swept like any hyperparameter, here by
    # random search and with batch norm.
    space = {
        "learning_rate.init_value": {"log_uniform": [0.01, 0.3]},
        "clip_global_norm": {"uniform": [0.5, 5.0]},
        "l2": [0.0, 1e-2],
    }
    config = _config(random={"samples": 3, "seed": 0, "space": space})
    data, model = _task(), MLP([8], 3, batch_norm=True)
    (result,) = run_sweep(config, model, data, ORDER)
    assert result.hyperparameters == ["learning_rate.init_value", "clip_global_norm", "l2"]
    assert result.settings["seed"].tolist() == [1] * 3
    method = config.methods[0].optimizer
    for i in range(3):
        values = {name: result.settings[name][i].item() for name in result.hyperparameters}
        tx = build_optimizer(with_values(method, values))
        state, history = _alone(model, tx, data, 1, 3, 32)
        _assert_matches_alone(result, i, state, history, atol=1e-6)
    assert len(set(result.curves["train_loss"][:, -1].tolist())) == 3


# --- divergence --------------------------------------------------------------------------------------


def test_a_diverging_setting_is_flagged_and_changes_no_other():
    data, model = _task(), MLP([16], 3)
    kwargs = {"epochs": 3, "order_key": ORDER, "batch_size": 20}
    with_nan = sweep(jgd.sgd, grid(learning_rate=[0.01, 1e30, 0.1]), model, data, **kwargs)
    sane = sweep(jgd.sgd, grid(learning_rate=[0.01, 0.05, 0.1]), model, data, **kwargs)
    assert with_nan.nonfinite.tolist() == [False, True, False]
    assert with_nan.diverged.tolist() == [False, True, False]
    assert np.isnan(with_nan.curves["train_loss"][1, -1])
    for x, y in zip(jax.tree.leaves(with_nan.params), jax.tree.leaves(sane.params)):
        np.testing.assert_array_equal(x[[0, 2]], y[[0, 2]])  # bit for bit
    for key in with_nan.curves:
        np.testing.assert_array_equal(with_nan.curves[key][[0, 2]], sane.curves[key][[0, 2]])
    row = rows(with_nan)[1]
    assert row["diverged"] is True and row["learning_rate"] == np.float32(1e30)
    assert best(with_nan, "final_train_loss")["learning_rate"] == np.float32(0.1)


def _synthetic(train_loss, val_loss, settings):
    train_loss, val_loss = np.asarray(train_loss, float), np.asarray(val_loss, float)
    n = len(train_loss)
    curves = {"train_loss": train_loss, "val_loss": val_loss}
    curves |= {"train_accuracy": np.full_like(train_loss, 0.5), "val_accuracy": 1 - val_loss / 10}
    test = {"loss": np.ones(n), "accuracy": np.full(n, 0.5)}
    return SweepResult("m", settings, curves, test, {}, 10.0, 1, 1, 0.0, 0.0)


def test_flags_and_best_setting_over_seeds():
    settings = {"learning_rate": np.repeat([0.1, 0.2, 0.3, 0.4], 2), "seed": np.array([0, 1] * 4)}
    result = _synthetic(
        [[2, 1.0], [2, 1.2], [2, 0.5], [2, 25.0], [2, 0.9], [2, 0.9], [2, 0.1], [2, 0.1]],
        [[2, 1.0], [2, 1.0], [2, 0.2], [2, 3.0], [2, 0.8], [2, 0.8], [2, 0.1], [2, np.inf]],
        settings,
    )
    # 25 > 10 × 2: exploded; an infinite validation loss: non-finite.
    assert np.flatnonzero(result.exploded).tolist() == [3]
    assert np.flatnonzero(result.nonfinite).tolist() == [7]
    assert np.flatnonzero(result.diverged).tolist() == [3, 7]
    table, runs = over_seeds(result)
    assert table["learning_rate"].tolist() == [0.1, 0.2, 0.3, 0.4]
    np.testing.assert_allclose(table["final_train_loss"], [1.1, 12.75, 0.9, 0.1])
    assert table["diverged"].tolist() == [0, 1, 0, 1] and [r.tolist() for r in runs] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    # 0.2 and 0.4 each have the best seed, but another of their seeds diverged: neither is the best.
    for select in ("val_loss", "val_accuracy", "final_train_loss"):
        assert best(result, select)["learning_rate"] == 0.3
    assert best(result)["rows"] == [4, 5] and best(result)["seeds"] == 2
    settings = {"learning_rate": np.array([1.0]), "seed": np.array([0])}
    everything_diverged = _synthetic([[1, np.nan]], [[1, np.nan]], settings)
    assert best(everything_diverged) is None


# --- chunks and meshes -------------------------------------------------------------------------------


def test_chunked_equals_unchunked():
    data, model = _task(), MLP([16], 3, dropout=0.2)
    settings = grid(learning_rate=[1e-3, 1e-2, 3e-2], b1=[0.8, 0.9], seed=[0, 1])
    kwargs = {"epochs": 2, "order_key": ORDER, "batch_size": 20}
    whole = sweep(jgd.adam, settings, model, data, **kwargs)
    chunked = sweep(jgd.adam, settings, model, data, chunk=5, **kwargs)  # 5 + 5 + 2 padded to 5
    assert (whole.chunks, chunked.chunks) == (1, 3) and chunked.settings["learning_rate"].shape == (12,)
    _assert_same(whole, chunked, atol=1e-6)


def test_mesh_sharded_sweep_equals_one_device():
    script = Path(__file__).resolve().parents[1] / "sharded_sweep.py"
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines == ["8 devices, 2 chunks: equal"], result.stdout


# --- the sweep section of a config ----------------------------------------------------------------------


def test_config_settings_and_round_trip():
    config = _config(grid={"learning_rate": {"init_value": [0.01, 0.1]}}, seeds=[3, 4], chunk=2)
    assert config.sweep.space == {"learning_rate.init_value": (0.01, 0.1)}
    settings = config_settings(config.sweep)
    assert settings["learning_rate.init_value"].tolist() == [0.01, 0.01, 0.1, 0.1]
    assert settings["seed"].tolist() == [3, 4, 3, 4]
    assert parse_config(to_dict(config)) == config
    assert _config(grid={"l2": [0.0, 0.1]}).sweep.seeds == (1,)  # the config's seed by default

    space = {"learning_rate.init_value": {"log_uniform": [1e-3, 1.0]}, "clip_global_norm": [1.0, 2.0]}
    random = _config(random={"samples": 5, "seed": 2, "space": space})
    assert random.sweep.space["learning_rate.init_value"] == ("log_uniform", 1e-3, 1.0)
    assert parse_config(to_dict(random)) == random
    drawn = config_settings(random.sweep)
    assert len(drawn["seed"]) == 5 and set(drawn["clip_global_norm"].tolist()) <= {1.0, 2.0}
    assert np.array_equal(drawn["learning_rate.init_value"], config_settings(random.sweep)["learning_rate.init_value"])


def test_sweep_digits_config_covers_every_first_order_method():
    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "sweep_digits.yaml")
    names = [m.optimizer.name for m in config.methods]
    assert names == ["sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "nadam"]
    assert list(config.sweep.space) == ["learning_rate"] and len(config.sweep.space["learning_rate"]) >= 8
    assert parse_config(to_dict(config)) == config


# --- the command line ---------------------------------------------------------------------------------

TINY = {
    "seed": 0,
    "model": {"hidden": [8]},
    "training": {"epochs": 2, "batch_size": 64},
    "methods": [
        {"label": "SGD", "optimizer": {"name": "sgd"}},
        {"label": "Adam", "optimizer": {"name": "adam"}},
    ],
    "sweep": {"grid": {"learning_rate": [0.01, 0.1]}},
}


@pytest.fixture
def staging(tmp_path):
    """Commands stage their output in hidden folders beside it; none may be left once they return."""
    yield
    assert list(tmp_path.rglob(".jgd-staging-*")) == []


def _write(tmp_path, raw):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def test_sweep_command_writes_everything(tmp_path, staging, capsys):
    raw = {**TINY, "sweep": {"grid": {"learning_rate": [0.01, 0.1, 1.0e30], "clip_global_norm": [1.0, 100.0]}}}
    raw["sweep"]["seeds"] = [0, 1]
    raw["methods"] = [{"label": "Momentum", "optimizer": {"name": "momentum"}}, TINY["methods"][1]]
    out = tmp_path / "run"
    assert cli.main(["sweep", _write(tmp_path, raw), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"metrics.json", "metrics.csv", "summary.csv", "summary.txt", "config.yaml"} | {
        "final_loss.png",
        "heatmap.png",
        "best_loss.png",
    }
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["methods"]) == ["Momentum", "Adam"] and metrics["select"] == "val_loss"
    adam = metrics["methods"]["Adam"]
    assert len(adam["settings"]) == 12  # 3 learning rates × 2 thresholds × 2 seeds, diverged ones included
    diverged = [s for s in adam["settings"] if s["diverged"]]
    assert [s["learning_rate"] for s in diverged] == [1e30] * 4  # the float32 value's shortest decimal
    assert diverged[0]["final_train_loss"] is None  # NaN is not JSON
    assert len(adam["settings"][0]["epochs"]["train_loss"]) == 3
    assert adam["best"]["learning_rate"] < 1 and adam["best"]["seeds"] == 2
    lines = (out / "metrics.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * 12
    assert lines[0].startswith("method,learning_rate,clip_global_norm,seed,initial_train_loss")
    # Each hyperparameter is written as the shortest decimal of its float32 value: 0.1, not 0.10000000149011612.
    written = list(csv.DictReader(lines))
    assert {row["learning_rate"] for row in written} == {"0.01", "0.1", "1e+30"}
    assert {row["clip_global_norm"] for row in written} == {"1.0", "100.0"}
    with open(out / "summary.csv") as f:
        assert {row["learning_rate"] for row in csv.DictReader(f)} <= {"0.01", "0.1"}
    for png in ("final_loss.png", "heatmap.png", "best_loss.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert parse_config(yaml.safe_load((out / "config.yaml").read_text())).sweep.seeds == (0, 1)
    table = (out / "summary.txt").read_text()
    assert all(text in table for text in ("Momentum", "Adam", "learning_rate", "4/12", "means over seeds"))
    assert "best setting of each method" in capsys.readouterr().out  # the same table, in the terminal


def test_random_search_draws_no_heat_map(tmp_path, staging):
    space = {"learning_rate": {"log_uniform": [1e-3, 0.1]}, "eps": {"log_uniform": [1e-8, 1e-4]}}
    raw = {**TINY, "methods": [TINY["methods"][1]], "sweep": {"random": {"samples": 4, "space": space}}}
    out = tmp_path / "run"
    assert cli.main(["sweep", _write(tmp_path, raw), "--out", str(out)]) == 0
    assert not (out / "heatmap.png").exists() and (out / "final_loss.png").is_file()
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 4


def _fails(argv, capsys, expected):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("jgd: error: ") and expected in err[0], err[0]


@pytest.mark.parametrize(
    ("sweep_section", "expected"),
    [
        ({"grid": {"b1": [0.9]}}, "sweep.grid.b1 is not a float hyperparameter of sgd"),
        ({"grid": {}}, "sweep.grid is empty"),
        ({"grid": {"learning_rate": []}}, "sweep.grid.learning_rate must be a non-empty list"),
        ({"grid": {"learning_rate": [0.1, -0.1]}}, "sweep.grid.learning_rate must be >= 0, got -0.1"),
        ({"grid": {"clip_norm": [0.0]}}, "sweep.grid.clip_norm must be > 0"),
        ({"grid": {"learning_rate": ["fast"]}}, "sweep.grid.learning_rate[0] must be a number"),
        ({"grid": {"learning_rate": {"init_value": [0.1]}}}, "sweep.grid.learning_rate.init_value is a schedule"),
        ({"grid": {"learning_rate": {"log_uniform": [0.1, 1]}}}, "sweep.grid.learning_rate: a grid lists values"),
        ({"random": {"samples": 3, "space": {"learning_rate": {"log_uniform": [0, 1]}}}}, "must have 0 < low < high"),
        ({"random": {"space": {"learning_rate": [0.1]}}}, "sweep.random.samples is required"),
        ({"grid": {"learning_rate": [0.1]}, "random": {"samples": 1}}, "sweep needs one of grid"),
        ({"grid": {"learning_rate": [0.1]}, "seeds": [0, 0]}, "sweep.seeds repeats a seed"),
        ({"grid": {"learning_rate": [0.1]}, "chunk": 0}, "sweep.chunk must be an integer >= 1"),
        ({"grid": {"learning_rate": [0.1]}, "select": "test_accuracy"}, "sweep.select must be one of"),
        ({"grid": {"learning_rate": [0.1]}, "sample": 3}, "sweep.sample is not a known field"),
    ],
    ids=[
        "unknown-hyperparameter",
        "empty-grid",
        "no-values",
        "negative-learning-rate",
        "zero-clip",
        "not-a-number",
        "not-a-schedule",
        "distribution-in-grid",
        "log-uniform-from-zero",
        "no-samples",
        "grid-and-random",
        "repeated-seed",
        "zero-chunk",
        "select-test",
        "unknown-key",
    ],
)
def test_bad_sweep_is_one_line_and_no_output(tmp_path, staging, capsys, sweep_section, expected):
    out = tmp_path / "out"
    raw = {**TINY, "methods": [TINY["methods"][0]], "sweep": sweep_section}
    _fails(["sweep", _write(tmp_path, raw), "--out", str(out)], capsys, expected)
    assert not out.exists()


COSINE = {"schedule": "cosine", "init_value": 0.1, "decay_steps": 10}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"methods": [{"optimizer": {"name": "lbfgs"}, "batch_size": "full"}]}, "methods[0].optimizer.name lbfgs"),
        ({"sweep": None}, "jgd sweep needs a sweep section"),
        ({"methods": None}, "sweep needs a methods list or an optimizer"),
        (
            {"training": {"epochs": 2, "early_stopping": {"patience": 2}}},
            "training.early_stopping cannot be used with a sweep",
        ),
        ({"training": {"skip_nonfinite": True}}, "training.skip_nonfinite cannot be used with a sweep"),
        ({"training": {"mesh": {"data": 1}}}, "training.mesh cannot be used with a sweep: sweep.mesh shards"),
        ({"training": {"checkpoint": {"every": 1}}}, "training.checkpoint cannot be used with a sweep"),
        (
            {
                "methods": [{"optimizer": {"name": "sgd", "learning_rate": COSINE}}],
                "sweep": {"grid": {"learning_rate": {"decay_steps": [10, 20]}}},
            },
            "sweep.grid.learning_rate.decay_steps is not a float parameter of the cosine schedule",
        ),
        ({"methods": [{"optimizer": {"name": "rmsprop"}}], "sweep": {"grid": {"centered": [0, 1]}}}, "centered is not"),
    ],
    ids=[
        "second-order",
        "no-sweep",
        "nothing-to-sweep",
        "early-stopping",
        "skip-nonfinite",
        "training-mesh",
        "checkpoint",
        "integer-schedule-parameter",
        "flag",
    ],
)
def test_sweep_command_rejects_what_it_cannot_sweep(tmp_path, staging, capsys, change, expected):
    out = tmp_path / "out"
    raw = {k: v for k, v in {**TINY, **change}.items() if v is not None}
    _fails(["sweep", _write(tmp_path, raw), "--out", str(out)], capsys, expected)
    assert not out.exists()
