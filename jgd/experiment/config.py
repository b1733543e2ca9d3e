"""Experiment configs: YAML files read into validated, frozen dataclasses.

The schema is documented in ``configs/README.md``. Every field is checked
here, before any training starts: an unknown key or a bad value is a
``ValueError`` whose message begins with the field's dotted path, such as
``optimizer.learning_rate must be >= 0, got -0.1``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import jax
import optax
import yaml

import jgd
from jgd.experiment.data import DATASETS
from jgd.experiment.losses import LOSSES
from jgd.experiment.models import ACTIVATIONS, INITIALIZERS
from jgd.experiment.sharding import AXES
from jgd.experiment.training import EarlyStopping

METHODS = ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "nadam", "lbfgs", "bfgs")
SCHEDULES = ("constant", "exponential", "step", "cosine", "linear_warmup")
# Methods whose line search evaluates the plain loss: blocks that change the gradient would mislead it.
LINE_SEARCH = ("lbfgs", "bfgs", "optax.lbfgs")
_BLOCKS = ("l1", "l2", "clip_value", "clip_norm", "clip_global_norm", "max_norm")
_GRADIENT_BLOCKS = ("l1", "l2", "clip_value", "clip_norm", "clip_global_norm")
# Sweeps: random-search distributions, and what "best setting" can mean.
DISTRIBUTIONS = ("uniform", "log_uniform")
SELECT = ("val_loss", "val_accuracy", "final_train_loss")


@dataclass(frozen=True)
class DataConfig:
    """Which data set, and how it is split and scaled (see :func:`jgd.data.load_dataset`)."""

    name: str = "digits"
    path: str | None = None
    validation_fraction: float = 0.1
    test_fraction: float = 0.2
    standardize: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """The :class:`jgd.models.MLP`'s hidden widths and layer choices."""

    hidden: tuple[int, ...] = (128,)
    activation: str = "relu"
    initializer: str = "he"
    dropout: float = 0.0
    batch_norm: bool = False


@dataclass(frozen=True)
class CheckpointConfig:
    """Save a checkpoint every ``every`` epochs into ``dir`` (``None``: the output folder's name + ``.checkpoint``)."""

    every: int = 1
    dir: str | None = None


@dataclass(frozen=True)
class TrainingConfig:
    """Epochs, batch size (``None`` is the full training set), loss and early stopping.

    The rest are :func:`jgd.training.fit`'s options: skipping non-finite steps, a device mesh (axis sizes) and
    checkpoints.
    """

    epochs: int = 30
    batch_size: int | None = 32
    loss: str = "cross_entropy"
    early_stopping: EarlyStopping | None = None
    skip_nonfinite: bool = False
    max_consecutive_nonfinite: int = 10
    mesh: dict[str, int] | None = None
    checkpoint: CheckpointConfig | None = None


@dataclass(frozen=True)
class OptimizerConfig:
    """A method, its hyperparameters (numbers or schedule specs), and the blocks chained around it."""

    name: str
    hyperparams: dict[str, Any] = field(default_factory=dict)
    l1: float = 0.0
    l2: float = 0.0
    clip_value: float | None = None
    clip_norm: float | None = None
    clip_global_norm: float | None = None
    max_norm: float | None = None


@dataclass(frozen=True)
class MethodConfig:
    """One line of a comparison: a label, an optimizer and the batch size it trains with."""

    label: str
    optimizer: OptimizerConfig
    batch_size: int | None


@dataclass(frozen=True)
class SweepConfig:
    """What ``jgd sweep`` varies and how it runs the settings.

    ``space`` maps each swept name (a hyperparameter, a block such as ``l2``, or
    ``learning_rate.init_value`` for a schedule's parameter) to its grid values,
    or, with ``samples``, to a distribution ``("uniform" | "log_uniform", low, high)``
    or a tuple of values to choose from.
    """

    space: dict[str, Any]
    samples: int | None = None
    sample_seed: int = 0
    seeds: tuple[int, ...] = (0,)
    chunk: int | None = None
    mesh: bool = False
    select: str = "val_loss"
    divergence_factor: float = 10.0

    @property
    def path(self) -> str:
        """The config field that holds ``space``."""
        return "sweep.grid" if self.samples is None else "sweep.random.space"


@dataclass(frozen=True)
class Config:
    """A whole experiment.

    ``jgd train`` needs ``optimizer``; ``jgd compare`` needs ``methods``; ``jgd sweep`` needs ``sweep``
    and sweeps ``methods``, else ``optimizer``.
    """

    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    optimizer: OptimizerConfig | None = None
    methods: tuple[MethodConfig, ...] = ()
    sweep: SweepConfig | None = None
    output_dir: str | None = None


# --- field readers: each names the field in its error -------------------------------------------


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be a mapping of fields, got {value!r}")
    return dict(value)


def _check_keys(raw: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
    for key in raw:
        if key not in allowed:
            raise ValueError(f"{_join(path, str(key))} is not a known field; expected one of: {', '.join(allowed)}")


def _number(value: Any, path: str) -> int | float:
    # PyYAML reads "1e-3" (no dot) as a string, so numeric strings are numbers here.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path} must be a number, got {value!r}")
    return value


def _float(value: Any, path: str, low: float | None = None, high: float | None = None, open_low: bool = False) -> float:
    x = float(_number(value, path))
    if low is not None and (x <= low if open_low else x < low):
        raise ValueError(f"{path} must be {'>' if open_low else '>='} {low:g}, got {value!r}")
    if high is not None and x >= high:
        raise ValueError(f"{path} must be < {high:g}, got {value!r}")
    return x


def _int(value: Any, path: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{path} must be an integer >= {low}, got {value!r}")
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{path} must be true or false, got {value!r}")
    return value


def _choice(value: Any, path: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{path} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _batch_size(value: Any, path: str) -> int | None:
    if value == "full":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{path} must be an integer >= 1 or 'full', got {value!r}")
    return value


def _optional(value: Any, read: Callable[[Any], Any]) -> Any:
    return None if value is None else read(value)


# --- sections ------------------------------------------------------------------------------------


def _data(raw: Any, path: str = "data") -> DataConfig:
    raw = _mapping(raw, path)
    _check_keys(raw, ("name", "path", "validation_fraction", "test_fraction", "standardize"), path)
    d = DataConfig()
    name = _choice(raw.get("name", d.name), f"{path}.name", DATASETS)
    data_path = raw.get("path")
    if data_path is not None and not isinstance(data_path, str):
        raise ValueError(f"{path}.path must be a string, got {data_path!r}")
    if name != "digits" and data_path is None:
        raise ValueError(f"{path}.path is required for {name}: a directory of IDX files or an .npz file")
    fraction = {"low": 0.0, "high": 1.0, "open_low": True}
    return DataConfig(
        name=name,
        path=data_path,
        validation_fraction=_float(
            raw.get("validation_fraction", d.validation_fraction), f"{path}.validation_fraction", **fraction
        ),
        test_fraction=_float(raw.get("test_fraction", d.test_fraction), f"{path}.test_fraction", **fraction),
        standardize=_bool(raw.get("standardize", d.standardize), f"{path}.standardize"),
    )


def _model(raw: Any, path: str = "model") -> ModelConfig:
    raw = _mapping(raw, path)
    _check_keys(raw, ("hidden", "activation", "initializer", "dropout", "batch_norm"), path)
    d = ModelConfig()
    hidden = raw.get("hidden", list(d.hidden))
    if not isinstance(hidden, list):
        raise ValueError(f"{path}.hidden must be a list of layer widths, got {hidden!r}")
    return ModelConfig(
        hidden=tuple(_int(w, _join(f"{path}.hidden", i), 1) for i, w in enumerate(hidden)),
        activation=_choice(raw.get("activation", d.activation), f"{path}.activation", tuple(ACTIVATIONS)),
        initializer=_choice(raw.get("initializer", d.initializer), f"{path}.initializer", tuple(INITIALIZERS)),
        dropout=_float(raw.get("dropout", d.dropout), f"{path}.dropout", 0.0, 1.0),
        batch_norm=_bool(raw.get("batch_norm", d.batch_norm), f"{path}.batch_norm"),
    )


def _early_stopping(raw: Any, path: str) -> EarlyStopping | None:
    if raw is None:
        return None
    raw = _mapping(raw, path)
    _check_keys(raw, ("patience", "min_delta"), path)
    if "patience" not in raw:
        raise ValueError(f"{path}.patience is required")
    return EarlyStopping(
        patience=_int(raw["patience"], f"{path}.patience", 1),
        min_delta=_float(raw.get("min_delta", 0.0), f"{path}.min_delta", 0.0),
    )


def _mesh(raw: Any, path: str) -> dict[str, int] | None:
    if raw is None:
        return None
    raw = _mapping(raw, path)
    _check_keys(raw, AXES, path)
    if not raw:
        raise ValueError(f"{path} must give the size of at least one axis: {', '.join(AXES)}")
    for axis, size in raw.items():
        if isinstance(size, bool) or not isinstance(size, int) or (size < 1 and size != -1):
            raise ValueError(f"{path}.{axis} must be an integer >= 1, or -1 for all remaining devices, got {size!r}")
    if list(raw.values()).count(-1) > 1:
        raise ValueError(f"{path}: only one axis size may be -1")
    return raw


def _checkpoint(raw: Any, path: str) -> CheckpointConfig | None:
    if raw is None:
        return None
    raw = _mapping(raw, path)
    _check_keys(raw, ("every", "dir"), path)
    directory = raw.get("dir")
    if directory is not None and not isinstance(directory, str):
        raise ValueError(f"{path}.dir must be a string, got {directory!r}")
    return CheckpointConfig(every=_int(raw.get("every", 1), f"{path}.every", 1), dir=directory)


def _training(raw: Any, path: str = "training") -> TrainingConfig:
    raw = _mapping(raw, path)
    fields = ("epochs", "batch_size", "loss", "early_stopping", "skip_nonfinite", "max_consecutive_nonfinite")
    _check_keys(raw, (*fields, "mesh", "checkpoint"), path)
    d = TrainingConfig()
    return TrainingConfig(
        epochs=_int(raw.get("epochs", d.epochs), f"{path}.epochs", 1),
        batch_size=_batch_size(raw.get("batch_size", d.batch_size), f"{path}.batch_size"),
        loss=_choice(raw.get("loss", d.loss), f"{path}.loss", tuple(LOSSES)),
        early_stopping=_early_stopping(raw.get("early_stopping"), f"{path}.early_stopping"),
        skip_nonfinite=_bool(raw.get("skip_nonfinite", d.skip_nonfinite), f"{path}.skip_nonfinite"),
        max_consecutive_nonfinite=_int(
            raw.get("max_consecutive_nonfinite", d.max_consecutive_nonfinite), f"{path}.max_consecutive_nonfinite", 1
        ),
        mesh=_mesh(raw.get("mesh"), f"{path}.mesh"),
        checkpoint=_checkpoint(raw.get("checkpoint"), f"{path}.checkpoint"),
    )


def _factory(name: Any, path: str) -> Callable[..., Any]:
    if isinstance(name, str) and name.startswith("optax."):
        fn = getattr(optax, name.removeprefix("optax."), None)
        if not callable(fn):
            raise ValueError(f"{path} {name!r} is not an optax optimizer")
        return fn
    _choice(name, path, METHODS)
    if not hasattr(jgd, name):
        raise ValueError(f"{path} {name!r} is not available in this version of jgd")
    return getattr(jgd, name)


def _arguments(fn: Callable, raw: Mapping[str, Any], path: str, what: str) -> None:
    """Checks that ``raw`` names only parameters of ``fn`` and gives all the required ones."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL and n != "state_dtype"]
    for key in raw:
        if key not in allowed:
            raise ValueError(
                f"{_join(path, key)} is not a hyperparameter of {what}; expected one of: {', '.join(allowed)}"
            )
    for n, p in params.items():
        if p.default is inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in raw:
            raise ValueError(f"{_join(path, n)} is required by {what}")


def _hyperparam(value: Any, path: str) -> Any:
    """A YAML hyperparameter: a number, a flag or word option, or a ``{schedule: name, ...}`` mapping."""
    if isinstance(value, Mapping):
        spec = dict(value)
        kind = _choice(spec.pop("schedule", None), f"{path}.schedule", SCHEDULES)
        fn = getattr(jgd.schedules, kind)
        _arguments(fn, spec, path, f"the {kind} schedule")
        return {
            "schedule": kind,
            **{k: v if isinstance(v, bool) else _number(v, _join(path, k)) for k, v in spec.items()},
        }
    if isinstance(value, bool):
        return value
    try:
        return _number(value, path)
    except ValueError:
        if isinstance(value, str):
            return value  # a word option, such as momentum's form; the method checks it
        raise


def _optimizer(raw: Any, path: str) -> OptimizerConfig:
    raw = _mapping(raw, path)
    if "name" not in raw:
        raise ValueError(f"{path}.name is required")
    name = raw.pop("name")
    factory = _factory(name, f"{path}.name")
    blocks = {k: raw.pop(k) for k in _BLOCKS if k in raw}
    _arguments(factory, raw, path, name)
    hyperparams = {k: _hyperparam(v, _join(path, k)) for k, v in raw.items()}
    config = OptimizerConfig(
        name=name,
        hyperparams=hyperparams,
        l1=_float(blocks.get("l1", 0.0), f"{path}.l1", 0.0),
        l2=_float(blocks.get("l2", 0.0), f"{path}.l2", 0.0),
        **{
            k: _optional(blocks.get(k), lambda v, k=k: _float(v, f"{path}.{k}", 0.0, open_low=True))
            for k in ("clip_value", "clip_norm", "clip_global_norm", "max_norm")
        },
    )
    if name in LINE_SEARCH:
        for k in _GRADIENT_BLOCKS:
            if getattr(config, k):
                raise ValueError(f"{path}.{k} cannot be used with {name}: its line search evaluates the plain loss")
    build_optimizer(config, path)
    return config


def _methods(raw: Any, default_batch_size: int | None) -> tuple[MethodConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"methods must be a non-empty list of methods, got {raw!r}")
    methods, labels = [], {}
    for i, entry in enumerate(raw):
        path = _join("methods", i)
        entry = _mapping(entry, path)
        _check_keys(entry, ("label", "optimizer", "batch_size"), path)
        if "optimizer" not in entry:
            raise ValueError(f"{path}.optimizer is required")
        optimizer = _optimizer(entry["optimizer"], f"{path}.optimizer")
        label = entry.get("label", optimizer.name)
        if not isinstance(label, str) or not label:
            raise ValueError(f"{path}.label must be a non-empty string, got {label!r}")
        if label in labels:
            raise ValueError(f"{path}.label {label!r} repeats the label of methods[{labels[label]}]")
        labels[label] = i
        batch_size = (
            _batch_size(entry["batch_size"], f"{path}.batch_size") if "batch_size" in entry else default_batch_size
        )
        methods.append(MethodConfig(label, optimizer, batch_size))
    return tuple(methods)


def _optimizer_raw(o: OptimizerConfig) -> dict[str, Any]:
    # Blocks left at their defaults (no penalty, no clipping) are left out.
    blocks = {k: getattr(o, k) for k in _BLOCKS if getattr(o, k) != getattr(OptimizerConfig, k)}
    return {"name": o.name, **o.hyperparams, **blocks}


def with_values(optimizer: OptimizerConfig, values: Mapping[str, Any]) -> OptimizerConfig:
    """``optimizer`` with the hyperparameters named in ``values`` replaced, concrete or traced.

    A name is a keyword of the method (``learning_rate``), a block (``l2``,
    ``clip_global_norm``, ...) or ``name.parameter`` for a parameter of the
    schedule the method's ``name`` follows (``learning_rate.init_value``).
    """
    hyperparams, blocks = dict(optimizer.hyperparams), {}
    for name, value in values.items():
        head, _, key = name.partition(".")
        if head in _BLOCKS:
            blocks[head] = value
        elif key:
            hyperparams[head] = {**hyperparams[head], key: value}
        else:
            hyperparams[head] = value
    return replace(optimizer, hyperparams=hyperparams, **blocks)


def sweep_methods(config: Config) -> tuple[tuple[str, MethodConfig], ...]:
    """The methods ``jgd sweep`` runs, each with its optimizer's field path: ``methods``, else ``optimizer``."""
    if config.methods:
        return tuple((f"{_join('methods', i)}.optimizer", m) for i, m in enumerate(config.methods))
    if config.optimizer is not None:
        return (("optimizer", MethodConfig(config.optimizer.name, config.optimizer, config.training.batch_size)),)
    return ()


def _float_parameters(fn: Callable) -> list[str]:
    return [n for n, p in inspect.signature(fn).parameters.items() if "float" in str(p.annotation)]


def _space_values(value: Any, path: str, random: bool) -> tuple:
    if isinstance(value, Mapping):
        kind, bounds = next(iter(value.items()))
        if not random:
            raise ValueError(f"{path}: a grid lists values; {kind} belongs in sweep.random.space")
        where = f"{path}.{kind}"
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise ValueError(f"{where} must be [low, high], got {bounds!r}")
        low, high = (float(_number(b, _join(where, i))) for i, b in enumerate(bounds))
        if not low < high or (kind == "log_uniform" and low <= 0):
            raise ValueError(f"{where} must have {'0 < ' if kind == 'log_uniform' else ''}low < high, got {bounds!r}")
        return (kind, low, high)
    if not isinstance(value, list) or not value:
        shape = "a non-empty list of values" + (" or {uniform | log_uniform: [low, high]}" if random else "")
        raise ValueError(f"{path} must be {shape}, got {value!r}")
    return tuple(float(_number(v, _join(path, i))) for i, v in enumerate(value))


def _space(raw: Any, path: str, random: bool, prefix: str = "") -> dict[str, tuple]:
    """Swept names and their values; nested mappings become dotted names (``learning_rate.init_value``)."""
    raw = _mapping(raw, path)
    if not raw:
        raise ValueError(f"{path} is empty: name at least one hyperparameter and its values")
    space = {}
    for key, value in raw.items():
        where, name = _join(path, str(key)), f"{prefix}{key}"
        distribution = isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS
        if isinstance(value, Mapping) and not distribution:
            space.update(_space(value, where, random, f"{name}."))
        else:
            space[name] = _space_values(value, where, random)
    return space


def _check_swept(path: str, optimizer: OptimizerConfig, sweep: SweepConfig) -> None:
    """Checks that every swept name is a float hyperparameter of ``optimizer`` and every value valid for it."""
    if optimizer.name in LINE_SEARCH:
        raise ValueError(
            f"{path}.name {optimizer.name} cannot be swept: "
            "full-batch second-order methods are out of scope for jgd sweep"
        )
    floats = [*_float_parameters(_factory(optimizer.name, f"{path}.name")), *_BLOCKS]
    for name, spec in sweep.space.items():
        where = _join(sweep.path, name)
        head, _, key = name.partition(".")
        if head not in floats:
            raise ValueError(
                f"{_join(sweep.path, head)} is not a float hyperparameter of {optimizer.name}; "
                f"expected one of: {', '.join(floats)}"
            )
        if key:
            schedule = optimizer.hyperparams.get(head)
            if not isinstance(schedule, Mapping):
                raise ValueError(f"{where} is a schedule parameter, but {path}.{head} does not follow a schedule")
            allowed = _float_parameters(getattr(jgd.schedules, schedule["schedule"]))
            if key not in allowed:
                raise ValueError(
                    f"{where} is not a float parameter of the {schedule['schedule']} schedule; "
                    f"expected one of: {', '.join(allowed)}"
                )
        # Each value (a distribution's bounds) goes through the optimizer's own checks, named by the sweep field.
        for value in spec[1:] if isinstance(spec[0], str) else spec:
            _optimizer(_optimizer_raw(with_values(optimizer, {name: value})), sweep.path)


def _sweep(raw: Any, config: Config) -> SweepConfig:
    raw = _mapping(raw, "sweep")
    _check_keys(raw, ("grid", "random", "seeds", "chunk", "mesh", "select", "divergence_factor"), "sweep")
    if ("grid" in raw) == ("random" in raw):
        raise ValueError("sweep needs one of grid (every combination of values) or random (sampled settings)")
    space_config: dict[str, Any] = {}
    if "grid" in raw:
        space_config["space"] = _space(raw["grid"], "sweep.grid", random=False)
    else:
        random = _mapping(raw["random"], "sweep.random")
        _check_keys(random, ("samples", "seed", "space"), "sweep.random")
        if "samples" not in random:
            raise ValueError("sweep.random.samples is required")
        space_config = {
            "space": _space(random.get("space"), "sweep.random.space", random=True),
            "samples": _int(random["samples"], "sweep.random.samples", 1),
            "sample_seed": _int(random.get("seed", 0), "sweep.random.seed", 0),
        }
    seeds = raw.get("seeds", [config.seed])
    if not isinstance(seeds, list) or not seeds:
        raise ValueError(f"sweep.seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    seeds = tuple(_int(s, _join("sweep.seeds", i), 0) for i, s in enumerate(seeds))
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"sweep.seeds repeats a seed: {list(seeds)}")
    sweep = SweepConfig(
        **space_config,
        seeds=seeds,
        chunk=_optional(raw.get("chunk"), lambda v: _int(v, "sweep.chunk", 1)),
        mesh=_bool(raw.get("mesh", False), "sweep.mesh"),
        select=_choice(raw.get("select", "val_loss"), "sweep.select", SELECT),
        divergence_factor=_float(raw.get("divergence_factor", 10.0), "sweep.divergence_factor", 1.0, open_low=True),
    )
    # What fit does per run has no per-setting meaning in one vmapped program.
    t = config.training
    unsupported = {
        "early_stopping": (t.early_stopping is not None, "every setting trains all its epochs"),
        "skip_nonfinite": (t.skip_nonfinite, "a diverging setting is reported as diverged"),
        "mesh": (t.mesh is not None, "sweep.mesh shards the settings instead"),
        "checkpoint": (t.checkpoint is not None, "a sweep is not checkpointed"),
    }
    for key, (used, why) in unsupported.items():
        if used:
            raise ValueError(f"training.{key} cannot be used with a sweep: {why}")
    methods = sweep_methods(config)
    if not methods:
        raise ValueError("sweep needs a methods list or an optimizer to sweep")
    for path, method in methods:
        _check_swept(path, method.optimizer, sweep)
    return sweep


def parse_config(raw: Any) -> Config:
    """Validates a config mapping (as read from YAML) into a :class:`Config`."""
    raw = _mapping(raw, "the config")
    _check_keys(raw, ("seed", "data", "model", "training", "optimizer", "methods", "sweep", "output"), "")
    output = _mapping(raw.get("output"), "output")
    _check_keys(output, ("dir",), "output")
    if output.get("dir") is not None and not isinstance(output["dir"], str):
        raise ValueError(f"output.dir must be a string, got {output['dir']!r}")
    training = _training(raw.get("training"))
    config = Config(
        seed=_int(raw.get("seed", 0), "seed", 0),
        data=_data(raw.get("data")),
        model=_model(raw.get("model")),
        training=training,
        optimizer=_optional(raw.get("optimizer"), lambda v: _optimizer(v, "optimizer")),
        methods=_methods(raw.get("methods"), training.batch_size),
        output_dir=output.get("dir"),
    )
    return config if raw.get("sweep") is None else replace(config, sweep=_sweep(raw["sweep"], config))


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``key=value`` overrides, e.g. ``optimizer.learning_rate=0.01`` or ``methods.0.label=A``.

    Values are read as YAML (``5`` is an int, ``full`` a string, ``[64, 64]`` a list).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r} must look like key=value")
        node: Any = raw
        parts = key.split(".")
        for i, part in enumerate(parts):
            where = ".".join(parts[: i + 1])
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ValueError(f"--set {key}: {where} is not an index of a list of {len(node)}")
                part = int(part)
            elif not isinstance(node, dict):
                raise ValueError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping")
            if last:
                node[part] = yaml.safe_load(text)
            else:
                if isinstance(node, dict) and node.get(part) is None:
                    node[part] = {}
                node = node[part]
    return raw


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Reads, overrides and validates the YAML config at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    return parse_config(apply_overrides(_mapping(raw, str(path)), overrides))


# --- building the transform ----------------------------------------------------------------------


def _kernels(params: Any) -> Any:
    # Penalties act on the weight matrices only, like Keras' kernel_regularizer.
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def _value(value: Any) -> Any:
    if isinstance(value, Mapping):
        spec = dict(value)
        return getattr(jgd.schedules, spec.pop("schedule"))(**spec)
    return value


def _prefixed(path: str, error: Exception, names: Any) -> str:
    # jgd's own messages start with the parameter's name; make that the field's full path.
    message = str(error)
    return f"{path}.{message}" if message.split(" ")[0] in names else f"{path}: {message}"


def build_optimizer(config: OptimizerConfig, path: str = "optimizer") -> jgd.GradientTransformation:
    """The transform ``config`` describes: ``l1, l2, clipping → method → max_norm``.

    Penalties come first so the method (and its preconditioner) sees their
    gradient, as when Keras adds them to the loss; max-norm projects the
    weights the step produces. Errors name the field under ``path``.
    """
    factory = _factory(config.name, f"{path}.name")
    hp = {}
    for key, value in config.hyperparams.items():
        try:
            hp[key] = _value(value)
        except ValueError as e:
            raise ValueError(_prefixed(_join(path, key), e, value)) from None
    parts = []
    for key, block in (("l1", jgd.l1_penalty), ("l2", jgd.l2_penalty)):
        # A concrete zero leaves the penalty out; a traced rate (a sweep) keeps it.
        if isinstance(getattr(config, key), jax.Array) or getattr(config, key):
            parts.append(optax.masked(block(getattr(config, key)), _kernels))
    for key, block in (
        ("clip_value", jgd.clip_by_value),
        ("clip_norm", jgd.clip_by_norm),
        ("clip_global_norm", jgd.clip_by_global_norm),
    ):
        if getattr(config, key) is not None:
            parts.append(block(getattr(config, key)))
    try:
        parts.append(factory(**hp))
    except (TypeError, ValueError) as e:
        raise ValueError(_prefixed(path, e, hp)) from None
    if config.max_norm is not None:
        parts.append(jgd.max_norm(config.max_norm))
    return parts[0] if len(parts) == 1 else jgd.chain(*parts)


def _sweep_dict(s: SweepConfig) -> dict[str, Any]:
    space = {
        name: {spec[0]: list(spec[1:])} if isinstance(spec[0], str) else list(spec) for name, spec in s.space.items()
    }
    search = (
        {"grid": space}
        if s.samples is None
        else {"random": {"samples": s.samples, "seed": s.sample_seed, "space": space}}
    )
    return {
        **search,
        "seeds": list(s.seeds),
        "chunk": s.chunk,
        "mesh": s.mesh,
        "select": s.select,
        "divergence_factor": s.divergence_factor,
    }


def to_dict(config: Config) -> dict[str, Any]:
    """The config as a YAML-ready mapping that :func:`parse_config` reads back to an equal config."""

    def batch(size: int | None) -> int | str:
        return "full" if size is None else size

    out: dict[str, Any] = {
        "seed": config.seed,
        "data": asdict(config.data),
        "model": {**asdict(config.model), "hidden": list(config.model.hidden)},
        "training": {**asdict(config.training), "batch_size": batch(config.training.batch_size)},
        "output": {"dir": config.output_dir},
    }
    if config.optimizer is not None:
        out["optimizer"] = _optimizer_raw(config.optimizer)
    if config.methods:
        out["methods"] = [
            {"label": m.label, "optimizer": _optimizer_raw(m.optimizer), "batch_size": batch(m.batch_size)}
            for m in config.methods
        ]
    if config.sweep is not None:
        out["sweep"] = _sweep_dict(config.sweep)
    return out
