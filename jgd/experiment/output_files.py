"""Writing results: JSON for whole records, CSV for tables of rows."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def write_json(path: str | Path, value: Any) -> None:
    """Writes ``value`` as indented JSON."""
    Path(path).write_text(json.dumps(value, indent=2) + "\n")


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Writes ``rows`` as CSV, with the union of their keys (in first-seen order) as the header."""
    header = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, header)
        writer.writeheader()
        writer.writerows(rows)
