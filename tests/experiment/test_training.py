"""Training loops: the jitted step with jgd and optax transforms, full batch, early stopping, metrics."""

import csv
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from rich.console import Console
from rich.progress import Progress

import jgd
from jgd.experiment.config.schema import EarlyStopping, TrainingConfig
from jgd.experiment.output_files import write_csv, write_json
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.losses import LOSSES, accuracy, masked_mean
from jgd.experiment.train.models import MLP, init_variables
from jgd.experiment.train.steps import RunState, make_epoch, make_objective
from jgd.experiment.train.training import fit


def _task(n=60, noise=0.0, seed=0):
    """Three classes that the sign pattern of two features decides; ``noise`` relabels that share of train labels."""
    rng = np.random.default_rng(seed)

    def split(m, flip):
        x = rng.normal(size=(m, 6)).astype(np.float32)
        y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
        noisy = rng.random(m) < flip
        y[noisy] = rng.integers(0, 3, noisy.sum())
        return x, y

    (xt, yt), (xv, yv), (xs, ys) = split(n, noise), split(n, 0.0), split(n, 0.0)
    return Dataset("toy", xt, yt, xv, yv, xs, ys, 3)


def _model_and_variables(**kwargs):
    model = MLP(kwargs.pop("hidden", [16]), 3, **kwargs)
    return model, init_variables(model, jax.random.key(0), 6)


def test_losses():
    outputs = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = jnp.array([0, 2])
    log_p = jax.nn.log_softmax(outputs)
    np.testing.assert_allclose(LOSSES["cross_entropy"](outputs, labels), -log_p[jnp.arange(2), labels], rtol=1e-6)
    onehot = jax.nn.one_hot(labels, 3)
    np.testing.assert_allclose(LOSSES["mse"](outputs, labels), ((outputs - onehot) ** 2).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(LOSSES["mae"](outputs, labels), jnp.abs(outputs - onehot).mean(-1), rtol=1e-6)
    np.testing.assert_allclose(masked_mean(jnp.array([1.0, 3.0, 100.0]), jnp.array([True, True, False])), 2.0)
    assert accuracy(outputs, labels) == 0.5


def test_padding_does_not_change_the_objective():
    model, variables = _model_and_variables()
    data = _task()
    objective = make_objective(model, "cross_entropy")
    x, y = jnp.asarray(data.x_train[:5]), jnp.asarray(data.y_train[:5])
    key = jax.random.key(0)
    plain, _ = objective(variables["params"], {}, x, y, None, key)
    padded, _ = objective(
        variables["params"],
        {},
        jnp.concatenate([x, 50 * jnp.ones((3, 6))]),
        jnp.concatenate([y, jnp.zeros(3, jnp.int32)]),
        jnp.arange(8) < 5,
        key,
    )
    np.testing.assert_allclose(padded, plain, rtol=1e-6)


def test_full_batch_epoch_is_one_gradient_step():
    model, variables = _model_and_variables()
    data = _task()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    params = variables["params"]
    tx = jgd.sgd(0.1)
    epoch = jax.jit(make_epoch(model, "cross_entropy", tx, len(x), len(x)))
    state, losses = epoch(RunState(params, {}, tx.init(params)), x, y, jax.random.key(0))
    objective = make_objective(model, "cross_entropy")
    grads = jax.grad(lambda p: objective(p, {}, x, y, None, jax.random.key(0))[0])(params)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state.params, expected)
    assert losses.shape == (1,)


@pytest.mark.parametrize(
    ("tx", "batch_size"),
    [
        (jgd.adam(1e-2), 16),
        (jgd.chain(jgd.clip_by_global_norm(1.0), jgd.nesterov(0.05)), 1),
        (optax.adam(1e-2), 16),
        (optax.lbfgs(), None),
    ],
    ids=["jgd-adam-mini", "jgd-chain-sgd", "optax-adam", "optax-lbfgs-full"],
)
def test_fit_lowers_the_training_loss(tx, batch_size):
    model, variables = _model_and_variables()
    _, history = fit(model, variables, tx, _task(), jax.random.key(1), TrainingConfig(epochs=5, batch_size=batch_size))
    losses = [row["train_loss"] for row in history.epochs]
    assert len(history.epochs) == 6 and history.epochs[0]["epoch"] == 0
    assert losses[-1] < 0.7 * losses[0]
    assert 0 <= history.test["accuracy"] <= 1


@pytest.mark.parametrize("method", ["lbfgs", "bfgs"])
def test_jgd_quasi_newton_full_batch(method):
    model, variables = _model_and_variables()
    tx = getattr(jgd, method)()
    _, history = fit(model, variables, tx, _task(), jax.random.key(1), TrainingConfig(epochs=5, batch_size=None))
    losses = [row["train_loss"] for row in history.epochs]
    assert losses[-1] < 0.7 * losses[0]


def test_same_key_same_metrics_with_dropout_and_batch_norm():
    model, variables = _model_and_variables(dropout=0.3, batch_norm=True)
    runs = [
        fit(model, variables, jgd.adam(1e-2), _task(), jax.random.key(4), TrainingConfig(epochs=3, batch_size=7))[1]
        for _ in range(2)
    ]
    assert runs[0].epochs == runs[1].epochs and runs[0].test == runs[1].test
    other = fit(model, variables, jgd.adam(1e-2), _task(), jax.random.key(5), TrainingConfig(epochs=3, batch_size=7))[1]
    assert other.epochs[1:] != runs[0].epochs[1:]


def test_early_stopping_restores_the_best_parameters():
    # Half the training labels are noise: the net first learns the rule, then memorizes the noise.
    data = _task(n=40, noise=0.5)
    model, variables = _model_and_variables(hidden=[128])
    patience = 3
    state, history = fit(
        model,
        variables,
        jgd.adam(0.01),
        data,
        jax.random.key(0),
        TrainingConfig(epochs=300, batch_size=None, early_stopping=EarlyStopping(patience=patience)),
    )
    val = [row["val_loss"] for row in history.epochs]
    assert history.stopped_early
    assert len(val) == history.best_epoch + patience + 1 < 301
    assert history.best_epoch == int(np.argmin(val)) > 0
    assert val[-1] > val[history.best_epoch]
    restored = optax.softmax_cross_entropy_with_integer_labels(
        model.apply({"params": state.params}, data.x_val), data.y_val
    ).mean()
    np.testing.assert_allclose(restored, val[history.best_epoch], rtol=1e-5)


def test_min_delta_counts_small_gains_as_no_improvement():
    data = _task()
    model, variables = _model_and_variables()
    _, history = fit(
        model,
        variables,
        jgd.sgd(1e-3),
        data,
        jax.random.key(0),
        TrainingConfig(epochs=50, batch_size=None, early_stopping=EarlyStopping(patience=2, min_delta=10.0)),
    )
    assert history.stopped_early and history.best_epoch == 0 and len(history.epochs) == 3


def test_max_norm_through_the_transform():
    model, variables = _model_and_variables()
    tx = jgd.chain(jgd.adam(1e-2), jgd.max_norm(0.5))
    state, _ = fit(model, variables, tx, _task(), jax.random.key(0), TrainingConfig(epochs=2, batch_size=16))
    for layer in ("Dense_0", "Dense_1"):
        before = jnp.linalg.norm(variables["params"][layer]["kernel"], axis=0)
        after = jnp.linalg.norm(state.params[layer]["kernel"], axis=0)
        assert before.max() > 0.5
        assert after.max() <= 0.5 + 1e-5


def test_schedule_is_followed_and_recorded():
    steps_per_epoch = 4  # 60 examples in batches of 15
    tx = jgd.sgd(jgd.schedules.exponential(0.1, 0.5, steps_per_epoch))
    model, variables = _model_and_variables()
    _, history = fit(model, variables, tx, _task(), jax.random.key(0), TrainingConfig(epochs=3, batch_size=15))
    # Each row holds the rate of the epoch's last step, step e·4 - 1 (counting from 0).
    expected = [0.1 * 0.5 ** ((e * steps_per_epoch - 1) / steps_per_epoch) for e in (1, 2, 3)]
    np.testing.assert_allclose([row["learning_rate"] for row in history.epochs[1:]], expected, rtol=1e-5)


def test_progress_bar_shows_live_loss():
    model, variables = _model_and_variables()
    with Progress(console=Console(file=io.StringIO(), force_terminal=True)) as progress:
        fit(
            model,
            variables,
            jgd.adam(1e-2),
            _task(),
            jax.random.key(0),
            TrainingConfig(epochs=3, batch_size=None),
            progress=progress,
        )
    (task,) = progress.tasks
    assert task.completed == task.total == 3
    assert task.fields["status"].startswith("loss ")


def test_metrics_files(tmp_path):
    model, variables = _model_and_variables()
    _, history = fit(
        model, variables, jgd.adam(1e-2), _task(), jax.random.key(0), TrainingConfig(epochs=2, batch_size=None)
    )
    write_json(tmp_path / "m.json", history.to_dict())
    write_csv(tmp_path / "m.csv", history.epochs)
    assert json.loads((tmp_path / "m.json").read_text())["epochs"] == history.epochs
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[-1]["val_loss"]) == pytest.approx(history.epochs[-1]["val_loss"])
