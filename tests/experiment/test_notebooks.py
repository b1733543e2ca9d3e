"""Every notebook runs from a clean kernel without an error, within its time budget."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


# The ones that train for tens of seconds run with the slow cases (CI runs them); the quick ones by default.
HEAVY = {"compare_on_digits", "frontier", "preconditioners", "second_order", "sweep", "trajectories"}
# Seconds a cell may take: 120, or more for a notebook whose one cell tunes and trains a dozen methods.
TIMEOUT = {"frontier": 300}


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.stem in HEAVY else []) for p in NOTEBOOKS]
)
def test_notebook_executes(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    assert any(cell.get("outputs") for cell in notebook.cells), "notebooks are stored with their outputs"
    client = NotebookClient(
        notebook,
        timeout=TIMEOUT.get(path.stem, 120),
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
