"""PNG figures of training histories and sweeps, drawn with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so
plotting needs no display and leaves the caller's backend alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from jgd.experiment.sweep.engine import SweepResult
from jgd.experiment.sweep.results import best, describe, over_seeds
from jgd.experiment.train.training import History

__all__ = [
    "plot_comparison",
    "plot_curves",
    "plot_history",
    "plot_monitor",
    "plot_sweep",
    "plot_sweep_heatmap",
    "plot_sweep_loss",
]

_STYLES = ("-", "--", "-.", ":")
# Float32 cross-entropy bottoms out in rounding near here; a logarithmic axis cannot show a loss of 0.
_LOSS_FLOOR = 1e-7
# The global statistics of jgd.monitor, as a history row holds them: three norms and their ratio.
_NORMS = ("grad_norm", "update_norm", "param_norm")
_RATIO = "update_ratio"


def plot_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log_y: bool = False,
    ylim: tuple[float | None, float | None] | None = None,
    mark: tuple[float, str] | None = None,
) -> None:
    """Saves one line per ``label -> (x, y)`` of ``curves`` to ``path``, with labelled axes, legend and title.

    ``ylim`` fixes the vertical range (``None`` for either end leaves it
    automatic); ``mark = (x, label)`` draws a labelled vertical line at ``x``.

    Colors cycle through ``tab10`` and line styles through four dash
    patterns, so curves that coincide still show both colors.

    Examples:
      >>> import pathlib
      >>> import tempfile
      >>> from jgd.experiment.plots import plot_curves
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "curves.png"
      >>> curves = {"a": ([0, 1, 2], [1.0, 0.5, 0.25]), "b": ([0, 1, 2], [1.0, 0.7, 0.5])}
      >>> plot_curves(curves, path, title="loss", xlabel="epoch", ylabel="loss", log_y=True)
      >>> print(path.exists())
      True
    """
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, (x, y)) in enumerate(curves.items()):
        ax.plot(x, y, _STYLES[i % len(_STYLES)], color=f"C{i % 10}", label=label, linewidth=1.6)
    if mark is not None:
        ax.axvline(mark[0], color="0.4", linestyle=":", label=mark[1])
    if log_y:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.savefig(path, dpi=120)


def _series(history: History, key: str) -> tuple[list[float], list[float]]:
    return [row["epoch"] for row in history.epochs], [row[key] for row in history.epochs]


def plot_history(history: History, directory: str | Path, name: str = "") -> list[Path]:
    """Loss (log scale) and accuracy of one run on the training and validation sets; returns the files written.

    After early stopping, a vertical line marks the epoch whose parameters were kept. With the statistics of
    ``training.monitor`` in the rows, ``optimizer.png`` (:func:`plot_monitor`) too.

    Examples:
      The loss and accuracy figures of one run (``jgd train`` draws them):

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import pathlib
      >>> import tempfile
      >>> import jgd
      >>> from jgd.experiment.config.schema import TrainingConfig
      >>> from jgd.experiment.plots import plot_history
      >>> from jgd.experiment.train.training import fit
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> _, history = fit(model, variables, jgd.adam(1e-2), data, jax.random.key(1), TrainingConfig(epochs=2))
      >>> print([path.name for path in plot_history(history, tempfile.mkdtemp())])
      ['loss.png', 'accuracy.png']
    """
    directory = Path(directory)
    suffix = f" — {name}" if name else ""
    loss, acc = directory / "loss.png", directory / "accuracy.png"
    mark = (history.best_epoch, f"restored (epoch {history.best_epoch})") if history.stopped_early else None
    plot_curves(
        {"training": _series(history, "train_loss"), "validation": _series(history, "val_loss")},
        loss,
        title=f"Loss per epoch{suffix}",
        xlabel="epoch",
        ylabel="loss (log scale)",
        log_y=True,
        mark=mark,
    )
    plot_curves(
        {"training": _series(history, "train_accuracy"), "validation": _series(history, "val_accuracy")},
        acc,
        title=f"Accuracy per epoch{suffix}",
        xlabel="epoch",
        ylabel="accuracy",
        mark=mark,
    )
    written = [loss, acc]
    if any(_RATIO in row for row in history.epochs):
        written.append(directory / "optimizer.png")
        plot_monitor(history, written[-1], title=f"Optimizer statistics per epoch{suffix}")
    return written


def plot_monitor(history: History, path: str | Path, *, title: str) -> None:
    """The global norms of ``training.monitor`` (gradient, update, parameters) and the update ratio, log scale.

    Each point is the last optimizer step of its epoch; epochs without statistics (epoch 0) are left out.

    Examples:
      The norms that ``training.monitor`` records, per epoch:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import pathlib
      >>> import tempfile
      >>> import jgd
      >>> from jgd.experiment.config.schema import TrainingConfig
      >>> from jgd.experiment.plots import plot_monitor
      >>> from jgd.experiment.train.training import fit
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> options = TrainingConfig(epochs=2, monitor=True)
      >>> _, history = fit(model, variables, jgd.adam(1e-2), data, jax.random.key(1), options)
      >>> print(sorted(k for k in history.epochs[-1] if k.endswith("_norm")))
      ['grad_norm', 'param_norm', 'update_norm']
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "optimizer.png"
      >>> plot_monitor(history, path, title="Adam")
      >>> print(path.exists())
      True
    """
    rows = [row for row in history.epochs if _RATIO in row]
    epochs = [row["epoch"] for row in rows]
    fig = Figure(figsize=(8, 6.5), layout="constrained")
    norms, ratio = fig.subplots(2, 1, sharex=True)
    for i, name in enumerate(_NORMS):
        norms.plot(epochs, [row[name] for row in rows], _STYLES[i], color=f"C{i}", label=name, linewidth=1.6)
    ratio.plot(epochs, [row[_RATIO] for row in rows], color="C3", label=_RATIO, linewidth=1.6)
    norms.set(title=title, ylabel="norm (log scale)", yscale="log")
    ratio.set(xlabel="epoch", ylabel="‖update‖ / ‖params‖ (log scale)", yscale="log")
    for ax in (norms, ratio):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.savefig(path, dpi=120)


def plot_comparison(histories: Mapping[str, History], directory: str | Path, name: str = "") -> list[Path]:
    """Training loss (log scale) and validation accuracy of every method; returns the files written.

    Examples:
      The figures of ``jgd compare``: every method's training loss and validation accuracy:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import tempfile
      >>> import jgd
      >>> from jgd.experiment.config.schema import TrainingConfig
      >>> from jgd.experiment.plots import plot_comparison
      >>> from jgd.experiment.train.training import fit
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> histories = {}
      >>> for label, tx in [("SGD", jgd.sgd(0.1)), ("Adam", jgd.adam(1e-2))]:
      ...     _, histories[label] = fit(model, variables, tx, data, jax.random.key(1), TrainingConfig(epochs=2))
      ...
      >>> print([path.name for path in plot_comparison(histories, tempfile.mkdtemp())])
      ['training_loss.png', 'validation_accuracy.png']
    """
    directory = Path(directory)
    suffix = f" — {name}" if name else ""
    loss, acc = directory / "training_loss.png", directory / "validation_accuracy.png"
    plot_curves(
        {label: _series(h, "train_loss") for label, h in histories.items()},
        loss,
        title=f"Training loss per epoch{suffix}",
        xlabel="epoch",
        ylabel="training loss (log scale)",
        log_y=True,
    )
    plot_curves(
        {label: _series(h, "val_accuracy") for label, h in histories.items()},
        acc,
        title=f"Validation accuracy per epoch{suffix}",
        xlabel="epoch",
        ylabel="validation accuracy",
        ylim=(_settled_floor(histories.values(), "val_accuracy"), 1.0),
    )
    return [loss, acc]


def _settled_floor(histories: Iterable[History], key: str) -> float:
    """A lower limit that shows the differences after the first fifth of the epochs.

    Accuracies climb from chance within a few epochs and then differ by a few
    percent; a full [0, 1] axis would hide that. The early points leave the
    axis at the bottom instead.
    """
    values = [row[key] for h in histories for row in h.epochs if row["epoch"] >= max(1, len(h.epochs) // 5)]
    if not values:
        return 0.0
    low = min(values)
    return max(0.0, low - 0.1 * (1.0 - low) - 0.01)


def _swept_axis(result: SweepResult) -> str:
    names = result.hyperparameters
    return "learning_rate" if "learning_rate" in names else names[0]


def plot_sweep_loss(results: Sequence[SweepResult], path: str | Path, *, title: str) -> None:
    """Final training loss against the learning rate (else the first swept name), one line per method.

    Each point is the mean over seeds, the lowest over the other swept
    hyperparameters, floored at 1e-7; values where every setting diverged are
    drawn as ``×`` at the top, so they are seen rather than dropped. The x axis
    is logarithmic when every value is positive.

    Examples:
      The final training loss against the learning rate; the diverged rate is drawn as ``×`` at the top:

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
      >>> import pathlib
      >>> import tempfile
      >>> from jgd.experiment.plots import plot_sweep_loss
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "final_loss.png"
      >>> plot_sweep_loss([result], path, title="Adam on digits")
      >>> print(path.exists())
      True
    """
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    x_name = _swept_axis(results[0])
    results = [r for r in results if x_name in r.settings]  # methods swept over other names have no line here
    for i, result in enumerate(results):
        table, _ = over_seeds(result)
        x, loss, ok = table[x_name], table["final_train_loss"], table["diverged"] == 0
        xs = np.unique(x)
        ys = np.array([loss[(x == v) & ok].min() if ((x == v) & ok).any() else np.nan for v in xs])
        ys = np.maximum(ys, _LOSS_FLOOR)
        style: dict[str, Any] = {"color": f"C{i % 10}", "linestyle": _STYLES[i % len(_STYLES)]}
        ax.plot(xs, ys, marker="o", markersize=4, label=result.label, linewidth=1.6, **style)
        lost = np.isnan(ys)
        # Blended transform (data x, axes y): diverged values sit in a band at the top whatever the loss range,
        # one row per method so that coinciding ones stay visible.
        top = np.full(lost.sum(), 0.975 - 0.025 * i)
        ax.plot(xs[lost], top, "x", color=style["color"], transform=ax.get_xaxis_transform())
    ax.plot([], [], "x", color="0.3", label="all diverged")
    if (np.concatenate([r.settings[x_name] for r in results]) > 0).all():
        ax.set_xscale("log")
    ax.set_yscale("log")
    others = len(results[0].hyperparameters) > 1
    seeds = len(np.unique(results[0].settings["seed"]))
    notes = ", ".join(
        ([f"mean over {seeds} seeds"] if seeds > 1 else [])
        + (["lowest over the other hyperparameters"] if others else [])
    )
    ylabel = f"final training loss (log scale, floored at {_LOSS_FLOOR:g})" + (f"\n{notes}" if notes else "")
    ax.set(title=title, xlabel=x_name, ylabel=ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.savefig(path, dpi=120)


def _grid_2d(result: SweepResult) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(rows, columns, final loss)`` of a full grid over two hyperparameters, else ``None``.

    The loss is the mean over seeds, floored at 1e-7, and NaN where a seed diverged.
    """
    if len(result.hyperparameters) != 2:
        return None
    table, _ = over_seeds(result)
    a, b = (np.unique(table[name]) for name in result.hyperparameters)
    if len(table["seeds"]) != len(a) * len(b):
        return None  # sampled settings, not a grid
    # over_seeds sorts the settings by (first, second), so the table is the grid in row-major order.
    loss = np.where(table["diverged"] == 0, np.maximum(table["final_train_loss"], _LOSS_FLOOR), np.nan)
    return a, b, loss.reshape(len(a), len(b))


def plot_sweep_heatmap(results: Sequence[SweepResult], path: str | Path, *, title: str) -> bool:
    """One heat map per method of the final training loss over a 2-D grid; returns whether any was drawn.

    Colors share one logarithmic scale across methods; diverged cells are grey with a ``×``.

    Examples:
      A heat map needs a 2-D grid; a sweep of one name draws nothing and says so:

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
      >>> import pathlib
      >>> import tempfile
      >>> from jgd.experiment.plots import plot_sweep_heatmap
      >>> folder = pathlib.Path(tempfile.mkdtemp())
      >>> print(plot_sweep_heatmap([result], folder / "heatmap.png", title="Adam"))
      False
      >>> settings = grid(learning_rate=[1e-3, 1e-2], b1=[0.8, 0.9])
      >>> two_d = sweep(jgd.adam, settings, model, data, epochs=1, order_key=jax.random.key(0))
      >>> print(plot_sweep_heatmap([two_d], folder / "heatmap.png", title="Adam"))
      True
    """
    grids = {r.label: g for r in results if (g := _grid_2d(r)) is not None}
    if not grids:
        return False
    finite = np.concatenate([loss[np.isfinite(loss)] for _, _, loss in grids.values()])
    norm = LogNorm(*(np.percentile(finite, [0, 100]) if finite.size else (1e-3, 1.0)))
    cmap = colormaps["viridis"].with_extremes(bad="0.85")
    columns = min(3, len(grids))
    rows = -(-len(grids) // columns)
    fig = Figure(figsize=(4.2 * columns + 1, 3.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    names = results[0].hyperparameters
    for ax, (label, (a, b, loss)) in zip(axes, grids.items()):
        image = ax.imshow(loss, norm=norm, cmap=cmap, origin="lower", aspect="auto")
        for (i, j), value in np.ndenumerate(loss):
            dark = not np.isnan(value) and norm(value) < 0.6  # viridis is dark at the low end
            text = "×" if np.isnan(value) else f"{value:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if dark else "0.1")
        ax.set_xticks(range(len(b)), [f"{v:.3g}" for v in b], rotation=45, fontsize=8)
        ax.set_yticks(range(len(a)), [f"{v:.3g}" for v in a], fontsize=8)
        ax.set(title=label, xlabel=names[1], ylabel=names[0])
    for ax in axes[len(grids) :]:
        ax.set_axis_off()
    fig.colorbar(image, ax=axes.tolist(), label="final training loss (log scale; × diverged)")
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return True


def plot_sweep(
    results: Sequence[SweepResult], directory: str | Path, name: str = "", select: str = "val_loss"
) -> list[Path]:
    """The figures of a sweep; returns the files written.

    ``final_loss.png``: :func:`plot_sweep_loss`. ``heatmap.png``, for 2-D
    grids: :func:`plot_sweep_heatmap`. ``best_loss.png``: the training loss per
    epoch (mean over seeds) of each method's best setting by ``select``.

    Examples:
      All the figures of a sweep, as ``jgd sweep`` writes them:

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
      >>> import tempfile
      >>> from jgd.experiment.plots import plot_sweep
      >>> print([path.name for path in plot_sweep([result], tempfile.mkdtemp())])
      ['final_loss.png', 'best_loss.png']
    """
    directory = Path(directory)
    suffix = f" — {name}" if name else ""
    written = []
    if results[0].hyperparameters:
        written.append(directory / "final_loss.png")
        plot_sweep_loss(results, written[-1], title=f"Final training loss against {_swept_axis(results[0])}{suffix}")
        heatmap = directory / "heatmap.png"
        if plot_sweep_heatmap(results, heatmap, title=f"Final training loss over the grid{suffix}"):
            written.append(heatmap)
    curves = {}
    for result in results:
        chosen = best(result, select)
        if chosen is not None:
            loss = result.curves["train_loss"][chosen["rows"]].mean(axis=0)
            label = f"{result.label} ({describe(chosen, result.hyperparameters)})"
            curves[label] = (list(range(len(loss))), loss.tolist())
    if curves:
        written.append(directory / "best_loss.png")
        plot_curves(
            curves,
            written[-1],
            title=f"Training loss of each method's best setting (by {select})" + (f"\n{name}" if name else ""),
            xlabel="epoch",
            ylabel="training loss (log scale)",
            log_y=True,
        )
    return written
