"""Reading YAML into the config schema: one generic reader, driven by the dataclass fields and their types.

Every field is checked here, before any training starts: an unknown key or a
bad value is a ``ValueError`` whose message begins with the field's dotted
path, such as ``optimizer.learning_rate must be >= 0, got -0.1``. The few
checks that span fields (a data set's path, unique method labels, what a sweep
may vary) run after their sections are read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import yaml

from jgd.experiment.config import field_readers as read
from jgd.experiment.config.field_readers import join
from jgd.experiment.config.method_table import LINE_SEARCH
from jgd.experiment.config.optimizers import check_optimizer, sweepable, sweepable_schedule_parameters, with_values
from jgd.experiment.config.schema import Config, DataConfig, OptimizerConfig, Rule, SweepConfig, TrainingConfig
from jgd.experiment.config.writer import to_dict

__all__ = [
    "apply_overrides",
    "load_config",
    "parse_config",
    "read_section",
]

_NO_RULE = Rule()


def _rule(f: dataclasses.Field) -> Rule:
    return f.metadata.get("rule", _NO_RULE)


def _without_none(hint: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None``, else ``(hint, False)``."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return inner, True
    return hint, False


def _read_scalar(hint: Any, value: Any, path: str, rule: Rule) -> Any:
    if hint is bool:
        return read.boolean(value, path)
    if hint is int:
        return read.integer(value, path, int(rule.low or 0))
    if hint is float:
        return read.real(value, path, rule.low, rule.high, rule.open_low)
    if hint is str:
        return read.string(value, path) if rule.choices is None else read.choice(value, path, rule.choices)
    raise TypeError(f"the schema gives {path} the type {hint}, which has no reader: give it a Rule.read")


def _read_list(item: Any, value: Any, path: str, rule: Rule) -> tuple:
    if not isinstance(value, list) or (rule.nonempty and not value):
        raise ValueError(f"{path} must be a {'non-empty ' if rule.nonempty else ''}list, got {value!r}")
    items = tuple(_read_value(item, v, join(path, i), rule) for i, v in enumerate(value))
    if rule.distinct is not None and len(set(items)) < len(items):
        raise ValueError(f"{path} repeats a {rule.distinct}: {list(items)}")
    return items


def _read_value(hint: Any, value: Any, path: str, rule: Rule) -> Any:
    """One field's value, by its own reader if the rule names one, else by its type."""
    if rule.read is not None:
        return rule.read(value, path)
    hint, optional = _without_none(hint)
    if value is None and optional:
        return None
    if dataclasses.is_dataclass(hint):
        return read_section(cast(type, hint), value, path)
    if typing.get_origin(hint) is tuple:
        return _read_list(typing.get_args(hint)[0], value, path, rule)
    return _read_scalar(hint, value, path, rule)


def read_section(cls: type, raw: Any, path: str) -> Any:
    """A ``cls`` (a schema dataclass) from the YAML mapping ``raw`` found at ``path`` ("" for the whole config).

    Examples:
      One section from its YAML mapping; a mistake is an error naming the field:

      >>> from jgd.experiment.config.reader import read_section
      >>> from jgd.experiment.config.schema import DataConfig
      >>> print(read_section(DataConfig, {"name": "digits", "validation_fraction": 0.2}, "data"))
      DataConfig(name='digits', path=None, validation_fraction=0.2, test_fraction=0.2, standardize=True)
      >>> try:
      ...     read_section(DataConfig, {"nmae": "digits"}, "data")
      ... except ValueError as error:
      ...     print(error)
      ...
      data.nmae is not a known field; expected one of: name, path, validation_fraction, test_fraction, standardize
    """
    raw = read.mapping(raw, path or "the config")
    fields = dataclasses.fields(cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields]
    if not any(_rule(f).rest for f in fields):
        read.check_keys(raw, names, path)
    if cls in _BEFORE_READING:
        _BEFORE_READING[cls](raw, path)
    values = {}
    for f in fields:
        where, rule = join(path, f.name), _rule(f)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if rule.rest:
            assert rule.read is not None  # a field of the other keys has its own reader
            values[f.name] = rule.read({k: v for k, v in raw.items() if k not in names}, path)
        elif f.name not in raw or (raw[f.name] is None and has_default and _empty_means_default(hints[f.name])):
            if not has_default:
                raise ValueError(f"{where} is required")
        else:
            values[f.name] = _read_value(hints[f.name], raw[f.name], where, rule)
    section = cls(**values)
    if cls in _SECTION_CHECKS:
        _SECTION_CHECKS[cls](section, path)
    return section


def _empty_means_default(hint: Any) -> bool:
    # An empty YAML section or list (`data:`) means its defaults; a scalar left empty is an error.
    return dataclasses.is_dataclass(hint) or typing.get_origin(hint) is tuple


def _check_data(data: DataConfig, path: str) -> None:
    if data.name != "digits" and data.path is None:
        raise ValueError(f"{path}.path is required for {data.name}: a directory of IDX files or an .npz file")


# Optimizer fields a sweep cannot vary, whatever their values: the settings of a method run as one program.
_FIXED_IN_A_SWEEP = {
    "state_dtype": "the state's form is part of the compiled program; compare forms as methods of jgd compare",
}


def _one_search(raw: dict[str, Any], path: str) -> None:
    """Checks that a sweep section gives one search, and that it names no field only a separate program can vary."""
    if (raw.get("grid") is None) == (raw.get("random") is None):
        raise ValueError(f"{path} needs one of grid (every combination of values) or random (sampled settings)")
    random = raw.get("random")
    spaces = {join(path, "grid"): raw.get("grid")}
    spaces[join(join(path, "random"), "space")] = random.get("space") if isinstance(random, Mapping) else None
    for where, space in spaces.items():
        for name in space if isinstance(space, Mapping) else ():
            head = str(name).partition(".")[0]
            if head in _FIXED_IN_A_SWEEP:
                raise ValueError(f"{join(where, head)} cannot be swept: {_FIXED_IN_A_SWEEP[head]}")


# Checks of a section's keys as a whole, run before its fields are read.
_BEFORE_READING: dict[type, Callable[[dict[str, Any], str], None]] = {SweepConfig: _one_search}
# Checks of a section as a whole, run once its fields are read.
_SECTION_CHECKS: dict[type, Callable[[Any, str], None]] = {DataConfig: _check_data, OptimizerConfig: check_optimizer}


def _resolve_methods(config: Config, raw_methods: Sequence[Any]) -> Config:
    """Each method with its label (by default its optimizer's name, unique) and batch size (by default training's)."""
    methods = []
    labels: dict[str, int] = {}
    for i, (method, raw) in enumerate(zip(config.methods, raw_methods)):
        label = method.optimizer.name if method.label is None else method.label
        if label in labels:
            raise ValueError(f"{join('methods', i)}.label {label!r} repeats the label of methods[{labels[label]}]")
        labels[label] = i
        batch_size = method.batch_size if "batch_size" in raw else config.training.batch_size
        methods.append(dataclasses.replace(method, label=label, batch_size=batch_size))
    return dataclasses.replace(config, methods=tuple(methods))


def _check_swept(path: str, optimizer: OptimizerConfig, space: Mapping[str, tuple], where: str) -> None:
    """Checks that ``optimizer`` can vary every name of ``space`` (the field ``where``), and every value is valid."""
    if optimizer.name in LINE_SEARCH:
        raise ValueError(
            f"{path}.name {optimizer.name} cannot be swept: full-batch second-order methods are out of scope for "
            "jgd sweep"
        )
    allowed = sweepable(optimizer)
    for name, spec in space.items():
        head, _, key = name.partition(".")
        if head not in allowed:
            raise ValueError(
                f"{join(where, head)} is not a float hyperparameter of {optimizer.name}; "
                f"expected one of: {', '.join(allowed)}"
            )
        if key:
            schedule = optimizer.hyperparams.get(head)
            if not isinstance(schedule, dict):
                raise ValueError(
                    f"{join(where, name)} is a schedule parameter, but {path}.{head} does not follow a schedule"
                )
            parameters = sweepable_schedule_parameters(schedule)
            if key not in parameters:
                raise ValueError(
                    f"{join(where, name)} is not a float parameter of the {schedule['schedule']} schedule; "
                    f"expected one of: {', '.join(parameters)}"
                )
        # Each value (a distribution's bounds) goes through the optimizer's own checks, named by the sweep field.
        for value in spec[1:] if isinstance(spec[0], str) else spec:
            read_section(OptimizerConfig, to_dict(with_values(optimizer, {name: value})), where)


# What fit does per run, with no per-setting meaning in one vmapped program: option → why a sweep refuses it.
_NOT_SWEPT = {
    "early_stopping": "every setting trains all its epochs",
    "skip_nonfinite": "a diverging setting is reported as diverged",
    "mesh": "sweep.mesh shards the settings instead",
    "checkpoint": "a sweep is not checkpointed",
    "accumulate": "the sweep engine takes one step per batch",
    "monitor": "the sweep engine records the curves only",
    "skip_spikes": "a diverging setting is reported as diverged",
}


def _check_not_swept(config: Config, section: str) -> None:
    """Refuses the training options a vmapped sweep (``section``: a sweep or a tuning) cannot run."""
    for option, why in _NOT_SWEPT.items():
        if getattr(config.training, option) != getattr(TrainingConfig(), option):
            raise ValueError(f"training.{option} cannot be used with {section}: {why}")


def _check_sweep(config: Config) -> Config:
    """``config`` with its sweep's seeds resolved, once the sweep is known to fit its methods and training options."""
    sweep = config.sweep
    assert sweep is not None  # parse_config checks a sweep where there is one
    _check_not_swept(config, "a sweep")
    if not config.sweep_methods:
        raise ValueError("sweep needs a methods list or an optimizer to sweep")
    for path, method in config.sweep_methods:
        _check_swept(path, method.optimizer, sweep.space, sweep.path)
    seeds = (config.seed,) if sweep.seeds is None else sweep.seeds
    return dataclasses.replace(config, sweep=dataclasses.replace(sweep, seeds=seeds))


def _check_tune(config: Config) -> Config:
    """``config`` with its tuning's seeds resolved, once every method is known to take the swept learning rates."""
    tune = config.tune
    assert tune is not None  # parse_config checks a tuning where there is one
    _check_not_swept(config, "tune")
    if not config.methods:
        raise ValueError("tune needs a methods list: it tunes the methods of jgd compare")
    for i, method in enumerate(config.methods):
        _check_swept(f"methods[{i}].optimizer", method.optimizer, {"learning_rate": tune.learning_rate}, "tune")
    return dataclasses.replace(config, tune=dataclasses.replace(tune, seeds=tune.seeds or (config.seed,)))


def _check_accumulate(config: Config) -> None:
    """A line search evaluates one batch's loss: it cannot step on a mean over accumulated batches."""
    optimizers = [] if config.optimizer is None else [("optimizer", config.optimizer)]
    optimizers += [(f"methods[{i}].optimizer", m.optimizer) for i, m in enumerate(config.methods)]
    for path, optimizer in optimizers:
        if config.training.accumulate > 1 and optimizer.name in LINE_SEARCH:
            raise ValueError(
                f"training.accumulate cannot be used with {path}.name {optimizer.name}: its line search "
                "evaluates the loss of one batch"
            )


def parse_config(raw: Any) -> Config:
    """Validates a config mapping (as read from YAML) into a :class:`~jgd.experiment.config.schema.Config`.

    Examples:
      A config as read from YAML, checked into the schema; nothing heavy (Flax, optax, matplotlib) is
      loaded:

      >>> from jgd.experiment.config.reader import parse_config
      >>> config = parse_config({"optimizer": {"name": "adam", "learning_rate": 0.01}, "training": {"epochs": 5}})
      >>> print(config.optimizer, config.training.epochs)
      OptimizerConfig(name='adam', hyperparams={'learning_rate': 0.01}, state_dtype=None, l1=0.0, l2=0.0,
      clip_value=None, clip_norm=None, clip_global_norm=None, max_norm=None) 5
      >>> try:
      ...     parse_config({"optimizer": {"name": "adam", "learning_rate": -1.0}})
      ... except ValueError as error:
      ...     print(error)
      ...
      optimizer.learning_rate must be >= 0, got -1.0
    """
    config = read_section(Config, raw, "")
    _check_accumulate(config)
    config = _resolve_methods(config, raw.get("methods") or [])
    config = config if config.tune is None else _check_tune(config)
    return config if config.sweep is None else _check_sweep(config)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``key=value`` overrides, e.g. ``optimizer.learning_rate=0.01`` or ``methods.0.label=A``.

    Values are read as YAML (``5`` is an int, ``full`` a string, ``[64, 64]`` a list).

    Examples:
      The command line's ``--set key=value``, values read as YAML:

      >>> from jgd.experiment.config.reader import apply_overrides
      >>> raw = {"optimizer": {"name": "adam"}, "model": {"hidden": [128]}}
      >>> print(apply_overrides(raw, ["optimizer.learning_rate=0.01", "model.hidden=[64, 64]"]))
      {'optimizer': {'name': 'adam', 'learning_rate': 0.01}, 'model': {'hidden': [64, 64]}}
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r} must look like key=value")
        node: Any = raw
        parts = key.split(".")
        for i, part in enumerate(parts):
            where = ".".join(parts[: i + 1])
            index: str | int = part
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ValueError(f"--set {key}: {where} is not an index of a list of {len(node)}")
                index = int(part)
            elif not isinstance(node, dict):
                raise ValueError(f"--set {key}: {'.'.join(parts[:i])} is not a mapping")
            if i == len(parts) - 1:
                node[index] = yaml.safe_load(text)
            else:
                if isinstance(node, dict) and node.get(index) is None:
                    node[index] = {}
                node = node[index]
    return raw


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Reads, overrides and validates the YAML config at ``path``.

    Examples:
      A YAML file, with overrides:

      >>> import pathlib
      >>> import tempfile
      >>> from jgd.experiment.config.reader import load_config
      >>> path = pathlib.Path(tempfile.mkdtemp()) / "train.yaml"
      >>> _ = path.write_text("optimizer: {name: adam, learning_rate: 0.001}\\ntraining: {epochs: 10}\\n")
      >>> config = load_config(path, ["training.epochs=3"])
      >>> print(config.optimizer.hyperparams, config.training.epochs)
      {'learning_rate': 0.001} 3
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    return parse_config(apply_overrides(read.mapping(raw, str(path)), overrides))
