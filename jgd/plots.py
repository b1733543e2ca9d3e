"""PNG figures of training histories, drawn with matplotlib's Agg canvas.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so
plotting needs no display and leaves the caller's backend alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from matplotlib.figure import Figure

from jgd.training import History

_STYLES = ("-", "--", "-.", ":")


def plot_curves(
    curves: Mapping[str, tuple[list[float], list[float]]],
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

    After early stopping, a vertical line marks the epoch whose parameters were kept.
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
    return [loss, acc]


def plot_comparison(histories: Mapping[str, History], directory: str | Path, name: str = "") -> list[Path]:
    """Training loss (log scale) and validation accuracy of every method; returns the files written."""
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
