"""Hyperparameter sweeps: many optimizer settings trained at once, as one vmapped and jitted program.

Hyperparameters are data (:mod:`jgd.hyperparams`), so a sweep builds the
transform inside ``jax.vmap`` from traced values, and any float hyperparameter
can vary between settings: learning rate, betas, momentum, decay, ε,
penalties, clipping thresholds, schedule parameters. Settings are a table,
a mapping from names to equally long columns (:func:`grid`,
:func:`random_search`, :func:`cross`); a ``seed`` column picks each setting's
initial weights. Every setting trains on the same batches in the same order.

``chunk`` bounds memory by running the settings in vmapped chunks of one
shape (the last one padded, so there is a single compile); a ``mesh`` shards
the settings axis over its devices. Settings are independent lanes of the
vmap: one that diverges is flagged, and the others' results do not change.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from rich.progress import Progress

from jgd.base import GradientTransformation
from jgd.experiment import batching
from jgd.experiment import config as cfg
from jgd.experiment.data import Dataset
from jgd.experiment.models import init_variables
from jgd.experiment.training import TrainState, make_epoch, make_evaluate
from jgd.types import PyTree

Settings = dict[str, np.ndarray]
Distribution = Callable[[np.random.Generator, int], np.ndarray]

# Per-epoch metrics, each measured on a whole split with dropout off, as in jgd.training.fit.
CURVES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


# --- settings tables -----------------------------------------------------------------------------


def num_settings(settings: Mapping[str, Any]) -> int:
    """The number of rows of a settings table; raises ``ValueError`` if it is empty or ragged."""
    lengths = {name: len(np.atleast_1d(column)) for name, column in settings.items()}
    if not lengths or min(lengths.values()) == 0:
        raise ValueError(f"a sweep needs at least one setting, got columns {lengths}")
    if len(set(lengths.values())) > 1:
        raise ValueError(f"settings columns differ in length: {lengths}")
    return next(iter(lengths.values()))


def cross(*tables: Mapping[str, Any]) -> Settings:
    """Every row of each table combined with every row of the others, the last table varying fastest."""
    names = [name for t in tables for name in t]
    if len(set(names)) < len(names):
        raise ValueError(f"tables to cross share a column: {names}")
    index = np.meshgrid(*(np.arange(num_settings(t)) for t in tables), indexing="ij")
    return {name: np.asarray(column)[i.ravel()] for t, i in zip(tables, index) for name, column in t.items()}


def grid(**axes: Sequence[float]) -> Settings:
    """Every combination of the values of ``axes``, the last varying fastest.

    ``grid(learning_rate=[1e-3, 1e-2], seed=[0, 1])`` is four settings.
    """
    return cross(*({name: np.asarray(values)} for name, values in axes.items()))


def uniform(low: float, high: float) -> Distribution:
    """Values drawn uniformly from ``[low, high)``."""
    if not low < high:
        raise ValueError(f"uniform needs low < high, got {low} and {high}")
    return lambda rng, n: rng.uniform(low, high, n)


def log_uniform(low: float, high: float) -> Distribution:
    """Values whose logarithm is uniform on ``[log low, log high)``: the usual prior of a learning rate."""
    if not 0 < low < high:
        raise ValueError(f"log_uniform needs 0 < low < high, got {low} and {high}")
    return lambda rng, n: np.exp(rng.uniform(np.log(low), np.log(high), n))


def random_search(samples: int, seed: int = 0, **space: Distribution | Sequence[float]) -> Settings:
    """``samples`` settings drawn with ``np.random.default_rng(seed)``; a list in ``space`` is a uniform choice."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    return {
        name: np.asarray(draw(rng, samples) if callable(draw) else rng.choice(np.asarray(draw), samples))
        for name, draw in space.items()
    }


# --- training every setting at once --------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """What a sweep of one method measured; entry ``i`` of every array belongs to setting ``i``.

    ``settings`` holds the hyperparameter columns, with the values trained
    with (in the run's float dtype), and ``seed``. ``curves`` holds the
    per-epoch metrics (:data:`CURVES`, shape ``[settings, epochs + 1]``, epoch 0
    being the initial weights), ``test`` the test ``loss`` and ``accuracy`` of
    the final parameters, ``params`` the final parameters, each leaf with a
    leading settings axis. ``chunks`` is how many vmapped calls ran the
    settings and ``devices`` how many devices each call spread them over.

    A setting is ``nonfinite`` when a loss was NaN or Inf, and ``exploded``
    when its final training or validation loss is more than
    ``divergence_factor`` times its initial one (a net that memorizes the
    training set with exploding weights has a training loss near zero and an
    exploding validation loss); either makes it ``diverged``.
    """

    label: str
    settings: Settings
    curves: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    params: PyTree
    divergence_factor: float
    chunks: int
    devices: int
    compile_seconds: float
    train_seconds: float

    @property
    def hyperparameters(self) -> list[str]:
        """The swept names, without ``seed``."""
        return [name for name in self.settings if name != "seed"]

    @property
    def nonfinite(self) -> np.ndarray:
        """Settings whose training or validation loss was NaN or Inf at some epoch."""
        losses = np.concatenate([self.curves["train_loss"], self.curves["val_loss"]], axis=1)
        return ~np.isfinite(losses).all(axis=1)

    @property
    def exploded(self) -> np.ndarray:
        """Finite settings whose final training or validation loss exceeds ``divergence_factor`` times the initial."""
        grown = [
            self.curves[k][:, -1] > self.divergence_factor * self.curves[k][:, 0] for k in ("train_loss", "val_loss")
        ]
        return ~self.nonfinite & np.logical_or(*grown)

    @property
    def diverged(self) -> np.ndarray:
        """``nonfinite | exploded``."""
        return self.nonfinite | self.exploded


def _initial_key(seed: int) -> jax.Array:
    # The key `jgd train` draws its initial weights from for the same seed (the first half of its split).
    return jax.random.split(jax.random.key(int(seed)))[0]


def _trainer(
    model: nn.Module,
    loss: str,
    make_tx: Callable[..., GradientTransformation],
    batch_size: int,
    num_examples: int,
    epochs: int,
) -> Callable[..., tuple[PyTree, dict[str, jax.Array], dict[str, jax.Array]]]:
    """``train(values, variables, data, order_key)``: one setting's whole training, as jgd.training.fit runs it."""
    evaluate = make_evaluate(model, loss)

    def train(values, variables, data, order_key):
        x, y, x_val, y_val, x_test, y_test = data
        tx = make_tx(**values)
        params = variables["params"]
        state = TrainState(params, variables.get("batch_stats", {}), tx.init(params))
        epoch = make_epoch(model, loss, tx, batch_size, num_examples)

        def measure(state):
            train_loss, train_accuracy = evaluate(state.params, state.batch_stats, x, y)
            val_loss, val_accuracy = evaluate(state.params, state.batch_stats, x_val, y_val)
            return dict(zip(CURVES, (train_loss, train_accuracy, val_loss, val_accuracy)))

        def body(state, e):
            state, _ = epoch(state, x, y, jax.random.fold_in(order_key, e))
            return state, measure(state)

        first = measure(state)
        state, rest = jax.lax.scan(body, state, jnp.arange(1, epochs + 1))
        curves = {k: jnp.concatenate([first[k][None], rest[k]]) for k in CURVES}
        test_loss, test_accuracy = evaluate(state.params, state.batch_stats, x_test, y_test)
        return state.params, curves, {"loss": test_loss, "accuracy": test_accuracy}

    return train


def sweep(
    make_tx: Callable[..., GradientTransformation],
    settings: Mapping[str, Any],
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int,
    order_key: jax.Array,
    batch_size: int | None = None,
    loss: str = "cross_entropy",
    chunk: int | None = None,
    mesh: Mesh | None = None,
    divergence_factor: float = 10.0,
    label: str = "",
    progress: Progress | None = None,
) -> SweepResult:
    """Trains ``model`` once per row of ``settings``, all rows as one vmapped, jitted training.

    ``make_tx(**hyperparameters)`` builds the transform of one setting from
    traced scalars, one per column of ``settings`` other than ``seed``: pass
    ``jgd.adam`` to sweep Adam's keyword arguments, or a function that puts the
    values anywhere (a schedule, a clipping threshold). Values are not checked
    under the trace: check them by building the transform with concrete ones.
    Seed ``s`` starts from the initial weights ``jgd train`` draws with
    ``seed: s`` (seed 0 without a ``seed`` column); ``order_key`` fixes the
    batches of every epoch (epoch ``e`` uses ``fold_in(order_key, e)``) as
    :func:`jgd.training.fit` does, so each setting ends with the parameters
    ``fit`` reaches with the same transform, up to rounding: batched and
    single matrix products sum in different orders, and large steps amplify that.

    ``chunk`` runs at most that many settings per call; with a ``mesh`` the
    settings axis is sharded over all its devices (chunks are rounded up to a
    multiple of their number). ``progress`` shows a bar under ``label``.
    """
    n = num_settings(settings)
    table = {name: np.asarray(column) for name, column in settings.items()}
    seeds = table.get("seed", np.zeros(n, np.int64))
    float_dtype = jnp.result_type(float)
    values = {name: column.astype(float_dtype) for name, column in table.items() if name != "seed"}

    unique_seeds, seed_index = np.unique(seeds, return_inverse=True)
    per_seed = [init_variables(model, _initial_key(s), data.num_features) for s in unique_seeds]
    initial = jax.tree.map(lambda *leaves: np.stack(leaves), *per_seed)
    arrays = (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)

    devices = 1 if mesh is None else mesh.size
    lanes = math.ceil(min(chunk or n, n) / devices) * devices
    if mesh is None:
        spread = replicated = None
    else:
        spread, replicated = NamedSharding(mesh, P(mesh.axis_names)), NamedSharding(mesh, P())
    shared = jax.device_put((tuple(jnp.asarray(a) for a in arrays), order_key), replicated)

    def inputs(start: int) -> tuple[dict[str, np.ndarray], PyTree]:
        # The last chunk repeats its last real setting as padding: valid values whose results are dropped.
        rows = np.minimum(np.arange(start, start + lanes), n - 1)
        lane_values = {name: column[rows] for name, column in values.items()}
        lane_variables = jax.tree.map(lambda leaf: leaf[seed_index[rows]], initial)
        return jax.device_put((lane_values, lane_variables), spread)

    train = _trainer(
        model, loss, make_tx, batching.resolve_batch_size(batch_size, len(data.x_train)), len(data.x_train), epochs
    )
    run = jax.jit(jax.vmap(train, in_axes=(0, 0, None, None)), out_shardings=spread)
    task = progress.add_task(label, total=n, status="compiling") if progress is not None else None
    started = time.perf_counter()
    compiled = run.lower(*inputs(0), *shared).compile()
    compile_seconds = time.perf_counter() - started

    started = time.perf_counter()
    outputs, devices_used = [], 0
    for start in range(0, n, lanes):
        real = min(lanes, n - start)
        out = compiled(*inputs(start), *shared)
        devices_used = len(jax.tree.leaves(out)[0].sharding.device_set)
        outputs.append(jax.tree.map(lambda a, real=real: np.asarray(a)[:real], out))
        if task is not None:
            progress.update(task, completed=start + real, status=f"settings, {lanes} at a time")
    params, curves, test = jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
    return SweepResult(
        label=label,
        settings={**values, "seed": seeds},
        curves=curves,
        test=test,
        params=params,
        divergence_factor=divergence_factor,
        chunks=len(outputs),
        devices=devices_used,
        compile_seconds=compile_seconds,
        train_seconds=time.perf_counter() - started,
    )


# --- from a config -------------------------------------------------------------------------------


def _distribution(spec: tuple) -> Distribution | tuple[float, ...]:
    if not isinstance(spec[0], str):
        return spec
    kind, low, high = spec
    return {"uniform": uniform, "log_uniform": log_uniform}[kind](low, high)


def _config_transform(optimizer: cfg.OptimizerConfig, path: str, **values: Any) -> GradientTransformation:
    return cfg.build_optimizer(cfg.with_values(optimizer, values), path)


def config_settings(sweep_config: cfg.SweepConfig) -> Settings:
    """The settings a sweep section describes: its grid or random samples, each crossed with every seed."""
    space = sweep_config.space
    if sweep_config.samples is None:
        table = grid(**space)
    else:
        table = random_search(
            sweep_config.samples, sweep_config.sample_seed, **{k: _distribution(v) for k, v in space.items()}
        )
    return cross(table, {"seed": np.asarray(sweep_config.seeds)})


def run_sweep(
    config: cfg.Config,
    model: nn.Module,
    data: Dataset,
    order_key: jax.Array,
    *,
    progress: Progress | None = None,
) -> list[SweepResult]:
    """Sweeps every method of ``config`` (its ``methods``, else its ``optimizer``) over its ``sweep`` section.

    Each method's settings are one :func:`sweep`, with the method's batch
    size and the transform its config builds (``l1, l2, clipping → method →
    max_norm``) with the swept values put in. ``order_key`` fixes the batches.
    """
    if config.sweep is None:
        raise ValueError("the config has no sweep section")
    s, t = config.sweep, config.training
    settings = config_settings(s)
    mesh = Mesh(np.array(jax.devices()), ("settings",)) if s.mesh else None
    results = []
    for path, method in cfg.sweep_methods(config):
        make_tx = functools.partial(_config_transform, method.optimizer, path)
        results.append(
            sweep(
                make_tx,
                settings,
                model,
                data,
                epochs=t.epochs,
                order_key=order_key,
                batch_size=method.batch_size,
                loss=t.loss,
                chunk=s.chunk,
                mesh=mesh,
                divergence_factor=s.divergence_factor,
                label=method.label,
                progress=progress,
            )
        )
    return results


# --- reading the results -------------------------------------------------------------------------


def final_metrics(result: SweepResult) -> dict[str, np.ndarray]:
    """Per setting: the initial and final training loss, the final validation loss and accuracy, the test ones."""
    c = result.curves
    return {
        "initial_train_loss": c["train_loss"][:, 0],
        "final_train_loss": c["train_loss"][:, -1],
        "val_loss": c["val_loss"][:, -1],
        "val_accuracy": c["val_accuracy"][:, -1],
        "test_loss": result.test["loss"],
        "test_accuracy": result.test["accuracy"],
    }


def rows(result: SweepResult) -> list[dict[str, Any]]:
    """One row per setting: method, hyperparameters, seed, :func:`final_metrics` and the divergence flags."""
    columns = {
        **result.settings,
        **final_metrics(result),
        "nonfinite": result.nonfinite,
        "exploded": result.exploded,
        "diverged": result.diverged,
    }
    return [
        {"method": result.label, **{k: v[i].item() for k, v in columns.items()}} for i in range(len(result.diverged))
    ]


def over_seeds(result: SweepResult) -> tuple[Settings, list[np.ndarray]]:
    """The settings without their seeds, sorted, and the rows of ``result`` each of them ran as.

    The table holds the hyperparameter columns, the mean over seeds of each of
    :func:`final_metrics`, ``seeds`` (how many) and ``diverged`` (how many of them).
    """
    names = result.hyperparameters
    n = len(result.diverged)
    keys = np.stack([result.settings[name] for name in names], axis=1) if names else np.zeros((n, 0))
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    count = np.bincount(inverse)
    table = {name: unique[:, j] for j, name in enumerate(names)}
    table |= {k: np.bincount(inverse, weights=v) / count for k, v in final_metrics(result).items()}
    table |= {"seeds": count, "diverged": np.bincount(inverse, weights=result.diverged).astype(int)}
    return table, [np.flatnonzero(inverse == g) for g in range(len(count))]


def best(result: SweepResult, select: str = "val_loss") -> dict[str, Any] | None:
    """The row of :func:`over_seeds` with the best mean ``select`` among those no seed of which diverged.

    Accuracies are maximized, losses minimized; ``rows`` lists the settings
    (one per seed) it stands for. ``None`` when every setting diverged.
    """
    table, runs = over_seeds(result)
    score = np.where(table["diverged"] == 0, table[select], np.nan)
    if np.isnan(score).all():
        return None
    g = int(np.nanargmax(score) if select.endswith("accuracy") else np.nanargmin(score))
    return {"method": result.label, **{k: v[g].item() for k, v in table.items()}, "rows": runs[g].tolist()}


def _json_ready(value: Any) -> Any:
    # JSON has no NaN or Infinity: non-finite numbers become null (the divergence flags say why).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def report(result: SweepResult, select: str = "val_loss") -> dict[str, Any]:
    """A JSON-ready account of a sweep: timings, the :func:`best` setting and every setting.

    Each setting is its row of :func:`rows` with its per-epoch curves under
    ``epochs``; non-finite numbers are ``None``.
    """
    settings = [
        {**row, "epochs": {k: curve[i].tolist() for k, curve in result.curves.items()}}
        for i, row in enumerate(rows(result))
    ]
    return _json_ready(
        {
            "compile_seconds": result.compile_seconds,
            "train_seconds": result.train_seconds,
            "best": best(result, select),
            "settings": settings,
        }
    )


def describe(values: Mapping[str, Any], names: Sequence[str]) -> str:
    """``"learning_rate=0.003, b1=0.9"``: the ``names`` of a setting and their values."""
    return ", ".join(f"{name}={values[name]:.3g}" for name in names)
