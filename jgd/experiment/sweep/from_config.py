"""Running the sweep a config describes: its ``sweep`` section made into settings, its methods into transforms.

The engine (:mod:`jgd.experiment.sweep.engine`) knows nothing of configs; this glue
turns the section's grid or random search into a settings table crossed with
its seeds, and each method's optimizer section into ``make_tx``. The section
itself is read and checked by :mod:`jgd.experiment.config.reader`.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh
from rich.progress import Progress

from jgd import GradientTransformation
from jgd.experiment.config.optimizers import build_optimizer, with_values
from jgd.experiment.config.schema import Config, OptimizerConfig, SweepConfig
from jgd.experiment.sweep.engine import SweepResult, sweep
from jgd.experiment.sweep.settings import Distribution, Settings, cross, grid, log_uniform, random_search, uniform
from jgd.experiment.train.data import Dataset


def _distribution(spec: tuple) -> Distribution | tuple[float, ...]:
    if not isinstance(spec[0], str):
        return spec
    kind, low, high = spec
    return {"uniform": uniform, "log_uniform": log_uniform}[kind](low, high)


def _config_transform(optimizer: OptimizerConfig, path: str, **values: Any) -> GradientTransformation:
    return build_optimizer(with_values(optimizer, values), path)


def config_settings(sweep_config: SweepConfig) -> Settings:
    """The settings a sweep section describes: its grid or random samples, each crossed with every seed."""
    space = sweep_config.space
    if sweep_config.random is None:
        table = grid(**space)
    else:
        random = sweep_config.random
        table = random_search(random.samples, random.seed, **{k: _distribution(v) for k, v in space.items()})
    return cross(table, {"seed": np.asarray(sweep_config.seeds)})


def run_sweep(
    config: Config,
    model: nn.Module,
    data: Dataset,
    order_key: jax.Array,
    *,
    progress: Progress | None = None,
) -> list[SweepResult]:
    """Sweeps every method of ``config`` (its ``methods``, else its ``optimizer``) over its ``sweep`` section.

    Each method's settings are one :func:`sweep`, with the method's batch
    size and the transform its config builds (``l1, l2, clipping → method →
    max_norm``) with the swept values put in. ``order_key`` fixes the batches.
    """
    if config.sweep is None:
        raise ValueError("the config has no sweep section")
    s, t = config.sweep, config.training
    settings = config_settings(s)
    mesh = Mesh(np.array(jax.devices()), ("settings",)) if s.mesh else None
    results = []
    for path, method in config.sweep_methods:
        make_tx = functools.partial(_config_transform, method.optimizer, path)
        results.append(
            sweep(
                make_tx,
                settings,
                model,
                data,
                epochs=t.epochs,
                order_key=order_key,
                batch_size=method.batch_size,
                loss=t.loss,
                chunk=s.chunk,
                mesh=mesh,
                divergence_factor=s.divergence_factor,
                label=cast(str, method.label),  # the reader labels every method
                progress=progress,
            )
        )
    return results
