"""Training a Flax model with any jgd or optax gradient transformation: :func:`fit`, one epoch at a time.

Each epoch is one compiled call (:mod:`jgd.experiment.train.steps`), measured on
every split afterwards. Around that loop, in their own modules: where the
arrays live (``jgd.experiment.train.sharding.run_placement``), the best epoch and
early stopping (``jgd.experiment.train.early_stopping``), and checkpoints
(``jgd.experiment.train.run_checkpoint``). Epoch ``e`` always sees the batches of
``fold_in(key, e)``, so a resumed run repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from rich.progress import Progress

import jgd
from jgd.experiment.config.optimizers import instances, optimizer_hyperparams
from jgd.experiment.config.schema import SkipSpikesConfig, TrainingConfig
from jgd.experiment.output_files import python_number
from jgd.experiment.train import batching
from jgd.experiment.train.data import Dataset
from jgd.experiment.train.early_stopping import BestEpoch
from jgd.experiment.train.run_checkpoint import RunCheckpoint, interrupts, run_spec
from jgd.experiment.train.sharding import RunPlacement, run_placement
from jgd.experiment.train.steps import RunState, evaluated_params, make_epoch, make_evaluate, make_measure
from jgd.types import PyTree

__all__ = [
    "History",
    "fit",
    "wrap_optimizer",
]

_DEFAULT_OPTIONS = TrainingConfig()


@dataclass
class History:
    """What a run of :func:`fit` measured.

    ``epochs`` has one row per epoch, starting with epoch 0 (the initial
    parameters): train / validation loss and accuracy on the whole split, and
    the learning rate where the optimizer state holds one. ``best_epoch`` has
    the lowest validation loss; ``test`` is measured with the returned
    parameters (those of ``best_epoch`` after early stopping). Wall-clock
    seconds: ``compile_seconds`` to compile the epoch function,
    ``train_seconds`` for the epochs and their evaluation.

    Examples:
      One row per epoch, from epoch 0 (the initial weights), and the test measurements:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import jgd
      >>> from jgd.experiment.config.schema import TrainingConfig
      >>> from jgd.experiment.train.training import fit
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> state, history = fit(model, variables, jgd.adam(1e-2), data, jax.random.key(1), TrainingConfig(epochs=2))
      >>> print([row["epoch"] for row in history.epochs], sorted(history.epochs[-1]))
      [0, 1, 2] ['epoch', 'learning_rate', 'train_accuracy', 'train_loss', 'val_accuracy', 'val_loss']
      >>> print(sorted(history.test), history.best_epoch, history.stopped_early)
      ['accuracy', 'loss'] 2 False
    """

    epochs: list[dict[str, float]] = field(default_factory=list)
    test: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    stopped_early: bool = False
    compile_seconds: float = 0.0
    train_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _compile_epoch(
    model: nn.Module,
    tx: jgd.GradientTransformation,
    loss: str,
    batch_size: int,
    key: jax.Array,
    placement: RunPlacement,
    example: tuple[RunState, jax.Array, jax.Array],
) -> Callable[..., tuple[RunState, jax.Array]]:
    """``epoch_fn(state, x, y, epoch) -> (state, batch_losses)``, compiled for arguments like ``example``."""
    state, x, y = example
    one_epoch = make_epoch(model, loss, tx, batch_size, len(x), placement.batch)

    def epoch_fn(state, x, y, epoch):
        return one_epoch(state, x, y, jax.random.fold_in(key, epoch))

    jit_options: dict[str, Any] = {}
    if placement.everywhere is not None:
        everywhere = placement.everywhere
        jit_options = {
            "in_shardings": (placement.state, everywhere, everywhere, everywhere),
            "out_shardings": (placement.state, everywhere),
        }
    return jax.jit(epoch_fn, **jit_options).lower(state, x, y, np.int32(1)).compile()


def wrap_optimizer(tx: jgd.GradientTransformation, options: TrainingConfig) -> jgd.GradientTransformation:
    """``tx`` inside the wrappers ``options`` ask for: ``apply_if_finite(skip_spikes(accumulate(monitor(tx))))``.

    ``monitor`` is innermost, so it measures what ``tx`` receives (the mean of the accumulated micro-batch
    gradients) and returns; ``skip_spikes`` is outside ``accumulate``, so it judges, and drops, single micro-batches.

    Examples:
      The wrappers a ``training`` section asks for, outermost first:

      >>> import jax.numpy as jnp
      >>> import jgd
      >>> from jgd.experiment.config.schema import SkipSpikesConfig, TrainingConfig
      >>> from jgd.experiment.train.training import wrap_optimizer
      >>> spikes = SkipSpikesConfig(window=64)
      >>> options = TrainingConfig(skip_nonfinite=True, accumulate=4, monitor=True, skip_spikes=spikes)
      >>> state = wrap_optimizer(jgd.adam(1e-3), options).init(jnp.zeros(3))
      >>> print(type(state).__name__, type(state.inner).__name__, type(state.inner.inner).__name__)
      ApplyIfFiniteState SkipSpikesState AccumulateState
      >>> print(type(state.inner.inner.inner).__name__)
      MonitorState
    """
    if options.monitor:
        tx = jgd.monitor(tx)
    if options.accumulate > 1:
        tx = jgd.accumulate(tx, every=options.accumulate)
    if options.skip_spikes is not None:
        tx = _skip_spikes(tx, options.skip_spikes)
    if options.skip_nonfinite:
        tx = jgd.apply_if_finite(tx, options.max_consecutive_nonfinite)
    return tx


def _skip_spikes(tx: jgd.GradientTransformation, options: SkipSpikesConfig) -> jgd.GradientTransformation:
    """:func:`jgd.skip_spikes` around ``tx``, watching the batch loss the step passes as ``value``.

    The loss reaches ``skip_spikes`` alone: ``tx`` is called with the step's own arguments (an optax line search
    refuses unknown ones).
    """
    inner = jgd.with_extra_args(tx)

    def without_loss(updates, state, params=None, *, loss=None, **extra_args):
        return inner.update(updates, state, params, **extra_args)

    guarded = jgd.skip_spikes(jgd.GradientTransformation(inner.init, without_loss), options.window, options.num_std)

    def update_fn(updates, state, params=None, **extra_args):
        return guarded.update(updates, state, params, loss=extra_args.get("value"), **extra_args)

    return jgd.GradientTransformation(guarded.init, update_fn)


def _monitored(opt_state: PyTree) -> dict[str, float]:
    """The global statistics of :func:`jgd.monitor`'s last step and the hyperparameters, without per-leaf values.

    The keys are those :func:`jgd.statistics` gives; the hyperparameters are their shortest decimals, as in the
    other rows.

    Args:
      opt_state: an optimizer state holding a :class:`jgd.MonitorState`.
    """
    monitored = instances(opt_state, jgd.MonitorState)[0]
    row = {name: float(value) for name, value in monitored.totals.items()}
    return row | {key: python_number(value) for key, value in optimizer_hyperparams(monitored.inner).items()}


def _one_learning_rate(hyperparams: dict) -> Any:
    """The learning rate every part of the method holds (muon's two groups, one η), or None where they differ."""
    rates = [v for k, v in hyperparams.items() if k.rpartition("/")[-1] == "learning_rate"]
    if rates and all(np.array_equal(r, rates[0]) for r in rates):
        return rates[0]
    return None


def _row_maker(model: nn.Module, options: TrainingConfig, splits: tuple) -> Callable[[int, RunState], dict]:
    """``row(epoch, state)``: the history row of ``state`` after ``epoch``, as Python numbers.

    Measurements are exact; hyperparameters are the shortest decimals of their values (``0.001``, not the
    float32's ``0.0010000000474974513``), so they read as the config wrote them.
    """
    measure = make_measure(model, options.loss)

    def row(epoch: int, state: RunState) -> dict[str, float]:
        curves = {name: float(value) for name, value in measure(state, *splits).items()}
        rate = _one_learning_rate(optimizer_hyperparams(state.opt_state))
        if rate is not None:
            curves["learning_rate"] = python_number(rate)
        if options.skip_nonfinite:
            curves["skipped_steps"] = int(state.opt_state.skipped)
        if options.skip_spikes is not None:
            curves["skipped_spikes"] = int(instances(state.opt_state, jgd.SkipSpikesState)[0].skipped)
        if options.monitor and epoch > 0:  # epoch 0 has taken no step to measure
            curves.update(_monitored(state.opt_state))
        return {"epoch": epoch, **curves}

    return row


def _status(row: dict[str, float]) -> str:
    return f"loss {row['train_loss']:.4g}  val loss {row['val_loss']:.4g}  val acc {row['val_accuracy']:.2%}"


def _check_not_given_up(state: RunState, options: TrainingConfig, epoch: int, row: dict[str, float]) -> None:
    if options.skip_nonfinite and bool(state.opt_state.gave_up):
        raise FloatingPointError(
            f"training gave up in epoch {epoch}: {options.max_consecutive_nonfinite} steps in a row had non-finite "
            f"updates ({row['skipped_steps']} skipped in all); lower the learning rate or clip the gradients"
        )


def _checkpoint(
    model: nn.Module,
    state: RunState,
    data: Dataset,
    key: jax.Array,
    options: TrainingConfig,
    batch_size: int,
    resume: bool,
) -> RunCheckpoint | None:
    """The run's checkpoint where ``options`` ask for one (its directory given); ``resume`` needs one."""
    if options.checkpoint is None or options.checkpoint.dir is None:
        if resume:
            raise ValueError("resume needs a checkpoint directory: options.checkpoint.dir")
        if options.checkpoint is not None:
            raise ValueError("options.checkpoint.dir is not set: where should the checkpoints go?")
        return None
    spec = run_spec(model, state, data, key, options, batch_size)
    return RunCheckpoint(Path(options.checkpoint.dir), options.checkpoint.every, spec)


def _train_epochs(
    epoch_fn: Callable[..., tuple[RunState, jax.Array]],
    row: Callable[[int, RunState], dict[str, float]],
    state: RunState,
    splits: tuple,
    options: TrainingConfig,
    history: History,
    best: BestEpoch,
    run_checkpoint: RunCheckpoint | None,
    show: Callable[[dict[str, float]], None],
) -> RunState:
    """Trains from the history's last epoch to ``options.epochs`` or an early stop; returns the last state.

    Between epochs it records the row, the best epoch and the time, saves a checkpoint when due and stops on an
    interrupt (after saving).
    """
    started, trained_before = time.perf_counter(), history.train_seconds
    start = int(history.epochs[-1]["epoch"])
    last = start if history.stopped_early else options.epochs
    x, y = splits[:2]
    with interrupts(run_checkpoint) as interrupted:
        for epoch in range(start + 1, last + 1):
            state, _ = epoch_fn(state, x, y, np.int32(epoch))
            history.epochs.append(row(epoch, state))
            _check_not_given_up(state, options, epoch, history.epochs[-1])
            show(history.epochs[-1])
            best.update(epoch, history.epochs[-1]["val_loss"], state)
            history.best_epoch, history.stopped_early = best.epoch, best.stop
            history.train_seconds = trained_before + time.perf_counter() - started
            stop = interrupted()
            if run_checkpoint is not None and run_checkpoint.due(epoch, last, stop or best.stop):
                run_checkpoint.save(epoch, state, best, history)
            if stop:
                assert run_checkpoint is not None  # only a run that saves itself polls for interrupts
                raise KeyboardInterrupt(
                    f"interrupted; saved a checkpoint of epoch {epoch} in {run_checkpoint.directory}"
                )
            if best.stop:
                break
    return state


def _progress_display(progress: Progress | None, description: str, epochs: int, history: History) -> Callable:
    """``show(row)``: advances a progress bar showing the row's losses (nothing without ``progress``)."""
    if progress is None:
        return lambda row: None
    done = int(history.epochs[-1]["epoch"])
    task = progress.add_task(description, total=epochs, completed=done, status=_status(history.epochs[-1]))
    return lambda row: progress.update(task, advance=1, status=_status(row))


def fit(
    model: nn.Module,
    variables: dict[str, PyTree],
    tx: jgd.GradientTransformation,
    data: Dataset,
    key: jax.Array,
    options: TrainingConfig = _DEFAULT_OPTIONS,
    *,
    resume: bool = False,
    progress: Progress | None = None,
    description: str = "training",
) -> tuple[RunState, History]:
    """Trains ``model`` from ``variables`` with ``tx`` as ``options`` say (a ``training`` config section).

    ``key`` fixes the batch order of every epoch (epoch ``e`` uses
    ``fold_in(key, e)``) and the dropout masks, so runs sharing it see the same
    batches. ``options.batch_size=None`` is full-batch. With early stopping the
    returned state holds the parameters of the epoch with the lowest
    validation loss (epoch 0, the initial parameters, included). ``progress``
    shows a bar with the live losses under ``description``.

    ``skip_nonfinite`` wraps ``tx`` in :func:`jgd.apply_if_finite`: a step
    whose update holds a NaN or an infinity changes nothing, each epoch's row
    counts those steps so far as ``skipped_steps``, and
    ``max_consecutive_nonfinite`` of them in a row end training with a
    ``FloatingPointError``. ``mesh`` (a ``Mesh`` or axis sizes such as
    ``{"data": 8}``) splits every batch over the ``data`` axis and replicates
    the state, or splits it over a ``model`` axis.

    The other wrappers (:func:`wrap_optimizer`): ``accumulate: k`` wraps ``tx``
    in :func:`jgd.accumulate`, one optimizer step per ``k`` batches (micro-batches)
    of ``batch_size``; an epoch is still one pass over the data in batches of
    ``batch_size``, and a step may span two epochs when ``k`` does not divide
    their number. ``monitor`` wraps it in :func:`jgd.monitor`: each row after
    epoch 0 holds the global ``grad_norm``, ``update_norm``, ``param_norm`` and
    ``update_ratio`` of the last optimizer step so far, and the hyperparameters,
    as :func:`jgd.statistics` gives them. ``skip_spikes`` wraps it in
    :func:`jgd.skip_spikes`, which sees each batch's loss; rows count the
    skipped batches so far as ``skipped_spikes``.

    With ``options.checkpoint`` (its ``dir`` set) a checkpoint is saved every
    ``every`` epochs, at the end, and on SIGINT or SIGTERM, after which
    ``KeyboardInterrupt`` is raised. ``resume`` continues from it, after
    checking that it was saved by this run; ``variables`` then serve only as
    that check's template.

    Examples:
      Three epochs of Adam in batches of 32 on digits, from the same weights and batch order any other
      method given the same key would see:

      >>> import jax
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP, init_variables
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> import jgd
      >>> from jgd.experiment.config.schema import TrainingConfig
      >>> from jgd.experiment.train.training import fit
      >>> variables = init_variables(model, jax.random.key(0), 64)
      >>> options = TrainingConfig(epochs=3, batch_size=32)
      >>> state, history = fit(model, variables, jgd.adam(1e-2), data, jax.random.key(1), options)
      >>> print(len(history.epochs), history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"] / 5)
      4 True
      >>> print(history.test["accuracy"] > 0.8, int(state.opt_state.count))
      True 123

      41 batches of 32 (the last one padded) per epoch: 123 steps.
    """
    tx = wrap_optimizer(tx, options)
    batch_size = batching.resolve_batch_size(options.batch_size, len(data.x_train))
    params = variables["params"]
    # With shard_optimizer_state the optimizer state is made in place, split over the mesh (ZeRO-1), never whole.
    zero = tx if options.shard_optimizer_state else None
    opt_state = jax.eval_shape(tx.init, params) if zero else tx.init(params)
    state = RunState(params, variables.get("batch_stats", {}), opt_state)
    placement = run_placement(options.mesh, state, zero)
    state = placement.place_state(state)
    run_checkpoint = _checkpoint(model, state, data, key, options, batch_size, resume)
    splits = placement.put((data.x_train, data.y_train, data.x_val, data.y_val))
    if resume:
        assert run_checkpoint is not None  # _checkpoint raised where resume has none
        state, best, saved = run_checkpoint.resume(state, placement.state, options.epochs, options.early_stopping)
        history = History(**saved)
    started = time.perf_counter()
    epoch_fn = _compile_epoch(model, tx, options.loss, batch_size, key, placement, (state, *splits[:2]))
    compile_seconds = time.perf_counter() - started
    row = _row_maker(model, options, splits)
    if not resume:
        history = History(epochs=[row(0, state)])
        best = BestEpoch(options.early_stopping, 0, history.epochs[0]["val_loss"], state)
    history.compile_seconds = compile_seconds
    show = _progress_display(progress, description, options.epochs, history)
    state = _train_epochs(epoch_fn, row, state, splits, options, history, best, run_checkpoint, show)
    if options.early_stopping is not None:
        state = best.state
    evaluate = make_evaluate(model, options.loss)
    test_data = placement.put((data.x_test, data.y_test))
    test_loss, test_acc = evaluate(evaluated_params(state), state.batch_stats, *test_data)
    history.test = {"loss": float(test_loss), "accuracy": float(test_acc)}
    return state, history
