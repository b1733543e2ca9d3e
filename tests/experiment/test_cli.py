"""The command line: outputs of train and compare, same-seed reproducibility, one-line errors, quick config errors."""

import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

from jgd.experiment import cli, plots, tables

TINY = {
    "seed": 0,
    "model": {"hidden": [16]},
    "training": {"epochs": 2, "batch_size": 64},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "methods": [
        {"label": "SGD", "optimizer": {"name": "sgd", "learning_rate": 0.1}},
        {"label": "Adam", "optimizer": {"name": "adam", "learning_rate": 0.01}},
        {"label": "L-BFGS", "optimizer": {"name": "optax.lbfgs"}, "batch_size": "full"},
    ],
}


@pytest.fixture
def staging(tmp_path):
    """Commands stage their output in hidden folders beside it; none may be left once they return."""
    yield
    assert list(tmp_path.rglob(".jgd-staging-*")) == []


def _config(tmp_path, raw=None, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(TINY if raw is None else raw))
    return str(path)


def _without_times(metrics):
    return {k: {f: v for f, v in m.items() if not f.endswith("seconds")} for k, m in metrics.items()}


def test_train_writes_everything(tmp_path, staging, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", _config(tmp_path), "--out", str(out), "--set", "training.epochs=3"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"metrics.json", "metrics.csv", "config.yaml", "loss.png", "accuracy.png", "summary.txt"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [0, 1, 2, 3]
    # The learning rate, a float32 in the state, is written as the shortest decimal that reads back to it.
    assert {row["learning_rate"] for row in metrics["epochs"]} == {0.01}
    assert (out / "metrics.csv").read_text().splitlines()[1].split(",")[-1] == "0.01"
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["epochs"] == 3
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test acc" in capsys.readouterr().out


def test_compare_writes_plots_tables_and_shares_the_start(tmp_path, staging, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", _config(tmp_path), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"training_loss.png", "validation_accuracy.png", "summary.csv", "metrics.csv", "metrics.json"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["SGD", "Adam", "L-BFGS"]
    starts = {m["epochs"][0]["train_loss"] for m in metrics.values()}
    assert len(starts) == 1  # the same initial weights for every method
    for m in metrics.values():
        assert m["epochs"][-1]["train_loss"] < m["epochs"][0]["train_loss"]
    printed = capsys.readouterr().out
    assert all(label in printed for label in metrics) and "test acc" in printed and "state bytes/param" in printed
    with open(out / "summary.csv") as f:
        state_bytes = {row["method"]: float(row["state_bytes_per_param"]) for row in csv.DictReader(f)}
    n = 64 * 16 + 16 + 16 * 10 + 10  # the 64-16-10 MLP's parameters
    # sgd: its int32 step count and its learning rate held twice (current value and the transform's constant);
    # adam: two float32 moments, the count, and five hyperparameters held twice.
    assert state_bytes["SGD"] == round(12 / n, 4)
    assert state_bytes["Adam"] == round((8 * n + 4 + 2 * 5 * 4) / n, 4)


def test_identical_methods_see_identical_batches(tmp_path, staging):
    # With dropout, equal results need equal initial weights, batch order and dropout masks.
    raw = {**TINY, "model": {"hidden": [16], "dropout": 0.3}}
    raw["methods"] = [{"label": label, "optimizer": {"name": "sgd", "learning_rate": 0.1}} for label in "AB"]
    out = tmp_path / "same"
    assert cli.main(["compare", _config(tmp_path, raw), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["A"]["epochs"] == metrics["B"]["epochs"]


def test_same_seed_same_metrics(tmp_path, staging):
    raw = {**TINY, "model": {"hidden": [16], "dropout": 0.2, "batch_norm": True}}
    raw["methods"] = [TINY["methods"][1]]
    config = _config(tmp_path, raw)
    runs = []
    for name in ("one", "two"):
        assert cli.main(["compare", config, "--out", str(tmp_path / name)]) == 0
        runs.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert _without_times(runs[0]) == _without_times(runs[1])
    assert cli.main(["compare", config, "--out", str(tmp_path / "three"), "--set", "seed=1"]) == 0
    other = json.loads((tmp_path / "three" / "metrics.json").read_text())
    assert _without_times(other) != _without_times(runs[0])


def _fails(argv, capsys, expected):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("jgd: error: ") and expected in err[0], err[0]


@pytest.mark.parametrize("command", ["train", "compare"])
def test_missing_config(tmp_path, staging, capsys, command):
    out = tmp_path / "out"
    _fails([command, str(tmp_path / "nope.yaml"), "--out", str(out)], capsys, "config file not found")
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"trainig": {"epochs": 1}}, "trainig is not a known field"),
        ({"optimizer": {"name": "adam", "learning_rate": -0.1}}, "optimizer.learning_rate must be >= 0"),
        ({"data": {"name": "mnist", "path": "/nonexistent/mnist.npz"}}, "data file not found: /nonexistent/mnist.npz"),
    ],
    ids=["unknown-key", "negative-learning-rate", "missing-data-file"],
)
@pytest.mark.parametrize("command", ["train", "compare"])
def test_bad_input_is_one_line_and_no_output(tmp_path, staging, capsys, change, expected, command):
    out = tmp_path / "out"
    _fails([command, _config(tmp_path, {**TINY, **change}), "--out", str(out)], capsys, expected)
    assert not out.exists()


def test_negative_learning_rate_in_a_method(tmp_path, staging, capsys):
    raw = {**TINY, "methods": [{"optimizer": {"name": "adam", "learning_rate": -1}}]}
    _fails(["compare", _config(tmp_path, raw)], capsys, "methods[0].optimizer.learning_rate must be >= 0")


def test_bad_override(tmp_path, staging, capsys):
    out = tmp_path / "out"
    _fails(["train", _config(tmp_path), "--set", "training.epochs=-2", "--out", str(out)], capsys, "training.epochs")
    assert not out.exists()


def test_failure_after_training_leaves_no_partial_output(tmp_path, staging, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(plots, "plot_history", broken)
    out = tmp_path / "out"
    assert cli.main(["train", _config(tmp_path), "--out", str(out)]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "jgd: error: RuntimeError: disk full"
    assert not out.exists()


def test_output_folder_replacement(tmp_path, staging, capsys):
    config = _config(tmp_path, {**TINY, "training": {"epochs": 1}})
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    _fails(["train", config, "--out", str(foreign)], capsys, "does not hold jgd results")
    assert (foreign / "notes.txt").read_text() == "keep me"
    previous = tmp_path / "previous"
    assert cli.main(["train", config, "--out", str(previous)]) == 0
    (previous / "stale.txt").write_text("old")
    assert cli.main(["train", config, "--out", str(previous)]) == 0
    assert not (previous / "stale.txt").exists()


def test_commands_needing_their_section(tmp_path, staging, capsys):
    _fails(["train", _config(tmp_path, {"methods": TINY["methods"]})], capsys, "jgd train needs an optimizer section")
    _fails(["compare", _config(tmp_path, {"optimizer": TINY["optimizer"]})], capsys, "jgd compare needs a methods list")


def test_module_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jgd.experiment", "train", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"jgd: error: config file not found: {tmp_path / 'missing.yaml'}"]
    assert not (tmp_path / "runs").exists()


# What a config error must be reported without: the training modules' heavy dependencies.
HEAVY = ("flax", "optax", "orbax", "matplotlib")


def _run_and_list_heavy_modules(argv):
    """Runs the command line in a fresh Python; returns it with the heavy packages loaded when ``main`` returned."""
    script = (
        "import sys\n"
        "from jgd.experiment.cli import main\n"
        f"status = main({list(argv)!r})\n"
        f"print(sorted({{name.split('.')[0] for name in sys.modules}} & {set(HEAVY)!r}))\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    return result, result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("command", ["train", "compare", "sweep"])
def test_config_error_is_reported_before_the_heavy_imports(tmp_path, command):
    # The method's own range check (jgd.adam's) finds the error: validation still reaches the method table.
    raw = {**TINY, "optimizer": {"name": "adam", "learning_rate": -0.1}, "sweep": {"grid": {"learning_rate": [0.1]}}}
    result, loaded = _run_and_list_heavy_modules([command, _config(tmp_path, raw), "--out", str(tmp_path / "out")])
    assert result.returncode == 1
    assert "optimizer.learning_rate must be >= 0" in result.stderr
    assert loaded == "[]", f"loaded before the error was reported: {loaded}"


def test_the_heavy_module_probe_sees_a_training_run(tmp_path):
    # The same probe after a run that trains must list them all, or the test above would prove nothing.
    result, loaded = _run_and_list_heavy_modules(["train", _config(tmp_path), "--out", str(tmp_path / "out")])
    assert result.returncode == 0, result.stderr
    assert loaded == str(sorted(HEAVY))


# A summary row wider than 80 columns: off a terminal rich would assume 80 and cut it.
LONG_ROW = {
    "method": "adam with a label far longer than any terminal is wide, " * 3,
    "batch_size": 32,
    "epochs": 3,
    "initial_train_loss": 2.5,
    "final_train_loss": 0.125,
    "val_accuracy": 0.5,
    "test_accuracy": 0.75,
    "state_bytes_per_param": 8.0046,
    "seconds": 1.5,
}
# The row as one line, its runs of spaces made single.
LONG_LINE = f"{LONG_ROW['method'].strip()} 32 3 2.5 0.125 50.00% 75.00% 8.00 1.5"


def _row_line(text):
    lines = [line for line in text.splitlines() if LONG_ROW["method"].strip() in line]
    assert len(lines) == 1, text
    return " ".join(lines[0].split())


def test_a_table_printed_to_a_pipe_keeps_its_rows_whole():
    script = f"from jgd.experiment import tables\ntables.show(tables.table('results', [{LONG_ROW!r}]))\n"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    result = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, timeout=120)
    assert result.returncode == 0
    assert _row_line(result.stdout) == LONG_LINE


def test_a_saved_table_keeps_its_rows_whole(tmp_path):
    tables.save(tables.table("results", [LONG_ROW]), tmp_path)
    assert _row_line((tmp_path / "summary.txt").read_text()) == LONG_LINE
