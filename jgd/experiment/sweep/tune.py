"""``jgd compare``'s ``tune`` section: each method's learning rate chosen by one vmapped sweep before it trains.

The grid of learning rates, crossed with the tuning seeds, is a sweep section
(``TuneConfig.as_sweep``) run by
``jgd.experiment.sweep.from_config.run_sweep``; the best rate of each
method (:func:`jgd.experiment.sweep.results.best`) replaces its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
from rich.progress import Progress

from jgd.experiment.config.optimizers import with_values
from jgd.experiment.config.schema import Config, MethodConfig
from jgd.experiment.sweep import results as sweep_results
from jgd.experiment.sweep.engine import SweepResult
from jgd.experiment.sweep.from_config import run_sweep
from jgd.experiment.train.data import Dataset

__all__ = [
    "Tuned",
    "tune_methods",
]


@dataclass(frozen=True)
class Tuned:
    """One method's tuning: its sweep, the best setting (``None`` when every rate diverged) and the method to train.

    ``method`` is the config's method with ``learning_rate`` set to the best rate, or unchanged when there is
    none.

    Examples:
      Adam's tuning: three rates × two seeds in one sweep; 10 diverges, 0.01 has the lowest validation loss:

      >>> import jax
      >>> from jgd.experiment.config.reader import parse_config
      >>> from jgd.experiment.sweep.tune import tune_methods
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> raw = {
      ...     "methods": [{"label": "Adam", "optimizer": {"name": "adam", "learning_rate": 0.5}}],
      ...     "training": {"epochs": 2, "batch_size": 64},
      ...     "tune": {"learning_rate": [1e-3, 1e-2, 10.0], "seeds": [0, 1]},
      ... }
      >>> tuned = tune_methods(parse_config(raw), model, data, jax.random.key(0))
      >>> adam = tuned["Adam"]
      >>> print(adam.learning_rate, adam.method.optimizer.hyperparams, adam.result.diverged.tolist())
      0.01 {'learning_rate': 0.01} [False, False, False, False, True, True]
      >>> print(sorted(adam.summary()))
      ['seeds_test_accuracy', 'tuned_learning_rate']
    """

    result: SweepResult
    best: dict[str, Any] | None
    method: MethodConfig

    @property
    def learning_rate(self) -> float:
        """The chosen rate (NaN when every rate diverged)."""
        return float("nan") if self.best is None else float(self.best["learning_rate"])

    def summary(self) -> dict[str, Any]:
        """The columns a comparison's summary row gains: the chosen rate and, at that rate, the mean test
        accuracy over the tuning seeds."""
        accuracy = float("nan") if self.best is None else self.best["test_accuracy"]
        return {"tuned_learning_rate": self.learning_rate, "seeds_test_accuracy": accuracy}


def tune_methods(
    config: Config, model: nn.Module, data: Dataset, order_key: jax.Array, *, progress: Progress | None = None
) -> dict[str, Tuned]:
    """Each method of ``config`` (by label) tuned as its ``tune`` section says, from the config's batches.

    Args:
      config: a read config with ``methods`` and a ``tune`` section.
      model: the model every method trains.
      data: the data set.
      order_key: the key of the batch order, the one the comparison trains with.
      progress: shows a bar per method.

    Examples:
      Each method by its label, with the rate its sweep chose in place of its own (0.5 here):

      >>> import jax
      >>> from jgd.experiment.config.reader import parse_config
      >>> from jgd.experiment.sweep.tune import tune_methods
      >>> from jgd.experiment.train.data import load_dataset
      >>> from jgd.experiment.train.models import MLP
      >>> data = load_dataset("digits")
      >>> model = MLP(hidden=(16,), num_outputs=data.num_classes)
      >>> raw = {
      ...     "methods": [{"label": "Adam", "optimizer": {"name": "adam", "learning_rate": 0.5}}],
      ...     "training": {"epochs": 2, "batch_size": 64},
      ...     "tune": {"learning_rate": [1e-3, 1e-2, 10.0], "seeds": [0, 1]},
      ... }
      >>> tuned = tune_methods(parse_config(raw), model, data, jax.random.key(0))
      >>> print(list(tuned), tuned["Adam"].method.optimizer.hyperparams["learning_rate"])
      ['Adam'] 0.01
    """
    tune = config.tune
    if tune is None:
        raise ValueError("the config has no tune section")
    sweep = tune.as_sweep(config.seed)
    results = run_sweep(dataclasses.replace(config, sweep=sweep), model, data, order_key, progress=progress)
    tuned = {}
    for method, result in zip(config.methods, results):
        best = sweep_results.best(result, sweep.select)
        chosen = method
        if best is not None:
            optimizer = with_values(method.optimizer, {"learning_rate": best["learning_rate"]})
            chosen = dataclasses.replace(method, optimizer=optimizer)
        tuned[result.label] = Tuned(result, best, chosen)
    return tuned
