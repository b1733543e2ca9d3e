"""The runs behind ``jgd train``, ``jgd compare`` and ``jgd sweep``, each from a config already read and checked.

Each writes its results (metrics as JSON and CSV, plots, the resolved config,
the table) into a temporary folder that becomes the output folder only when
everything has succeeded, so a failed run leaves no partial output. This
module loads Flax, optax, orbax and matplotlib; the command line
(:mod:`jgd.experiment.cli`) imports it only once the config has been read.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import jax
import numpy as np
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import jgd
from jgd.experiment import plots, tables
from jgd.experiment.config.optimizers import build_optimizer, state_bytes_per_param
from jgd.experiment.config.schema import CheckpointConfig, Config, MethodConfig, TrainingConfig
from jgd.experiment.config.writer import to_dict
from jgd.experiment.output_files import write_csv, write_json
from jgd.experiment.sweep import results as sweep_results
from jgd.experiment.sweep.engine import SweepResult
from jgd.experiment.sweep.from_config import run_sweep
from jgd.experiment.sweep.tune import Tuned, tune_methods
from jgd.experiment.train.data import Dataset, load_dataset
from jgd.experiment.train.models import MLP, init_variables
from jgd.experiment.train.training import History, fit, wrap_optimizer


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


@contextmanager
def _staged(out: Path) -> Iterator[Path]:
    """Yields a hidden staging folder that replaces ``out`` on success and is removed on any error.

    The folder sits beside ``out`` (in its nearest existing ancestor), so publishing is a rename.
    """
    if jax.process_index() != 0:
        # With several processes (hosts) all compute the same results; only process 0 publishes them.
        with tempfile.TemporaryDirectory() as scratch:
            yield Path(scratch)
        return
    staging = Path(tempfile.mkdtemp(prefix=".jgd-staging-", dir=_nearest_existing(out.parent)))
    try:
        yield staging
        out.parent.mkdir(parents=True, exist_ok=True)
        replaced = out.with_name(f"{staging.name}-replaced")
        if out.exists():
            out.rename(replaced)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(replaced, ignore_errors=True)


def _setup(config: Config) -> tuple[Dataset, MLP, dict, jax.Array]:
    """Data, model, initial variables and the key of the batch order, all fixed by the config's seed."""
    d, m = config.data, config.model
    data = load_dataset(d.name, d.path, d.validation_fraction, d.test_fraction, d.standardize, config.seed)
    model = MLP(m.hidden, data.num_classes, m.activation, m.initializer, m.dropout, m.batch_norm)
    init_key, order_key = jax.random.split(jax.random.key(config.seed))
    return data, model, init_variables(model, init_key, data.num_features), order_key


def _describe(model: MLP, data: Dataset) -> str:
    widths = "-".join(str(w) for w in (data.num_features, *model.hidden, model.num_outputs))
    return f"{widths} MLP on {data.name}"


def _write_config(config: Config, directory: Path) -> None:
    (directory / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def _checkpoint(checkpoint: CheckpointConfig | None, out: Path, resume: bool) -> CheckpointConfig | None:
    """The checkpoint settings of ``jgd train`` (``--resume`` needs them), with their folder filled in.

    The default folder is beside the output folder, not in it: the output folder is replaced only when the run
    succeeds.
    """
    if checkpoint is None and not resume:
        return None
    checkpoint = checkpoint or CheckpointConfig()
    return dataclasses.replace(checkpoint, dir=checkpoint.dir or f"{out}.checkpoint")


def _batch(batch_size: int | None) -> int | str:
    return "full" if batch_size is None else batch_size


def _state_bytes(tx: jgd.GradientTransformation, options: TrainingConfig, variables: dict) -> float:
    """Bytes a parameter of the optimizer state ``fit`` keeps: ``tx`` inside the wrappers ``options`` ask for."""
    return round(state_bytes_per_param(wrap_optimizer(tx, options), variables["params"]), 4)


def _summary_row(label: str, batch_size: int | None, history: History, state_bytes: float) -> dict[str, object]:
    return {
        "method": label,
        "batch_size": _batch(batch_size),
        "epochs": history.epochs[-1]["epoch"],
        "best_epoch": history.best_epoch,
        "initial_train_loss": history.epochs[0]["train_loss"],
        "final_train_loss": history.epochs[-1]["train_loss"],
        "val_accuracy": history.epochs[-1]["val_accuracy"],
        "test_accuracy": history.test["accuracy"],
        "state_bytes_per_param": state_bytes,
        "compile_seconds": round(history.compile_seconds, 3),
        "train_seconds": round(history.train_seconds, 3),
        "seconds": round(history.compile_seconds + history.train_seconds, 3),
    }


def train(config: Config, out: Path, resume: bool = False) -> None:
    """Trains one model with the config's optimizer and writes the results to ``out``.

    Args:
      config: a config with an ``optimizer`` section.
      out: the output folder, replaced only once everything has succeeded.
      resume: continue from the run's checkpoint.
    """
    optimizer = config.optimizer
    assert optimizer is not None  # the command line checked that the config has one
    data, model, variables, order_key = _setup(config)
    tx = build_optimizer(optimizer)
    t = dataclasses.replace(config.training, checkpoint=_checkpoint(config.training.checkpoint, out, resume))
    with _staged(out) as staging:
        with _progress() as progress:
            _, history = fit(
                model,
                variables,
                tx,
                data,
                order_key,
                t,
                resume=resume,
                progress=progress,
                description=optimizer.name,
            )
        write_json(staging / "metrics.json", history.to_dict())
        write_csv(staging / "metrics.csv", history.epochs)
        _write_config(config, staging)
        title = f"{optimizer.name}, {_describe(model, data)}"
        plots.plot_history(history, staging, title)
        row = _summary_row(optimizer.name, t.batch_size, history, _state_bytes(tx, t, variables))
        table = tables.table(title, [row])
        tables.save(table, staging)
    tables.show(table)
    if history.stopped_early:
        print(f"stopped early; kept the parameters of epoch {history.best_epoch}, the lowest validation loss")


def _tuned_columns(rows: list[dict[str, object]]) -> list[tuple[str, str, str]]:
    """The table's columns, with the tuned learning rate and the test accuracy over the seeds after the method."""
    if "tuned_learning_rate" not in rows[0]:
        return list(tables.COLUMNS)
    extra = [("tuned lr", "tuned_learning_rate", "{:.3g}"), ("seeds test acc", "seeds_test_accuracy", "{:.2%}")]
    return [tables.COLUMNS[0], *extra, *tables.COLUMNS[1:]]


def _compare_metrics(
    methods: list[tuple[str, MethodConfig]], histories: dict[str, History], tuned: dict[str, Tuned], select: str
) -> dict[str, object]:
    """``metrics.json`` of a comparison: per method its batch size, history and, when tuned, its sweep."""
    return {
        label: {
            "batch_size": _batch(m.batch_size),
            **histories[label].to_dict(),
            **({"tune": sweep_results.report(tuned[label].result, select)} if tuned else {}),
        }
        for label, m in methods
    }


def compare(config: Config, out: Path) -> None:
    """Trains the same model with every method of the config's ``methods`` and writes the results to ``out``.

    With a ``tune`` section, each method's learning rate is first chosen by a vmapped sweep
    (:func:`jgd.experiment.sweep.tune.tune_methods`); the summary then holds the chosen rate and, at that rate,
    the mean test accuracy over the tuning seeds, and ``metrics.json`` each method's sweep under ``tune``.

    Args:
      config: a config with a ``methods`` list.
      out: the output folder, replaced only once everything has succeeded.
    """
    data, model, variables, order_key = _setup(config)
    methods = [(cast(str, m.label), m) for m in config.methods]  # the reader labels every method
    t = config.training
    histories: dict[str, History] = {}
    tuned: dict[str, Tuned] = {}
    with _staged(out) as staging:
        started = time.perf_counter()
        with _progress() as progress:
            if config.tune is not None:
                tuned = tune_methods(config, model, data, order_key, progress=progress)
                methods = [(label, tuned[label].method) for label, _ in methods]
            transforms = {
                label: build_optimizer(m.optimizer, f"methods[{i}].optimizer") for i, (label, m) in enumerate(methods)
            }
            for label, method in methods:
                # Every method starts from the same variables and, per batch size, sees the same batches.
                options = dataclasses.replace(t, batch_size=method.batch_size, checkpoint=None)
                _, histories[label] = fit(
                    model,
                    variables,
                    transforms[label],
                    data,
                    order_key,
                    options,
                    progress=progress,
                    description=label,
                )
        summary = [
            {
                **_summary_row(label, m.batch_size, histories[label], _state_bytes(transforms[label], t, variables)),
                **(tuned[label].summary() if tuned else {}),
            }
            for label, m in methods
        ]
        select = config.tune.select if config.tune is not None else "val_loss"
        write_json(staging / "metrics.json", _compare_metrics(methods, histories, tuned, select))
        write_csv(staging / "metrics.csv", [{"method": k, **row} for k, h in histories.items() for row in h.epochs])
        write_csv(staging / "summary.csv", summary)
        _write_config(config, staging)
        plots.plot_comparison(histories, staging, _describe(model, data))
        title = f"{_describe(model, data)}: {t.epochs} epochs, {time.perf_counter() - started:.0f} s in all"
        if config.tune is not None:
            title += f"\nlearning rates tuned by {select}, means over {len(config.tune.seeds or ())} seeds"
        table = tables.table(title, summary, _tuned_columns(summary))
        tables.save(table, staging)
    tables.show(table)
    for label, entry in tuned.items():
        if entry.best is None:
            print(f"{label}: every tuned learning rate diverged; it trained at its own")


def _sweep_summary_row(result: SweepResult, batch_size: int | None, select: str) -> dict[str, object]:
    chosen = sweep_results.best(result, select) or {k: math.nan for k in sweep_results.final_metrics(result)}
    return {
        "method": result.label,
        "batch_size": _batch(batch_size),
        **{name: chosen.get(name, math.nan) for name in result.hyperparameters},
        "seeds": len(np.unique(result.settings["seed"])),
        **{k: chosen[k] for k in sweep_results.final_metrics(result)},
        "diverged": f"{result.diverged.sum()}/{len(result.diverged)}",
        "compile_seconds": round(result.compile_seconds, 3),
        "train_seconds": round(result.train_seconds, 3),
        "seconds": round(result.compile_seconds + result.train_seconds, 3),
    }


def sweep(config: Config, out: Path) -> None:
    """Trains every setting of the config's ``sweep`` section, one vmapped training per method, into ``out``.

    Args:
      config: a config with a ``sweep`` section.
      out: the output folder, replaced only once everything has succeeded.
    """
    section = config.sweep
    assert section is not None  # the command line checked that the config has one
    data, model, _, order_key = _setup(config)
    methods, select = config.sweep_methods, section.select
    with _staged(out) as staging:
        started = time.perf_counter()
        with _progress() as progress:
            results = run_sweep(config, model, data, order_key, progress=progress)
        summary = [_sweep_summary_row(r, m.batch_size, select) for r, (_, m) in zip(results, methods)]
        metrics = {
            r.label: {"batch_size": _batch(m.batch_size), **sweep_results.report(r, select)}
            for r, (_, m) in zip(results, methods)
        }
        write_json(
            staging / "metrics.json",
            {"select": select, "divergence_factor": section.divergence_factor, "methods": metrics},
        )
        write_csv(staging / "metrics.csv", [row for r in results for row in sweep_results.rows(r)])
        write_csv(staging / "summary.csv", summary)
        _write_config(config, staging)
        plots.plot_sweep(results, staging, _describe(model, data), select)
        seeds = len(section.seeds or (config.seed,))
        title = (
            f"{_describe(model, data)}, {config.training.epochs} epochs, {len(results[0].diverged) // seeds} settings"
            f"{f' × {seeds} seeds' if seeds > 1 else ''}, {time.perf_counter() - started:.0f} s in all\n"
            f"best setting of each method by {select}{', means over seeds' if seeds > 1 else ''}"
        )
        names = results[0].hyperparameters
        columns = [("method", "method", "{}"), ("batch", "batch_size", "{}"), *((n, n, "{:.3g}") for n in names)]
        table = tables.table(title, summary, [*columns, *tables.SWEEP_COLUMNS])
        tables.save(table, staging)
    tables.show(table)
