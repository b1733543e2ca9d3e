"""Checkpoints of a training run: named pytrees of arrays and JSON metadata in one file, replaced atomically.

The file (``checkpoint.msgpack`` in the checkpoint folder) is flax's msgpack of
every array keyed by its tree path, with the metadata as JSON text beside them.
It is written to a temporary file, flushed to disk and renamed over the old
one, so a run killed at any moment leaves the previous checkpoint or the new
one, never a mix. With several processes every process gathers the arrays and
only process 0 writes; resuming reads the file in every process, so the folder
must be on storage they share.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from jgd.experiment import sharding
from jgd.types import PyTree

FILE = "checkpoint.msgpack"
_FORMAT = "jgd-checkpoint/1"


def file(directory: str | Path) -> Path:
    """The checkpoint file in ``directory``."""
    return Path(directory) / FILE


def _by_path(tree: PyTree) -> dict[str, Any]:
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def save(directory: str | Path, trees: Mapping[str, PyTree], meta: Mapping[str, Any]) -> Path:
    """Writes ``trees`` (name → pytree of arrays) and ``meta`` (JSON-ready) as the checkpoint of ``directory``."""
    arrays = {name: _by_path(sharding.fetch(tree)) for name, tree in trees.items()}
    target = file(directory)
    if jax.process_index() == 0:
        target.parent.mkdir(parents=True, exist_ok=True)
        data = serialization.msgpack_serialize({"format": _FORMAT, "meta": json.dumps(meta), "arrays": arrays})
        temporary = target.with_name(f"{target.name}.tmp")
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    return target


def load(directory: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """``(meta, arrays)`` of the checkpoint in ``directory``: arrays by tree name, then by tree path.

    A missing file is a ``FileNotFoundError``, an unreadable one a ``ValueError``; both name the file.
    """
    target = file(directory)
    if not target.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {target} does not exist")
    try:
        raw = serialization.msgpack_restore(target.read_bytes())
        if raw.get("format") != _FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, not {_FORMAT!r}")
        meta, arrays = json.loads(raw["meta"]), raw["arrays"]
    except Exception as e:  # any failure to decode means the same thing: the file is damaged
        raise ValueError(f"{target} is not a readable jgd checkpoint ({type(e).__name__}: {e})") from None
    return meta, arrays


def restore(arrays: Mapping[str, np.ndarray], template: PyTree, shardings: PyTree | None = None) -> PyTree:
    """``template`` with its leaves replaced by the saved ``arrays`` of the same tree paths.

    Each array must have its template leaf's shape and dtype (else a
    ``ValueError`` names its path) and is placed by ``shardings``, a tree like
    the template, where given.
    """
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    placements = [None] * len(paths) if shardings is None else jax.tree.leaves(shardings)
    leaves = []
    for (path, like), placement in zip(paths, placements):
        name = jax.tree_util.keystr(path)
        value = arrays.get(name)
        if value is None or np.shape(value) != np.shape(like) or np.dtype(value.dtype) != like.dtype:
            found = "missing" if value is None else f"{value.dtype}{list(np.shape(value))}"
            raise ValueError(f"checkpoint array {name} is {found}, expected {like.dtype}{list(np.shape(like))}")
        leaves.append(jnp.asarray(value) if placement is None else sharding.place(value, placement))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix and not key.startswith((".", "[")) else f"{prefix}{key}"
        flat.update(_flatten(value, name) if isinstance(value, Mapping) and value else {name: value})
    return flat


def differences(saved: Mapping[str, Any], current: Mapping[str, Any], limit: int = 6) -> list[str]:
    """One line per field (dotted path) where two nested mappings differ, at most ``limit`` and a count of the rest."""
    old, new = _flatten(saved), _flatten(current)
    lines = []
    for name in dict.fromkeys([*old, *new]):
        if old.get(name, "missing") != new.get(name, "missing"):
            lines.append(f"{name}: {old.get(name, 'missing')} in the checkpoint, {new.get(name, 'missing')} now")
    return lines if len(lines) <= limit else [*lines[:limit], f"and {len(lines) - limit} more"]


@contextmanager
def deferred_interrupts() -> Iterator[Callable[[], bool]]:
    """Holds back SIGINT and SIGTERM: the first of each only sets a flag, which the yielded function reads.

    A training loop polls it between epochs to save a checkpoint and stop; a
    second signal of the same kind acts as usual. With several processes the
    flag is set in all of them when any one was signalled. Outside the main
    thread, where Python cannot install handlers, signals are left alone.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: sharding.any_process(False)
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signals}

    def handler(signum, frame):
        received.append(signum)
        signal.signal(signum, previous[signum] or signal.SIG_DFL)

    for s in signals:
        signal.signal(s, handler)
    try:
        yield lambda: sharding.any_process(bool(received))
    finally:
        for s, h in previous.items():
            signal.signal(s, h or signal.SIG_DFL)
