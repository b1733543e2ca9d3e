"""How a config field's YAML value is checked beyond its type: the :class:`Rule` in the field's metadata.

The schema (:mod:`jgd.experiment.config.schema`, which re-exports :class:`Rule` and :func:`rule`) gives its
fields these rules; the generic reader (:mod:`jgd.experiment.config.reader`) applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jgd.experiment.config import field_readers


@dataclass(frozen=True)
class Rule:
    """How a field's YAML value is checked beyond its type.

    ``low``/``high``/``open_low``: a number's range, ``[low, high)`` or ``(low, high)`` (for the items of a list
    too); ``choices``: the words a string may be; ``nonempty``: of a list; ``distinct``: what a list's items are
    called, when none may repeat; ``read(value, path)`` and
    ``write(value)``: a field with its own YAML spelling; ``rest``: the field collects the section's keys that are
    no other field; ``omit_default``: left out of the written config when it holds its default.

    Examples:
      A field's checks beyond its type, in its metadata; the reader applies them and names the field in
      its error:

      >>> import dataclasses
      >>> from jgd.experiment.config.reader import read_section
      >>> from jgd.experiment.config.schema import DataConfig
      >>> field = {f.name: f for f in dataclasses.fields(DataConfig)}["validation_fraction"]
      >>> print(field.metadata["rule"])
      Rule(low=0.0, high=1.0, open_low=True, choices=None, nonempty=False, distinct=None, read=None, write=None,
      rest=False, omit_default=False)
      >>> try:
      ...     read_section(DataConfig, {"validation_fraction": 1.5}, "data")
      ... except ValueError as error:
      ...     print(error)
      ...
      data.validation_fraction must be < 1, got 1.5
    """

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    choices: tuple[str, ...] | None = None
    nonempty: bool = False
    distinct: str | None = None
    read: Callable[[Any, str], Any] | None = None
    write: Callable[[Any], Any] | None = None
    rest: bool = False
    omit_default: bool = False


def rule(**checks: Any) -> dict[str, Rule]:
    """A field's metadata holding the :class:`Rule` made of ``checks``.

    Examples:
      A dataclass field's metadata, for a schema of one's own:

      >>> import dataclasses
      >>> from jgd.experiment.config.reader import read_section
      >>> from jgd.experiment.config.schema import rule
      >>> @dataclasses.dataclass(frozen=True)
      ... class Warmup:
      ...     steps: int = dataclasses.field(default=0, metadata=rule(low=0))
      ...
      >>> print(read_section(Warmup, {"steps": 100}, "warmup"))
      Warmup(steps=100)
      >>> try:
      ...     read_section(Warmup, {"steps": -1}, "warmup")
      ... except ValueError as error:
      ...     print(error)
      ...
      warmup.steps must be an integer >= 0, got -1
    """
    return {"rule": Rule(**checks)}


# A batch size: an int, or ``full`` in YAML (``None``), the whole training set.
BATCH_SIZE = rule(read=field_readers.batch_size, write=field_readers.write_batch_size)
# The blocks around a method: a penalty's rate may be 0 (off), a threshold must be positive; unused, they are not
# written.
PENALTY = rule(low=0.0, omit_default=True)
THRESHOLD = rule(low=0.0, open_low=True, omit_default=True)
