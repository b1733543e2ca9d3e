"""Reading a sweep's results: per-setting rows, means over seeds, the best setting, a JSON report."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jgd.experiment.output_files import python_number
from jgd.experiment.sweep.engine import SweepResult
from jgd.experiment.sweep.settings import Settings

__all__ = [
    "best",
    "describe",
    "final_metrics",
    "over_seeds",
    "report",
    "rows",
]


def final_metrics(result: SweepResult) -> dict[str, np.ndarray]:
    """Per setting: the initial and final training loss, the final validation loss and accuracy, the test ones.

    Examples:
      Per setting, the first and last training loss, the last validation loss and accuracy, and the test
      ones:

      >>> import jax
      >>> import jgd
      >>> from jgd.experiment.sweep.engine import sweep
      >>> from jgd.experiment.sweep.settings import grid
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> settings = grid(learning_rate=[1e-3, 1e-2, 10.0], seed=[0, 1])
      >>> result = sweep(jgd.adam, settings, model, data, epochs=3, order_key=jax.random.key(0))
      >>> from jgd.experiment.sweep.results import final_metrics
      >>> metrics = final_metrics(result)
      >>> print(sorted(metrics), metrics["final_train_loss"].shape)
      ['final_train_loss', 'initial_train_loss', 'test_accuracy', 'test_loss', 'val_accuracy', 'val_loss'] (6,)
    """
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
    """One row per setting: method, hyperparameters, seed, :func:`final_metrics` and the divergence flags.

    A hyperparameter is the shortest decimal of the value trained with (``0.3``, not the float32's
    ``0.30000001192092896``), so it reads as the config wrote it; the measurements are exact.

    Examples:
      One row per setting, hyperparameters written as the config wrote them:

      >>> import jax
      >>> import jgd
      >>> from jgd.experiment.sweep.engine import sweep
      >>> from jgd.experiment.sweep.settings import grid
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> settings = grid(learning_rate=[1e-3, 1e-2, 10.0], seed=[0, 1])
      >>> result = sweep(jgd.adam, settings, model, data, epochs=3, order_key=jax.random.key(0))
      >>> from jgd.experiment.sweep.results import rows
      >>> table = rows(result)
      >>> print(len(table), table[0]["learning_rate"], table[0]["seed"], table[-1]["diverged"])
      6 0.001 0 True
      >>> print(sorted(table[0]))
      ['diverged', 'exploded', 'final_train_loss', 'initial_train_loss', 'learning_rate', 'method', 'nonfinite',
      'seed', 'test_accuracy', 'test_loss', 'val_accuracy', 'val_loss']
    """
    measured = {
        **final_metrics(result),
        "nonfinite": result.nonfinite,
        "exploded": result.exploded,
        "diverged": result.diverged,
    }
    return [
        {
            "method": result.label,
            **{k: python_number(v[i]) for k, v in result.settings.items()},
            **{k: v[i].item() for k, v in measured.items()},
        }
        for i in range(len(result.diverged))
    ]


def over_seeds(result: SweepResult) -> tuple[Settings, list[np.ndarray]]:
    """The settings without their seeds, sorted, and the rows of ``result`` each of them ran as.

    The table holds the hyperparameter columns, the mean over seeds of each of
    :func:`final_metrics`, ``seeds`` (how many) and ``diverged`` (how many of them).

    Examples:
      The settings with the seeds averaged out, and which rows each one ran as:

      >>> import jax
      >>> import jgd
      >>> from jgd.experiment.sweep.engine import sweep
      >>> from jgd.experiment.sweep.settings import grid
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> settings = grid(learning_rate=[1e-3, 1e-2, 10.0], seed=[0, 1])
      >>> result = sweep(jgd.adam, settings, model, data, epochs=3, order_key=jax.random.key(0))
      >>> from jgd.experiment.sweep.results import over_seeds
      >>> table, members = over_seeds(result)
      >>> print(table["learning_rate"], table["seeds"], table["diverged"])
      [1.e-03 1.e-02 1.e+01] [2 2 2] [0 0 2]
      >>> print([m.tolist() for m in members])
      [[0, 1], [2, 3], [4, 5]]
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
    (one per seed) it stands for. ``None`` when every setting diverged. Hyperparameters are written as in
    :func:`rows`.

    Examples:
      The setting with the lowest mean validation loss among those that never diverged:

      >>> import jax
      >>> import jgd
      >>> from jgd.experiment.sweep.engine import sweep
      >>> from jgd.experiment.sweep.settings import grid
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> settings = grid(learning_rate=[1e-3, 1e-2, 10.0], seed=[0, 1])
      >>> result = sweep(jgd.adam, settings, model, data, epochs=3, order_key=jax.random.key(0))
      >>> from jgd.experiment.sweep.results import best
      >>> row = best(result)
      >>> print(row["learning_rate"], row["seeds"], len(row["rows"]))
      0.01 2 2
    """
    table, runs = over_seeds(result)
    score = np.where(table["diverged"] == 0, table[select], np.nan)
    if np.isnan(score).all():
        return None
    g = int(np.nanargmax(score) if select.endswith("accuracy") else np.nanargmin(score))
    return {"method": result.label, **{k: python_number(v[g]) for k, v in table.items()}, "rows": runs[g].tolist()}


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

    Examples:
      A JSON-ready account of the sweep, as ``jgd sweep`` writes to ``metrics.json``:

      >>> import jax
      >>> import jgd
      >>> from jgd.experiment.sweep.engine import sweep
      >>> from jgd.experiment.sweep.settings import grid
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> settings = grid(learning_rate=[1e-3, 1e-2, 10.0], seed=[0, 1])
      >>> result = sweep(jgd.adam, settings, model, data, epochs=3, order_key=jax.random.key(0))
      >>> import json
      >>> from jgd.experiment.sweep.results import report
      >>> account = report(result)
      >>> print(sorted(account))
      ['best', 'compile_seconds', 'settings', 'train_seconds']
      >>> print(len(account["settings"]), len(account["settings"][0]["epochs"]), account["best"]["learning_rate"])
      6 4 0.01
      >>> print(len(json.dumps(account)) > 1000)
      True
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
    """``"learning_rate=0.003, b1=0.9"``: the ``names`` of a setting and their values.

    Examples:
      >>> from jgd.experiment.sweep.results import describe
      >>> print(describe({"learning_rate": 0.003, "b1": 0.9, "seed": 1}, ["learning_rate", "b1"]))
      learning_rate=0.003, b1=0.9
    """
    return ", ".join(f"{name}={values[name]:.3g}" for name in names)
