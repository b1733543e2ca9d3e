"""The experiment config schema: frozen dataclasses, one per YAML section, whose fields are the YAML keys.

Each field's type and :func:`rule` are all the generic reader
(:mod:`jgd.experiment.config.reader`) needs, so a new option is one line here.
The user's view of the schema is ``configs/README.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jgd.experiment.config import field_readers
from jgd.experiment.config.field_rules import BATCH_SIZE, PENALTY, THRESHOLD, Rule, rule
from jgd.experiment.config.method_table import read_hyperparams
from jgd.experiment.config.state_dtype import read_state_dtype
from jgd.experiment.train.data import DATASETS
from jgd.experiment.train.layers import ACTIVATIONS, INITIALIZERS
from jgd.experiment.train.losses import LOSSES

__all__ = [
    "CheckpointConfig",
    "Config",
    "DataConfig",
    "EarlyStopping",
    "MethodConfig",
    "ModelConfig",
    "OptimizerConfig",
    "OutputConfig",
    "RandomSearchConfig",
    "Rule",
    "SkipSpikesConfig",
    "SweepConfig",
    "TrainingConfig",
    "TuneConfig",
    "rule",
]

# What "best setting" of a sweep can mean.
SELECT = ("val_loss", "val_accuracy", "final_train_loss")


@dataclass(frozen=True)
class DataConfig:
    """Which data set, and how it is split and scaled (see :func:`jgd.experiment.train.data.load_dataset`).

    Examples:
      The ``data`` section; its defaults are :func:`jgd.experiment.train.data.load_dataset`'s:

      >>> from jgd.experiment.config.schema import DataConfig
      >>> print(DataConfig())
      DataConfig(name='digits', path=None, validation_fraction=0.1, test_fraction=0.2, standardize=True)
    """

    name: str = field(default="digits", metadata=rule(choices=DATASETS))
    path: str | None = None
    validation_fraction: float = field(default=0.1, metadata=rule(low=0.0, high=1.0, open_low=True))
    test_fraction: float = field(default=0.2, metadata=rule(low=0.0, high=1.0, open_low=True))
    standardize: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """The :class:`jgd.experiment.train.models.MLP`'s hidden widths and layer choices.

    Examples:
      The ``model`` section:

      >>> from jgd.experiment.config.reader import read_section
      >>> from jgd.experiment.config.schema import ModelConfig
      >>> print(read_section(ModelConfig, {"hidden": [256, 128], "activation": "elu"}, "model"))
      ModelConfig(hidden=(256, 128), activation='elu', initializer='he', dropout=0.0, batch_norm=False)
    """

    hidden: tuple[int, ...] = field(default=(128,), metadata=rule(low=1))
    activation: str = field(default="relu", metadata=rule(choices=tuple(ACTIVATIONS)))
    initializer: str = field(default="he", metadata=rule(choices=tuple(INITIALIZERS)))
    dropout: float = field(default=0.0, metadata=rule(low=0.0, high=1.0))
    batch_norm: bool = False


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once the validation loss has not improved by more than ``min_delta`` for ``patience`` epochs.

    Examples:
      ``training.early_stopping``:

      >>> from jgd.experiment.config.reader import parse_config
      >>> config = parse_config({"training": {"early_stopping": {"patience": 5}}, "optimizer": {"name": "adam"}})
      >>> print(config.training.early_stopping)
      EarlyStopping(patience=5, min_delta=0.0)
    """

    patience: int = field(metadata=rule(low=1))
    min_delta: float = field(default=0.0, metadata=rule(low=0.0))


@dataclass(frozen=True)
class CheckpointConfig:
    """Save a checkpoint every ``every`` epochs into ``dir`` (``None``: the output folder's name + ``.checkpoint``).

    Examples:
      ``training.checkpoint``:

      >>> from jgd.experiment.config.reader import parse_config
      >>> config = parse_config({"training": {"checkpoint": {"every": 5}}, "optimizer": {"name": "adam"}})
      >>> print(config.training.checkpoint)
      CheckpointConfig(every=5, dir=None)
    """

    every: int = field(default=1, metadata=rule(low=1))
    dir: str | None = None


@dataclass(frozen=True)
class SkipSpikesConfig:
    """Skip a step whose loss or gradient norm is ``num_std`` deviations above the last ``window`` steps' mean.

    Examples:
      ``training.skip_spikes``; its defaults are :func:`jgd.skip_spikes`'s:

      >>> from jgd.experiment.config.schema import SkipSpikesConfig
      >>> print(SkipSpikesConfig())
      SkipSpikesConfig(window=128, num_std=6.0)
    """

    window: int = field(default=128, metadata=rule(low=2))
    num_std: float = field(default=6.0, metadata=rule(low=0.0, open_low=True))


@dataclass(frozen=True)
class TrainingConfig:
    """How :func:`jgd.experiment.train.training.fit` trains: epochs, batch size, loss and the loop's options.

    ``batch_size=None`` is the full training set; ``mesh`` holds axis sizes (see
    ``jgd.experiment.train.sharding``); ``skip_nonfinite`` skips steps whose update is not finite, giving up
    after ``max_consecutive_nonfinite`` in a row. ``accumulate`` batches of ``batch_size`` make one optimizer
    step; ``monitor`` records norms and hyperparameters per epoch; ``skip_spikes`` skips loss and gradient spikes;
    ``shard_optimizer_state`` (with a mesh) splits the optimizer slots over the mesh's ``data`` axis (ZeRO-1).

    Examples:
      The ``training`` section, also the ``options`` of :func:`jgd.experiment.train.training.fit`;
      ``full`` is the whole training set:

      >>> from jgd.experiment.config.reader import read_section
      >>> from jgd.experiment.config.schema import TrainingConfig
      >>> options = read_section(TrainingConfig, {"epochs": 10, "batch_size": "full", "monitor": True}, "training")
      >>> print(options.epochs, options.batch_size, options.monitor, options.loss)
      10 None True cross_entropy
    """

    epochs: int = field(default=30, metadata=rule(low=1))
    batch_size: int | None = field(default=32, metadata=BATCH_SIZE)
    loss: str = field(default="cross_entropy", metadata=rule(choices=tuple(LOSSES)))
    early_stopping: EarlyStopping | None = None
    skip_nonfinite: bool = False
    max_consecutive_nonfinite: int = field(default=10, metadata=rule(low=1))
    mesh: dict[str, int] | None = field(default=None, metadata=rule(read=field_readers.mesh))
    shard_optimizer_state: bool = False
    checkpoint: CheckpointConfig | None = None
    accumulate: int = field(default=1, metadata=rule(low=1))
    monitor: bool = False
    skip_spikes: SkipSpikesConfig | None = None


@dataclass(frozen=True)
class OptimizerConfig:
    """A method, its hyperparameters (numbers, words or schedule specs), its state's form, and the blocks around it.

    In YAML the hyperparameters sit beside ``name`` and the blocks (``{name: adam, learning_rate: 0.01, l2: 1e-4}``).
    ``state_dtype`` is the method's ``state_dtype`` in its YAML spelling (``jgd.experiment.config.state_dtype``):
    ``bfloat16``, ``{quantized: {bits: 8}}``, ``{stochastic: bfloat16}``, or one of these per slot.

    Examples:
      A method's hyperparameters sit beside its name in YAML, with the blocks chained around it:

      >>> from jgd.experiment.config.reader import parse_config
      >>> config = parse_config({"optimizer": {"name": "adam", "learning_rate": 0.01, "b1": 0.8, "l2": 1e-4}})
      >>> print(config.optimizer.name, config.optimizer.hyperparams, config.optimizer.l2)
      adam {'learning_rate': 0.01, 'b1': 0.8} 0.0001
    """

    name: str
    hyperparams: dict[str, Any] = field(default_factory=dict, metadata=rule(rest=True, read=read_hyperparams))
    state_dtype: Any = field(default=None, metadata=rule(read=read_state_dtype, omit_default=True))
    l1: float = field(default=0.0, metadata=PENALTY)
    l2: float = field(default=0.0, metadata=PENALTY)
    clip_value: float | None = field(default=None, metadata=THRESHOLD)
    clip_norm: float | None = field(default=None, metadata=THRESHOLD)
    clip_global_norm: float | None = field(default=None, metadata=THRESHOLD)
    max_norm: float | None = field(default=None, metadata=THRESHOLD)


@dataclass(frozen=True, kw_only=True)
class MethodConfig:
    """One line of a comparison: a label (by default the optimizer's name), an optimizer and its batch size.

    The batch size is ``training.batch_size`` unless the entry gives its own.

    Examples:
      A line of ``methods`` for ``jgd compare``:

      >>> from jgd.experiment.config.reader import parse_config
      >>> adam = {"label": "Adam", "optimizer": {"name": "adam"}}
      >>> lbfgs = {"optimizer": {"name": "lbfgs"}, "batch_size": "full"}
      >>> config = parse_config({"methods": [adam, lbfgs]})
      >>> print([(m.label, m.optimizer.name, m.batch_size) for m in config.methods])
      [('Adam', 'adam', 32), ('lbfgs', 'lbfgs', None)]
    """

    label: str | None = field(default=None, metadata=rule(read=field_readers.label))
    optimizer: OptimizerConfig
    batch_size: int | None = field(default=None, metadata=BATCH_SIZE)


@dataclass(frozen=True, kw_only=True)
class RandomSearchConfig:
    """``samples`` settings drawn with ``seed`` from ``space`` (a distribution or values per swept name).

    Examples:
      ``sweep.random``:

      >>> from jgd.experiment.config.reader import parse_config
      >>> space = {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "b1": [0.9, 0.99]}
      >>> raw = {"optimizer": {"name": "adam"}, "sweep": {"random": {"samples": 8, "space": space}}}
      >>> print(parse_config(raw).sweep.random)
      RandomSearchConfig(samples=8, seed=0, space={'learning_rate': ('log_uniform', 0.0001, 0.1), 'b1': (0.9,
      0.99)})
    """

    samples: int = field(metadata=rule(low=1))
    seed: int = field(default=0, metadata=rule(low=0))
    space: dict[str, tuple] = field(metadata=rule(read=field_readers.random_space, write=field_readers.write_space))


@dataclass(frozen=True)
class SweepConfig:
    """What ``jgd sweep`` varies and how it runs the settings.

    Either ``grid`` (each swept name with its values; every combination runs) or ``random``. A swept name is a
    hyperparameter, a block such as ``l2``, or ``learning_rate.init_value`` for a schedule's parameter.
    ``seeds`` (by default the config's ``seed``) are crossed with every setting.

    Examples:
      The ``sweep`` section, here a grid crossed with two seeds:

      >>> from jgd.experiment.config.reader import parse_config
      >>> raw = {"optimizer": {"name": "adam"}, "sweep": {"grid": {"learning_rate": [1e-3, 1e-2]}, "seeds": [0, 1]}}
      >>> sweep = parse_config(raw).sweep
      >>> print(sweep.grid, sweep.seeds, sweep.select)
      {'learning_rate': (0.001, 0.01)} (0, 1) val_loss
    """

    grid: dict[str, tuple[float, ...]] | None = field(
        default=None, metadata=rule(read=field_readers.grid_space, write=field_readers.write_space, omit_default=True)
    )
    random: RandomSearchConfig | None = field(default=None, metadata=rule(omit_default=True))
    seeds: tuple[int, ...] | None = field(default=None, metadata=rule(low=0, nonempty=True, distinct="seed"))
    chunk: int | None = field(default=None, metadata=rule(low=1))
    mesh: bool = False
    select: str = field(default="val_loss", metadata=rule(choices=SELECT))
    divergence_factor: float = field(default=10.0, metadata=rule(low=1.0, open_low=True))

    @property
    def space(self) -> dict[str, tuple]:
        """The swept names and their grid values or random-search distributions."""
        if self.random is not None:
            return self.random.space
        assert self.grid is not None  # the reader requires a grid or a random search
        return self.grid

    @property
    def samples(self) -> int | None:
        """How many random settings (``None`` for a grid)."""
        return None if self.random is None else self.random.samples

    @property
    def path(self) -> str:
        """The config field that holds ``space``."""
        return "sweep.grid" if self.random is None else "sweep.random.space"


@dataclass(frozen=True)
class TuneConfig:
    """``jgd compare``'s tuning: each method trains at the best of ``learning_rate``, found by one vmapped sweep.

    Every rate of the grid, crossed with ``seeds`` (by default the config's ``seed``), trains as one
    vmapped program per method (``jgd sweep``'s engine, with the method's batch size and the training's
    epochs); the rate with the best mean ``select`` over the seeds, among those no seed of which diverged,
    replaces the method's own ``learning_rate``. ``chunk`` and ``divergence_factor`` are the sweep's.

    Examples:
      The ``tune`` section of a comparison:

      >>> from jgd.experiment.config.reader import parse_config
      >>> methods = [{"optimizer": {"name": "adamw"}}, {"optimizer": {"name": "lion"}}]
      >>> config = parse_config({"methods": methods, "tune": {"learning_rate": [1e-4, 1e-3], "seeds": [0, 1]}})
      >>> print(config.tune)
      TuneConfig(learning_rate=(0.0001, 0.001), seeds=(0, 1), select='val_loss', chunk=None, divergence_factor=10.0)
    """

    learning_rate: tuple[float, ...] = field(metadata=rule(low=0.0, open_low=True, nonempty=True, distinct="rate"))
    seeds: tuple[int, ...] | None = field(default=None, metadata=rule(low=0, nonempty=True, distinct="seed"))
    select: str = field(default="val_loss", metadata=rule(choices=SELECT))
    chunk: int | None = field(default=None, metadata=rule(low=1))
    divergence_factor: float = field(default=10.0, metadata=rule(low=1.0, open_low=True))

    def as_sweep(self, seed: int) -> SweepConfig:
        """The sweep section that tunes: the grid of learning rates crossed with the seeds (default ``seed``)."""
        return SweepConfig(
            grid={"learning_rate": self.learning_rate},
            seeds=self.seeds or (seed,),
            chunk=self.chunk,
            select=self.select,
            divergence_factor=self.divergence_factor,
        )


@dataclass(frozen=True)
class OutputConfig:
    """Where results go (``None``: ``runs/<config name>``; the command line's ``--out`` wins).

    Examples:
      >>> from jgd.experiment.config.schema import OutputConfig
      >>> print(OutputConfig(dir="runs/adam"))
      OutputConfig(dir='runs/adam')
    """

    dir: str | None = None


@dataclass(frozen=True)
class Config:
    """A whole experiment.

    ``jgd train`` needs ``optimizer``; ``jgd compare`` needs ``methods``; ``jgd sweep`` needs ``sweep``
    and sweeps ``methods``, else ``optimizer``.

    Examples:
      A whole experiment; every section has defaults but the optimizer (``jgd train``), the methods (``jgd
      compare``) or the sweep (``jgd sweep``):

      >>> from jgd.experiment.config.reader import parse_config
      >>> config = parse_config({"seed": 1, "optimizer": {"name": "sgd", "learning_rate": 0.1}})
      >>> print(config.seed, config.data.name, config.model.hidden, config.training.epochs, config.optimizer.name)
      1 digits (128,) 30 sgd
    """

    seed: int = field(default=0, metadata=rule(low=0))
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    output: OutputConfig = OutputConfig()
    optimizer: OptimizerConfig | None = field(default=None, metadata=rule(omit_default=True))
    methods: tuple[MethodConfig, ...] = field(default=(), metadata=rule(nonempty=True, omit_default=True))
    sweep: SweepConfig | None = field(default=None, metadata=rule(omit_default=True))
    tune: TuneConfig | None = field(default=None, metadata=rule(omit_default=True))

    @property
    def output_dir(self) -> str | None:
        """``output.dir``."""
        return self.output.dir

    @property
    def sweep_methods(self) -> tuple[tuple[str, MethodConfig], ...]:
        """The methods ``jgd sweep`` runs, each with its optimizer's field path: ``methods``, else ``optimizer``."""
        if self.methods:
            return tuple((f"methods[{i}].optimizer", m) for i, m in enumerate(self.methods))
        if self.optimizer is not None:
            method = MethodConfig(
                label=self.optimizer.name, optimizer=self.optimizer, batch_size=self.training.batch_size
            )
            return (("optimizer", method),)
        return ()
