"""PNG figures of training histories and sweeps, drawn with matplotlib's Agg canvas.

The sweep figures are here; the histories' (:func:`plot_curves`, :func:`plot_history`, :func:`plot_monitor`,
:func:`plot_comparison`) are written in ``jgd.experiment.history_plots`` and public from here.
Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so
plotting needs no display and leaves the caller's backend alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from jgd.experiment.history_plots import LINE_STYLES, plot_comparison, plot_curves, plot_history, plot_monitor
from jgd.experiment.sweep.engine import SweepResult
from jgd.experiment.sweep.results import best, describe, over_seeds

__all__ = [
    "plot_comparison",
    "plot_curves",
    "plot_history",
    "plot_monitor",
    "plot_sweep",
    "plot_sweep_heatmap",
    "plot_sweep_loss",
]

# Float32 cross-entropy bottoms out in rounding near here; a logarithmic axis cannot show a loss of 0.
_LOSS_FLOOR = 1e-7


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
        style: dict[str, Any] = {"color": f"C{i % 10}", "linestyle": LINE_STYLES[i % len(LINE_STYLES)]}
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
