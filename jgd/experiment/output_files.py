"""Writing results: JSON for whole records, CSV for tables of rows, and the numbers that go in them."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np


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


def python_number(value: Any) -> int | float | bool:
    """A scalar as the Python number that prints as the shortest decimal reading back to it in its own dtype.

    A float32 ``0.3`` widened to a Python float prints as ``0.30000001192092896``; this gives ``0.3``, which
    reads back to the same float32. Integers and flags come back as ``int`` and ``bool``.

    Args:
      value: a Python number, a NumPy scalar or a zero-dimensional array (JAX's too), of any dtype.
    """
    scalar = np.asarray(value)[()]
    if not jnp.issubdtype(scalar.dtype, jnp.floating):  # jnp's test knows bfloat16, NumPy's does not
        return scalar.item()
    x = float(scalar)
    if scalar.dtype.itemsize >= 8 or not math.isfinite(x):
        return x  # a float64's repr is already its shortest decimal
    # The fewest significant digits whose decimal rounds back to the same value in the narrow dtype (17 always do).
    digits = 1
    while np.asarray(float(f"{x:.{digits}g}"), scalar.dtype) != scalar:
        digits += 1
    return float(f"{x:.{digits}g}")
