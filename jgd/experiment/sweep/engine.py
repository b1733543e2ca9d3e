"""The sweep engine: many optimizer settings trained at once, as one vmapped and jitted program.

Hyperparameters are data (they live in the optimizer state), so a sweep builds the
transform inside ``jax.vmap`` from traced values, and any float hyperparameter
can vary between settings: learning rate, betas, momentum, decay, ε,
penalties, clipping thresholds, schedule parameters. Settings are a table
(:mod:`jgd.experiment.sweep.settings`); a ``seed`` column picks each setting's
initial weights. Every setting trains on the same batches in the same order.

``chunk`` bounds memory by running the settings in vmapped chunks of one
shape (the last one padded, so there is a single compile); a ``mesh`` shards
the settings axis over its devices. Settings are independent lanes of the
vmap: one that diverges is flagged, and the others' results do not change.
Running a config's sweep section is ``jgd.experiment.sweep.from_config``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from rich.progress import Progress

from jgd import GradientTransformation
from jgd.experiment.sweep.settings import Settings, num_settings
from jgd.experiment.train import batching
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.models import init_variables
from jgd.experiment.train.steps import CURVES, RunState, evaluated_params, make_epoch, make_evaluate, make_measure
from jgd.types import PyTree

__all__ = [
    "SweepResult",
    "sweep",
]


@dataclass(frozen=True)
class SweepResult:
    """What a sweep of one method measured; entry ``i`` of every array belongs to setting ``i``.

    ``settings`` holds the hyperparameter columns, with the values trained
    with (in the run's float dtype), and ``seed``. ``curves`` holds the
    per-epoch metrics (``jgd.experiment.train.steps.CURVES``, shape ``[settings, epochs + 1]``, epoch 0
    being the initial weights), ``test`` the test ``loss`` and ``accuracy`` of
    the final parameters, ``params`` the final parameters, each leaf with a
    leading settings axis. ``chunks`` is how many vmapped calls ran the
    settings and ``devices`` how many devices each call spread them over.

    A setting is ``nonfinite`` when a loss was NaN or Inf, and ``exploded``
    when its final training or validation loss is more than
    ``divergence_factor`` times its initial one (a net that memorizes the
    training set with exploding weights has a training loss near zero and an
    exploding validation loss); either makes it ``diverged``.

    Examples:
      The settings, the per-epoch curves and test measurements of each, the final params with a leading
      settings axis, and the divergence flags:

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
      >>> print(sorted(result.curves), sorted(result.test))
      ['train_accuracy', 'train_loss', 'val_accuracy', 'val_loss'] ['accuracy', 'loss']
      >>> print(jax.tree.map(lambda a: a.shape, result.params)["Dense_1"])
      {'bias': (6, 10), 'kernel': (6, 16, 10)}
      >>> print(result.nonfinite.tolist(), result.exploded.tolist())
      [False, False, False, False, False, False] [False, False, False, False, True, True]
    """

    label: str
    settings: Settings
    curves: dict[str, np.ndarray]
    test: dict[str, np.ndarray]
    params: PyTree
    divergence_factor: float
    chunks: int
    devices: int
    compile_seconds: float
    train_seconds: float

    @property
    def hyperparameters(self) -> list[str]:
        """The swept names, without ``seed``."""
        return [name for name in self.settings if name != "seed"]

    @property
    def nonfinite(self) -> np.ndarray:
        """Settings whose training or validation loss was NaN or Inf at some epoch."""
        losses = np.concatenate([self.curves["train_loss"], self.curves["val_loss"]], axis=1)
        return ~np.isfinite(losses).all(axis=1)

    @property
    def exploded(self) -> np.ndarray:
        """Finite settings whose final training or validation loss exceeds ``divergence_factor`` times the initial."""
        grown = [
            self.curves[k][:, -1] > self.divergence_factor * self.curves[k][:, 0] for k in ("train_loss", "val_loss")
        ]
        return ~self.nonfinite & np.logical_or(*grown)

    @property
    def diverged(self) -> np.ndarray:
        """``nonfinite | exploded``."""
        return self.nonfinite | self.exploded


def _initial_key(seed: int) -> jax.Array:
    # The key `jgd train` draws its initial weights from for the same seed (the first half of its split).
    return jax.random.split(jax.random.key(int(seed)))[0]


def _trainer(
    model: nn.Module,
    loss: str,
    make_tx: Callable[..., GradientTransformation],
    batch_size: int,
    num_examples: int,
    epochs: int,
) -> Callable[..., tuple[PyTree, dict[str, jax.Array], dict[str, jax.Array]]]:
    """``train(values, variables, data, order_key)``: one setting's whole training, as ``fit`` runs it."""
    evaluate, measure = make_evaluate(model, loss), make_measure(model, loss)

    def train(values, variables, data, order_key):
        x, y, x_val, y_val, x_test, y_test = data
        tx = make_tx(**values)
        params = variables["params"]
        state = RunState(params, variables.get("batch_stats", {}), tx.init(params))
        epoch = make_epoch(model, loss, tx, batch_size, num_examples)

        def body(state, e):
            state, _ = epoch(state, x, y, jax.random.fold_in(order_key, e))
            return state, measure(state, x, y, x_val, y_val)

        first = measure(state, x, y, x_val, y_val)
        state, rest = jax.lax.scan(body, state, jnp.arange(1, epochs + 1))
        curves = {k: jnp.concatenate([first[k][None], rest[k]]) for k in CURVES}
        test_loss, test_accuracy = evaluate(evaluated_params(state), state.batch_stats, x_test, y_test)
        return state.params, curves, {"loss": test_loss, "accuracy": test_accuracy}

    return train


@dataclass(frozen=True)
class _Lanes:
    """The settings cut into chunks of ``width`` vmap lanes: each chunk's hyperparameter values and initial weights.

    ``spread`` shards a chunk's lanes over a mesh's devices (``None`` without a mesh).
    """

    values: dict[str, np.ndarray]
    seed_index: np.ndarray
    initial: PyTree
    width: int
    spread: NamedSharding | None

    @classmethod
    def of(
        cls, values: Settings, seeds: np.ndarray, model: nn.Module, data: Dataset, chunk: int | None, mesh: Mesh | None
    ) -> _Lanes:
        """Lanes for the settings ``values`` and ``seeds``: chunks of ``chunk``, a multiple of the mesh's size."""
        n = len(seeds)
        unique_seeds, seed_index = np.unique(seeds, return_inverse=True)
        per_seed = [init_variables(model, _initial_key(s), data.num_features) for s in unique_seeds]
        initial = jax.tree.map(lambda *leaves: np.stack(leaves), *per_seed)
        devices = 1 if mesh is None else mesh.size
        width = math.ceil(min(chunk or n, n) / devices) * devices
        spread = None if mesh is None else NamedSharding(mesh, P(mesh.axis_names))
        return cls(values, seed_index, initial, width, spread)

    def inputs(self, start: int) -> tuple[dict[str, np.ndarray], PyTree]:
        """The values and initial variables of the chunk starting at setting ``start``, placed on the devices."""
        # The last chunk repeats its last real setting as padding: valid values whose results are dropped.
        rows = np.minimum(np.arange(start, start + self.width), len(self.seed_index) - 1)
        lane_values = {name: column[rows] for name, column in self.values.items()}
        lane_variables = jax.tree.map(lambda leaf: leaf[self.seed_index[rows]], self.initial)
        return jax.device_put((lane_values, lane_variables), self.spread)


def _progress_display(progress: Progress | None, label: str, n: int, width: int) -> Callable[[int], None]:
    """``show(done)``: a bar of the ``n`` settings under ``label`` (nothing without ``progress``)."""
    if progress is None:
        return lambda done: None
    task = progress.add_task(label, total=n, status="compiling")
    return lambda done: progress.update(task, completed=done, status=f"settings, {width} at a time")


def sweep(
    make_tx: Callable[..., GradientTransformation],
    settings: Mapping[str, Any],
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int,
    order_key: jax.Array,
    batch_size: int | None = None,
    loss: str = "cross_entropy",
    chunk: int | None = None,
    mesh: Mesh | None = None,
    divergence_factor: float = 10.0,
    label: str = "",
    progress: Progress | None = None,
) -> SweepResult:
    """Trains ``model`` once per row of ``settings``, all rows as one vmapped, jitted training.

    ``make_tx(**hyperparameters)`` builds the transform of one setting from
    traced scalars, one per column of ``settings`` other than ``seed``: pass
    ``jgd.adam`` to sweep Adam's keyword arguments, or a function that puts the
    values anywhere (a schedule, a clipping threshold). Values are not checked
    under the trace: check them by building the transform with concrete ones.
    Seed ``s`` starts from the initial weights ``jgd train`` draws with
    ``seed: s`` (seed 0 without a ``seed`` column); ``order_key`` fixes the
    batches of every epoch (epoch ``e`` uses ``fold_in(order_key, e)``) as
    :func:`jgd.experiment.train.training.fit` does, so each setting ends with the parameters
    ``fit`` reaches with the same transform, up to rounding: batched and
    single matrix products sum in different orders, and large steps amplify that.

    ``chunk`` runs at most that many settings per call; with a ``mesh`` the
    settings axis is sharded over all its devices (chunks are rounded up to a
    multiple of their number). ``progress`` shows a bar under ``label``.

    Examples:
      Three learning rates × two initial-weight seeds of Adam, trained as one vmapped, jitted program;
      entry ``i`` of every result belongs to setting ``i``:

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
      >>> print(result.curves["train_loss"].shape, result.settings["learning_rate"])
      (6, 4) [1.e-03 1.e-03 1.e-02 1.e-02 1.e+01 1.e+01]
      >>> print(result.diverged.tolist())
      [False, False, False, False, True, True]

      The curves hold epochs 0 to 3. A learning rate of 10 diverges, and is reported, not dropped.
    """
    table = {name: np.asarray(column) for name, column in settings.items()}
    n = num_settings(table)
    seeds = table.get("seed", np.zeros(n, np.int64))
    values = {name: column.astype(jnp.result_type(float)) for name, column in table.items() if name != "seed"}
    lanes = _Lanes.of(values, seeds, model, data, chunk, mesh)
    replicated = None if mesh is None else NamedSharding(mesh, P())
    arrays = (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test)
    shared = jax.device_put((tuple(jnp.asarray(a) for a in arrays), order_key), replicated)

    num_examples = len(data.x_train)
    train = _trainer(model, loss, make_tx, batching.resolve_batch_size(batch_size, num_examples), num_examples, epochs)
    run = jax.jit(jax.vmap(train, in_axes=(0, 0, None, None)), out_shardings=lanes.spread)
    show = _progress_display(progress, label, n, lanes.width)
    started = time.perf_counter()
    compiled = run.lower(*lanes.inputs(0), *shared).compile()
    compile_seconds = time.perf_counter() - started

    started = time.perf_counter()
    outputs, devices_used = [], 0
    for start in range(0, n, lanes.width):
        real = min(lanes.width, n - start)
        out = compiled(*lanes.inputs(start), *shared)
        devices_used = len(jax.tree.leaves(out)[0].sharding.device_set)
        outputs.append(jax.tree.map(lambda a, real=real: np.asarray(a)[:real], out))
        show(start + real)
    params, curves, test = jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)
    return SweepResult(
        label=label,
        settings={**values, "seed": seeds},
        curves=curves,
        test=test,
        params=params,
        divergence_factor=divergence_factor,
        chunks=len(outputs),
        devices=devices_used,
        compile_seconds=compile_seconds,
        train_seconds=time.perf_counter() - started,
    )
