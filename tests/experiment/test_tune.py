"""``jgd compare``'s tune section: read and checked with errors naming its fields, and each method trained at the
best rate of its vmapped sweep."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from jgd.experiment import cli
from jgd.experiment.config.reader import load_config, parse_config
from jgd.experiment.config.writer import to_dict

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
METHODS = [{"label": "AdamW", "optimizer": {"name": "adamw"}}, {"label": "Lion", "optimizer": {"name": "lion"}}]


@pytest.mark.parametrize("name", ["compare_digits_frontier.yaml", "compare_digits_preconditioned.yaml"])
def test_the_tuned_comparisons_parse_with_adamw_first_and_three_seeds(name):
    config = load_config(CONFIGS / name)
    assert config.methods[0].label == "AdamW" and config.tune is not None and config.tune.seeds == (0, 1, 2)
    assert parse_config(to_dict(config)) == config


def test_the_seeds_default_to_the_config_seed():
    config = parse_config({"seed": 3, "methods": METHODS, "tune": {"learning_rate": [1e-3]}})
    assert config.tune.seeds == (3,) and config.tune.as_sweep(config.seed).grid == {"learning_rate": (1e-3,)}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"methods": METHODS, "tune": {"learning_rate": [-1.0]}}, r"^tune\.learning_rate\[0\] must be > 0"),
        ({"methods": METHODS, "tune": {"learning_rate": []}}, r"^tune\.learning_rate must be a non-empty list"),
        ({"methods": METHODS, "tune": {"learning_rate": [0.1, 0.1]}}, r"^tune\.learning_rate repeats a rate"),
        ({"methods": METHODS, "tune": {"lr": [0.1]}}, r"^tune\.lr is not a known field; expected one of: learning"),
        ({"methods": METHODS, "tune": {}}, r"^tune\.learning_rate is required"),
        ({"methods": METHODS, "tune": {"learning_rate": [0.1], "select": "x"}}, r"^tune\.select must be one of"),
        ({"methods": METHODS, "tune": {"learning_rate": [0.1], "seeds": [1, 1]}}, r"^tune\.seeds repeats a seed"),
        (
            {"methods": [{"optimizer": {"name": "polyak_sgd"}}], "tune": {"learning_rate": [0.1]}},
            r"^tune\.learning_rate is not a float hyperparameter of polyak_sgd",
        ),
        (
            {"methods": [{"optimizer": {"name": "lbfgs"}}], "tune": {"learning_rate": [0.1]}},
            r"^methods\[0\]\.optimizer\.name lbfgs cannot be swept",
        ),
        ({"optimizer": {"name": "adam"}, "tune": {"learning_rate": [0.1]}}, r"^tune needs a methods list"),
        (
            {"methods": METHODS, "tune": {"learning_rate": [0.1]}, "training": {"monitor": True}},
            r"^training\.monitor cannot be used with tune",
        ),
    ],
)
def test_bad_tune_fields_are_named(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_config(raw)


def test_compare_trains_each_method_at_the_best_rate_of_its_sweep(tmp_path):
    raw = {
        "model": {"hidden": [8]},
        "training": {"epochs": 2, "batch_size": 128},
        "methods": METHODS[1:],
        "tune": {"learning_rate": [1e-4, 1e-2, 30.0], "seeds": [0, 1]},
    }
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    assert cli.main(["compare", str(path), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "summary.csv") as f:
        summary = {row["method"]: row for row in csv.DictReader(f)}
    label = "Lion"
    settings = metrics[label]["tune"]["settings"]
    assert len(settings) == 6  # three rates × two seeds, from one vmapped sweep
    # The best rate: the lowest mean validation loss over the seeds among rates no seed of which diverged.
    means = {
        rate: np.mean([s["val_loss"] for s in settings if s["learning_rate"] == rate])
        for rate in {s["learning_rate"] for s in settings}
        if not any(s["diverged"] for s in settings if s["learning_rate"] == rate)
    }
    chosen = min(means, key=means.get)
    assert float(summary[label]["tuned_learning_rate"]) == chosen == metrics[label]["tune"]["best"]["learning_rate"]
    assert {row["learning_rate"] for row in metrics[label]["epochs"]} == {chosen}  # the comparison trained at it
    seeds_accuracy = np.mean([s["test_accuracy"] for s in settings if s["learning_rate"] == chosen])
    np.testing.assert_allclose(float(summary[label]["seeds_test_accuracy"]), seeds_accuracy, rtol=1e-6)
