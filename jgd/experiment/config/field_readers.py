"""Readers of single YAML values: each checks one value and names its field (a dotted path) in any error.

The generic section reader (:mod:`jgd.experiment.config.reader`) calls these by
the field's type; the schema (:mod:`jgd.experiment.config.schema`) names the special
ones (batch size, mesh, sweep space) a field needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jgd.experiment.train.sharding import AXES

# Random-search distributions of a sweep space.
DISTRIBUTIONS = ("uniform", "log_uniform")


def join(path: str, key: str | int) -> str:
    """The path of ``key`` inside ``path``: ``a.b``, or ``a[3]`` for a list index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def mapping(value: Any, path: str) -> dict[str, Any]:
    """``value`` as a dict; ``None`` (an empty YAML section) is ``{}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be a mapping of fields, got {value!r}")
    return dict(value)


def check_keys(raw: Mapping[str, Any], allowed: Sequence[str], path: str) -> None:
    """Raises for the first key of ``raw`` not in ``allowed``, listing the allowed ones."""
    for key in raw:
        if key not in allowed:
            raise ValueError(f"{join(path, str(key))} is not a known field; expected one of: {', '.join(allowed)}")


def number(value: Any, path: str) -> int | float:
    """An int or float; numeric strings count, since PyYAML reads ``1e-3`` (no dot) as a string."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path} must be a number, got {value!r}")
    return value


def real(value: Any, path: str, low: float | None = None, high: float | None = None, open_low: bool = False) -> float:
    """A float in ``[low, high)`` (``(low, high)`` with ``open_low``); a missing bound is no bound."""
    x = float(number(value, path))
    if low is not None and (x <= low if open_low else x < low):
        raise ValueError(f"{path} must be {'>' if open_low else '>='} {low:g}, got {value!r}")
    if high is not None and x >= high:
        raise ValueError(f"{path} must be < {high:g}, got {value!r}")
    return x


def _is_integer(value: Any) -> bool:
    # YAML's true is not an integer here, though Python says it is.
    return isinstance(value, int) and not isinstance(value, bool)


def integer(value: Any, path: str, low: int) -> int:
    """An int ``>= low``."""
    if not _is_integer(value) or value < low:
        raise ValueError(f"{path} must be an integer >= {low}, got {value!r}")
    return value


def _of_type(value: Any, path: str, kind: type, described: str) -> Any:
    if not isinstance(value, kind):
        raise ValueError(f"{path} must be {described}, got {value!r}")
    return value


def boolean(value: Any, path: str) -> bool:
    """``true`` or ``false``."""
    return _of_type(value, path, bool, "true or false")


def choice(value: Any, path: str, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise ValueError(f"{path} must be one of {', '.join(choices)}, got {value!r}")
    return value


def string(value: Any, path: str) -> str:
    """A string."""
    return _of_type(value, path, str, "a string")


def label(value: Any, path: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{path} must be a non-empty string, got {value!r}")
    return value


def batch_size(value: Any, path: str) -> int | None:
    """A batch size: an int ``>= 1``, or ``full`` (``None``), the whole training set."""
    if value == "full":
        return None
    if not _is_integer(value) or value < 1:
        raise ValueError(f"{path} must be an integer >= 1 or 'full', got {value!r}")
    return value


def write_batch_size(size: int | None) -> int | str:
    """The YAML spelling of a batch size: ``full`` for ``None``."""
    return "full" if size is None else size


def mesh(value: Any, path: str) -> dict[str, int] | None:
    """Mesh axis sizes such as ``{data: 8}``; one size may be ``-1``, all the devices left."""
    if value is None:
        return None
    sizes = mapping(value, path)
    check_keys(sizes, AXES, path)
    if not sizes:
        raise ValueError(f"{path} must give the size of at least one axis: {', '.join(AXES)}")
    for axis, size in sizes.items():
        if not _is_integer(size) or (size < 1 and size != -1):
            raise ValueError(f"{path}.{axis} must be an integer >= 1, or -1 for all remaining devices, got {size!r}")
    if list(sizes.values()).count(-1) > 1:
        raise ValueError(f"{path}: only one axis size may be -1")
    return sizes


# --- sweep spaces: swept names to grid values or distributions -----------------------------------


def _space_values(value: Any, path: str, random: bool) -> tuple:
    if isinstance(value, Mapping):
        kind, bounds = next(iter(value.items()))
        if not random:
            raise ValueError(f"{path}: a grid lists values; {kind} belongs in sweep.random.space")
        where = f"{path}.{kind}"
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise ValueError(f"{where} must be [low, high], got {bounds!r}")
        low, high = (float(number(b, join(where, i))) for i, b in enumerate(bounds))
        if not low < high or (kind == "log_uniform" and low <= 0):
            raise ValueError(f"{where} must have {'0 < ' if kind == 'log_uniform' else ''}low < high, got {bounds!r}")
        return (kind, low, high)
    if not isinstance(value, list) or not value:
        shape = "a non-empty list of values" + (" or {uniform | log_uniform: [low, high]}" if random else "")
        raise ValueError(f"{path} must be {shape}, got {value!r}")
    return tuple(float(number(v, join(path, i))) for i, v in enumerate(value))


def _space(value: Any, path: str, random: bool, prefix: str = "") -> dict[str, tuple]:
    """Swept names and their values; nested mappings become dotted names (``learning_rate.init_value``)."""
    raw = mapping(value, path)
    if not raw:
        raise ValueError(f"{path} is empty: name at least one hyperparameter and its values")
    space = {}
    for key, entry in raw.items():
        where, name = join(path, str(key)), f"{prefix}{key}"
        distribution = isinstance(entry, Mapping) and len(entry) == 1 and next(iter(entry)) in DISTRIBUTIONS
        if isinstance(entry, Mapping) and not distribution:
            space.update(_space(entry, where, random, f"{name}."))
        else:
            space[name] = _space_values(entry, where, random)
    return space


def grid_space(value: Any, path: str) -> dict[str, tuple[float, ...]] | None:
    """A grid: each swept name with the list of its values."""
    return None if value is None else _space(value, path, random=False)


def random_space(value: Any, path: str) -> dict[str, tuple]:
    """A random-search space: each swept name with ``(distribution, low, high)`` or values to choose from."""
    return _space(value, path, random=True)


def write_space(space: Mapping[str, tuple] | None) -> dict[str, Any] | None:
    """The YAML spelling of a space: a list of values, or ``{distribution: [low, high]}``."""
    if space is None:
        return None
    return {name: {spec[0]: list(spec[1:])} if isinstance(spec[0], str) else list(spec) for name, spec in space.items()}
