"""Keeping the best epoch of a run, and stopping once the validation loss has stopped improving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jgd.experiment.config.schema import EarlyStopping


@dataclass
class BestEpoch:
    """The epoch with the lowest validation loss so far, its state, and how many epochs have not improved on it.

    An epoch improves when its loss is below the best by more than the rule's
    ``min_delta`` (0 without a rule). Without a rule training never stops early.
    """

    rule: EarlyStopping | None
    epoch: int
    loss: float
    state: Any
    waited: int = 0

    def update(self, epoch: int, loss: float, state: Any) -> None:
        """Takes in the validation ``loss`` that ``state`` reached at ``epoch``."""
        if loss < self.loss - (self.rule.min_delta if self.rule else 0.0):
            self.epoch, self.loss, self.state, self.waited = epoch, loss, state, 0
        else:
            self.waited += 1

    @property
    def stop(self) -> bool:
        """Whether the rule says to stop: ``patience`` epochs in a row without improving."""
        return self.rule is not None and self.waited >= self.rule.patience
