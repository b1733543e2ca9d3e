"""Checkpoints of a training run: named pytrees of arrays, sharded, with JSON metadata beside them.

Format (``jgd-checkpoint/2``): an orbax-checkpoint step folder ``DIR/<n>`` per
save, ``n`` counting the saves made in ``DIR``. It holds one orbax item per
tree (its leaves as a list, in tree-path order) and the item ``meta``: JSON
with the caller's metadata and, per tree, each leaf's tree path, dtype and
shape. Each process writes the shards it holds, so no array is ever gathered,
and the newest finalized folder is the checkpoint; once it is complete the
older ones are deleted.

Atomic: orbax writes a save into a temporary folder and finalizes it (a rename,
or a commit marker on object stores) only when every process has written its
shards. A run killed at any moment leaves the previous checkpoint whole; the
unfinished folder is removed when the next run opens the directory.

Asynchronous: :meth:`Saver.save` returns once the arrays are copied off the
devices and writes in a background thread. The next save, :meth:`Saver.wait`
and :meth:`Saver.close` wait for it to finish.

Restore reads, in every process, only the shards that its devices need in the
target sharding, which may differ from the saved one (saved on 8 devices,
restored on 4 or 1, replicated or ZeRO-split). The folder must be on storage
every process reads.

Old checkpoints (``jgd-checkpoint/1``: one ``checkpoint.msgpack`` per folder,
written by process 0) are still read, so a run resumes from one; its next save
writes the new format beside it, and a folder with both is read from the new
one. Their optimizer states lack ``transform_constants`` (the constants of the
transform that last updated the state): restoring fills those leaves from the
template, i.e. from the resuming transform, which is right because a resume
first checks that the optimizer is the one the checkpoint was saved with. Any
other missing leaf is an error naming its tree path.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from jgd.experiment.train import sharding
from jgd.types import PyTree

FORMAT = "jgd-checkpoint/2"
OLD_FILE = "checkpoint.msgpack"
_OLD_FORMAT = "jgd-checkpoint/1"
_META = "meta"
# Leaves an old checkpoint may lack, filled from the template on restore (module docstring).
_FILLABLE = ".transform_constants"


def _describe(leaf) -> str:
    return f"{np.dtype(leaf.dtype)}{list(np.shape(leaf))}"


def _flat(tree: PyTree) -> tuple[list[str], list[Any]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [jax.tree_util.keystr(path) for path, _ in flat], [leaf for _, leaf in flat]


def _steps(directory: Path) -> list[int]:
    return sorted(ocp.step.checkpoint_steps(directory)) if directory.is_dir() else []


def latest(directory: str | Path) -> Path | None:
    """The newest complete checkpoint in ``directory``: a step folder, an old-format file, or ``None``."""
    directory = Path(directory)
    steps = _steps(directory)
    if steps:
        return directory / str(steps[-1])
    return directory / OLD_FILE if (directory / OLD_FILE).is_file() else None


def _manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=1, cleanup_tmp_directories=True)
    return ocp.CheckpointManager(directory.absolute(), options=options)


class Saver:
    """Saves the checkpoints of ``directory``, each in the background while training goes on (module docstring).

    Every process calls each method. :meth:`close` (or :meth:`wait`) must run before the process exits.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self._manager: ocp.CheckpointManager | None = None

    def save(self, trees: Mapping[str, PyTree], meta: Mapping[str, Any]) -> None:
        """Starts writing ``trees`` (name → pytree of arrays) and ``meta`` (JSON-ready) as the newest checkpoint."""
        if self._manager is None:
            self._manager = _manager(self.directory)
        self._manager.wait_until_finished()
        items, described = {}, {}
        for name, tree in trees.items():
            paths, leaves = _flat(tree)
            items[name] = ocp.args.StandardSave(leaves)
            described[name] = [[path, _describe(leaf)] for path, leaf in zip(paths, leaves)]
        items[_META] = ocp.args.JsonSave({"format": FORMAT, "meta": dict(meta), "arrays": described})
        step = (self._manager.latest_step() or 0) + 1
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def wait(self) -> None:
        """Returns once the last save is complete on disk."""
        if self._manager is not None:
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Waits for the last save and releases the writer."""
        if self._manager is not None:
            self._manager.wait_until_finished()
            self._manager.close()
            self._manager = None


def save(directory: str | Path, trees: Mapping[str, PyTree], meta: Mapping[str, Any]) -> Path:
    """Writes ``trees`` and ``meta`` as the checkpoint of ``directory`` and waits until it is complete."""
    saver = Saver(directory)
    try:
        saver.save(trees, meta)
    finally:
        saver.close()
    written = latest(directory)
    assert written is not None  # the save above completed
    return written


def _unreadable(where: Path, error: Exception) -> ValueError:
    return ValueError(f"{where} is not a readable jgd checkpoint ({type(error).__name__}: {error})")


def _read_old(where: Path) -> dict[str, Any]:
    try:
        raw = serialization.msgpack_restore(where.read_bytes())
        if raw.get("format") != _OLD_FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, not {_OLD_FORMAT!r}")
        return {"meta": json.loads(raw["meta"]), "arrays": raw["arrays"]}
    except Exception as e:  # any failure to decode means the same thing: the file is damaged
        raise _unreadable(where, e) from None


def _read_new(where: Path, items: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return dict(ocp.Checkpointer(ocp.CompositeCheckpointHandler()).restore(where, ocp.args.Composite(**items)))
    except Exception as e:  # a missing or damaged part: the folder is not a checkpoint this code can read
        raise _unreadable(where, e) from None


def _found(directory: str | Path) -> Path:
    where = latest(directory)
    if where is None:
        raise FileNotFoundError(f"no checkpoint to resume from: {directory} holds none")
    return where


def _from_newest(directory: str | Path, read: Callable[[Path], Any]) -> Any:
    """``read(where)`` of the newest checkpoint in ``directory``.

    A run saving meanwhile deletes the older folder once a newer one is complete, possibly while it is being
    read; the read then moves on to the newer one.
    """
    where = _found(directory)
    while True:
        try:
            return read(where)
        except ValueError:
            newer = latest(directory)
            if newer is None or newer == where:
                raise
            where = newer


def read_meta(directory: str | Path) -> tuple[dict[str, Any], Path]:
    """``(meta, where)``: the metadata of the newest checkpoint in ``directory`` and its folder (or old file).

    None there is a ``FileNotFoundError`` naming the directory; an unreadable one a ``ValueError`` naming it.
    """
    return _from_newest(directory, _read_meta)


def _read_meta(where: Path) -> tuple[dict[str, Any], Path]:
    if where.name == OLD_FILE:
        return _read_old(where)["meta"], where
    header = _read_new(where, {_META: ocp.args.JsonRestore()})[_META]
    if header.get("format") != FORMAT:
        raise _unreadable(where, ValueError(f"format is {header.get('format')!r}, not {FORMAT!r}"))
    return header["meta"], where


def load(directory: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """``(meta, arrays)``: arrays by tree name, then by tree path, read whole into this process (for inspection)."""
    return _from_newest(directory, _load)


def _load(where: Path) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    if where.name == OLD_FILE:
        raw = _read_old(where)
        return raw["meta"], raw["arrays"]
    header = _read_new(where, {_META: ocp.args.JsonRestore()})[_META]
    host = ocp.RestoreArgs(restore_type=np.ndarray)
    items = {name: ocp.args.PyTreeRestore(restore_args=[host] * len(kept)) for name, kept in header["arrays"].items()}
    trees = _read_new(where, items)
    arrays = {
        name: {path: value for (path, _), value in zip(described, trees[name])}
        for name, described in header["arrays"].items()
    }
    return header["meta"], arrays


def _targets(template: PyTree, shardings: PyTree | None) -> list[jax.sharding.Sharding]:
    if shardings is not None:
        return jax.tree.leaves(shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return [leaf.sharding if isinstance(leaf, jax.Array) else default for leaf in jax.tree.leaves(template)]


def _match(saved: Mapping[str, str], paths: list[str], leaves: list[Any]) -> list[str]:
    """The template paths to fill from the template; a ``ValueError`` names any other mismatch."""
    for path in saved:
        if path not in paths:
            raise ValueError(f"checkpoint array {path} is not in the state now")
    fill = []
    for path, leaf in zip(paths, leaves):
        if path not in saved and _FILLABLE in path:
            fill.append(path)
        elif saved.get(path) != _describe(leaf):
            raise ValueError(f"checkpoint array {path} is {saved.get(path, 'missing')}, expected {_describe(leaf)}")
    return fill


def restore(
    directory: str | Path, templates: Mapping[str, PyTree], shardings: PyTree | None = None
) -> dict[str, PyTree]:
    """The saved trees named in ``templates``, each with its template's structure, placed by ``shardings``.

    ``shardings`` is a tree like each template (default: where the template's leaves are). Every saved
    array must have its template leaf's tree path, shape and dtype, else a ``ValueError`` names the path;
    ``transform_constants`` missing from an old checkpoint come from the template (module docstring).
    """
    return _from_newest(directory, lambda where: _restore(where, templates, shardings))


def _restore(where: Path, templates: Mapping[str, PyTree], shardings: PyTree | None) -> dict[str, PyTree]:
    if where.name == OLD_FILE:
        described = _read_old(where)["arrays"]
        saved = {name: {path: _describe(v) for path, v in described.get(name, {}).items()} for name in templates}
    else:
        header = _read_new(where, {_META: ocp.args.JsonRestore()})[_META]
        saved = {name: dict(header["arrays"].get(name, [])) for name in templates}
    plans = {}
    for name, template in templates.items():
        paths, leaves = _flat(template)
        fill = _match(saved[name], paths, leaves)
        plans[name] = (paths, leaves, _targets(template, shardings), fill)
    if where.name == OLD_FILE:
        values = {name: [described[name].get(path) for path in plans[name][0]] for name in templates}
    else:
        items = {}
        for name, (paths, leaves, targets, fill) in plans.items():
            abstract = [
                jax.ShapeDtypeStruct(np.shape(leaf), leaf.dtype, sharding=target)
                for path, leaf, target in zip(paths, leaves, targets)
                if path not in fill
            ]
            items[name] = ocp.args.StandardRestore(abstract)
        read = _read_new(where, items)
        values = {name: _in_template_order(iter(read[name]), plans[name]) for name in templates}
    return {name: _assemble(templates[name], values[name], plans[name]) for name in templates}


def _in_template_order(read: Iterator[Any], plan: tuple) -> list[Any]:
    paths, _, _, fill = plan
    return [None if path in fill else next(read) for path in paths]


def _assemble(template: PyTree, values: list[Any], plan: tuple) -> PyTree:
    """The template's structure holding ``values``, host values placed, missing ones from the template."""
    _, leaves, targets, _ = plan
    out = []
    for value, leaf, target in zip(values, leaves, targets):
        if value is None:
            out.append(leaf if isinstance(leaf, jax.Array) else sharding.place(leaf, target))
        elif isinstance(value, jax.Array):
            out.append(value)
        else:
            out.append(sharding.place(value, target))
    return jax.tree.unflatten(jax.tree.structure(template), out)


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
