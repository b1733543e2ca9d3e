"""Writing a config back as YAML-ready data: the inverse of :mod:`jgd.experiment.config.reader`, by the same schema."""

from __future__ import annotations

import dataclasses
from typing import Any


def _written(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, tuple):
        return [_written(v) for v in value]
    return value


def to_dict(section: Any) -> dict[str, Any]:
    """A schema dataclass (a whole config or one section) as a mapping that reads back to an equal one."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(section):
        value, rule = getattr(section, f.name), f.metadata.get("rule")
        if rule is None:
            out[f.name] = _written(value)
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if rule.omit_default and value == default:
            continue
        written = rule.write(value) if rule.write is not None else _written(value)
        if rule.rest:
            out.update(written)
        else:
            out[f.name] = written
    return out
