"""PNG figures of training histories: one run's loss, accuracy and optimizer statistics, and a comparison's.

:func:`plot_curves` draws any set of curves; the sweep figures (:mod:`jgd.experiment.plots`, which re-exports
these functions as the public names) use it too. Figures are built with ``matplotlib.figure.Figure`` rather than
pyplot, so plotting needs no display and leaves the caller's backend alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from jgd.experiment.train.training import History

# Line styles cycled with the colors, so curves that coincide still show both.
LINE_STYLES = ("-", "--", "-.", ":")
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
        ax.plot(x, y, LINE_STYLES[i % len(LINE_STYLES)], color=f"C{i % 10}", label=label, linewidth=1.6)
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
        norms.plot(epochs, [row[name] for row in rows], LINE_STYLES[i], color=f"C{i}", label=name, linewidth=1.6)
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
