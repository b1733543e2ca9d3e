"""The ``jgd`` command line: ``jgd train CONFIG``, ``jgd compare CONFIG`` and ``jgd sweep CONFIG``.

Each subcommand writes its results (metrics as JSON and CSV, plots, the
resolved config) into a temporary folder that becomes the output folder only
when everything has succeeded, so a failed run leaves no partial output. Any
error ends the command with a non-zero exit and one line naming the problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import jax
import numpy as np
import yaml
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from jgd.experiment import plots, sweep_results
from jgd.experiment.config_reader import load_config
from jgd.experiment.config_writer import to_dict
from jgd.experiment.data import Dataset, load_dataset
from jgd.experiment.models import MLP, init_variables
from jgd.experiment.optimizers import build_optimizer
from jgd.experiment.output_files import write_csv, write_json
from jgd.experiment.schema import CheckpointConfig, Config
from jgd.experiment.sweep import SweepResult
from jgd.experiment.sweep_config import run_sweep
from jgd.experiment.training import History, fit


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def _output_dir(args: argparse.Namespace, config: Config) -> Path:
    out = Path(args.out or config.output_dir or Path("runs") / Path(args.config).stem)
    # Only a folder of earlier jgd results (or an empty one) is replaced, never an unrelated one.
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "metrics.json").is_file())):
        raise ValueError(f"output folder {out} exists and does not hold jgd results; choose another with --out")
    return out


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


def _save_table(table: Table, directory: Path) -> None:
    with open(directory / "summary.txt", "w") as f:
        Console(file=f, width=120).print(table)


def _checkpoint(checkpoint: CheckpointConfig | None, out: Path, resume: bool) -> CheckpointConfig | None:
    """The checkpoint settings of ``jgd train`` (``--resume`` needs them), with their folder filled in.

    The default folder is beside the output folder, not in it: the output folder is replaced only when the run
    succeeds.
    """
    if checkpoint is None and not resume:
        return None
    checkpoint = checkpoint or CheckpointConfig()
    return dataclasses.replace(checkpoint, dir=checkpoint.dir or f"{out}.checkpoint")


def _train(args: argparse.Namespace) -> Path:
    config = load_config(args.config, args.set)
    if config.optimizer is None:
        raise ValueError(f"{args.config}: jgd train needs an optimizer section")
    out = _output_dir(args, config)
    data, model, variables, order_key = _setup(config)
    tx = build_optimizer(config.optimizer)
    t = dataclasses.replace(config.training, checkpoint=_checkpoint(config.training.checkpoint, out, args.resume))
    with _staged(out) as staging:
        with _progress() as progress:
            _, history = fit(
                model,
                variables,
                tx,
                data,
                order_key,
                t,
                resume=args.resume,
                progress=progress,
                description=config.optimizer.name,
            )
        write_json(staging / "metrics.json", history.to_dict())
        write_csv(staging / "metrics.csv", history.epochs)
        _write_config(config, staging)
        title = f"{config.optimizer.name}, {_describe(model, data)}"
        plots.plot_history(history, staging, title)
        table = _table(title, [_summary_row(config.optimizer.name, t.batch_size, history)])
        _save_table(table, staging)
    Console().print(table)
    if history.stopped_early:
        print(f"stopped early; kept the parameters of epoch {history.best_epoch}, the lowest validation loss")
    return out


# Columns of the results table: header, key of the summary row, format.
_COLUMNS = (
    ("method", "method", "{}"),
    ("batch", "batch_size", "{}"),
    ("epochs", "epochs", "{}"),
    ("start loss", "initial_train_loss", "{:.3g}"),
    ("final loss", "final_train_loss", "{:.3g}"),
    ("val acc", "val_accuracy", "{:.2%}"),
    ("test acc", "test_accuracy", "{:.2%}"),
    ("time s", "seconds", "{:.1f}"),
)


def _table(title: str, rows: Sequence[dict[str, object]], columns: Sequence[tuple[str, str, str]] = _COLUMNS) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for header, _, _ in columns:
        table.add_column(header, justify="left" if header == "method" else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(fmt.format(row[key]) for _, key, fmt in columns))
    return table


def _batch(batch_size: int | None) -> int | str:
    return "full" if batch_size is None else batch_size


def _summary_row(label: str, batch_size: int | None, history: History) -> dict[str, object]:
    return {
        "method": label,
        "batch_size": _batch(batch_size),
        "epochs": history.epochs[-1]["epoch"],
        "best_epoch": history.best_epoch,
        "initial_train_loss": history.epochs[0]["train_loss"],
        "final_train_loss": history.epochs[-1]["train_loss"],
        "val_accuracy": history.epochs[-1]["val_accuracy"],
        "test_accuracy": history.test["accuracy"],
        "compile_seconds": round(history.compile_seconds, 3),
        "train_seconds": round(history.train_seconds, 3),
        "seconds": round(history.compile_seconds + history.train_seconds, 3),
    }


def _compare(args: argparse.Namespace) -> Path:
    config = load_config(args.config, args.set)
    if not config.methods:
        raise ValueError(f"{args.config}: jgd compare needs a methods list")
    out = _output_dir(args, config)
    data, model, variables, order_key = _setup(config)
    transforms = {
        m.label: build_optimizer(m.optimizer, f"methods[{i}].optimizer") for i, m in enumerate(config.methods)
    }
    t = config.training
    histories: dict[str, History] = {}
    with _staged(out) as staging:
        started = time.perf_counter()
        with _progress() as progress:
            for method in config.methods:
                # Every method starts from the same variables and, per batch size, sees the same batches.
                _, histories[method.label] = fit(
                    model,
                    variables,
                    transforms[method.label],
                    data,
                    order_key,
                    dataclasses.replace(t, batch_size=method.batch_size, checkpoint=None),
                    progress=progress,
                    description=method.label,
                )
        summary = [_summary_row(m.label, m.batch_size, histories[m.label]) for m in config.methods]
        write_json(
            staging / "metrics.json",
            {m.label: {"batch_size": _batch(m.batch_size), **histories[m.label].to_dict()} for m in config.methods},
        )
        write_csv(staging / "metrics.csv", [{"method": k, **row} for k, h in histories.items() for row in h.epochs])
        write_csv(staging / "summary.csv", summary)
        _write_config(config, staging)
        plots.plot_comparison(histories, staging, _describe(model, data))
        title = f"{_describe(model, data)}: {t.epochs} epochs, {time.perf_counter() - started:.0f} s in all"
        table = _table(title, summary)
        _save_table(table, staging)
    Console().print(table)
    return out


# Columns of the sweep's table after the method and its batch size and best hyperparameters (means over seeds).
_SWEEP_COLUMNS = (
    ("final loss", "final_train_loss", "{:.3g}"),
    ("val loss", "val_loss", "{:.3g}"),
    ("val acc", "val_accuracy", "{:.2%}"),
    ("test acc", "test_accuracy", "{:.2%}"),
    ("diverged", "diverged", "{}"),
    ("time s", "seconds", "{:.1f}"),
)


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


def _sweep(args: argparse.Namespace) -> Path:
    config = load_config(args.config, args.set)
    if config.sweep is None:
        raise ValueError(f"{args.config}: jgd sweep needs a sweep section")
    out = _output_dir(args, config)
    data, model, _, order_key = _setup(config)
    methods = config.sweep_methods
    select = config.sweep.select
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
            {"select": select, "divergence_factor": config.sweep.divergence_factor, "methods": metrics},
        )
        write_csv(staging / "metrics.csv", [row for r in results for row in sweep_results.rows(r)])
        write_csv(staging / "summary.csv", summary)
        _write_config(config, staging)
        plots.plot_sweep(results, staging, _describe(model, data), select)
        seeds = len(config.sweep.seeds)
        title = (
            f"{_describe(model, data)}, {config.training.epochs} epochs, {len(results[0].diverged) // seeds} settings"
            f"{f' × {seeds} seeds' if seeds > 1 else ''}, {time.perf_counter() - started:.0f} s in all\n"
            f"best setting of each method by {select}{', means over seeds' if seeds > 1 else ''}"
        )
        names = results[0].hyperparameters
        columns = [("method", "method", "{}"), ("batch", "batch_size", "{}"), *((n, n, "{:.3g}") for n in names)]
        table = _table(title, summary, [*columns, *_SWEEP_COLUMNS])
        _save_table(table, staging)
    Console().print(table)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand sets ``run``, so new ones plug in beside these."""
    parser = argparse.ArgumentParser(
        prog="jgd", description="Train, compare and sweep jgd optimizers from YAML configs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subcommands: dict[str, tuple[Callable[[argparse.Namespace], Path], str]] = {
        "train": (_train, "train one model with the config's optimizer"),
        "compare": (_compare, "train the same model with every method of the config's methods list"),
        "sweep": (_sweep, "train every setting of the config's sweep section, one vmapped training per method"),
    }
    for name, (run, text) in subcommands.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("config", help="YAML config file (schema: configs/README.md)")
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config field, e.g. --set optimizer.learning_rate=0.01 (repeatable)",
        )
        sub.add_argument("--out", help="output folder (default: the config's output.dir, else runs/CONFIG_NAME)")
        if name == "train":
            sub.add_argument(
                "--resume", action="store_true", help="continue from the run's checkpoint (see training.checkpoint)"
            )
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status (0 on success)."""
    args = build_parser().parse_args(argv)
    try:
        out = args.run(args)
    except KeyboardInterrupt as e:
        print(f"jgd: interrupted{f'; {e}' if str(e) else ''}", file=sys.stderr)
        return 130
    except Exception as e:  # every failure becomes one line and a non-zero exit
        message = " ".join(str(e).split())
        if not isinstance(e, (ValueError, OSError)):
            # Not a reported input problem: the exception's type says what went wrong.
            message = f"{type(e).__name__}: {message}" if message else type(e).__name__
        print(f"jgd: error: {message}", file=sys.stderr)
        return 1
    print(f"results written to {out}")
    return 0
