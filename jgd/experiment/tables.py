"""The results tables of the command line, drawn with rich: on the terminal, and saved as ``summary.txt``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table

# Columns of the results table: header, key of the summary row, format.
COLUMNS = (
    ("method", "method", "{}"),
    ("batch", "batch_size", "{}"),
    ("epochs", "epochs", "{}"),
    ("start loss", "initial_train_loss", "{:.3g}"),
    ("final loss", "final_train_loss", "{:.3g}"),
    ("val acc", "val_accuracy", "{:.2%}"),
    ("test acc", "test_accuracy", "{:.2%}"),
    ("state bytes/param", "state_bytes_per_param", "{:.2f}"),
    ("time s", "seconds", "{:.1f}"),
)

# Columns of the sweep's table after the method and its batch size and best hyperparameters (means over seeds).
SWEEP_COLUMNS = (
    ("final loss", "final_train_loss", "{:.3g}"),
    ("val loss", "val_loss", "{:.3g}"),
    ("val acc", "val_accuracy", "{:.2%}"),
    ("test acc", "test_accuracy", "{:.2%}"),
    ("diverged", "diverged", "{}"),
    ("time s", "seconds", "{:.1f}"),
)

# Wider than any table: off a terminal rich would otherwise assume 80 columns and cut the rows short.
_UNCUT = 10_000


def table(title: str, rows: Sequence[dict[str, object]], columns: Sequence[tuple[str, str, str]] = COLUMNS) -> Table:
    """A table of ``rows`` under ``title``, one column per ``(header, key, format)`` of ``columns``.

    Args:
      title: the line (or lines) above the table.
      rows: one mapping per line, holding every key that ``columns`` names.
      columns: each column's header, the key of its value in a row, and the value's format.
    """
    drawn = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for header, _, _ in columns:
        drawn.add_column(header, justify="left" if header == "method" else "right", no_wrap=True)
    for row in rows:
        drawn.add_row(*(fmt.format(row[key]) for _, key, fmt in columns))
    return drawn


def console(file: TextIO | None = None) -> Console:
    """A console for tables: a terminal's own width, and no limit elsewhere (a file, a pipe), so no row is cut.

    Args:
      file: where to write; ``None`` is standard output.
    """
    terminal = Console(file=file)
    return terminal if terminal.is_terminal else Console(file=file, width=_UNCUT)


def show(drawn: Table) -> None:
    """Prints a table on standard output.

    Args:
      drawn: a table from :func:`table`.
    """
    console().print(drawn)


def save(drawn: Table, directory: Path) -> None:
    """Writes a table to ``summary.txt`` in ``directory``.

    Args:
      drawn: a table from :func:`table`.
      directory: the output folder.
    """
    with open(directory / "summary.txt", "w") as f:
        console(f).print(drawn)
