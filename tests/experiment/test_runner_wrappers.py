"""The training loop's optimizer wrappers: accumulate, monitor and skip_spikes, from config to metrics files."""

import csv
import json

import jax
import numpy as np
import optax
import pytest

import jgd
from jgd.experiment import plots
from jgd.experiment.config.reader import parse_config
from jgd.experiment.config.schema import SkipSpikesConfig, TrainingConfig
from jgd.experiment.output_files import write_csv, write_json
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.models import MLP, init_variables
from jgd.experiment.train.training import fit
from jgd.trees import instances
from jgd.wrappers.monitor import STATISTICS
from jgd.wrappers.spikes import SkipSpikesState


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return Dataset("toy", x, y, x[:20], y[:20], x[:20], y[:20], 3)


def _fit(tx, **training):
    model = MLP((8,), 3)
    variables = init_variables(model, jax.random.key(0), 5)
    return fit(model, variables, tx, _data(), jax.random.key(3), TrainingConfig(**training))


def test_accumulating_two_batches_steps_like_one_batch_twice_as_large():
    # 60 examples: batches of 15 pair up into the batches of 30 of the same shuffled order (batching.epoch_order
    # permutes the set with the epoch's key whatever the batch size, then cuts it), and none is padded.
    accumulated, _ = _fit(jgd.sgd(0.5), epochs=2, batch_size=15, accumulate=2)
    large, _ = _fit(jgd.sgd(0.5), epochs=2, batch_size=30)
    small, _ = _fit(jgd.sgd(0.5), epochs=2, batch_size=15)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), accumulated.params, large.params)
    difference = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), small.params, large.params)
    assert max(jax.tree.leaves(difference)) > 1e-3  # the batch size matters, so the match above means something


def test_monitor_statistics_in_the_metrics_files_and_plot(tmp_path):
    state, history = _fit(jgd.adam(0.01), epochs=2, batch_size=16, monitor=True)
    write_json(tmp_path / "metrics.json", history.to_dict())
    write_csv(tmp_path / "metrics.csv", history.epochs)
    expected = jgd.statistics(state.opt_state)
    last_json = json.loads((tmp_path / "metrics.json").read_text())["epochs"][-1]
    last_csv = list(csv.DictReader(open(tmp_path / "metrics.csv")))[-1]
    for name in (*STATISTICS, "learning_rate", "b1", "b2", "eps"):
        assert last_json[name] == pytest.approx(expected[name], rel=1e-6)
        assert float(last_csv[name]) == pytest.approx(expected[name], rel=1e-6)
    assert "grad_norm/Dense_0/kernel" not in last_json  # the global values only
    assert not any(name in history.epochs[0] for name in STATISTICS)  # epoch 0 took no step
    written = plots.plot_history(history, tmp_path)
    assert tmp_path / "optimizer.png" in written
    assert (tmp_path / "optimizer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_monitor_of_an_optax_method_records_its_statistics():
    # optax's state holds no jgd hyperparameters: the rows carry the statistics alone.
    state, history = _fit(optax.sgd(0.1), epochs=2, batch_size=16, monitor=True)
    totals = instances(state.opt_state, jgd.MonitorState)[0].totals
    assert set(history.epochs[-1]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", *totals}
    for name in STATISTICS:
        assert history.epochs[-1][name] == pytest.approx(float(totals[name]), rel=1e-6)


def test_skip_spikes_from_a_tiny_config_counts_skipped_batches():
    # A window of 4 and a num_std of 0.1 deviations call many ordinary batches spikes.
    options = parse_config({"training": {"epochs": 2, "batch_size": 8, "skip_spikes": {"window": 4, "num_std": 0.1}}})
    state, history = _fit(jgd.adam(0.01), **vars(options.training))
    (spikes,) = instances(state.opt_state, SkipSpikesState)
    counts = [row["skipped_spikes"] for row in history.epochs]
    assert counts[0] == 0 and counts == sorted(counts)
    assert 0 < counts[-1] == int(spikes.skipped) < int(spikes.seen) == 2 * 8  # 8 batches per epoch
    assert int(spikes.recorded[1]) > 0  # the batch loss reached skip_spikes
    _, calm = _fit(jgd.adam(0.01), epochs=2, batch_size=8, skip_spikes=SkipSpikesConfig())
    assert calm.epochs[-1]["skipped_spikes"] == 0  # the default window of 128 batches never fills


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"accumulate": 0}, r"^training\.accumulate must be an integer >= 1, got 0"),
        ({"accumulate": 2.5}, r"^training\.accumulate must be an integer >= 1"),
        ({"monitor": "yes"}, r"^training\.monitor must be true or false, got 'yes'"),
        ({"skip_spikes": {"window": 1}}, r"^training\.skip_spikes\.window must be an integer >= 2, got 1"),
        ({"skip_spikes": {"num_std": 0}}, r"^training\.skip_spikes\.num_std must be > 0, got 0"),
        ({"skip_spikes": {"size": 3}}, r"^training\.skip_spikes\.size is not a known field"),
        ({"skip_spikes": 3}, r"^training\.skip_spikes must be a mapping"),
        ({"accumulate": 2, "opt": "lbfgs"}, r"^training\.accumulate cannot be used with optimizer\.name lbfgs"),
    ],
)
def test_bad_wrapper_fields_are_named(training, message):
    training = dict(training)
    optimizer = {"name": training.pop("opt", "sgd")}
    with pytest.raises(ValueError, match=message):
        parse_config({"training": training, "optimizer": optimizer})


@pytest.mark.parametrize("training", [{"accumulate": 2}, {"monitor": True}, {"skip_spikes": {}}])
def test_sweeps_refuse_the_wrappers(training):
    raw = {"training": training, "optimizer": {"name": "sgd"}, "sweep": {"grid": {"learning_rate": [0.1]}}}
    with pytest.raises(ValueError, match=rf"^training\.{next(iter(training))} cannot be used with a sweep"):
        parse_config(raw)
